"""Lifecycle hooks: every resource type, in order, with the right triggers; none without a hook."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import logging
import multiprocessing
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import threadline as tl
import threadline.aiohttp as tla
from tests.helpers import marked_line
from tests.process_jobs import observe
from threadline import hooks
from threadline._boundary.handoff import Arrival
from threadline._core import lifecycle as _hooks
from threadline._core.context import get_current
from threadline.processes import Process
from threadline.subprocess import Popen

HERE = __file__


class Recorder:
    """A hook that records each call: (event, resource id, type, trigger id, current id)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, str, int, int | None]] = []
        self.resources: dict[int, hooks.Resource] = {}
        self.requests: dict[int, Any] = {}
        self._lock = threading.Lock()
        self.hook = hooks.create_hook(
            init=self.init, before=self.before, after=self.after, destroy=self.destroy
        )

    def _add(self, event: str, resource: hooks.Resource) -> None:
        running = hooks.current()
        with self._lock:
            self.resources[resource.id] = resource
            self.events.append(
                (event, resource.id, resource.type, resource.trigger_id, running and running.id)
            )

    def init(self, resource: hooks.Resource, trigger: hooks.Resource | None) -> None:
        assert (0 if trigger is None else trigger.id) == resource.trigger_id
        self._add("init", resource)

    def before(self, resource: hooks.Resource) -> None:
        value = tl.request.get()
        self.requests[resource.id] = value.get("request_id") if value else None
        self._add("before", resource)

    def after(self, resource: hooks.Resource) -> None:
        self._add("after", resource)

    def destroy(self, resource: hooks.Resource) -> None:
        self._add("destroy", resource)

    def of_type(self, kind: str) -> list[hooks.Resource]:
        return [r for r in self.resources.values() if r.type == kind]

    def sequence(self, resource: hooks.Resource) -> list[str]:
        return [event for event, rid, *_ in self.events if rid == resource.id]

    def check_order(self, resource: hooks.Resource, *, runs_here: bool = True) -> None:
        """init first, destroy last and once, before/after paired in between, current right."""
        expected = ["init", "before", "after", "destroy"] if runs_here else ["init", "destroy"]
        assert expected == self.sequence(resource)
        currents = {e[0]: e[4] for e in self.events if e[1] == resource.id}
        if runs_here:
            assert resource.id == currents["before"] == currents["after"]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    found = Recorder()
    found.hook.enable()
    yield found
    found.hook.disable()
    assert not _hooks.active


def line_of(marker: str) -> str:
    """``"this file:line"`` of the line that holds *marker*."""
    return marked_line(HERE, marker)


def job() -> str | None:
    value = tl.request.get()
    return value.get("request_id") if value else None  # type: ignore[return-value]


