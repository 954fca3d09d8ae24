"""The export process (THREADLINE_EXPORT_PROCESS=1): spans exported from a process of their own.

Real processes throughout: the application, its export process, a forked
child, the real Collector.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.collector import running_collector
from tests.helpers import NO_THREADS_AT_EXIT, clean_env, wait_for
from threadline.export import read_spans

APP = textwrap.dedent(
    """
    import json, os, sys
    import threadline as tl
    from threadline import diagnostics, tracing
    from threadline._telemetry import pipeline
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    provider = tracing.configure(service_name="export-process-app")
    tracer = trace.get_tracer("app", "1.2")

    def work(tag):
        with tl.request.scope(request_id=f"r-{tag}"):
            with tracer.start_as_current_span(
                f"outer {tag}", kind=SpanKind.SERVER,
                attributes={"n": 1, "ratio": 0.5, "list": [1, 2], "flag": True},
            ) as outer:
                outer.add_event("event", {"k": "v", "k2": "v2"})
                with tracer.start_as_current_span(
                    f"inner {tag}", links=[Link(outer.get_span_context(), {"l": 1, "m": 2})]
                ) as inner:
                    inner.set_status(Status(StatusCode.ERROR, "bad"))

    def pipe_exporter():
        return pipeline._exporting[0]._counting_exporter._exporter

    def export_process():
        return pipe_exporter()._child.process

    command = sys.argv[1]
    if command == "shapes":
        work("a")
    elif command == "kill":
        work("before")
        provider.force_flush()
        export_process().kill()
        export_process().wait()
        work("lost")
        provider.force_flush()  # this batch goes to a process that is gone: counted
        work("after")
        provider.force_flush()
        print(json.dumps(diagnostics.drop_counts()))
    elif command == "fork":
        work("parent-before")
        provider.force_flush()
        pid = os.fork()
        if pid == 0:
            work("child")
            provider.force_flush()
            print("child started no export process:", pipe_exporter()._child is None)
            sys.stdout.flush()
            tracing.shutdown(provider, 5)
            os._exit(0)
        os.waitpid(pid, 0)
        work("parent-after")
    elif command == "stopped":
        import signal
        work("before")
        provider.force_flush()
        stopped = export_process()
        os.kill(stopped.pid, signal.SIGSTOP)
        work("lost")
        print("flushed:", provider.force_flush(timeout_millis=1000), flush=True)
        work("after")
        print("flushed:", provider.force_flush(timeout_millis=30000), flush=True)
        print("stopped one ended:", stopped.poll() is not None, flush=True)
    elif command == "sigpipe":
        import signal
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # as some command-line tools do
        work("before")
        provider.force_flush()
        export_process().kill()
        export_process().wait()
        work("lost")
        provider.force_flush()  # written to a pipe nobody reads
        work("after")
        provider.force_flush()
        print(json.dumps(diagnostics.drop_counts()))
    elif command == "forks":
        from threadline.processes import get_context
        work("parent")
        provider.force_flush()  # the parent's export process runs
        children = [get_context("fork").Process(target=work, args=(f"child{n}",)) for n in range(6)]
        for child in children:
            child.start()
        for child in children:
            child.join()
        print("exit codes:", [child.exitcode for child in children], flush=True)
    elif command == "exit":
        work("x")
        print("work done", flush=True)
    elif command == "interrupted":
        work("flushed")
        provider.force_flush()  # the export process runs from here on
        work("queued")  # still in the batch processor's queue: the exit exports it
        print("work done", flush=True)
        import time
        time.sleep(60)
    elif command == "no-interpreter":
        sys.executable = "/nonexistent/python"  # as in an embedded interpreter
        work("first")
        provider.force_flush()
        work("second")
        provider.force_flush()
        """
)


def run_app(tmp_path: Path, command: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "app.py").write_text(APP)
    return subprocess.run(
        [sys.executable, "app.py", command],
        cwd=tmp_path,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def span_records(path: Path) -> list[dict[str, Any]]:
    """Every span in an OTLP JSON lines file, with resource and scope, less ids and times."""
    records = []
    for line in path.read_text().splitlines():
        for resource_spans in json.loads(line)["resourceSpans"]:
            for scope_spans in resource_spans["scopeSpans"]:
                for span in scope_spans["spans"]:
                    shown = {
                        key: value
                        for key, value in span.items()
                        if not key.endswith(("Id", "TimeUnixNano"))
                    }
                    shown["events"] = [
                        {k: v for k, v in event.items() if k != "timeUnixNano"}
                        for event in span.get("events", [])
                    ]
                    shown["links"] = [
                        {k: v for k, v in link.items() if not k.endswith("Id")}
                        for link in span.get("links", [])
                    ]
                    shown["resource"] = [  # less the id each process gives itself
                        item
                        for item in resource_spans["resource"]["attributes"]
                        if item["key"] != "service.instance.id"
                    ]
                    shown["scope"] = scope_spans["scope"]
                    records.append(shown)
    return sorted(records, key=lambda record: record["name"])


def test_spans_arrive_as_they_would_from_the_application(tmp_path: Path) -> None:
    """Through the export process every field an exporter writes is the same as in-process."""
    written = {}
    limits = {  # so that events and links drop an attribute each, and say so
        "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT": "1",
        "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT": "1",
    }
    for mode in ("0", "1"):
        path = tmp_path / f"spans-{mode}.jsonl"
        done = run_app(
            tmp_path,
            "shapes",
            THREADLINE_EXPORT_PROCESS=mode,
            THREADLINE_TRACES_FILE=str(path),
            **limits,
        )
        assert 0 == done.returncode, done.stderr
        written[mode] = span_records(path)
    assert ["inner a", "outer a"] == [record["name"] for record in written["1"]]
    inner, outer = written["1"]
    assert 1 == outer["events"][0]["droppedAttributesCount"]
    assert 1 == inner["links"][0]["droppedAttributesCount"]
    assert written["0"] == written["1"]


def test_spans_reach_the_real_collector(tmp_path: Path) -> None:
    """OTLP/HTTP from the export process to the real Collector: one trace, its ids, its service."""
    with running_collector(tmp_path) as collector:
        done = run_app(
            tmp_path,
            "shapes",
            THREADLINE_EXPORT_PROCESS="1",
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.http_endpoint,
        )
        assert 0 == done.returncode, done.stderr
        assert wait_for(lambda: len(_read(collector.traces_file)) == 2)
    spans = {span.name: span for span in _read(collector.traces_file)}
    assert spans["inner a"].parent_id == spans["outer a"].span_id
    assert {"export-process-app"} == {span.service for span in spans.values()}
    assert {"r-a"} == {span.attributes["request.id"] for span in spans.values()}


def _read(path: Path) -> list[Any]:
    return read_spans(path) if path.exists() else []


def test_a_killed_export_process_is_counted_and_replaced(tmp_path: Path) -> None:
    """The batch sent to a dead export process is counted as failed; a new one takes the next."""
    path = tmp_path / "spans.jsonl"
    done = run_app(
        tmp_path, "kill", THREADLINE_EXPORT_PROCESS="1", THREADLINE_TRACES_FILE=str(path)
    )
    assert 0 == done.returncode, done.stderr
    counts = json.loads(done.stdout.splitlines()[-1])
    assert 2 == counts.get("export.failed")  # the two spans of the "lost" request
    names = sorted(span.name for span in read_spans(path))
    assert ["inner after", "inner before", "outer after", "outer before"] == names
    assert "threadline's export process ended unexpectedly" in done.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_exports_in_process(tmp_path: Path) -> None:
    """A fork never writes into its parent's export process nor starts one: each span arrives
    once."""
    path = tmp_path / "spans.jsonl"
    done = run_app(
        tmp_path, "fork", THREADLINE_EXPORT_PROCESS="1", THREADLINE_TRACES_FILE=str(path)
    )
    assert 0 == done.returncode, done.stderr
    assert "child started no export process: True" in done.stdout
    names = sorted(span.name for span in read_spans(path))
    expected = [f"{part} {tag}" for part in ("inner", "outer") for tag in ("child",)]
    expected += [
        f"{part} {tag}" for part in ("inner", "outer") for tag in ("parent-after", "parent-before")
    ]
    assert sorted(expected) == names


@NO_THREADS_AT_EXIT
def test_exit_within_the_bound_leaves_no_export_process(tmp_path: Path) -> None:
    """Against a Collector that is down, the exit keeps its bound and ends the export process."""
    import socket

    with socket.socket() as probe:  # bound, then closed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    (tmp_path / "app.py").write_text(APP)
    marker = uuid.uuid4().hex
    app = subprocess.Popen(
        [sys.executable, "app.py", "exit"],
        cwd=tmp_path,
        env=clean_env(
            THREADLINE_EXPORT_PROCESS="1",
            THREADLINE_SHUTDOWN_TIMEOUT="0.5",
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            OTEL_EXPORTER_OTLP_TIMEOUT="300",  # unbounded, the exit would retry for minutes
            TEST_MARKER=marker,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.stdout is not None
        assert "work done\n" == app.stdout.readline()
        app.wait(timeout=60)  # a hang guard: without the bound this takes minutes
    finally:
        app.kill()
        _, stderr = app.communicate()
    assert "threadline could not export spans (export.shutdown_timeout" in stderr
    assert wait_for(lambda: not _processes_marked(marker))


def _processes_marked(marker: str) -> list[int]:
    """The export processes started with ``TEST_MARKER=marker`` that still run."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if (
            b"threadline._telemetry.export_child" in command
            and f"TEST_MARKER={marker}".encode() in environ
        ):
            found.append(int(entry.name))
    return found


