"""Worker processes: context over IPC under every start method, spans that are never lost."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
from opentelemetry import trace

import threadline as tl
from tests import process_jobs as jobs
from tests.helpers import NO_THREADS_AT_EXIT, Spans, clean_env, wait_for
from threadline.export import ExportedSpan, read_spans
from threadline.processes import Pool, Process, get_context

METHODS = ["spawn", "forkserver", "fork"]


@pytest.fixture(params=METHODS)
def method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def span_file(tmp_path: Path) -> str:
    return str(tmp_path / "spans.jsonl")


def executor(method: str, **kwargs: object) -> tl.ProcessPoolExecutor:
    return tl.ProcessPoolExecutor(mp_context=multiprocessing.get_context(method), **kwargs)  # type: ignore[arg-type]


class TestProcessPoolExecutor:
    def test_job_sees_stores_and_trace(
        self, method: str, tracer: trace.Tracer, spans: Spans
    ) -> None:
        """The job runs in the submitter's stores and trace, under the job span."""
        with (
            executor(method, max_workers=1) as pool,
            tl.request.scope(request_id="r1", user_id=7),
            tracer.start_as_current_span("req") as req,
        ):
            seen = pool.submit(jobs.observe, "x").result()
        job_span = spans.named("process observe")
        assert {"request_id": "r1", "user_id": 7} == seen["request"]
        assert f"{req.get_span_context().trace_id:032x}" == seen["trace_id"]
        assert f"{job_span.context.span_id:016x}" == seen["span_id"]
        assert job_span.parent is not None
        assert req.get_span_context().span_id == job_span.parent.span_id
        assert os.getpid() != seen["pid"]

    def test_reused_worker_keeps_no_context(self, method: str) -> None:
        """One worker: a job in a scope (leaking one), then one outside: it sees nothing."""
        with executor(method, max_workers=1) as pool:
            with tl.request.scope(request_id="first"):
                assert {"request_id": "first"} == pool.submit(jobs.observe).result()["request"]
                pool.submit(jobs.leave_a_scope_open).result()
            seen = pool.submit(jobs.observe).result()
        assert (None, None) == (seen["request"], seen["trace_id"])

    def test_map_carries_context(self, method: str) -> None:
        """map goes through submit: every item sees the caller's values."""
        with executor(method, max_workers=2) as pool, tl.request.scope(request_id="m"):
            results = list(pool.map(jobs.observe, range(6), chunksize=2))
        assert [{"request_id": "m"}] * 6 == [r["request"] for r in results]

    def test_value_that_cannot_cross_fails_at_submit(self, store: tl.ContextStore) -> None:
        """A non-JSON store value is a TypeError at submit time, naming the store and the key."""
        with executor("spawn", max_workers=1) as pool, store.scope(conn=object()):
            with pytest.raises(TypeError, match=rf"{store.name}.*'conn'"):
                pool.submit(jobs.observe)

    def test_second_sigterm_does_not_cut_the_clean_up(self, method: str, tmp_path: Path) -> None:
        """A job cut by SIGTERM finishes its clean-up though a second one comes (CPython 3.12+)."""
        with executor(method, max_workers=1) as pool:
            future = pool.submit(jobs.clean_up_slowly, str(tmp_path))
            assert wait_for((tmp_path / "pid").exists)
            worker = int((tmp_path / "pid").read_text())
            os.kill(worker, signal.SIGTERM)
            assert wait_for((tmp_path / "terminated").exists)
            os.kill(worker, signal.SIGTERM)  # as a broken pool sends it again, at once
            (tmp_path / "second sent").touch()
            with pytest.raises(BrokenProcessPool):
                future.result(timeout=60)
        assert (tmp_path / "cleaned").exists()

    def test_failing_job_span_has_error_status(self, tracer: trace.Tracer, spans: Spans) -> None:
        """A job that raises fails its future and ends its span with an error."""
        with executor("forkserver", max_workers=1) as pool, tracer.start_as_current_span("req"):
            with pytest.raises(LookupError, match="job failed"):
                pool.submit(jobs.fail).result()
        assert trace.StatusCode.ERROR == spans.named("process fail").status.status_code

    def test_dead_worker_fails_future_and_span(
        self, method: str, tracer: trace.Tracer, spans: Spans
    ) -> None:
        """A worker killed mid-job fails the caller's future (no hang); the job span is an error."""
        with executor(method, max_workers=1) as pool, tracer.start_as_current_span("req"):
            future = pool.submit(jobs.die)
            with pytest.raises(BrokenProcessPool):
                future.result(timeout=60)
        span = spans.named("process die")
        assert trace.StatusCode.ERROR == span.status.status_code
        assert "BrokenProcessPool" in (span.status.description or "")

    def test_no_span_lost_across_recycled_workers(
        self, method: str, tracer: trace.Tracer, spans: Spans, span_file: str
    ) -> None:
        """300 jobs, workers recycled every 40: every worker span is exported, with its parent.

        fork cannot recycle workers (CPython refuses max_tasks_per_child with it), nor
        can Python 3.10: there the spans are flushed at pool shutdown only.
        """
        count = 300
        # Python 3.10 has no max_tasks_per_child at all; fork refuses it
        recycle = (
            {} if method == "fork" or sys.version_info < (3, 11) else {"max_tasks_per_child": 40}
        )
        with (
            executor(
                method,
                max_workers=2,
                initializer=jobs.configure_tracing,
                initargs=(span_file,),
                **recycle,
            ) as pool,
            tracer.start_as_current_span("batch"),
        ):
            futures = [pool.submit(jobs.traced_job, i) for i in range(count)]
            assert list(range(count)) == [f.result() for f in futures]
        worker_spans = {s["name"]: s for s in jobs.read_spans(span_file)}
        job_spans = {
            f"{s.context.span_id:016x}" for s in spans.finished() if s.name == "process traced_job"
        }
        assert count == len(job_spans)
        assert {f"work {i}" for i in range(count)} == set(worker_spans)
        assert job_spans == {s["parent_id"] for s in worker_spans.values()}
        if recycle:
            assert len({s["pid"] for s in worker_spans.values()}) >= count // 40


