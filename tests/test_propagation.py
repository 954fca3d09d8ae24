"""ThreadlinePropagator: the carrier behind OpenTelemetry's propagation API."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.propagators.textmap import DefaultGetter

import threadline as tl
from threadline import diagnostics
from threadline.propagation import ThreadlinePropagator

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class TestThreadlinePropagator:
    def test_round_trip_through_otel_interfaces(self, tracer: trace.Tracer) -> None:
        """inject/extract with OpenTelemetry's Getter and Setter carry the span and the stores."""
        propagator = ThreadlinePropagator()
        carrier: dict[str, str] = {}
        with tracer.start_as_current_span("s") as span, tl.request.scope(request_id="p1"):
            propagator.inject(carrier)
        ctx = propagator.extract(carrier, getter=DefaultGetter())
        assert {"request_id": "p1"} == tl.request.get(ctx)
        assert (
            span.get_span_context().trace_id
            == trace.get_current_span(ctx).get_span_context().trace_id
        )
        assert {"traceparent", "tracestate", "baggage"} == propagator.fields

    def test_a_withheld_context_writes_no_baggage(self, tracer: trace.Tracer) -> None:
        """Where another instrumentation sends a call, its injection gets the trace, no baggage."""
        from opentelemetry import baggage
        from opentelemetry.baggage.propagation import W3CBaggagePropagator

        from threadline._core.context import get_current
        from threadline._wire.carrier import without_baggage

        ours: dict[str, str] = {}
        plain: dict[str, str] = {}
        with tracer.start_as_current_span("s"), tl.request.scope(request_id="p1"):
            ctx = without_baggage(baggage.set_baggage("plain", "1", get_current()))
        ThreadlinePropagator().inject(ours, ctx)
        W3CBaggagePropagator().inject(plain, ctx)
        assert ({"traceparent"}, {}) == (set(ours), plain)
        assert {"request_id": "p1"} == tl.request.get(ctx)  # the stores stay readable

    def test_never_raises_on_inject(self, store: tl.ContextStore, tracer: trace.Tracer) -> None:
        """A store value that cannot cross sends the trace without baggage, counted, not raised."""
        carrier: dict[str, str] = {}
        with tracer.start_as_current_span("s"), store.scope(bad=object()):
            ThreadlinePropagator().inject(carrier)
        assert ["traceparent"] == list(carrier)
        assert 1 == diagnostics.drop_counts()["baggage.outbound_invalid"]

    def test_inject_error_leaves_carrier_untouched(
        self, store: tl.ContextStore, tracer: trace.Tracer
    ) -> None:
        """tl.inject raises before writing anything, so no half-written carrier remains."""
        carrier: dict[str, str] = {}
        with tracer.start_as_current_span("s"), store.scope(bad=object()):
            with contextlib.suppress(TypeError):
                tl.inject(carrier)
        assert {} == carrier

    @pytest.mark.parametrize(
        "member", ["request.x=" + "%5B" * 2500 + ";tl=json", "request.x=1e400;tl=json"]
    )
    def test_hostile_baggage_is_dropped_not_raised(self, member: str) -> None:
        """Baggage too deep or out of range is dropped and counted; the trace is kept."""
        ctx = ThreadlinePropagator().extract({"traceparent": VALID, "baggage": member})
        assert trace.get_current_span(ctx).get_span_context().is_valid
        assert tl.request.get(ctx) is None
        assert 1 == diagnostics.drop_counts()["baggage.invalid"]

    def test_strict_extract(self) -> None:
        """Bad input through the OpenTelemetry interface is dropped and counted as well."""
        ctx = ThreadlinePropagator().extract({"traceparent": VALID.upper()})
        assert not trace.get_current_span(ctx).get_span_context().is_valid
        assert 1 == diagnostics.drop_counts()["traceparent.invalid"]


def test_otel_propagators_setting_selects_threadline() -> None:
    """OTEL_PROPAGATORS=threadline makes opentelemetry.propagate use the carrier, no code needed."""
    code = (
        "import json, threadline as tl\n"
        "from opentelemetry import propagate\n"
        "carrier = {}\n"
        "with tl.request.scope(request_id='env1'):\n"
        "    propagate.inject(carrier)\n"
        "print(json.dumps(carrier))\n"
    )
    env = {**os.environ, "OTEL_PROPAGATORS": "threadline"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout
    assert {"baggage": "request.request_id=env1;tl"} == json.loads(out)


@settings(max_examples=200, deadline=None)
@given(
    carrier=st.dictionaries(
        st.sampled_from(["traceparent", "tracestate", "baggage"]),
        st.text(max_size=200) | st.lists(st.text(max_size=100), max_size=3),
    )
)
def test_fuzz_extract_never_raises(carrier: dict[str, str | list[str]]) -> None:
    """Whatever text a carrier holds, the propagator returns a context."""
    ThreadlinePropagator().extract(carrier, getter=DefaultGetter())
