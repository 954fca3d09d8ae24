"""Settings: every variable read by one function, validated once, handed to children explicitly."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import clean_env, run_app
from threadline._boundary import far_side
from threadline._core import settings
from threadline._core.settings import Settings, read_settings
from threadline.export import read_spans
from threadline.subprocess import child_env
from threadline.tracing import configure


@pytest.fixture(autouse=True)
def _environment_read_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test reads this process's environment anew, its warnings included."""
    monkeypatch.setattr(settings, "_last", None)


def run_python(tmp_path: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run *code* as a program in *tmp_path*, with no OTEL_*/THREADLINE_* settings but *env*."""
    (tmp_path / "app.py").write_text(textwrap.dedent(code))
    return run_app(tmp_path, **env)


CONFIGURE_AND_SPAN = """
    from opentelemetry import trace
    from threadline import tracing

    provider = tracing.configure(service_name="svc")
    print(type(provider).__name__)
    with trace.get_tracer("app").start_as_current_span("work"):
        pass
"""


class TestTheBugsOfIssue19:
    def test_a_bad_shutdown_timeout_is_a_warning_and_configure_completes(
        self, tmp_path: Path
    ) -> None:
        """THREADLINE_SHUTDOWN_TIMEOUT=5s: said, naming it; the set-up and its exit flush happen."""
        result = run_python(tmp_path, CONFIGURE_AND_SPAN, THREADLINE_SHUTDOWN_TIMEOUT="5s")
        assert 0 == result.returncode, result.stderr
        assert "TracerProvider" == result.stdout.strip()
        assert (
            "THREADLINE_SHUTDOWN_TIMEOUT='5s' is not a valid number of seconds; "
            "using the default 5" in result.stderr
        )
        # the exit flush was registered: the span reached the file at exit
        assert ["work"] == [s.name for s in read_spans(tmp_path / "threadline-traces.jsonl")]

    def test_a_bad_child_exit_timeout_is_said(
        self, monkeypatch: pytest.MonkeyPatch, threadline_warnings: pytest.LogCaptureFixture
    ) -> None:
        """THREADLINE_CHILD_EXIT_TIMEOUT=half is the default, said in a warning naming it."""
        monkeypatch.setenv("THREADLINE_CHILD_EXIT_TIMEOUT", "half")
        assert 0.5 == far_side.child_exit_timeout()
        assert [
            "THREADLINE_CHILD_EXIT_TIMEOUT='half' is not a valid number of seconds; "
            "using the default 0.5"
        ] == [record.getMessage() for record in threadline_warnings.records]

    def test_configure_leaves_os_environ_unchanged(self, tmp_path: Path) -> None:
        """configure() writes nothing to os.environ: what children need is handed to them."""
        code = """
            import json, os
            from threadline import tracing

            before = dict(os.environ)
            tracing.configure(service_name="svc")
            after = dict(os.environ)
            print(json.dumps({k: after.get(k) for k in set(before) ^ set(after)}))
        """
        result = run_python(tmp_path, code)
        assert 0 == result.returncode, result.stderr
        assert {} == json.loads(result.stdout)


# --------------------------------------------------------------------------- read_settings

GOOD = [
    ("THREADLINE_CONFIGURED", "1", "parent_configured", True),
    ("THREADLINE_CONFIGURED", "TRUE", "parent_configured", True),
    ("THREADLINE_CONFIGURED", "0", "parent_configured", False),
    ("THREADLINE_SERVICE_NAME", " orders ", "service_name", "orders"),
    ("THREADLINE_EXPORT_PROCESS", "1", "export_process", True),
    ("THREADLINE_EXPORT_PROCESS", "true", "export_process", True),
    ("THREADLINE_EXPORT_PROCESS", "false", "export_process", False),
    ("THREADLINE_TRACES_FILE", "out/spans.jsonl", "traces_file", "out/spans.jsonl"),
    ("THREADLINE_SHUTDOWN_TIMEOUT", "2.5", "shutdown_timeout", 2.5),
    ("THREADLINE_SHUTDOWN_TIMEOUT", "0", "shutdown_timeout", 0.0),
    ("THREADLINE_CHILD_EXIT_TIMEOUT", " 3 ", "child_exit_timeout", 3.0),
    ("OTEL_SDK_DISABLED", "true", "sdk_disabled", True),
    ("OTEL_SDK_DISABLED", "False", "sdk_disabled", False),
    ("OTEL_TRACES_EXPORTER", "OTLP, console,", "traces_exporters", ("otlp", "console")),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318", "otlp_endpoint_set", True),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318", "otlp_endpoint_set", True),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "otlp_protocol", "grpc"),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc", "otlp_protocol", "grpc"),
    ("OTEL_PROPAGATORS", "b3", "propagators_set", True),
    ("OTEL_PYTHON_TRACER_PROVIDER", "sdk_tracer_provider", "tracer_provider_named", True),
]

BOOLEAN = "boolean (1, true, 0 or false); using the default false"
SECONDS = "number of seconds; using the default"
BAD = [
    ("THREADLINE_CONFIGURED", "yes", "parent_configured", BOOLEAN),
    ("THREADLINE_EXPORT_PROCESS", "on", "export_process", BOOLEAN),
    ("THREADLINE_SHUTDOWN_TIMEOUT", "5s", "shutdown_timeout", f"{SECONDS} 5"),
    ("THREADLINE_SHUTDOWN_TIMEOUT", "-1", "shutdown_timeout", f"{SECONDS} 5"),
    ("THREADLINE_SHUTDOWN_TIMEOUT", "inf", "shutdown_timeout", f"{SECONDS} 5"),
    ("THREADLINE_SHUTDOWN_TIMEOUT", "nan", "shutdown_timeout", f"{SECONDS} 5"),
    ("THREADLINE_CHILD_EXIT_TIMEOUT", "half", "child_exit_timeout", f"{SECONDS} 0.5"),
    ("THREADLINE_CHILD_EXIT_TIMEOUT", "-0.1", "child_exit_timeout", f"{SECONDS} 0.5"),
    ("OTEL_SDK_DISABLED", "1", "sdk_disabled", "boolean (true or false); using the default false"),
    (
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "http/json",
        "otlp_protocol",
        "OTLP protocol (http/protobuf or grpc); using the default 'http/protobuf'",
    ),
]
"""Values that are not valid: what the warning says after "... is not a valid "."""


class TestReadSettings:
    def test_nothing_set_is_every_default(self) -> None:
        """An environment without settings reads as the documented defaults."""
        expected = Settings(
            parent_configured=False,
            service_name=None,
            export_process=False,
            traces_file="threadline-traces.jsonl",
            shutdown_timeout=5.0,
            child_exit_timeout=0.5,
            sdk_disabled=False,
            traces_exporters=(),
            otlp_endpoint_set=False,
            otlp_protocol="http/protobuf",
            otlp_protocol_setting=None,
            propagators_set=False,
            tracer_provider_named=False,
        )
        assert expected == read_settings({})
        assert ("file",) == read_settings({}).exporter_names

    @pytest.mark.parametrize(("variable", "value", "field", "expected"), GOOD)
    def test_a_good_value(
        self,
        variable: str,
        value: str,
        field: str,
        expected: object,
        threadline_warnings: pytest.LogCaptureFixture,
    ) -> None:
        """Each variable's valid value lands in its field, unsaid."""
        assert expected == getattr(read_settings({variable: value}), field)
        assert [] == threadline_warnings.records

    @pytest.mark.parametrize(("variable", "value", "field", "said"), BAD)
    def test_a_bad_value_is_said_and_the_default_serves(
        self,
        variable: str,
        value: str,
        field: str,
        said: str,
        threadline_warnings: pytest.LogCaptureFixture,
    ) -> None:
        """A value that is not valid: a warning naming the variable and the value; the default."""
        assert getattr(Settings(), field) == getattr(read_settings({variable: value}), field)
        expected = f"{variable}={value!r} is not a valid {said}"
        assert [expected] == [record.getMessage() for record in threadline_warnings.records]
        assert ["WARNING"] == [record.levelname for record in threadline_warnings.records]

    @pytest.mark.parametrize("variable", sorted(settings._READ))
    @pytest.mark.parametrize("value", ["", "  "])
    def test_an_empty_value_is_an_unset_one(
        self, variable: str, value: str, threadline_warnings: pytest.LogCaptureFixture
    ) -> None:
        """Every variable, empty or blank, reads as unset: the default, unsaid."""
        assert Settings() == read_settings({variable: value})
        assert [] == threadline_warnings.records

    def test_the_per_signal_protocol_first(self) -> None:
        """OTEL_EXPORTER_OTLP_TRACES_PROTOCOL wins over OTEL_EXPORTER_OTLP_PROTOCOL, and says so."""
        read = read_settings(
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            }
        )
        assert ("http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") == (
            read.otlp_protocol,
            read.otlp_protocol_setting,
        )

    def test_a_bad_per_signal_protocol_falls_back_to_the_general_one(
        self, threadline_warnings: pytest.LogCaptureFixture
    ) -> None:
        """A bad per-signal protocol: the general setting serves, and the warning says so."""
        read = read_settings(
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "json"}
        )
        assert ("grpc", "OTEL_EXPORTER_OTLP_PROTOCOL") == (
            read.otlp_protocol,
            read.otlp_protocol_setting,
        )
        assert [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='json' is not a valid OTLP protocol "
            "(http/protobuf or grpc); using the default 'grpc' (from OTEL_EXPORTER_OTLP_PROTOCOL)"
        ] == [record.getMessage() for record in threadline_warnings.records]

    def test_an_endpoint_makes_otlp_the_default_exporter(self) -> None:
        """With an OTLP endpoint and no OTEL_TRACES_EXPORTER, the exporter is otlp."""
        read = read_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
        assert ("otlp",) == read.exporter_names

    def test_the_warning_escapes_what_came(
        self, threadline_warnings: pytest.LogCaptureFixture
    ) -> None:
        """A value from outside reaches the log escaped: no raw line break or escape code."""
        read_settings({"THREADLINE_SHUTDOWN_TIMEOUT": "5\nFAKE LINE \x1b[31m"})
        (message,) = [record.getMessage() for record in threadline_warnings.records]
        assert "'5\\nFAKE LINE \\x1b[31m'" in message
        assert "\n" not in message
        assert "\x1b" not in message

    def test_this_environment_is_parsed_once(
        self, monkeypatch: pytest.MonkeyPatch, threadline_warnings: pytest.LogCaptureFixture
    ) -> None:
        """The process's environment is parsed once while the values read stay: said once."""
        monkeypatch.setenv("THREADLINE_SHUTDOWN_TIMEOUT", "once-5s")
        first = read_settings()
        assert first is read_settings()
        assert 1 == len(threadline_warnings.records)
        monkeypatch.setenv("THREADLINE_SHUTDOWN_TIMEOUT", "2")
        assert 2.0 == read_settings().shutdown_timeout

    def test_the_variables_read_are_the_documented_ones(self) -> None:
        """docs/exporting.md's table of settings lists every THREADLINE_* variable read."""
        page = (Path(__file__).resolve().parent.parent / "docs" / "exporting.md").read_text()
        section = page.split("## Settings", 1)[1].split("\n## ", 1)[0]
        documented = set(re.findall(r"^\| `(THREADLINE_\w+)`", section, re.MULTILINE))
        read = {name for name in settings._READ if name.startswith("THREADLINE_")}
        assert read | {settings.BOOTSTRAP_ENV} == documented


