"""Threads: pools, Thread, run_in_executor and bind carry the submitter's context."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import sys
import threading
from collections.abc import Callable

import pytest
from opentelemetry import trace

import threadline as tl
from tests.helpers import Spans

plain_var: contextvars.ContextVar[str] = contextvars.ContextVar("plain_var", default="unset")


class TestThreadPoolExecutor:
    def test_is_a_real_executor(self) -> None:
        """It is a concurrent.futures executor, usable wherever one is expected."""
        with tl.ThreadPoolExecutor(max_workers=1) as pool:
            assert isinstance(pool, concurrent.futures.ThreadPoolExecutor)
            assert 3 == pool.submit(lambda a, b=0: a + b, 1, b=2).result()

    def test_job_sees_the_submitter_store(self, store: tl.ContextStore) -> None:
        """The value current at submit is current in the job."""
        with tl.ThreadPoolExecutor(max_workers=2) as pool, store.scope(r=1):
            assert {"r": 1} == pool.submit(store.get).result()

    def test_context_is_captured_at_submit(self, store: tl.ContextStore) -> None:
        """Each job gets the context of its own submit call, even on one worker."""
        with tl.ThreadPoolExecutor(max_workers=1) as pool:
            futures = []
            for i in range(20):
                with store.scope(i=i):
                    futures.append(pool.submit(store.get))
            assert [{"i": i} for i in range(20)] == [f.result() for f in futures]

    def test_reused_thread_keeps_no_stale_context(self, store: tl.ContextStore) -> None:
        """A one-thread pool runs a job outside any scope after one inside: it sees nothing."""
        with tl.ThreadPoolExecutor(max_workers=1) as pool:
            with store.scope(r="first"):
                pool.submit(store.get).result()

            def leaky() -> None:
                # a job that forgets to leave its scope cannot poison the thread
                store.scope(leak=True).__enter__()
                plain_var.set("leaked")

            pool.submit(leaky).result()
            assert (None, "unset") == pool.submit(lambda: (store.get(), plain_var.get())).result()

    def test_every_contextvar_crosses(self) -> None:
        """Not only OpenTelemetry's: any contextvars variable set by the submitter is seen."""
        token = plain_var.set("from-submitter")
        try:
            with tl.ThreadPoolExecutor(max_workers=1) as pool:
                assert "from-submitter" == pool.submit(plain_var.get).result()
        finally:
            plain_var.reset(token)

    def test_map_carries_context(self, store: tl.ContextStore) -> None:
        """Executor.map goes through submit and so carries the context as well."""
        with tl.ThreadPoolExecutor(max_workers=3) as pool, store.scope(m=1):
            results = list(pool.map(lambda _: store.get(), range(10)))
        assert [{"m": 1}] * 10 == results

    def test_exceptions_reach_the_future(self, store: tl.ContextStore) -> None:
        """A job's exception is the future's, as in the standard pool."""

        def fail() -> None:
            raise KeyError("job")

        with tl.ThreadPoolExecutor(max_workers=1) as pool, store.scope(a=1):
            with pytest.raises(KeyError, match="job"):
                pool.submit(fail).result()


class TestJobSpans:
    def test_job_runs_under_child_span(self, spans: Spans, tracer: trace.Tracer) -> None:
        """With a recording span at submit, the job runs under a child span of it."""

        def job() -> int:
            return trace.get_current_span().get_span_context().span_id

        with tl.ThreadPoolExecutor(max_workers=1) as pool:
            with tracer.start_as_current_span("submitter") as parent:
                inner_id = pool.submit(job).result()
        submitter = spans.named("submitter")
        child = spans.named(f"thread {job.__qualname__}")
        assert child.parent is not None
        assert submitter.context.span_id == child.parent.span_id
        assert parent.get_span_context().trace_id == child.context.trace_id
        assert child.context.span_id == inner_id
        assert "thread" == child.attributes["threadline.boundary"]

    def test_failed_job_span_has_error_status(self, spans: Spans, tracer: trace.Tracer) -> None:
        """A job that raises ends its span with an error status and the exception event."""

        def broken() -> None:
            raise ValueError("bad")

        with tl.ThreadPoolExecutor(max_workers=1) as pool, tracer.start_as_current_span("s"):
            with pytest.raises(ValueError, match="bad"):
                pool.submit(broken).result()
        child = spans.named(f"thread {broken.__qualname__}")
        assert trace.StatusCode.ERROR == child.status.status_code
        assert "exception" == child.events[0].name
        assert "ValueError" == child.attributes["error.type"]

    def test_no_span_without_a_recording_parent(self, spans: Spans) -> None:
        """No submitter span, no job span: nothing is recorded for nothing."""
        with tl.ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(lambda: None).result()
        assert [] == spans.finished()

    def test_leaving_by_system_exit_is_no_error(self, spans: Spans, tracer: trace.Tracer) -> None:
        """A job that ends with sys.exit(0) ends its span without an error."""

        def leaves() -> None:
            sys.exit(0)

        with tl.ThreadPoolExecutor(max_workers=1) as pool, tracer.start_as_current_span("s"):
            with pytest.raises(SystemExit):
                pool.submit(leaves).result()
        child = spans.named(f"thread {leaves.__qualname__}")
        assert trace.StatusCode.UNSET == child.status.status_code
        assert "error.type" not in child.attributes

    def test_job_spans_can_be_turned_off(self, spans: Spans, tracer: trace.Tracer) -> None:
        """job_spans=False keeps the context but records no span."""
        with tl.ThreadPoolExecutor(max_workers=1, job_spans=False) as pool:
            with tracer.start_as_current_span("only"):
                parent_id = pool.submit(
                    lambda: trace.get_current_span().get_span_context().span_id
                ).result()
        assert ["only"] == [s.name for s in spans.finished()]
        assert spans.named("only").context.span_id == parent_id

    def test_job_span_carries_store_values(self, spans: Spans, tracer: trace.Tracer) -> None:
        """The store-to-span processor puts the request id on spans started in threads."""
        with tl.ThreadPoolExecutor(max_workers=1) as pool, tl.request.scope(request_id="r7"):
            with tracer.start_as_current_span("handler"):
                pool.submit(lambda: None).result()
        for span in spans.finished():
            assert "r7" == span.attributes["request.id"]


