"""The environment-variable carrier: normalised names, any propagator, through real children."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from opentelemetry import trace
from opentelemetry.propagators.b3 import B3MultiFormat
from opentelemetry.propagators.textmap import TextMapPropagator

import threadline as tl
from tests.helpers import clean_env
from threadline import diagnostics
from threadline import subprocess as tl_subprocess
from threadline.propagation import EnvironmentGetter, EnvironmentSetter

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class TestNames:
    @pytest.mark.parametrize(
        ("field", "name"),
        [
            ("traceparent", "TRACEPARENT"),
            ("x-b3-traceid", "X_B3_TRACEID"),
            ("uber-trace-id", "UBER_TRACE_ID"),
            ("ot.baggage", "OT_BAGGAGE"),
            ("1st", "_1ST"),  # a leading digit gets a '_'
            ("", "_"),  # an empty name becomes '_'
            ("caf\u00e9", "CAF_"),  # only ASCII letters are letters here
        ],
    )
    def test_normalised(self, field: str, name: str) -> None:
        """Field names become variable names as OpenTelemetry's env-carrier specification says."""
        env: dict[str, str] = {}
        EnvironmentSetter().set(env, field, "v")
        assert {name: "v"} == env
        assert ["v"] == EnvironmentGetter().get(env, field)

    def test_get_reads_normalised_names_only(self) -> None:
        """A variable spelled like the header (lower case, dashes) is not the field."""
        env = {"traceparent": TRACEPARENT, "x-b3-traceid": "abc"}
        assert EnvironmentGetter().get(env, "traceparent") is None
        assert EnvironmentGetter().get(env, "x-b3-traceid") is None
        assert not tl.extract_env(env).context

    def test_keys_are_the_normalised_names(self) -> None:
        """keys() lists only names a normalised field name can be."""
        env = {"TRACEPARENT": "x", "path": "/bin", "X_B3_SAMPLED": "1", "1BAD": "y"}
        assert ["TRACEPARENT", "X_B3_SAMPLED"] == EnvironmentGetter().keys(env)

    def test_values_are_opaque(self) -> None:
        """The carrier passes values as they are; the propagator decides what is valid."""
        env = {"X_B3_TRACEID": "not hex at all", "X_B3_SPANID": "b7ad6b7169203331"}
        assert ["not hex at all"] == EnvironmentGetter().get(env, "X-B3-TraceId")


class TestAnyPropagator:
    @pytest.mark.parametrize("propagator", [B3MultiFormat()])
    def test_round_trip_in_a_dict(self, propagator: TextMapPropagator) -> None:
        """Any propagator's fields go into an environment and come back out."""
        context = tl.extract({"traceparent": TRACEPARENT}).context
        env: dict[str, str] = {}
        propagator.inject(env, context, EnvironmentSetter())
        assert "0af7651916cd43dd8448eb211c80319c" == env["X_B3_TRACEID"]
        back = propagator.extract(env, getter=EnvironmentGetter())
        back_trace_id = trace.get_current_span(back).get_span_context().trace_id
        assert "0af7651916cd43dd8448eb211c80319c" == f"{back_trace_id:032x}"


PARENT = """
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
import threadline as tl
from threadline import subprocess

trace.set_tracer_provider(TracerProvider())
CHILD = '''
import json, os
import threadline as tl
from opentelemetry import trace
ctx = tl.extract_env().context
sc = trace.get_current_span(ctx).get_span_context()
names = sorted(k for k in os.environ if k.startswith(("X_B3_", "TRACE", "BAGGAGE")))
print(json.dumps({"names": names, "trace_id": f"{sc.trace_id:032x}",
                  "request": dict(tl.request.get(ctx) or {})}))
'''
with trace.get_tracer("parent").start_as_current_span("parent") as span:
    with tl.request.scope(request_id="env-1"):
        out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                             check=True, bootstrap=False).stdout
print(json.dumps({"parent": f"{span.get_span_context().trace_id:032x}",
                  "child": json.loads(out)}))
"""


class TestThroughAChild:
    @pytest.mark.parametrize(
        ("propagators", "names", "stores"),
        [
            (None, ["BAGGAGE", "TRACEPARENT"], {"request_id": "env-1"}),
            ("b3multi", ["X_B3_SAMPLED", "X_B3_SPANID", "X_B3_TRACEID"], None),
            ("tracecontext", ["TRACEPARENT"], None),
            (
                "tracecontext,baggage,b3multi",
                ["BAGGAGE", "TRACEPARENT", "X_B3_SAMPLED", "X_B3_SPANID", "X_B3_TRACEID"],
                {"request_id": "env-1"},
            ),
        ],
    )
    def test_configured_propagators_reach_the_child(
        self, propagators: str | None, names: list[str], stores: dict[str, str] | None
    ) -> None:
        """With OTEL_PROPAGATORS the child gets exactly those formats, and continues the trace."""
        env = clean_env(**({"OTEL_PROPAGATORS": propagators} if propagators else {}))
        result = subprocess.run(
            [sys.executable, "-c", PARENT], env=env, capture_output=True, text=True, check=False
        )
        assert 0 == result.returncode, result.stderr
        seen = json.loads(result.stdout)
        assert names == seen["child"]["names"]
        assert seen["parent"] == seen["child"]["trace_id"]
        assert (stores or {}) == seen["child"]["request"]
        # stores that cannot travel are said once, not lost silently
        assert (stores is None) == ("carry no W3C baggage" in result.stderr)

    def test_b3_alone_continues_the_trace_in_the_child(self) -> None:
        """A child that gets only b3 fields (no TRACEPARENT) still joins the trace."""
        child = (
            "import json, threadline as tl\n"
            "from opentelemetry import trace\n"
            "sc = trace.get_current_span(tl.extract_env().context).get_span_context()\n"
            "print(f'{sc.trace_id:032x}')\n"
        )
        env = clean_env(
            OTEL_PROPAGATORS="b3multi",
            X_B3_TRACEID="0af7651916cd43dd8448eb211c80319c",
            X_B3_SPANID="b7ad6b7169203331",
            X_B3_SAMPLED="1",
        )
        out = subprocess.run(
            [sys.executable, "-c", child], env=env, capture_output=True, text=True, check=True
        ).stdout
        assert "0af7651916cd43dd8448eb211c80319c" == out.strip()