# --------------------------------------------------------------------------- configure()


class TestConfigureArguments:
    @pytest.mark.parametrize(
        ("arguments", "error", "message"),
        [
            ({"shutdown_timeout": "5"}, TypeError, "configure(shutdown_timeout=...) takes seconds"),
            (
                {"shutdown_timeout": True},
                TypeError,
                "configure(shutdown_timeout=...) takes seconds",
            ),
            ({"shutdown_timeout": -1}, ValueError, "configure(shutdown_timeout=-1): seconds must"),
            (
                {"shutdown_timeout": math.inf},
                ValueError,
                "configure(shutdown_timeout=inf): seconds must",
            ),
            ({"service_name": 42}, TypeError, "configure(service_name=...) takes a str, got 42"),
            ({"service_name": " "}, ValueError, "configure(service_name=' ') names no service"),
            ({"export_process": "1"}, TypeError, "configure(export_process=...) takes a bool"),
        ],
    )
    def test_a_wrong_argument_raises_naming_it(
        self, arguments: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        """A wrong argument is the programmer's mistake: an error naming the argument."""
        with pytest.raises(error) as raised:
            configure(**arguments)
        assert str(raised.value).startswith(message)

    def test_a_wrong_argument_sets_nothing_up(self, tmp_path: Path) -> None:
        """The error comes before anything is set up: no provider, no exit handler, no marks."""
        code = """
            import atexit
            from opentelemetry import trace
            from threadline import tracing
            from threadline._core import settings

            try:
                tracing.configure(shutdown_timeout="5")
            except TypeError:
                pass
            print(type(trace.get_tracer_provider()).__name__, settings.configured_marks(),
                  atexit._ncallbacks())
        """
        baseline = run_python(
            tmp_path, "import atexit, threadline.tracing\nprint(atexit._ncallbacks())"
        )
        result = run_python(tmp_path, code)
        assert 0 == result.returncode, result.stderr
        assert f"ProxyTracerProvider {{}} {baseline.stdout.strip()}" == result.stdout.strip()


# --------------------------------------------------------------------------- handed on

HAND_ON = """
    import json, os, sys
    from threadline import subprocess as tl_subprocess, tracing
    from threadline._boundary.processes import capture_settings

    tracing.configure(service_name="svc")
    minimal = {"PATH": os.environ["PATH"], "THREADLINE_SERVICE_NAME": "own"}
    print(json.dumps({
        "environ": {k: v for k, v in os.environ.items() if k.startswith("THREADLINE_")},
        "child": {k: v for k, v in tl_subprocess.child_env().items()
                  if k.startswith("THREADLINE_")},
        "no bootstrap": sorted(k for k in tl_subprocess.child_env(bootstrap=False)
                               if k.startswith("THREADLINE_")),
        "given": tl_subprocess.child_env(minimal),
        "workers": {k: v for k, v in capture_settings().items() if k.startswith("THREADLINE_")},
    }))
"""


class TestHandedOn:
    def test_children_and_workers_are_handed_what_they_need(self, tmp_path: Path) -> None:
        """After configure(), children and workers get its marks; this environment does not."""
        result = run_python(
            tmp_path,
            HAND_ON,
            THREADLINE_TRACES_FILE="spans.jsonl",
            THREADLINE_CHILD_EXIT_TIMEOUT="2",
            OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test",
        )
        assert 0 == result.returncode, result.stderr
        found = json.loads(result.stdout)
        mine = {"THREADLINE_TRACES_FILE": "spans.jsonl", "THREADLINE_CHILD_EXIT_TIMEOUT": "2"}
        assert mine == found["environ"]
        marks = {
            "THREADLINE_CONFIGURED": "1",
            "THREADLINE_SERVICE_NAME": "svc",
            "THREADLINE_TRACES_FILE": str(tmp_path / "spans.jsonl"),
        }
        assert {**mine, **marks, "THREADLINE_BOOTSTRAP": "1"} == found["child"]
        assert ["THREADLINE_CHILD_EXIT_TIMEOUT", "THREADLINE_TRACES_FILE"] == found["no bootstrap"]
        assert {**mine, **marks} == found["workers"]
        given = found["given"]  # an env of the caller's: its values kept, the settings added
        assert "own" == given["THREADLINE_SERVICE_NAME"]
        assert "1" == given["THREADLINE_CONFIGURED"]
        assert str(tmp_path / "spans.jsonl") == given["THREADLINE_TRACES_FILE"]
        assert "deployment.environment=test" == given["OTEL_RESOURCE_ATTRIBUTES"]

    def test_nothing_is_handed_on_before_configure(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A process that did not configure tracing gives its children only the context."""
        monkeypatch.setattr(settings, "_marks", {})
        env = child_env({"PATH": "/bin"})
        assert {"PATH", "THREADLINE_BOOTSTRAP"} == set(env) - {"TRACEPARENT", "BAGGAGE"}

    def test_a_child_with_an_env_of_its_own_is_the_same_service(self, tmp_path: Path) -> None:
        """A bootstrapped child given a minimal env exports where, and as what, the parent does."""
        code = """
            import os, sys
            from opentelemetry import trace
            from threadline import subprocess as tl_subprocess, tracing

            tracing.configure(service_name="svc")
            with trace.get_tracer("app").start_as_current_span("request"):
                child = "from opentelemetry import trace\\n" \\
                        "trace.get_tracer('c').start_span('in child').end()"
                os.mkdir("elsewhere")
                tl_subprocess.run([sys.executable, "-c", child], check=True, cwd="elsewhere",
                                  env={"PATH": os.environ["PATH"]})
        """
        result = run_python(tmp_path, code, THREADLINE_TRACES_FILE="spans.jsonl")
        assert 0 == result.returncode, result.stderr
        exported = {span.name: span for span in read_spans(tmp_path / "spans.jsonl")}
        assert {"request", "subprocess python", "in child"} == set(exported)
        assert {"svc"} == {span.service for span in exported.values()}
        assert exported["subprocess python"].span_id == exported["in child"].parent_id

    @pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
    def test_the_export_process_is_handed_its_settings(self, tmp_path: Path) -> None:
        """The export process gets the absolute traces file on its command line; no marks."""
        code = """
            import json
            from pathlib import Path
            from opentelemetry import trace
            from threadline import tracing
            from threadline._telemetry import pipeline

            provider = tracing.configure(service_name="svc", export_process=True)
            trace.get_tracer("app").start_span("work").end()
            provider.force_flush()
            child = pipeline._exporting[0]._counting_exporter._exporter._child.process
            proc = Path(f"/proc/{child.pid}")
            environ = (proc / "environ").read_bytes().split(b"\\0")
            print(json.dumps({
                "argv": [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\\0")],
                "environ": sorted(i.decode().split("=")[0] for i in environ
                                  if i.startswith(b"THREADLINE_")),
            }))
        """
        result = run_python(
            tmp_path, code, THREADLINE_TRACES_FILE="spans.jsonl", THREADLINE_CONFIGURED="1"
        )
        assert 0 == result.returncode, result.stderr
        found = json.loads(result.stdout)
        module, _, traces_file, *names = found["argv"][2:]
        assert ("threadline._telemetry.export_child", str(tmp_path / "spans.jsonl")) == (
            module,
            traces_file,
        )
        assert ["file"] == [name for name in names if name]
        assert ["THREADLINE_TRACES_FILE"] == found["environ"]
        assert ["work"] == [s.name for s in read_spans(tmp_path / "spans.jsonl")]


def test_importing_threadline_reads_no_setting() -> None:
    """Settings are read where they are needed: ``import threadline`` does not load them."""
    code = "import sys, threadline; print('threadline._core.settings' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=clean_env()
    )
    assert "False" == result.stdout.strip()
