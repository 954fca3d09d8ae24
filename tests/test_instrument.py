"""threadline.instrument(): plain standard-library hand-offs carry the context; all undone."""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import multiprocessing.pool
import multiprocessing.process
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.threading import ThreadingInstrumentor

import threadline as tl
from tests import instrument_jobs as jobs
from tests.helpers import Spans
from threadline._patching import stdlib as _instrument
from threadline._patching.stdlib import INSTRUMENTED_ATTRIBUTE

METHODS = ["spawn", "forkserver", "fork"]
PATCHED = [
    (concurrent.futures.ThreadPoolExecutor, "submit"),
    (threading.Thread, "start"),
    (threading.Thread, "run"),
    (threading.Timer, "start"),
    (threading.Timer, "run"),
    (concurrent.futures.ProcessPoolExecutor, "submit"),
    (multiprocessing.process.BaseProcess, "start"),
    *((multiprocessing.pool.Pool, name) for name in _instrument._POOL_METHODS),
    (subprocess.Popen, "__init__"),
]
CHILD_SEES = (
    "import os, json; print(json.dumps({k: os.environ.get(k) for k in ('TRACEPARENT', 'BAGGAGE')}))"
)


def attributes() -> dict[tuple[type, str], object]:
    """What each patched class holds under each name (None: nothing of its own)."""
    return {(owner, name): owner.__dict__.get(name) for owner, name in PATCHED}


@pytest.fixture(autouse=True)
def _uninstrumented() -> Iterator[None]:
    """Every test starts and ends with the standard library as it was."""
    before = attributes()
    yield
    tl.uninstrument()
    ThreadingInstrumentor().uninstrument()
    # OpenTelemetry's unwrap leaves Timer with attributes of its own (its residue, not ours)
    for owner, name in [(threading.Timer, "start"), (threading.Timer, "run")]:
        if before[owner, name] is None and name in owner.__dict__:
            delattr(owner, name)
    assert before == attributes()


@pytest.fixture
def instrumented() -> None:
    tl.instrument()