def test_job_spans_takes_a_bool() -> None:
    """job_spans="no" is a TypeError naming the option, where the pool is made."""
    with pytest.raises(TypeError, match=r"^job_spans takes True or False"):
        tl.ThreadPoolExecutor(1, job_spans="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^job_spans takes True or False"):
        tl.ProcessPoolExecutor(1, job_spans=0)  # type: ignore[arg-type]


class TestThread:
    def test_thread_runs_in_starter_context(self, store: tl.ContextStore) -> None:
        """The target sees the context of the start() call."""
        seen: list[object] = []
        thread = tl.Thread(target=lambda: seen.append((store.get(), plain_var.get())))
        with store.scope(t=1):
            token = plain_var.set("starter")
            thread.start()
            plain_var.reset(token)
        thread.join()
        assert [({"t": 1}, "starter")] == seen

    def test_subclass_overriding_run(self, store: tl.ContextStore) -> None:
        """A subclass with its own run() is covered too."""
        seen: list[object] = []

        class Worker(tl.Thread):
            def run(self) -> None:
                seen.append(store.get())

        worker = Worker()
        with store.scope(w=1):
            worker.start()
        worker.join()
        assert [{"w": 1}] == seen

    def test_thread_span(self, spans: Spans, tracer: trace.Tracer) -> None:
        """Started under a recording span, the thread's work is a child span named by its target."""

        def work() -> None:
            pass

        with tracer.start_as_current_span("starter"):
            thread = tl.Thread(target=work)
            thread.start()
        thread.join()
        child = spans.named(f"thread {work.__qualname__}")
        assert child.parent is not None
        assert spans.named("starter").context.span_id == child.parent.span_id


class TestRunInExecutor:
    async def test_default_executor(self, store: tl.ContextStore) -> None:
        """With the loop's default executor the job sees the calling task's context."""
        with store.scope(a=1):
            assert ({"a": 1}, 3) == await tl.run_in_executor(
                None, lambda x, y: (store.get(), x + y), 1, y=2
            )

    async def test_plain_executor(self, store: tl.ContextStore) -> None:
        """A standard ThreadPoolExecutor works the same."""
        with concurrent.futures.ThreadPoolExecutor(1) as pool, store.scope(a=2):
            assert {"a": 2} == await tl.run_in_executor(pool, store.get)

    async def test_threadline_pool_as_loop_default(self, store: tl.ContextStore) -> None:
        """Set as the loop's default executor, plain loop.run_in_executor carries context too."""
        loop = asyncio.get_running_loop()
        pool = tl.ThreadPoolExecutor(max_workers=2)
        loop.set_default_executor(pool)
        with store.scope(a=3):
            assert {"a": 3} == await loop.run_in_executor(None, store.get)
            assert {"a": 3} == await tl.run_in_executor(pool, store.get)

    async def test_concurrent_tasks_keep_their_own(self, store: tl.ContextStore) -> None:
        """Many tasks offloading at once each get their own value back."""

        async def one(i: int) -> object:
            with store.scope(i=i):
                return await tl.run_in_executor(None, store.get)

        results = await asyncio.gather(*(one(i) for i in range(100)))
        assert [{"i": i} for i in range(100)] == results


class TestBindForForeignThreads:
    def test_callback_from_a_foreign_thread(self, store: tl.ContextStore) -> None:
        """A callback bound in a scope runs in it when a thread threadline never saw calls it."""
        seen: list[object] = []
        with store.scope(cb=1):
            callback: Callable[[int], None] = tl.bind(lambda n: seen.append((n, store.get())))
        foreign = threading.Thread(target=callback, args=(5,))  # e.g. a C library's thread
        foreign.start()
        foreign.join()
        assert [(5, {"cb": 1})] == seen

    def test_bound_callback_concurrently(self, store: tl.ContextStore) -> None:
        """One bound callable may be called from many threads at once."""
        with store.scope(cb=2):
            bound = tl.bind(store.get)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert [{"cb": 2}] * 200 == list(pool.map(lambda _: bound(), range(200)))

    def test_bound_callback_changes_stay_inside(self, store: tl.ContextStore) -> None:
        """What the callback sets stays with the call."""

        def sets() -> object:
            plain_var.set("inside")
            return plain_var.get()

        bound = tl.bind(sets)
        assert "inside" == bound()
        assert "unset" == plain_var.get()

    async def test_call_soon_threadsafe_callback(self, store: tl.ContextStore) -> None:
        """A callback handed to the loop from a foreign thread runs in the bound context."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[object] = loop.create_future()
        with store.scope(loop=1):
            callback = tl.bind(lambda: done.set_result(store.get()))
        threading.Thread(target=loop.call_soon_threadsafe, args=(callback,)).start()
        assert {"loop": 1} == await done
