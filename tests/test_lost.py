"""The loss detector: each cause found at the application's line, none on paths that propagate."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
import multiprocessing
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import threadline as tl
from tests.helpers import marked_line
from tests.process_jobs import observe
from threadline import hooks, lost
from threadline import subprocess as tl_subprocess
from threadline._core import lifecycle as _hooks

HERE = __file__
log = logging.getLogger("tests.lost")


def line_of(marker: str) -> str:
    """``"this file:line"`` of the line that holds *marker*."""
    return marked_line(HERE, marker)


def work() -> None:
    log.info("working")  # mark:log-site


@pytest.fixture
def found() -> Iterator[lost.Detection]:
    with lost.detecting(log=False) as detection:
        yield detection
    assert not lost.is_enabled()
    assert not _hooks.active


def causes(detection: lost.Detection) -> list[tuple[str, str]]:
    return [(r.cause, r.location) for r in detection.reports()]


class TestHandOffs:
    def test_raw_submit_in_a_scope(self, found: lost.Detection) -> None:
        """A plain executor's submit inside a scope: reported once, at the submitting line."""
        with tl.request.scope(request_id="r1"), concurrent.futures.ThreadPoolExecutor(1) as pool:
            for _ in range(3):
                pool.submit(work).result()  # mark:raw-submit
        assert [("executor.submit", line_of("mark:raw-submit"))] == causes(found)
        (report,) = found.reports()
        assert "r1" == report.request_id
        assert (HERE, int(line_of("mark:raw-submit").rpartition(":")[2])) == (
            report.filename,
            report.lineno,
        )

    def test_map_names_the_callers_line(self, found: lost.Detection) -> None:
        """Executor.map is reported at the line that called map."""
        with tl.request.scope(request_id="r1"), concurrent.futures.ThreadPoolExecutor(1) as pool:
            list(pool.map(lambda _: None, [1, 2]))  # mark:raw-map
        assert [("executor.submit", line_of("mark:raw-map"))] == causes(found)

    async def test_run_in_executor_of_the_loop(self, found: lost.Detection) -> None:
        """loop.run_in_executor does not copy the context (CPython gh-78195): reported."""
        loop = asyncio.get_running_loop()
        with tl.request.scope(request_id="r1"):
            await loop.run_in_executor(None, work)  # mark:loop-executor
        assert [("executor.submit", line_of("mark:loop-executor"))] == causes(found)

    def test_raw_thread_start(self, found: lost.Detection) -> None:
        """A plain Thread started inside a scope is reported at the start line."""
        with tl.request.scope(request_id="r1"):
            thread = threading.Thread(target=work)
            thread.start()  # mark:raw-thread
            thread.join()
        assert [("thread.start", line_of("mark:raw-thread"))] == causes(found)

    def test_raw_process_start(self, found: lost.Detection) -> None:
        """A plain multiprocessing Process started inside a scope is reported."""
        with tl.request.scope(request_id="r1"):
            child = multiprocessing.get_context("spawn").Process(target=observe)
            child.start()  # mark:raw-process
            child.join()
        assert [("process.start", line_of("mark:raw-process"))] == causes(found)

    def test_raw_child_process(self, found: lost.Detection) -> None:
        """A child started inside a scope with an environment without the context is reported."""
        env = {k: v for k, v in os.environ.items() if k not in {"TRACEPARENT", "BAGGAGE"}}
        with tl.request.scope(request_id="r1"):
            subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)  # mark:raw-child
        assert [("subprocess.start", line_of("mark:raw-child"))] == causes(found)

    def test_children_that_get_the_context_are_not_reported(self, found: lost.Detection) -> None:
        """threadline.subprocess and an environment made by child_env carry the context."""
        with tl.request.scope(request_id="r1"):
            tl_subprocess.run([sys.executable, "-c", "pass"], check=True)
            subprocess.run(
                [sys.executable, "-c", "pass"], env=tl_subprocess.child_env(), check=True
            )
        assert [] == found.reports()

    def test_a_consumer_made_before_the_scope(self, found: lost.Detection) -> None:
        """Work put on a queue in a request and taken by an older consumer is reported at put."""
        jobs: queue.Queue[str] = queue.Queue()
        seen: list[object] = []
        consumer = threading.Thread(target=lambda: seen.append((jobs.get(), tl.request.get())))
        consumer.start()  # before any scope: it has no request's context
        with tl.request.scope(request_id="r1"):
            jobs.put("work")  # mark:queue-put
        consumer.join()
        assert [("work", None)] == seen
        assert [("queue.consumer", line_of("mark:queue-put"))] == causes(found)

    async def test_an_asyncio_consumer_made_before_the_scope(self, found: lost.Detection) -> None:
        """The same for an asyncio.Queue whose consumer task was made before the request."""
        jobs: asyncio.Queue[str] = asyncio.Queue()
        consumer = asyncio.create_task(jobs.get())
        await asyncio.sleep(0)
        with tl.request.scope(request_id="r1"):
            jobs.put_nowait("work")  # mark:asyncio-put
        assert "work" == await consumer
        assert [("queue.consumer", line_of("mark:asyncio-put"))] == causes(found)

    def test_items_that_bring_their_context_are_not_reported(self, found: lost.Detection) -> None:
        """An item put with a snapshot (the fix) is not reported, whoever takes it."""
        jobs: queue.Queue[tuple[tl.Snapshot, str]] = queue.Queue()
        with tl.request.scope(request_id="r1"):
            jobs.put((tl.snapshot(), "work"))
        snap, _ = jobs.get()
        with snap:
            assert "r1" == tl.request.get()["request_id"]
        assert [] == found.reports()

    def test_items_queued_before_the_detector_keep_their_place(self) -> None:
        """An item queued before enable is not mistaken for one put in a request later."""
        jobs: queue.Queue[str] = queue.Queue()
        jobs.put("old")
        with lost.detecting(log=False) as found:
            with tl.request.scope(request_id="r1"):
                jobs.put("new")  # mark:queue-new
            assert "old" == jobs.get()  # taken outside the request: it was never the request's
            assert [] == found.reports()
            assert "new" == jobs.get()
            assert [("queue.consumer", line_of("mark:queue-new"))] == causes(found)

    async def test_disable_keeps_the_users_task_tracking(self) -> None:
        """A loop the application tracks stays tracked when the detector goes off."""
        hooks.track_tasks()
        try:
            lost.enable(log=False)
            lost.disable()
            assert hooks.tracking(asyncio.get_running_loop())
        finally:
            hooks.untrack_tasks()

    def test_a_consumer_in_the_same_request_is_not_reported(self, found: lost.Detection) -> None:
        """A queue used within one request loses nothing."""
        jobs: queue.Queue[str] = queue.Queue()
        with tl.request.scope(request_id="r1"):
            jobs.put("work")
            assert "work" == jobs.get()
        assert [] == found.reports()

    def test_outside_a_scope_nothing_is_lost(self, found: lost.Detection) -> None:
        """With no context to lose, plain hand-offs are not reported."""
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(work).result()
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        assert [] == found.reports()

    async def test_paths_that_propagate_are_not_reported(self, found: lost.Detection) -> None:
        """threadline's executors and threads, bind, Context.run: nothing reported."""
        with tl.request.scope(request_id="r1"):
            with tl.ThreadPoolExecutor(2) as pool:
                pool.submit(work).result()
                list(pool.map(lambda _: work(), [1, 2]))
            with concurrent.futures.ThreadPoolExecutor(1) as plain:
                plain.submit(tl.bind(work)).result()
                plain.submit(contextvars.copy_context().run, work).result()
            thread = tl.Thread(target=work)
            thread.start()
            thread.join()
            await tl.run_in_executor(None, work)
            with tl.request.merge(tenant="a"):
                work()
        assert [] == found.reports()

    def test_process_pool_of_threadline_is_not_reported(self, found: lost.Detection) -> None:
        """tl.ProcessPoolExecutor carries the context: its submit and workers are not reported."""
        context = multiprocessing.get_context("spawn")
        with (
            tl.request.scope(request_id="r1"),
            tl.ProcessPoolExecutor(1, mp_context=context) as pool,
        ):  # type: ignore[arg-type]
            pool.submit(observe).result()
        assert [] == found.reports()