class TestReversible:
    def test_uninstrument_puts_back_the_very_objects(self) -> None:
        """After uninstrument() every patched attribute is the original object again."""
        before = attributes()
        tl.instrument()
        during = attributes()
        for owner, name in PATCHED:
            if before[owner, name] is not None and (owner, name) not in {
                (threading.Thread, "run"),
                (threading.Timer, "start"),
                (threading.Timer, "run"),
            }:
                patched = during[owner, name]
                assert patched is not before[owner, name], name
                assert getattr(patched, INSTRUMENTED_ATTRIBUTE) is True
                assert before[owner, name] is patched.__wrapped__  # type: ignore[attr-defined]
        tl.uninstrument()
        for key, value in attributes().items():
            assert before[key] is value, key

    def test_idempotent(self) -> None:
        """A second instrument() changes nothing; a second uninstrument() neither."""
        tl.instrument()
        once = attributes()
        tl.instrument()
        assert once == attributes()
        tl.uninstrument()
        after = attributes()
        tl.uninstrument()
        assert after == attributes()

    def test_concurrent_calls_leave_one_layer(self) -> None:
        """instrument()/uninstrument() from many threads at once: one layer at most, then none."""
        before = attributes()
        barrier = threading.Barrier(8)

        def toggle(i: int) -> None:
            barrier.wait()
            for _ in range(50):
                (tl.instrument if i % 2 else tl.uninstrument)()

        threads = [threading.Thread(target=toggle, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        tl.instrument()
        submit = concurrent.futures.ThreadPoolExecutor.__dict__["submit"]
        assert before[concurrent.futures.ThreadPoolExecutor, "submit"] is submit.__wrapped__
        tl.uninstrument()
        assert before == attributes()

    def test_a_kept_reference_passes_through_after_uninstrument(self, spans: Spans) -> None:
        """A wrapper someone kept a reference to no longer carries anything once undone."""
        tl.instrument()
        submit = concurrent.futures.ThreadPoolExecutor.submit
        tl.uninstrument()
        with concurrent.futures.ThreadPoolExecutor(1) as pool, tl.request.scope(request_id="k"):
            assert "-" == submit(pool, jobs.request_id).result()

    def test_a_librarys_patch_over_ours_keeps_one_span(
        self, tracer: trace.Tracer, spans: Spans
    ) -> None:
        """instrument, a library's submit over ours, uninstrument, instrument: one span a job."""
        tl.instrument()
        ours = concurrent.futures.ProcessPoolExecutor.submit

        def librarys(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            return ours(self, fn, *args, **kwargs)

        concurrent.futures.ProcessPoolExecutor.submit = librarys  # type: ignore[method-assign]
        try:
            tl.uninstrument()
            tl.instrument()
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                with tracer.start_as_current_span("parent"), tl.request.scope(request_id="o1"):
                    assert "o1" == pool.submit(jobs.request_id).result()
        finally:
            concurrent.futures.ProcessPoolExecutor.submit = ours  # type: ignore[method-assign]
        assert ["parent", "process request_id"] == sorted(s.name for s in spans.finished())


class TestThreads:
    def test_thread_pool_submit(
        self, instrumented: None, tracer: trace.Tracer, spans: Spans
    ) -> None:
        """A plain ThreadPoolExecutor's job sees the stores and runs under a job span."""
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            with tracer.start_as_current_span("parent"), tl.request.scope(request_id="t1"):
                assert "t1" == pool.submit(jobs.request_id).result()
                assert ["t1", "t1"] == list(pool.map(jobs.request_id, range(2)))
        assert spans.named("parent").context.span_id == spans.finished()[0].parent.span_id  # type: ignore[union-attr]
        assert 3 == len([s for s in spans.finished() if s.name == "thread request_id"])

    def test_threadline_pool_is_not_wrapped_twice(
        self, instrumented: None, tracer: trace.Tracer, spans: Spans
    ) -> None:
        """tl.ThreadPoolExecutor's jobs get one span, not two."""
        with tl.ThreadPoolExecutor(1) as pool, tracer.start_as_current_span("parent"):
            pool.submit(jobs.request_id).result()
        assert ["thread request_id", "parent"] == [s.name for s in spans.finished()]

    def test_thread_start_and_overridden_run(self, instrumented: None) -> None:
        """threading.Thread, a subclass overriding run(), and a Timer run in the starter's scope."""
        seen: list[str] = []

        class Worker(threading.Thread):
            def run(self) -> None:
                seen.append(jobs.request_id())

        with tl.request.scope(request_id="t2"):
            started = [
                threading.Thread(target=lambda: seen.append(jobs.request_id())),
                Worker(),
                threading.Timer(0, lambda: seen.append(jobs.request_id())),
            ]
            for thread in started:
                thread.start()
        for thread in started:
            thread.join()
            assert "run" not in thread.__dict__  # nothing of the context kept
        assert ["t2"] * 3 == seen

    def test_pool_worker_threads_are_not_carried(self, instrumented: None, spans: Spans) -> None:
        """The pool's own worker threads, started by a submit, get no context and no span."""
        with concurrent.futures.ThreadPoolExecutor(1) as pool, tl.request.scope(request_id="w"):
            pool.submit(int).result()
            assert all("run" not in t.__dict__ for t in pool._threads)

    async def test_run_in_executor_default_executor(self, instrumented: None) -> None:
        """loop.run_in_executor (CPython gh-78195) carries through the patched submit."""
        loop = asyncio.get_running_loop()
        with tl.request.scope(request_id="a1"):
            assert "a1" == await loop.run_in_executor(None, jobs.request_id)
            assert "a1" == await asyncio.to_thread(jobs.request_id)

    def test_without_instrument_nothing_is_carried(self) -> None:
        """The control: plain stdlib loses the context."""
        with concurrent.futures.ThreadPoolExecutor(1) as pool, tl.request.scope(request_id="x"):
            assert "-" == pool.submit(jobs.request_id).result()


@pytest.mark.parametrize("method", METHODS)
class TestProcesses:
    def test_process_pool_submit(
        self, method: str, instrumented: None, tracer: trace.Tracer, spans: Spans
    ) -> None:
        """A plain ProcessPoolExecutor's jobs see the stores, with a job span each."""
        context = multiprocessing.get_context(method)
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            with tracer.start_as_current_span("parent"), tl.request.scope(request_id="p1"):
                assert "p1" == pool.submit(jobs.request_id).result()
                assert ["p1"] == list(pool.map(jobs.request_id, [0]))
        assert 2 == len([s for s in spans.finished() if s.name == "process request_id"])

    def test_process_start(self, method: str, instrumented: None, tmp_path: Path) -> None:
        """multiprocessing's Process (a target, or run() overridden) runs in the starter's scope."""
        context = multiprocessing.get_context(method)
        out, sub = tmp_path / "target.txt", tmp_path / "subclass.txt"
        with tl.request.scope(request_id=f"m-{method}"):
            child = context.Process(target=jobs.write_request_id, args=(str(out),))
            child.start()
            assert "run" not in child.__dict__
        child.join(60)
        assert 0 == child.exitcode
        assert f"m-{method}" == out.read_text()
        if method == multiprocessing.get_start_method():
            with tl.request.scope(request_id="overridden"):
                writer = jobs.Writer(str(sub))
                writer.start()
            writer.join(60)
            assert "overridden" == sub.read_text()

    def test_pool_methods(self, method: str, instrumented: None) -> None:
        """multiprocessing.Pool's map/apply/imap run their tasks in the caller's scope."""
        with multiprocessing.get_context(method).Pool(1) as pool:
            with tl.request.scope(request_id="pool"):
                assert ["pool"] == pool.map(jobs.request_id, [0])
                assert "pool" == pool.apply(jobs.request_id)
                assert ["pool"] == list(pool.imap_unordered(jobs.request_id, [0]))


class TestSubprocess:
    def run_child(self, **kwargs: Any) -> dict[str, Any]:
        import json

        result = subprocess.run(
            [sys.executable, "-c", CHILD_SEES], capture_output=True, text=True, check=True, **kwargs
        )
        seen: dict[str, Any] = json.loads(result.stdout)
        return seen

    def test_popen_env_none_and_given(self, instrumented: None, tracer: trace.Tracer) -> None:
        """subprocess gets the carrier in its environment, whether env was given or not."""
        with tracer.start_as_current_span("parent"), tl.request.scope(request_id="s1"):
            for seen in (self.run_child(), self.run_child(env={"PATH": "/usr/bin"})):
                assert "s1" in seen["BAGGAGE"]
                assert seen["TRACEPARENT"].startswith("00-")

    async def test_asyncio_subprocess(self, instrumented: None) -> None:
        """asyncio.create_subprocess_exec goes through Popen: the carrier is there."""
        with tl.request.scope(request_id="s2"):
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CHILD_SEES, stdout=asyncio.subprocess.PIPE
            )
            out, _ = await child.communicate()
        assert "s2" in out.decode()

    def test_threadline_popen_is_not_wrapped_twice(self, instrumented: None) -> None:
        """threadline.subprocess.run still works (its env is built once)."""
        import threadline.subprocess as tls

        with tl.request.scope(request_id="s3"):
            result = tls.run([sys.executable, "-c", CHILD_SEES], capture_output=True, text=True)
        assert "s3" in result.stdout


class TestBesideOpenTelemetry:
    @pytest.mark.parametrize("order", ["threadline-first", "opentelemetry-first"])
    @pytest.mark.parametrize("undo", ["threadline-first", "opentelemetry-first"])
    def test_both_in_any_order(
        self, order: str, undo: str, tracer: trace.Tracer, spans: Spans
    ) -> None:
        """Both instrumented: one job span, context carried; undone in any order, each as it was."""
        before = attributes()
        otel = ThreadingInstrumentor()
        first, second = (
            (tl.instrument, otel.instrument)
            if order == "threadline-first"
            else (otel.instrument, tl.instrument)
        )
        first()
        second()
        with concurrent.futures.ThreadPoolExecutor(1) as pool, tl.ThreadPoolExecutor(1) as tlpool:
            with tracer.start_as_current_span("parent"), tl.request.scope(request_id="o"):
                assert "o" == pool.submit(jobs.request_id).result()
                assert "o" == tlpool.submit(jobs.request_id).result()
                thread = threading.Thread(target=jobs.request_id)
                thread.start()
                thread.join()
        names = sorted(s.name for s in spans.finished())
        assert ["parent"] + ["thread request_id"] * 3 == names
        undo_first, undo_second = (
            (tl.uninstrument, otel.uninstrument)
            if undo == "threadline-first"
            else (otel.uninstrument, tl.uninstrument)
        )
        undo_first()
        # the one still instrumented is in place, the other gone
        submit = concurrent.futures.ThreadPoolExecutor.__dict__["submit"]
        if undo == "threadline-first":
            assert before[concurrent.futures.ThreadPoolExecutor, "submit"] is submit.__wrapped__
        else:
            assert getattr(submit, INSTRUMENTED_ATTRIBUTE) is True
        undo_second()
        after = attributes()
        for owner, name in PATCHED:
            if owner is not threading.Timer:
                assert before[owner, name] is after[owner, name], name


class TestEntryPoint:
    def test_opentelemetry_auto_instrumentation_finds_it(self) -> None:
        """The opentelemetry_instrumentor entry point loads a BaseInstrumentor that calls ours."""
        (point,) = [
            p for p in entry_points(group="opentelemetry_instrumentor") if p.name == "threadline"
        ]
        instrumentor = point.load()()
        assert () == tuple(instrumentor.instrumentation_dependencies())
        instrumentor.instrument()
        assert _instrument.instrumented()
        instrumentor.uninstrument()
        assert not _instrument.instrumented()