class TestTraceContextRulesInAChild:
    def test_child_keeps_flags_and_todays_tracestate(self) -> None:
        """A child reads TRACEPARENT/TRACESTATE by the same rules and hands them on unchanged."""
        child = (
            "import threadline as tl\n"
            "from threadline.subprocess import child_env\n"
            "env = child_env(context=tl.extract_env().context, bootstrap=False)\n"
            "print(env['TRACEPARENT']); print(env['TRACESTATE'])\n"
        )
        env = clean_env(
            TRACEPARENT="cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03-future",
            TRACESTATE="foo@@bar=1,1a=2,foo@@bar=3",
        )
        out = subprocess.run(
            [sys.executable, "-c", child], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        assert ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03", "foo@@bar=1,1a=2"] == out


class TestLimits:
    def test_extract_env_applies_the_field_limits(self) -> None:
        """A TRACEPARENT over 512 characters (120 KiB of spaces after a valid one) is not read."""
        snap = tl.extract_env({"TRACEPARENT": TRACEPARENT + " " * 120 * 1024})
        assert not trace.get_current_span(snap.context).get_span_context().is_valid
        assert {"traceparent.too_large": 1} == diagnostics.drop_counts()

    def test_a_child_started_with_a_huge_traceparent_starts_a_new_trace(self) -> None:
        """The bootstrap of a Python child reads its environment with the same limits."""
        child = (
            "import threadline as tl\n"
            "from opentelemetry import trace\n"
            "print(trace.get_current_span().get_span_context().is_valid)\n"
        )
        env = clean_env(TRACEPARENT=TRACEPARENT + " " * 120 * 1024, THREADLINE_BOOTSTRAP="1")
        out = subprocess.run(
            [sys.executable, "-c", child], env=env, capture_output=True, text=True, check=True
        ).stdout
        assert "False" == out.strip()


class TestBytesEnvironment:
    STALE = b"00-11111111111111111111111111111111-2222222222222222-01"

    def test_inject_env_replaces_bytes_fields(self, tracer: trace.Tracer) -> None:
        """os.environb.copy(): the stale bytes TRACEPARENT and BAGGAGE are replaced, in bytes."""
        env = {b"PATH": b"/bin", b"TRACEPARENT": self.STALE, b"BAGGAGE": b"request.user_id=9;tl"}
        with tracer.start_as_current_span("now") as span, tl.request.scope(request_id="b1"):
            tl.inject_env(env)
        trace_id = f"{span.get_span_context().trace_id:032x}".encode()
        assert trace_id in env[b"TRACEPARENT"]
        assert b"request.request_id=b1;tl" == env[b"BAGGAGE"]
        assert all(isinstance(name, bytes) for name in env)

    def test_inject_env_outside_any_context_removes_them(self) -> None:
        """No context here: the inherited bytes fields are removed, not left to the child."""
        env = {b"PATH": b"/bin", b"TRACEPARENT": self.STALE, "BAGGAGE": "k=v"}
        tl.inject_env(env)
        assert {b"PATH": b"/bin"} == env

    def test_run_with_a_bytes_environment(self, tracer: trace.Tracer) -> None:
        """subprocess.run(env=os.environb.copy()) with a stale trace: the child gets ours."""
        env = {k.encode(): v.encode() for k, v in clean_env().items()}
        env[b"TRACEPARENT"] = self.STALE
        env[b"BAGGAGE"] = b"request.request_id=stale;tl"
        child = "import os; print(os.environ['TRACEPARENT']); print(os.environ['BAGGAGE'])"
        with tracer.start_as_current_span("now") as span, tl.request.scope(request_id="b2"):
            out = tl_subprocess.run(
                [sys.executable, "-c", child], env=env, capture_output=True, text=True, check=True
            ).stdout.split()
        assert f"{span.get_span_context().trace_id:032x}" in out[0]
        assert "request.request_id=b2;tl" == out[1]

    def test_extract_env_reads_a_bytes_environment(self) -> None:
        """extract_env(os.environb) reads the bytes fields as os.environ would."""
        snap = tl.extract_env({b"TRACEPARENT": TRACEPARENT.encode()})
        span_context = trace.get_current_span(snap.context).get_span_context()
        assert 0x0AF7651916CD43DD8448EB211C80319C == span_context.trace_id
