"""Tracing set-up from OTEL_* settings, and the embedded default: OTLP JSON lines in a file."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.helpers import NO_THREADS_AT_EXIT, clean_env, run_app
from threadline import diagnostics
from threadline.export import OTLPJsonFileSpanExporter, read_spans

CHILD = textwrap.dedent(
    """
    import multiprocessing, sys
    import threadline as tl
    from threadline import subprocess as tl_subprocess
    from threadline.tracing import configure
    from opentelemetry import trace

    def work(i):
        with trace.get_tracer("worker").start_as_current_span(f"work {i}"):
            return i

    if __name__ == "__main__":
        provider = configure(service_name="svc-from-code")
        print("configured" if provider is not None else "not configured")
        tracer = trace.get_tracer("main")
        with tl.request.scope(request_id="r-1"), tracer.start_as_current_span("request"):
            if "pool" in sys.argv:
                ctx = multiprocessing.get_context("spawn")
                with tl.ProcessPoolExecutor(2, mp_context=ctx) as pool:
                    list(pool.map(work, range(4)))
            if "child" in sys.argv:
                code = "from opentelemetry import trace\\n" \\
                       "with trace.get_tracer('c').start_as_current_span('in child'): pass"
                tl_subprocess.run([sys.executable, "-c", code], check=True)
    """
)


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "app.py").write_text(CHILD)
    return tmp_path


class TestConfigure:
    def test_embedded_default_needs_no_server(self, workdir: Path) -> None:
        """With nothing configured, spans go as OTLP JSON lines to ./threadline-traces.jsonl."""
        result = run_app(workdir)
        assert 0 == result.returncode, result.stderr
        (span,) = read_spans(workdir / "threadline-traces.jsonl")
        assert ("request", "svc-from-code", "r-1") == (
            span.name,
            span.service,
            span.attributes["request.id"],
        )
        assert 32 == len(span.trace_id)
        assert 16 == len(span.span_id)

    def test_service_name_setting_wins(self, workdir: Path) -> None:
        """OTEL_SERVICE_NAME names the service over the code's default."""
        run_app(
            workdir,
            OTEL_SERVICE_NAME="from-env",
            OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test",
        )
        (span,) = read_spans(workdir / "threadline-traces.jsonl")
        assert "from-env" == span.service

    def test_file_location_setting(self, workdir: Path) -> None:
        """THREADLINE_TRACES_FILE moves the file."""
        target = workdir / "elsewhere.jsonl"
        run_app(workdir, THREADLINE_TRACES_FILE=str(target))
        assert ["request"] == [s.name for s in read_spans(target)]

    def test_exporter_none_and_disabled(self, workdir: Path) -> None:
        """OTEL_TRACES_EXPORTER=none exports nothing; OTEL_SDK_DISABLED=true sets nothing up."""
        assert 0 == run_app(workdir, OTEL_TRACES_EXPORTER="none").returncode
        assert not (workdir / "threadline-traces.jsonl").exists()
        assert "not configured" in run_app(workdir, OTEL_SDK_DISABLED="true").stdout

    @pytest.mark.parametrize(
        ("setting", "message", "exported"),
        [
            (
                {"OTEL_TRACES_EXPORTER": "zipkin"},
                "OTEL_TRACES_EXPORTER='zipkin' is not a valid exporter list (no span exporter "
                "'zipkin' is installed; OTEL_TRACES_EXPORTER may name console, file, none, otlp, "
                "otlp_proto_grpc, otlp_proto_http); using the default 'file'",
                True,
            ),
            (
                {"OTEL_TRACES_EXPORTER": "console,zipkin"},
                "OTEL_TRACES_EXPORTER='console,zipkin' is not a valid exporter list",
                True,
            ),
            (
                {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
                "OTEL_EXPORTER_OTLP_PROTOCOL='http/json' is not a valid OTLP protocol "
                "(http/protobuf or grpc); using the default 'http/protobuf'",
                False,
            ),
        ],
    )
    def test_a_setting_that_is_not_valid_is_said_and_the_default_serves(
        self, workdir: Path, setting: dict[str, str], message: str, exported: bool
    ) -> None:
        """A setting threadline cannot honour is a warning naming it; the application runs."""
        result = run_app(workdir, **setting)
        assert 0 == result.returncode, result.stderr
        assert message in result.stderr
        assert exported == (workdir / "threadline-traces.jsonl").exists()

    def test_workers_and_children_export_to_the_same_place(self, workdir: Path) -> None:
        """Spawned pool workers and a Python child configure themselves like the parent."""
        result = run_app(workdir, "pool", "child")
        assert 0 == result.returncode, result.stderr
        exported = read_spans(workdir / "threadline-traces.jsonl")
        spans = {s.name: s for s in exported}
        request = spans["request"]
        assert {f"work {i}" for i in range(4)} | {"in child", "subprocess python"} <= set(spans)
        assert {request.trace_id} == {s.trace_id for s in exported}
        assert spans["subprocess python"].span_id == spans["in child"].parent_id
        job_ids = {s.span_id for s in exported if s.name == "process work"}
        assert {spans[f"work {i}"].parent_id for i in range(4)} <= job_ids

    @NO_THREADS_AT_EXIT
    def test_exit_never_waits_past_the_bound(self, workdir: Path) -> None:
        """An unreachable Collector cannot hold the exit: the spans are dropped and reported."""
        with socket.socket() as silent:  # accepts connections, never answers
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            port = silent.getsockname()[1]
            result = run_app(
                workdir,
                OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
                OTEL_EXPORTER_OTLP_TIMEOUT="60",
                THREADLINE_SHUTDOWN_TIMEOUT="1",
            )
        assert 0 == result.returncode, result.stderr
        assert "export.shutdown_timeout" in result.stderr


CHILD_WORK = textwrap.dedent(
    """
    from opentelemetry import trace
    import threadline

    with trace.get_tracer("child").start_as_current_span("work"):
        pass
    print("work done", flush=True)
    """
)

WORKER_APP = textwrap.dedent(
    """
    import multiprocessing, sys, threading
    import threadline as tl
    from threadline.tracing import configure
    from opentelemetry import trace

    def work():
        with trace.get_tracer("worker").start_as_current_span("work"):
            return 1

    if __name__ == "__main__":
        configure(service_name="svc")
        pool = tl.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(sys.argv[1]))
        pool.submit(work).result()
        closing = threading.Thread(target=pool.shutdown)
        closing.start()
        closing.join(1.0)  # the bound under test: the worker's exit must not hold the pool
        print("held" if closing.is_alive() else "shut down")
        closing.join()
    """
)


@pytest.fixture
def closed_endpoint() -> str:
    with socket.socket() as probe:  # bound, then closed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def exit_after_work(command: list[str], env: dict[str, str]) -> tuple[int | None, str]:
    """Run a child that prints "work done"; give it one second from then to exit."""
    child = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert "work done\n" == child.stdout.readline()
        child.wait(timeout=1.0)  # the bound under test: raises TimeoutExpired past it
    finally:
        child.kill()
        _, stderr = child.communicate()
    return child.returncode, stderr


class TestExitAgainstAnUnreachableCollector:
    @NO_THREADS_AT_EXIT
    def test_python_child_exits_within_a_second(self, closed_endpoint: str) -> None:
        """A bootstrapped child whose Collector is down exits within 1 s of its work, reporting."""
        env = clean_env(
            THREADLINE_BOOTSTRAP="1",
            THREADLINE_CONFIGURED="1",
            OTEL_EXPORTER_OTLP_ENDPOINT=closed_endpoint,
        )
        returncode, stderr = exit_after_work([sys.executable, "-c", CHILD_WORK], env)
        assert 0 == returncode
        assert "threadline could not export spans (export." in stderr

    @NO_THREADS_AT_EXIT
    def test_child_under_the_launcher_exits_within_a_second(self, closed_endpoint: str) -> None:
        """Under opentelemetry-instrument too: its own exit flush is held to the bound."""
        launcher = Path(sys.executable).parent / "opentelemetry-instrument"
        env = clean_env(
            THREADLINE_BOOTSTRAP="1",
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_ENDPOINT=closed_endpoint,
        )
        returncode, stderr = exit_after_work([str(launcher), sys.executable, "-c", CHILD_WORK], env)
        # (the report goes to the logging the launcher set up: OpenTelemetry's logs pipeline)
        assert 0 == returncode, stderr

    @pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
    def test_pool_worker_exits_within_a_second(
        self, method: str, tmp_path: Path, closed_endpoint: str
    ) -> None:
        """A pool worker whose Collector is down lets the pool shut down within 1 s, reporting."""
        (tmp_path / "app.py").write_text(WORKER_APP)
        result = subprocess.run(
            [sys.executable, "app.py", method],
            check=False,
            cwd=tmp_path,
            env=clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=closed_endpoint),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert 0 == result.returncode, result.stderr
        assert "shut down" == result.stdout.strip(), result.stderr
        assert "threadline could not export spans (export." in result.stderr


HIDE_GRPC = textwrap.dedent(
    """
    import sys

    class HideGrpc:  # as if the gRPC exporter's package were not installed
        def find_spec(self, name, path=None, target=None):
            if name.startswith("opentelemetry.exporter.otlp.proto.grpc"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, HideGrpc())
    """
)

SETUP_APP = textwrap.dedent(
    """
    import os, sys
    if "distro" in sys.argv:
        from opentelemetry.distro import OpenTelemetryDistro
        OpenTelemetryDistro().configure()  # its defaults, as opentelemetry-instrument does
    from threadline import tracing
    from threadline._telemetry import pipeline
    provider = tracing.configure(service_name="svc")
    exporters = [type(p._counting_exporter._exporter) for p in pipeline._exporting]
    print(*(f"{e.__module__}.{e.__name__}" for e in exporters))
    """
)


def run_setup(
    tmp_path: Path, *args: str, hide_grpc: bool = False, **env: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "setup_app.py").write_text((HIDE_GRPC if hide_grpc else "") + SETUP_APP)
    return subprocess.run(
        [sys.executable, "setup_app.py", *args],
        check=False,
        cwd=tmp_path,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


HTTP_EXPORTER = "opentelemetry.exporter.otlp.proto.http.trace_exporter.OTLPSpanExporter"


class TestExporterSettings:
    def test_exporter_plug_ins_by_entry_point(self, tmp_path: Path) -> None:
        """OTEL_TRACES_EXPORTER names any installed opentelemetry_traces_exporter entry point."""
        (tmp_path / "my_exporter.py").write_text(
            "from opentelemetry.sdk.trace.export import ConsoleSpanExporter\n"
            "class MyExporter(ConsoleSpanExporter): pass\n"
        )
        info = tmp_path / "my_exporter-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-exporter\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(
            "[opentelemetry_traces_exporter]\nmine = my_exporter:MyExporter\n"
        )
        result = run_setup(tmp_path, OTEL_TRACES_EXPORTER="mine,console", PYTHONPATH=str(tmp_path))
        assert 0 == result.returncode, result.stderr
        expected = "my_exporter.MyExporter opentelemetry.sdk.trace.export.ConsoleSpanExporter"
        assert expected == result.stdout.strip()

    def test_per_signal_protocol_first(self, tmp_path: Path) -> None:
        """OTEL_EXPORTER_OTLP_TRACES_PROTOCOL wins over OTEL_EXPORTER_OTLP_PROTOCOL."""
        result = run_setup(
            tmp_path,
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
            OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf",
        )
        assert HTTP_EXPORTER == result.stdout.strip(), result.stderr

    @pytest.mark.parametrize(
        "setting", ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"]
    )
    def test_missing_grpc_names_the_setting_made(self, tmp_path: Path, setting: str) -> None:
        """grpc without its package: a warning naming the setting; spans go over HTTP."""
        result = run_setup(
            tmp_path, hide_grpc=True, OTEL_TRACES_EXPORTER="otlp", **{setting: "grpc"}
        )
        assert 0 == result.returncode, result.stderr
        assert HTTP_EXPORTER == result.stdout.strip()
        assert f"{setting}='grpc' is not a valid OTLP protocol here (the exporter " in result.stderr
        assert "pip install 'threadline[grpc]'); using the default 'http/protobuf'" in result.stderr

    def test_distro_default_grpc_falls_back_to_http(self, tmp_path: Path) -> None:
        """Under the distro's grpc default and no gRPC exporter, spans go over HTTP."""
        result = run_setup(tmp_path, "distro", hide_grpc=True)
        assert 0 == result.returncode, result.stderr
        assert HTTP_EXPORTER == result.stdout.strip()
        assert (
            "OTEL_EXPORTER_OTLP_PROTOCOL='grpc' is not a valid OTLP protocol here" in result.stderr
        )


LAUNCHED_APP = textwrap.dedent(
    """
    import sys
    from opentelemetry import trace
    from threadline import subprocess as tl_subprocess, tracing

    set_first = trace.get_tracer_provider()
    print("same provider" if tracing.configure(service_name="x") is set_first else "another")
    with trace.get_tracer("app").start_as_current_span("request"):
        code = (
            "import os, threadline\\n"
            "from threadline._telemetry import pipeline\\n"
            "print(os.environ.get('THREADLINE_CONFIGURED'), len(pipeline._exporting),"
            " type(pipeline.trace.get_tracer_provider()).__name__)"
        )
        tl_subprocess.run([sys.executable, "-c", code], check=True)
    """
)


def test_under_opentelemetry_instrument(tmp_path: Path) -> None:
    """Under the real launcher, configure() keeps its provider; a child gets no second one."""
    (tmp_path / "app.py").write_text(LAUNCHED_APP)
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    result = subprocess.run(
        [str(launcher), sys.executable, "app.py"],
        check=False,
        cwd=tmp_path,
        env=clean_env(
            OTEL_TRACES_EXPORTER="console",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
            OTEL_SERVICE_NAME="launched",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 0 == result.returncode, result.stderr
    assert ["same provider", "None 0 TracerProvider"] == result.stdout.splitlines()[:2]


SERVICE_APP = textwrap.dedent(
    """
    import multiprocessing, multiprocessing.forkserver, sys
    import threadline as tl
    from threadline import processes, subprocess as tl_subprocess
    from threadline.tracing import configure
    from opentelemetry import trace

    def work(name):
        with trace.get_tracer("worker").start_as_current_span(name):
            pass

    if __name__ == "__main__":
        multiprocessing.forkserver.ensure_running()  # started before the set-up, as may happen
        configure(service_name="svc-from-code")
        with trace.get_tracer("main").start_as_current_span("request"):
            for method in ("spawn", "forkserver", "fork"):
                ctx = processes.get_context(method)
                with ctx.ProcessPoolExecutor(1) as pool:
                    pool.submit(work, f"executor {method}").result()
                with ctx.Pool(1) as pool:
                    pool.apply(work, (f"pool {method}",))
                child = ctx.Process(target=work, args=(f"process {method}",))
                child.start()
                child.join()
            code = "import threadline\\nfrom opentelemetry import trace\\n" \\
                   "trace.get_tracer('c').start_span('python child').end()"
            tl_subprocess.run([sys.executable, "-c", code], check=True)
    """
)


def _services(path: Path) -> dict[str, tuple[str, str]]:
    """Each span's name -> (service.name, deployment.environment) of its resource."""
    found = {}
    for line in path.read_text().splitlines():
        for resource_spans in json.loads(line)["resourceSpans"]:
            attributes = {
                a["key"]: a["value"].get("stringValue")
                for a in resource_spans["resource"]["attributes"]
            }
            for scope in resource_spans["scopeSpans"]:
                for span in scope["spans"]:
                    found[span["name"]] = (
                        attributes.get("service.name"),
                        attributes.get("deployment.environment"),
                    )
    return found


def test_workers_and_children_are_the_same_service(tmp_path: Path) -> None:
    """Every worker, Process child and Python child reports the parent's resource."""
    (tmp_path / "app.py").write_text(SERVICE_APP)
    result = subprocess.run(
        [sys.executable, "app.py"],
        check=False,
        cwd=tmp_path,
        env=clean_env(OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == result.returncode, result.stderr
    found = _services(tmp_path / "threadline-traces.jsonl")
    names = ["request", "python child"] + [
        f"{kind} {method}"
        for kind in ("executor", "pool", "process")
        for method in ("spawn", "forkserver", "fork")
    ]
    assert dict.fromkeys(names, ("svc-from-code", "test")) == {
        name: found.get(name) for name in names
    }


class TestFileExporterFailure:
    """A file the exporter cannot write: the warning says which file and why."""

    def test_the_warning_names_the_path_and_the_os_error(
        self, tmp_path: Path, threadline_warnings: pytest.LogCaptureFixture
    ) -> None:
        """Used on its own, a batch it cannot write is FAILURE, counted, warned with the cause."""
        path = tmp_path / "no such folder" / "spans.jsonl"
        span = SDKTracerProvider().get_tracer("t").start_span("lost")
        span.end()
        assert SpanExportResult.FAILURE is OTLPJsonFileSpanExporter(path).export([span])
        (warning,) = [r.getMessage() for r in threadline_warnings.records]
        assert str(path) in warning
        assert "No such file or directory (FileNotFoundError 2)" in warning
        assert 1 == diagnostics.drop_counts()["export.failed"]

    @pytest.mark.parametrize("export_process", ["0", "1"])
    def test_configured_the_warning_names_the_path(
        self, workdir: Path, export_process: str
    ) -> None:
        """Set up by `configure`, in the application or its export process, the same."""
        path = workdir / "no such folder" / "spans.jsonl"
        result = run_app(
            workdir, THREADLINE_TRACES_FILE=str(path), THREADLINE_EXPORT_PROCESS=export_process
        )
        assert 0 == result.returncode, result.stderr
        assert f"not written to {path}: No such file or directory" in result.stderr