class TestThreads:
    def test_thread_pool_job(self, recorder: Recorder) -> None:
        """A tl.ThreadPoolExecutor job: init at submit (trigger: the scope), run, destroy."""
        with tl.request.scope(request_id="r1"), tl.ThreadPoolExecutor(1) as pool:
            assert "r1" == pool.submit(job).result()  # mark:pool-submit
        (scope,) = recorder.of_type("scope")
        (resource,) = recorder.of_type("thread.job")
        recorder.check_order(resource)
        recorder.check_order(scope)
        assert scope.id == resource.trigger_id
        assert ("r1", "r1") == (resource.request_id, recorder.requests[resource.id])
        assert line_of("mark:pool-submit") == resource.location

    def test_map_names_the_callers_line(self, recorder: Recorder) -> None:
        """Jobs of map() are made at the line that called map, not inside concurrent.futures."""
        with tl.ThreadPoolExecutor(2) as pool:
            assert [None, None] == list(pool.map(lambda _: job(), [1, 2]))  # mark:map
        jobs = recorder.of_type("thread.job")
        assert 2 == len(jobs)
        assert {line_of("mark:map")} == {r.location for r in jobs}

    def test_thread(self, recorder: Recorder) -> None:
        """A tl.Thread: init at start, before/after around run in the thread, destroy last."""
        seen: list[int | None] = []
        with tl.request.scope(request_id="r2"):
            thread = tl.Thread(target=lambda: seen.append(getattr(hooks.current(), "id", None)))
            thread.start()  # mark:thread-start
            thread.join()
        (resource,) = recorder.of_type("thread")
        recorder.check_order(resource)
        assert [resource.id] == seen
        assert line_of("mark:thread-start") == resource.location
        assert recorder.of_type("scope")[0].id == resource.trigger_id

    async def test_run_in_executor(self, recorder: Recorder) -> None:
        """tl.run_in_executor on the loop's default executor is a thread.job resource."""
        with tl.request.scope(request_id="r3"):
            assert "r3" == await tl.run_in_executor(None, job)
        (resource,) = recorder.of_type("thread.job")
        recorder.check_order(resource)
        assert "r3" == recorder.requests[resource.id]

    def test_concurrent_requests_keep_their_triggers(self, recorder: Recorder) -> None:
        """Under concurrency each job's trigger is its own request's scope, in order."""
        with tl.ThreadPoolExecutor(4) as pool:

            def handle(n: int) -> None:
                with tl.request.scope(request_id=f"q{n}"):
                    futures = [pool.submit(job) for _ in range(5)]
                    assert [f"q{n}"] * 5 == [f.result() for f in futures]

            threads = [threading.Thread(target=handle, args=(n,)) for n in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        scopes = {r.id: r for r in recorder.of_type("scope")}
        jobs = recorder.of_type("thread.job")
        assert 30 == len(jobs)
        for resource in jobs:
            recorder.check_order(resource)
            assert scopes[resource.trigger_id].request_id == resource.request_id
            assert resource.request_id == recorder.requests[resource.id]


class TestTasks:
    async def test_task(self, recorder: Recorder) -> None:
        """A task made in a scope: trigger the scope; before/after in the task; destroy last."""
        hooks.track_tasks()
        try:

            async def child() -> int | None:
                await asyncio.sleep(0)
                return getattr(hooks.current(), "id", None)

            with tl.request.scope(request_id="t1"):
                task = asyncio.create_task(child())  # mark:create-task
            ran_in = await task
            await asyncio.sleep(0)  # the done callback (destroy) runs
        finally:
            hooks.untrack_tasks()
        (resource,) = [r for r in recorder.of_type("task") if r.location.startswith(HERE)]
        recorder.check_order(resource)
        assert resource.id == ran_in
        assert line_of("mark:create-task") == resource.location
        assert recorder.of_type("scope")[0].id == resource.trigger_id
        assert "t1" == recorder.requests[resource.id]

    async def test_nested_tasks_trigger_on_their_parent(self, recorder: Recorder) -> None:
        """A task made inside a task has that task as its trigger."""
        hooks.track_tasks()
        try:

            async def inner() -> None:
                await asyncio.sleep(0)

            async def outer() -> None:
                await asyncio.gather(*(asyncio.create_task(inner()) for _ in range(3)))

            await asyncio.create_task(outer())
            await asyncio.sleep(0)
        finally:
            hooks.untrack_tasks()
        tasks = recorder.of_type("task")
        (parent,) = [r for r in tasks if r.trigger_id not in {t.id for t in tasks}]
        children = [r for r in tasks if r.trigger_id == parent.id]
        assert 3 == len(children)
        for resource in tasks:
            recorder.check_order(resource)

    @pytest.mark.skipif(sys.version_info < (3, 11), reason="a task's context= is 3.11's")
    async def test_no_before_or_after_no_wrapper(self) -> None:
        """No before/after hook: a task runs its own coroutine, `current` still its resource."""
        made: list[hooks.Resource] = []
        hook = hooks.create_hook(init=lambda resource, _: made.append(resource)).enable()
        hooks.track_tasks()
        try:

            async def child() -> hooks.Resource | None:
                await asyncio.sleep(0)
                return hooks.current()

            with tl.request.scope(request_id="t1"):
                coro = child()
                task = asyncio.create_task(coro)
            ran_in = await task
            await asyncio.sleep(0)  # the done callback (destroy) runs
        finally:
            hooks.untrack_tasks()
            hook.disable()
        assert coro is task.get_coro()
        (resource,) = [r for r in made if r.type == "task"]
        assert resource is ran_in
        assert resource.destroyed

    async def test_a_hook_sees_tasks_outside_any_request_beside_the_live_view(self) -> None:
        """The live view alone skips work outside any request; a hook of yours still gets it."""
        from threadline import live

        async def child() -> hooks.Resource | None:
            return hooks.current()

        made: list[hooks.Resource] = []
        with live.serve():
            hooks.track_tasks()
            try:
                assert await asyncio.create_task(child()) is None  # no resource: not a request's
                hook = hooks.create_hook(init=lambda resource, _: made.append(resource)).enable()
                try:
                    ran_in = await asyncio.create_task(child())
                finally:
                    hook.disable()
            finally:
                hooks.untrack_tasks()
        (resource,) = [r for r in made if r.type == "task"]
        assert resource is ran_in

    async def test_untrack_restores_the_factory(self) -> None:
        """untrack_tasks puts back the loop's own task factory."""
        loop = asyncio.get_running_loop()
        before = loop.get_task_factory()
        hooks.track_tasks()
        hooks.track_tasks()  # once only
        assert before is not loop.get_task_factory()
        hooks.untrack_tasks()
        assert before is loop.get_task_factory()


class TestProcesses:
    def test_process_pool_job(self, recorder: Recorder) -> None:
        """A tl.ProcessPoolExecutor job: init at submit, destroy when its result is back."""
        context = multiprocessing.get_context("spawn")
        with (
            tl.request.scope(request_id="p1"),
            tl.ProcessPoolExecutor(1, mp_context=context) as pool,
        ):  # type: ignore[arg-type]
            pool.submit(observe).result()  # mark:process-submit
        (resource,) = recorder.of_type("process.job")
        recorder.check_order(resource, runs_here=False)
        assert line_of("mark:process-submit") == resource.location
        assert "p1" == resource.request_id

    def test_process(self, recorder: Recorder) -> None:
        """A threadline Process: init at start, destroy at join."""
        child = Process(target=observe)
        child.start()  # mark:process-start
        child.join()
        (resource,) = recorder.of_type("process")
        recorder.check_order(resource, runs_here=False)
        assert line_of("mark:process-start") == resource.location

    def test_subprocess(self, recorder: Recorder) -> None:
        """A Popen child: init at spawn, destroy when its exit is seen."""
        with tl.request.scope(request_id="s1"):
            with Popen([sys.executable, "-c", "pass"]) as child:  # mark:popen
                pass
            assert 0 == child.returncode
        (resource,) = recorder.of_type("subprocess")
        recorder.check_order(resource, runs_here=False)
        assert (line_of("mark:popen"), "s1") == (resource.location, resource.request_id)


async def handler(request: web.Request) -> web.Response:
    running = hooks.current()
    return web.json_response({"type": running and running.type, "id": running and running.id})


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """*app* on a free loopback port (its base URL), stopped when the block ends."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


class TestRequestsMadeWhenNeeded:
    """While only the live view listens, a request is a resource only once something needs it:
    work handed over under it, `current` inside it, the view's look; the view shows it anyway."""

    @pytest.fixture
    def view(self) -> Iterator[None]:
        """The live view's tracker listening (no endpoint), then off and forgetting."""
        from threadline.live._tracker import tracker

        tracker.enable()
        try:
            assert _hooks.lazy_names
            yield
        finally:
            tracker.disable()
            tracker.forget_leaks()

    @staticmethod
    async def get(app: web.Application, path: str) -> str:
        async with (
            served(app) as url,
            aiohttp.ClientSession() as session,
            session.get(url + path, headers={"X-Request-ID": "m-1"}) as response,
        ):
            assert 200 == response.status
            return await response.text()

    @staticmethod
    def app(answer: Any) -> web.Application:
        app = web.Application(middlewares=[tla.middleware(spans=False)])
        app.router.add_get("/items/{n}", answer)
        return app

    async def test_a_request_that_needs_nothing_makes_no_resource(self, view: None) -> None:
        from threadline import live

        seen: list[Any] = []

        async def answer(request: web.Request) -> web.Response:
            seen.extend(_hooks.pending_table.values())
            return web.Response(text="ok")

        await self.get(self.app(answer), "/items/1")
        (pending,) = seen
        assert pending._made is None
        assert {} == _hooks.pending_table
        assert [] == live.snapshot()["requests"]

    async def test_the_view_shows_it_named_at_its_handler(self, view: None) -> None:
        from threadline import live

        shown: list[Any] = []

        async def answer(request: web.Request) -> web.Response:
            shown.extend(live.snapshot()["requests"])  # type: ignore[arg-type]
            return web.Response(text="ok")

        await self.get(self.app(answer), "/items/2")
        ((request),) = shown
        assert ("http.server", "GET /items/{n}", "m-1", []) == (
            request["type"],
            request["name"],
            request["request_id"],
            request["resources"],
        )
        assert f"{HERE}:{answer.__code__.co_firstlineno}" == request["location"]
        assert [] == live.snapshot()["requests"]

    async def test_current_inside_makes_it_and_keeps_nothing_of_the_request(
        self, view: None
    ) -> None:
        seen: list[Any] = []

        async def answer(request: web.Request) -> web.Response:
            seen.append((hooks.current(), hooks.current(), weakref.ref(request)))
            return web.Response(text="ok")

        await self.get(self.app(answer), "/items/3")
        ((resource, again, request),) = seen
        assert resource is again
        assert (resource.type, resource.request, resource.request_id) == (
            "http.server",
            True,
            "m-1",
        )
        assert f"{HERE}:{answer.__code__.co_firstlineno}" == resource.location
        assert resource.destroyed
        gc.collect()
        assert request() is None

    async def test_work_handed_over_makes_it_the_works_owner(self, view: None) -> None:
        from threadline import live

        shown: list[Any] = []

        async def answer(request: web.Request) -> web.Response:
            gate = asyncio.Event()
            task = asyncio.create_task(gate.wait())  # mark:made-when-needed
            shown.extend(live.snapshot()["requests"])  # type: ignore[arg-type]
            gate.set()
            await task
            return web.Response(text="ok")

        await self.get(self.app(answer), "/items/4")
        ((request),) = shown
        assert [("task", marked_line(HERE, "mark:made-when-needed"))] == [
            (made["type"], made["location"]) for made in request["resources"]
        ]
        assert [] == live.snapshot()["requests"]

    async def test_a_span_it_left_open_is_listed_with_its_request(self, view: None) -> None:
        """Even when the request ended without ever being made a resource; a span begun
        in its context after it ended is no request's."""
        from opentelemetry import trace

        from threadline import live

        seen: list[Any] = []
        later = asyncio.Event()

        def after_it_ended() -> None:
            trace.get_tracer("tests").start_span("after")  # mark:after-it-ended
            later.set()

        async def answer(request: web.Request) -> web.Response:
            trace.get_tracer("tests").start_span("left open")  # mark:left-open
            seen.extend(_hooks.pending_table.values())
            seen.append(weakref.ref(request))
            asyncio.get_running_loop().call_later(0.05, after_it_ended)
            return web.Response(text="ok")

        await self.get(self.app(answer), "/items/5")
        await asyncio.wait_for(later.wait(), 30)
        (pending, request) = seen
        assert pending._made is None
        gc.collect()
        assert request() is None  # (the span's record keeps no more than the request's own)
        found = {leak.what: leak for leak in live.leaks(log=False)}
        assert {"span 'left open'", "span 'after'"} == set(found)
        leak, after = found["span 'left open'"], found["span 'after'"]
        assert (
            "unended",
            marked_line(HERE, "mark:left-open"),
            "m-1",
            f"{HERE}:{answer.__code__.co_firstlineno}",
        ) == (leak.kind, leak.location, leak.request_id, leak.request_location)
        assert (marked_line(HERE, "mark:after-it-ended"), None, None) == (
            after.location,
            after.request_id,
            after.request_location,
        )

    def test_a_hook_enabled_during_it_sees_it_end(self, view: None) -> None:
        """As of a resource made before it was enabled: its after and destroy, once each."""
        found = Recorder()
        arrival = Arrival(get_current(), None, "http.server", None, True, False, _named)
        with arrival:
            assert arrival.resource is None
            found.hook.enable()
        found.hook.disable()
        request = arrival.resource
        assert request is not None
        assert ["after", "destroy"] == found.sequence(request)
        assert hooks.current() is None

    def test_made_by_the_view_while_it_ends_it_is_ended_once(self, view: None) -> None:
        """The request ends on its own thread while the view's makes its resource."""
        from threadline import live

        ended: list[Any] = []
        watch = _hooks.Hook(None, None, None, ended.append, guarded=False, requests_only=True)

        def ends_meanwhile(resource: hooks.Resource) -> None:
            arrival.__exit__(None, None, None)
            _named(resource)

        arrival = Arrival(get_current(), None, "http.server", None, True, False, ends_meanwhile)
        arrival.__enter__()
        watch.enable()
        try:
            made = _hooks.made(arrival)
        finally:
            watch.disable()
        assert made is not None
        assert made.destroyed
        assert [made] == ended
        assert _hooks.made(arrival) is made
        assert [] == live.snapshot()["requests"]
        assert hooks.current() is None

    def test_ended_while_the_views_thread_makes_it_it_leaves_the_view(self, view: None) -> None:
        """The request ends on its thread between its resource made and the view's init."""
        from threadline import live
        from threadline.live._tracker import tracker

        reached, go = threading.Event(), threading.Event()

        def park(resource: hooks.Resource, trigger: hooks.Resource | None) -> None:
            if threading.current_thread().name == "view":  # (as a thread switch there could)
                reached.set()
                go.wait(30)

        probe = _hooks.Hook(park, None, None, None, guarded=False, requests_only=True)
        tracker._hook.disable()
        probe.enable()
        tracker._hook.enable()  # (after the probe: its init is called second)
        arrival = Arrival(get_current(), None, "http.server", None, True, False, _named)
        try:
            arrival.__enter__()
            looking = threading.Thread(target=live.snapshot, name="view")
            looking.start()
            assert reached.wait(30)
            threading.Timer(0.2, go.set).start()
            arrival.__exit__(None, None, None)
            looking.join(30)
        finally:
            go.set()
            probe.disable()
        made = arrival.resource
        assert made is not None
        assert made.destroyed
        assert [] == live.snapshot()["requests"]


def _named(resource: hooks.Resource) -> None:
    resource.name, resource.location = "GET /", "app.py:1"


class TestHttp:
    async def test_server_request_and_client_call(self, recorder: Recorder) -> None:
        """A server request runs as an http.server resource; a client call is http.client."""
        app = web.Application(middlewares=[tla.middleware(spans=False)])
        app.router.add_get("/", handler)
        async with (
            served(app) as url,
            aiohttp.ClientSession(trace_configs=[tla.trace_config()]) as session,
        ):
            with tl.request.scope(request_id="h1"):
                async with session.get(url + "/") as response:  # mark:client-get
                    body = await response.json()
                    request_id = response.headers["X-Request-ID"]
        (server,) = recorder.of_type("http.server")
        (client,) = recorder.of_type("http.client")
        assert {"type": "http.server", "id": server.id} == body
        recorder.check_order(server)
        recorder.check_order(client, runs_here=False)
        assert server.request
        assert request_id == server.request_id  # made in the request's own context
        assert f"{HERE}:{handler.__code__.co_firstlineno}" == server.location
        assert "GET /" == server.name  # named at once for a hook of yours (not when looked at)
        assert (line_of("mark:client-get"), "h1") == (client.location, client.request_id)


class TestContract:
    def test_no_hook_no_calls(self) -> None:
        """A hook made but not enabled is never called, and the boundaries' flag stays off."""
        found = Recorder()
        with tl.request.scope(request_id="n1"), tl.ThreadPoolExecutor(1) as pool:
            pool.submit(job).result()
            thread = tl.Thread(target=job)
            thread.start()
            thread.join()
        assert [] == found.events
        assert not _hooks.active
        assert hooks.current() is None

    def test_disable_stops_the_calls(self, recorder: Recorder) -> None:
        """After disable, nothing more is recorded."""
        recorder.hook.disable()
        assert not recorder.hook.enabled
        with tl.request.scope(request_id="d1"):
            pass
        assert [] == recorder.events

    def test_errors_in_hooks_never_reach_the_application(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Each callback raising: the app's results are intact, errors counted and logged once."""

        def fail(*_: object) -> None:
            raise RuntimeError("hook failed")

        hook = hooks.create_hook(init=fail, before=fail, after=fail, destroy=fail).enable()
        caplog.set_level(logging.ERROR, logger="threadline")
        try:
            with tl.request.scope(request_id="e1"), tl.ThreadPoolExecutor(1) as pool:
                assert ["e1", "e1"] == [pool.submit(job).result() for _ in range(2)]
        finally:
            hook.disable()
        assert 12 == hook.errors  # 4 callbacks x (1 scope + 2 jobs)
        logged = [r for r in caplog.records if r.name == "threadline"]
        assert 4 == len(logged)
        assert all(r.exc_info is not None for r in logged)

    def test_a_callback_that_enters_a_scope_fires_no_hook(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A callback's own scope fires no hook: the callback runs once, its error logged once."""
        calls: list[int] = []

        def init(resource: hooks.Resource, _trigger: object) -> None:
            calls.append(resource.id)
            with tl.request.merge(seen=True):
                raise RuntimeError("init failed")

        hook = hooks.create_hook(init=init).enable()
        caplog.set_level(logging.ERROR, logger="threadline")
        try:
            with tl.request.scope(request_id="g1"):
                assert {"request_id": "g1"} == dict(tl.request.get() or {})
        finally:
            hook.disable()
        assert (1, 1) == (len(calls), hook.errors)
        logged = [r for r in caplog.records if r.name == "threadline"]
        assert 1 == len(logged)
        assert "init failed" in str(logged[0].exc_info and logged[0].exc_info[1])

    def test_the_guard_is_per_thread(self) -> None:
        """A thread started inside a callback fires the hooks again: the guard is the callback's."""
        inits: list[str] = []

        def init(resource: hooks.Resource, _trigger: object) -> None:
            inits.append(resource.type)
            if resource.request_id == "t1" and resource.type == "scope":
                thread = threading.Thread(target=lambda: tl.request.run({"request_id": "t2"}, job))
                thread.start()
                thread.join()

        hook = hooks.create_hook(init=init).enable()
        try:
            with tl.request.scope(request_id="t1"):
                pass
        finally:
            hook.disable()
        assert ["scope", "scope"] == inits

    def test_work_a_callback_hands_off_fires_no_hook(self) -> None:
        """A tl.Thread a callback starts: no init, before, after nor destroy for it, anywhere."""
        events: list[tuple[str, str]] = []
        threads: list[tl.Thread] = []

        def init(resource: hooks.Resource, _trigger: object) -> None:
            events.append(("init", resource.type))
            if resource.type == "scope":
                thread = tl.Thread(target=job)
                thread.start()
                threads.append(thread)

        def record(event: str) -> Any:
            return lambda resource: events.append((event, resource.type))

        hook = hooks.create_hook(
            init=init, before=record("before"), after=record("after"), destroy=record("destroy")
        ).enable()
        try:
            with tl.request.scope(request_id="h1"):
                pass
            for thread in threads:
                thread.join()
        finally:
            hook.disable()
        assert 1 == len(threads)
        assert [
            ("init", "scope"),
            ("before", "scope"),
            ("after", "scope"),
            ("destroy", "scope"),
        ] == (events)

    @pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
    @pytest.mark.parametrize("callback", ["init", "before", "after", "destroy"])
    def test_base_exceptions_are_reported_not_raised(
        self, error: type[BaseException], callback: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """KeyboardInterrupt or SystemExit in a callback: the block runs, the scope ends, logged."""

        def fail(*_: object) -> None:
            raise error

        hook = hooks.create_hook(**{callback: fail}).enable()
        caplog.set_level(logging.ERROR, logger="threadline")
        try:
            with tl.request.scope(request_id="b1"):
                inside = tl.request.get()
            outside = tl.request.get()
        finally:
            hook.disable()
        assert ({"request_id": "b1"}, None) == (dict(inside or {}), outside)
        assert hooks.current() is None
        assert 1 == hook.errors
        assert 1 == len([r for r in caplog.records if r.name == "threadline"])

    def test_current_outside_any_resource(self, recorder: Recorder) -> None:
        """current() is None outside, the scope inside a scope."""
        assert hooks.current() is None
        with tl.request.scope(request_id="c1"):
            running = hooks.current()
            assert running is not None
            assert ("scope", "c1", True) == (running.type, running.request_id, running.request)
            with tl.request.merge(tenant="x"):
                inner = hooks.current()
                assert inner is not None
                assert (running.id, False) == (inner.trigger_id, inner.request)
        assert hooks.current() is None

    def test_plain_stdlib_pool_is_no_resource(self, recorder: Recorder) -> None:
        """Only threadline's boundaries make resources; a plain pool's jobs are none."""
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(job).result()
        assert [] == recorder.of_type("thread.job")


class TestOnlyTheLiveViewListening:
    """While only threadline's own requests-only hook listens (the live view served), a request
    takes a short way in and out: the same resource, current, ended once."""

    @pytest.fixture
    def own_hook(self) -> Iterator[list[hooks.Resource]]:
        """A hook like the live view's tracker (requests only, unguarded): the requests ended."""
        ended: list[hooks.Resource] = []
        hook = _hooks.Hook(None, None, None, ended.append, guarded=False, requests_only=True)
        hook.enable()
        try:
            assert _hooks.lazy_names
            yield ended
        finally:
            hook.disable()

    def test_a_request_is_current_inside_and_ended_once(
        self, own_hook: list[hooks.Resource]
    ) -> None:
        with tl.request.scope(request_id="s1"):
            inside = hooks.current()
            assert inside is not None
            assert (inside.type, inside.request, inside.request_id) == ("scope", True, "s1")
            assert not inside.destroyed
        assert hooks.current() is None
        assert [inside] == own_hook
        assert inside.destroyed

    def test_a_hook_enabled_during_the_request_sees_it_end(
        self, own_hook: list[hooks.Resource]
    ) -> None:
        """A hook of yours enabled while a request runs gets its after and destroy, once each."""
        found = Recorder()
        with tl.request.scope(request_id="s2"):
            request = hooks.current()
            assert request is not None
            found.hook.enable()
        found.hook.disable()
        assert ["after", "destroy"] == found.sequence(request)
        assert [request] == own_hook
        assert hooks.current() is None

    def test_a_request_ended_after_the_live_view_stopped_listening(
        self, own_hook: list[hooks.Resource]
    ) -> None:
        """Hooks all disabled while a request runs: it still ends, and nothing stays current."""
        with tl.request.scope(request_id="s3"):
            request = hooks.current()
            for hook in _hooks._hooks:
                hook.disable()
        assert request is not None
        assert request.destroyed
        assert hooks.current() is None

    async def test_a_served_request_keeps_nothing_of_its_request_once_ended(
        self, own_hook: list[hooks.Resource]
    ) -> None:
        """Its resource may be kept (a leak record holds it); the request object is not."""
        seen: list[Any] = []

        async def keep(request: web.Request) -> web.Response:
            seen.append((hooks.current(), weakref.ref(request)))
            return web.Response(text="ok")

        app = web.Application(middlewares=[tla.middleware(spans=False)])
        app.router.add_get("/", keep)
        async with (
            served(app) as url,
            aiohttp.ClientSession() as session,
            session.get(url + "/") as response,
        ):
            assert 200 == response.status
        ((resource, request),) = seen
        assert resource is not None
        assert (resource.type, resource.destroyed) == ("http.server", True)
        assert f"{HERE}:{keep.__code__.co_firstlineno}" == resource.location
        gc.collect()
        assert request() is None

    def test_a_hook_enabled_while_a_request_comes_in_gets_every_callback(
        self, own_hook: list[hooks.Resource]
    ) -> None:
        """Enabled between the arrival's look at the hooks and the resource (another thread):
        the request takes the general way, so the hook gets all four callbacks, guarded."""
        guarded: list[bool] = []
        hook = hooks.create_hook(
            init=lambda resource, trigger: guarded.append(_hooks._calling.on),
            before=lambda resource: guarded.append(_hooks._calling.on),
            after=lambda resource: guarded.append(_hooks._calling.on),
            destroy=lambda resource: guarded.append(_hooks._calling.on),
        )

        def where() -> str:
            hook.enable()  # (as another thread could, right after the arrival looked)
            return "app.py:1"

        try:
            with Arrival(get_current(), None, "message.process", where, True):
                pass
        finally:
            hook.disable()
        assert [True, True, True, True] == guarded