class TestBesideInstrument:
    """The contract with a patching instrument(): what it propagates is not reported."""

    def test_a_propagating_patch_installed_first(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A submit patched before the detector and marked as carrying context is trusted."""
        original = concurrent.futures.ThreadPoolExecutor.submit

        def submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            return original(self, contextvars.copy_context().run, fn, *args, **kwargs)

        submit._threadline_carries_context = True  # type: ignore[attr-defined]
        monkeypatch.setattr(concurrent.futures.ThreadPoolExecutor, "submit", submit)
        with lost.detecting(log=False) as found:
            with tl.request.scope(request_id="r1"), concurrent.futures.ThreadPoolExecutor(1) as p:
                p.submit(work).result()
            assert concurrent.futures.ThreadPoolExecutor.submit is not submit
        assert concurrent.futures.ThreadPoolExecutor.submit is submit
        assert [] == found.reports()

    def test_a_propagating_patch_installed_after(self, found: lost.Detection) -> None:
        """A patch over the detector's hands it Context.run: not reported."""
        watched = concurrent.futures.ThreadPoolExecutor.submit

        def submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            return watched(self, functools.partial(contextvars.copy_context().run, fn), *args)

        concurrent.futures.ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]
        try:
            with tl.request.scope(request_id="r1"), concurrent.futures.ThreadPoolExecutor(1) as p:
                p.submit(work).result()
        finally:
            concurrent.futures.ThreadPoolExecutor.submit = watched  # type: ignore[method-assign]
        assert [] == found.reports()

    def test_a_thread_whose_run_carries_the_context(self, found: lost.Detection) -> None:
        """A plain Thread whose run was wrapped in Context.run (as a patch would) is trusted."""
        with tl.request.scope(request_id="r1"):
            thread = threading.Thread(target=work)
            thread.run = functools.partial(contextvars.copy_context().run, thread.run)  # type: ignore[method-assign]
            thread.start()
            thread.join()
        assert [] == found.reports()