def test_workers_export_in_process(tmp_path: Path) -> None:
    """The setting is the application's: pool workers that threadline starts have none."""
    program = textwrap.dedent(
        """
        import multiprocessing
        import threadline as tl
        from threadline import tracing
        from threadline._telemetry import pipeline

        def exporter_kind(_):
            return type(pipeline._exporting[0]._counting_exporter._exporter).__name__

        if __name__ == "__main__":
            tracing.configure()
            with tl.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                print(exporter_kind(0), pool.submit(exporter_kind, 0).result())
        """
    )
    (tmp_path / "pool.py").write_text(program)
    done = subprocess.run(
        [sys.executable, "pool.py"],
        cwd=tmp_path,
        env=clean_env(THREADLINE_EXPORT_PROCESS="1", THREADLINE_TRACES_FILE=str(tmp_path / "t")),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert 0 == done.returncode, done.stderr
    assert "PipeSpanExporter OTLPJsonFileSpanExporter" == done.stdout.strip()


def test_a_wrong_setting_is_said_in_the_application(tmp_path: Path) -> None:
    """A mistake in OTEL_TRACES_EXPORTER is said by the application; the default serves."""
    done = run_app(
        tmp_path, "shapes", THREADLINE_EXPORT_PROCESS="1", OTEL_TRACES_EXPORTER="nonesuch"
    )
    assert 0 == done.returncode, done.stderr
    assert (
        "OTEL_TRACES_EXPORTER='nonesuch' is not a valid exporter list (no span exporter "
        "'nonesuch' is installed" in done.stderr
    )
    exported = read_spans(tmp_path / "threadline-traces.jsonl")
    assert {"outer a", "inner a"} == {span.name for span in exported}


def test_a_ctrl_c_to_the_group_loses_no_span(tmp_path: Path) -> None:
    """SIGINT to the application's whole group (a terminal's Ctrl-C): the exit still exports."""
    path = tmp_path / "spans.jsonl"
    (tmp_path / "app.py").write_text(APP)
    app = subprocess.Popen(
        [sys.executable, "app.py", "interrupted"],
        cwd=tmp_path,
        env=clean_env(THREADLINE_EXPORT_PROCESS="1", THREADLINE_TRACES_FILE=str(path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own, as a terminal gives a command
    )
    try:
        assert app.stdout is not None
        assert "work done\n" == app.stdout.readline()
        os.killpg(app.pid, signal.SIGINT)
        app.wait(timeout=60)  # a hang guard
    finally:
        app.kill()
        _, stderr = app.communicate()
    assert "KeyboardInterrupt" in stderr  # the application was interrupted...
    assert "export.failed" not in stderr  # ...and its export process was not
    names = sorted(span.name for span in read_spans(path))
    assert ["inner flushed", "inner queued", "outer flushed", "outer queued"] == names


def test_no_interpreter_to_start_exports_in_process(tmp_path: Path) -> None:
    """Where the export process cannot start, the application exports itself, saying so once."""
    path = tmp_path / "spans.jsonl"
    done = run_app(
        tmp_path, "no-interpreter", THREADLINE_EXPORT_PROCESS="1", THREADLINE_TRACES_FILE=str(path)
    )
    assert 0 == done.returncode, done.stderr
    assert 1 == done.stderr.count("threadline's export process could not start")
    names = sorted(span.name for span in read_spans(path))
    assert ["inner first", "inner second", "outer first", "outer second"] == names


def test_a_flush_keeps_its_timeout_while_the_export_process_is_stopped(tmp_path: Path) -> None:
    """force_flush(timeout_millis=1000) with the export process stopped (SIGSTOP) returns False
    instead of waiting for ever; that process is ended, and the next batch gets a new one."""
    path = tmp_path / "spans.jsonl"
    done = run_app(
        tmp_path, "stopped", THREADLINE_EXPORT_PROCESS="1", THREADLINE_TRACES_FILE=str(path)
    )
    assert 0 == done.returncode, done.stderr
    assert ["flushed: False", "flushed: True", "stopped one ended: True"] == (
        done.stdout.splitlines()
    )
    assert "threadline's export process did not answer in time" in done.stderr
    names = sorted(span.name for span in read_spans(path))
    assert ["inner after", "inner before", "outer after", "outer before"] == names


def test_a_dead_export_process_never_kills_an_app_with_default_sigpipe(tmp_path: Path) -> None:
    """An application that restored SIGPIPE's default action survives writing to its dead export
    process: the batch is counted as failed, the next one exported."""
    path = tmp_path / "spans.jsonl"
    done = run_app(
        tmp_path, "sigpipe", THREADLINE_EXPORT_PROCESS="1", THREADLINE_TRACES_FILE=str(path)
    )
    assert 0 == done.returncode, done.stderr
    assert 2 == json.loads(done.stdout.splitlines()[-1]).get("export.failed")
    names = sorted(span.name for span in read_spans(path))
    assert ["inner after", "inner before", "outer after", "outer before"] == names


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_children_lose_no_span_within_their_exit_bound(tmp_path: Path) -> None:
    """Six fork-started children of an application with an export process each export their
    spans within a short exit bound (in-process: no export process to start per child)."""
    path = tmp_path / "spans.jsonl"
    done = run_app(
        tmp_path,
        "forks",
        THREADLINE_EXPORT_PROCESS="1",
        THREADLINE_TRACES_FILE=str(path),
        THREADLINE_CHILD_EXIT_TIMEOUT="0.25",
    )
    assert 0 == done.returncode, done.stderr
    assert "exit codes: [0, 0, 0, 0, 0, 0]" in done.stdout
    assert "export.flush_timeout" not in done.stderr
    names = sorted(span.name for span in read_spans(path) if span.name.startswith("outer"))
    assert [*(f"outer child{n}" for n in range(6)), "outer parent"] == names