def run_faults_app(command: str, variant: str, workdir: Path, **env: str) -> dict[str, object]:
    """Run tests/worker_faults_app.py; its process group is killed if it outlives the guard."""
    app = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("worker_faults_app.py")),
            command,
            variant,
            str(workdir),
        ],
        cwd=workdir,
        env=clean_env(THREADLINE_TRACES_FILE=str(workdir / "spans.jsonl"), **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = app.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(app.pid, signal.SIGKILL)
        app.communicate()
        pytest.fail(f"worker_faults_app.py {command} {variant} hung")
    assert 0 == app.returncode, err
    result: dict[str, object] = json.loads(out.splitlines()[-1])
    result["stderr"] = err
    return result


def exported(workdir: Path) -> list[ExportedSpan]:
    return read_spans(workdir / "spans.jsonl")


class TestWorkerDeath:
    def test_survivors_export_what_they_finished(self, method: str, tmp_path: Path) -> None:
        """One worker SIGKILLed mid-job: the other exports what it finished; the job is an error."""
        result = run_faults_app("death", method, tmp_path)
        pids, killed = result["pids"], result["killed"]
        assert isinstance(pids, list)
        spans = exported(tmp_path)
        names = {span.name for span in spans}
        survived = {f"work {i}" for i, pid in enumerate(pids) if pid != killed}
        assert ("BrokenProcessPool", 2) == (result["outcome"], len(set(pids)))
        assert survived == survived & names
        (blocked,) = [span for span in spans if span.name == "process block"]
        assert trace.StatusCode.ERROR.value == blocked.status_code

    def test_survivor_in_the_middle_of_a_job_leaves(self, tmp_path: Path) -> None:
        """A survivor busy with a job when the pool breaks cuts it, exports its span, and exits."""
        result = run_faults_app("death-while-busy", "forkserver", tmp_path)
        status = {span.name: span.status_code for span in exported(tmp_path)}
        assert ["BrokenProcessPool"] * 2 == result["outcomes"]
        # OpenTelemetry marks no span as an error for a SystemExit (opentelemetry-python#4484)
        assert trace.StatusCode.UNSET.value == status["busy"]
        assert trace.StatusCode.ERROR.value == status["process busy"]


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An OTLP endpoint that accepts connections and never answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        yield f"http://127.0.0.1:{silent.getsockname()[1]}"


class TestFork:
    @pytest.mark.parametrize("kind", ["process", "executor"])
    def test_fork_while_another_thread_exports(self, kind: str, tmp_path: Path) -> None:
        """A child forked while the exporter's locks are held exits; each span is exported once."""
        result = run_faults_app("fork", kind, tmp_path, OTEL_BSP_SCHEDULE_DELAY="600000")
        names = Counter(span.name for span in exported(tmp_path))
        expected = ["exported before fork", "queued at fork", "in child"]
        assert (False, dict.fromkeys(expected, 1)) == (
            result["hung"],
            {name: names[name] for name in expected},
        )

    @NO_THREADS_AT_EXIT
    def test_exit_flush_is_bounded(self, method: str, tmp_path: Path, silent_endpoint: str) -> None:
        """A child whose spans cannot be delivered still exits, reporting the flush timeout."""
        result = run_faults_app(
            "bound",
            method,
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=silent_endpoint,
            OTEL_EXPORTER_OTLP_TIMEOUT="600",
            THREADLINE_SHUTDOWN_TIMEOUT="1",
        )
        assert (False, 0) == (result["hung"], result["exitcode"])
        # the worker's exit flush, or (a bootstrapped child) the bounded exit after it
        assert "threadline could not export spans (export." in str(result["stderr"])


class TestProcess:
    def test_child_runs_in_starter_context(self, method: str, tmp_path: Path) -> None:
        """A Process started in a scope runs its target in that scope and trace."""
        out = tmp_path / "seen.txt"
        ctx = get_context(method)
        with tl.request.scope(request_id="p1"):
            child = ctx.Process(target=_write_request_id, args=(str(out),))
            child.start()
        child.join(60)
        assert 0 == child.exitcode
        assert "p1" == out.read_text()

    def test_subclass_overriding_run(self, tmp_path: Path) -> None:
        """A subclass with its own run() is covered."""
        out = tmp_path / "seen.txt"
        with tl.request.scope(request_id="sub"):
            child = _Writer(str(out))
            child.start()
        child.join(60)
        assert "sub" == out.read_text()

    def test_child_spans_join_the_trace_and_are_flushed(
        self, method: str, tracer: trace.Tracer, span_file: str
    ) -> None:
        """Spans a child records are exported before it exits and parented on the starter's span."""
        with tracer.start_as_current_span("starter") as starter:
            child = get_context(method).Process(
                target=jobs.configured_child, args=(span_file, method)
            )
            child.start()
        child.join(60)
        by_name = {s["name"]: s for s in jobs.read_spans(span_file)}
        recorded = by_name[f"child {method}"]
        assert f"{starter.get_span_context().trace_id:032x}" == recorded["trace_id"]
        starter_id = f"{starter.get_span_context().span_id:016x}"
        if method == "fork":
            # a forked child inherits the configured provider, so its run is a span too
            process_span = by_name["process configured_child"]
            assert (starter_id, process_span["span_id"]) == (
                process_span["parent_id"],
                recorded["parent_id"],
            )
        else:
            assert starter_id == recorded["parent_id"]

    def test_unknown_start_method(self) -> None:
        """A start method that does not exist is a clear error."""
        with pytest.raises(ValueError, match="unknown start method 'thread'"):
            get_context("thread")


class TestPool:
    def test_every_api_carries_context(self, method: str) -> None:
        """apply, map, starmap, imap and their async forms run in the caller's context."""
        with get_context(method).Pool(2) as pool, tl.request.scope(request_id="pool"):
            results = [
                pool.apply(jobs.observe, (1,)),
                pool.apply_async(jobs.observe, (2,)).get(60),
                *pool.map(jobs.observe, [3, 4]),
                *pool.map_async(jobs.observe, [5]).get(60),
                *pool.starmap(jobs.observe, [(6,)]),
                *pool.starmap_async(jobs.observe, [(7,)]).get(60),
                *pool.imap(jobs.observe, [8]),
                *pool.imap_unordered(jobs.observe, [9]),
            ]
        assert list(range(1, 10)) == [r["tag"] for r in results]
        assert all({"request_id": "pool"} == r["request"] for r in results)

    def test_spans_flushed_when_pool_is_terminated(
        self, method: str, tracer: trace.Tracer, span_file: str
    ) -> None:
        """Leaving `with Pool` terminates the workers; their finished spans are exported first."""
        with (
            tracer.start_as_current_span("batch"),
            Pool(
                2, jobs.configure_tracing, (span_file,), context=multiprocessing.get_context(method)
            ) as pool,
        ):
            assert list(range(20)) == pool.map(jobs.traced_job, range(20))
        names = {s["name"] for s in jobs.read_spans(span_file)}
        assert {f"work {i}" for i in range(20)} == names


def _write_request_id(path: str) -> None:
    value = tl.request.get()
    Path(path).write_text(value["request_id"] if value else "-")


class _Writer(Process):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def run(self) -> None:
        _write_request_id(self.path)


def test_submit_with_baggage_at_the_limits() -> None:
    """Inbound baggage at the W3C limits never fails a submit: foreign members make room."""
    inbound = ",".join(f"k{i}=v" for i in range(180))
    with (
        executor("forkserver", max_workers=1) as pool,
        tl.extract({"baggage": inbound}),
        tl.request.merge(request_id="own"),
    ):
        seen = pool.submit(jobs.observe).result()
    assert {"request_id": "own"} == seen["request"]


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="Python 3.11 and later recycle workers")
def test_max_tasks_per_child_before_3_11_is_a_clear_error() -> None:
    """On Python 3.10 the executor says that recycling workers needs 3.11, as CPython has it."""
    with pytest.raises(TypeError, match=r"max_tasks_per_child needs Python 3\.11"):
        tl.ProcessPoolExecutor(max_workers=1, max_tasks_per_child=2)