class TestScopes:
    def test_nested_scope_hiding_keys(self, found: lost.Detection) -> None:
        """A nested scope() that hides the outer keys is reported; merge() is not."""
        with tl.request.scope(request_id="r1", user_id="u"):
            with tl.request.scope(tenant="a"):  # mark:hiding-scope
                pass
            with tl.request.merge(tenant="a"):
                pass
            with tl.request.scope(request_id="r1", user_id="u", tenant="a"):  # keeps every key
                pass
            with tl.request.scope(request_id="r2"):  # a new request: hiding is the point
                pass
        ((cause, where),) = causes(found)
        assert ("scope.hides", line_of("mark:hiding-scope")) == (cause, where)
        assert "request.merge()" in found.reports()[0].message

    def test_run_is_reported_at_the_callers_line(self, found: lost.Detection) -> None:
        """store.run() nested the same way is reported where run() was called."""
        with tl.request.scope(request_id="r1"):
            tl.request.run({"tenant": "a"}, work)  # mark:hiding-run
        assert [("scope.hides", line_of("mark:hiding-run"))] == causes(found)


class TestLogging:
    def test_a_site_with_and_without_a_request_id(
        self, found: lost.Detection, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A log call site seen with and without a request id, reported with both counts."""
        caplog.set_level(logging.INFO, logger=log.name)
        work()
        with tl.request.scope(request_id="r1"):
            work()
            work()
        (report,) = found.reports()
        assert ("log.sometimes_without", line_of("mark:log-site")) == (
            report.cause,
            report.location,
        )
        assert (2, 1) == (report.with_request, report.without_request)

    def test_a_site_always_with_a_request_id(
        self, found: lost.Detection, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A site that always has its request id is not reported."""
        caplog.set_level(logging.INFO, logger=log.name)
        for n in range(3):
            with tl.request.scope(request_id=f"r{n}"):
                work()
        assert [] == found.reports()

    def test_reports_go_to_the_lost_logger(self, caplog: pytest.LogCaptureFixture) -> None:
        """Each report is also a WARNING on threadline.lost, once per place."""
        caplog.set_level(logging.WARNING, logger=lost.LOGGER_NAME)
        with lost.detecting(), tl.request.scope(request_id="r1"):
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                for _ in range(2):
                    pool.submit(work).result()
        records = [r for r in caplog.records if r.name == lost.LOGGER_NAME]
        assert 1 == len(records)
        assert "executor.submit" in records[0].getMessage()


class TestOutlived:
    async def test_a_fire_and_forget_task(self, found: lost.Detection) -> None:
        """A task still running when its request's scope ends: reported where it was made."""
        release = asyncio.Event()

        async def background() -> None:
            await release.wait()

        with tl.request.scope(request_id="o1"):
            task = asyncio.create_task(background())  # mark:fire-and-forget
            await asyncio.sleep(0)
        release.set()
        await task
        (report,) = found.reports()
        assert ("outlived", line_of("mark:fire-and-forget")) == (report.cause, report.location)
        assert "'o1'" in report.message

    async def test_an_awaited_task_did_not_outlive(self, found: lost.Detection) -> None:
        """A task awaited inside its request is not reported."""

        async def quick() -> None:
            await asyncio.sleep(0)

        with tl.request.scope(request_id="o2"):
            await asyncio.create_task(quick())
        assert [] == found.reports()

    def test_a_thread_pool_job(self, found: lost.Detection) -> None:
        """A tl.ThreadPoolExecutor job still queued or running when its request ends."""
        release = threading.Event()
        with tl.ThreadPoolExecutor(1) as pool:
            with tl.request.scope(request_id="o3"):
                pending = pool.submit(release.wait)  # mark:outlived-job
            release.set()
            pending.result()
        assert [("outlived", line_of("mark:outlived-job"))] == causes(found)


class TestSwitch:
    def test_disable_puts_everything_back(self) -> None:
        """After disable the patched methods and the record factory are the originals."""
        submit = concurrent.futures.ThreadPoolExecutor.submit
        process_submit = concurrent.futures.ProcessPoolExecutor.submit
        start = threading.Thread.start
        popen_init = subprocess.Popen.__init__
        queue_methods = (queue.Queue._put, queue.Queue._get, asyncio.Queue._put, asyncio.Queue._get)
        factory = logging.getLogRecordFactory()
        lost.enable(log=False)
        lost.enable(log=False)  # nested
        lost.disable()
        assert lost.is_enabled()
        assert concurrent.futures.ThreadPoolExecutor.submit is not submit
        lost.disable()
        assert not lost.is_enabled()
        assert submit is concurrent.futures.ThreadPoolExecutor.submit
        assert process_submit is concurrent.futures.ProcessPoolExecutor.submit
        assert start is threading.Thread.start
        assert popen_init is subprocess.Popen.__init__
        assert queue_methods == (
            queue.Queue._put,
            queue.Queue._get,
            asyncio.Queue._put,
            asyncio.Queue._get,
        )
        assert factory is logging.getLogRecordFactory()
        assert not _hooks.active

    def test_off_by_default(self) -> None:
        """Nothing is collected while the detector is off."""
        lost.clear()
        with tl.request.scope(request_id="r1"), concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(work).result()
        assert [] == lost.reports()


@pytest.mark.parametrize("log", ["no", 0, None])
def test_log_takes_a_bool(log: object) -> None:
    """enable(log="no") and detecting(log=0) are a TypeError naming the option; nothing starts."""
    with pytest.raises(TypeError, match=r"^log takes True or False"):
        lost.enable(log=log)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^log takes True or False"), lost.detecting(log=log):  # type: ignore[arg-type]
        pass
    assert not lost.is_enabled()
