"""Snapshots: run, with, async functions, and concurrent use."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars

import pytest
from opentelemetry import trace

import threadline as tl

other_var: contextvars.ContextVar[str] = contextvars.ContextVar("other_var", default="unset")


class TestSnapshot:
    def test_captures_stores_span_and_contextvars(
        self, store: tl.ContextStore, tracer: trace.Tracer
    ) -> None:
        """A snapshot holds every store, the active span and other contextvars."""
        with store.scope(a=1), tracer.start_as_current_span("s") as span:
            token = other_var.set("captured")
            snap = tl.snapshot()
            other_var.reset(token)

        def look() -> tuple[object, int, str]:
            return store.get(), trace.get_current_span().get_span_context().span_id, other_var.get()

        assert ({"a": 1}, span.get_span_context().span_id, "captured") == snap.run(look)
        assert (None, "unset") == (store.get(), other_var.get())

    def test_with_restores_stores_and_span(self, store: tl.ContextStore) -> None:
        """`with snap:` applies the stores and the OTel context, then gives back the caller's."""
        with store.scope(a=1):
            snap = tl.snapshot()
        with store.scope(b=2):
            with snap:
                assert {"a": 1} == store.get()
            assert {"b": 2} == store.get()

    def test_run_changes_stay_inside(self, store: tl.ContextStore) -> None:
        """What code run in a snapshot sets does not change the snapshot for the next run."""
        snap = tl.snapshot()

        def leaky() -> object:
            store.scope(leaked=True).__enter__()
            other_var.set("leaked")
            return store.get()

        assert {"leaked": True} == snap.run(leaky)
        assert (None, "unset") == snap.run(lambda: (store.get(), other_var.get()))

    async def test_run_async_function_runs_inside(self, store: tl.ContextStore) -> None:
        """snap.run(async_fn) runs the whole coroutine in the snapshot, across awaits."""
        with store.scope(a=1):
            token = other_var.set("snap")
            snap = tl.snapshot()
            other_var.reset(token)

        async def body() -> tuple[object, str]:
            await asyncio.sleep(0)
            return store.get(), other_var.get()

        with store.scope(b=2):
            assert ({"a": 1}, "snap") == await snap.run(body)
            assert {"b": 2} == store.get()

    async def test_run_async_function_is_a_coroutine(self, store: tl.ContextStore) -> None:
        """snap.run(async_fn) and bind(async_fn)() are coroutines: create_task takes them."""

        async def body() -> object:
            await asyncio.sleep(0)
            return store.get()

        with store.scope(v="c"):
            snap = tl.snapshot()
            bound = tl.bind(body)
        for made in (snap.run(body), bound(), tl.extract({"baggage": "x=1"}).run(body)):
            assert asyncio.iscoroutine(made)
            await asyncio.create_task(made)
        assert {"v": "c"} == await asyncio.create_task(snap.run(body))

    def test_asyncio_run_takes_it(self, store: tl.ContextStore) -> None:
        """asyncio.run(snap.run(async_fn)) runs it in the snapshot."""

        async def body() -> object:
            await asyncio.sleep(0)
            return store.get()

        with store.scope(v="r"):
            snap = tl.snapshot()
        assert {"v": "r"} == asyncio.run(snap.run(body))

    async def test_with_from_concurrent_tasks(self, store: tl.ContextStore) -> None:
        """One snapshot entered by many tasks at once: each exit restores its own task."""
        with store.scope(snap=True):
            snap = tl.snapshot()

        async def task(i: int) -> bool:
            with store.scope(i=i):
                with snap:
                    await asyncio.sleep(0)
                    assert {"snap": True} == store.get()
                await asyncio.sleep(0)
                return store.get() == {"i": i}

        assert all(await asyncio.gather(*(task(i) for i in range(100))))

    async def test_exception_propagates_from_async_run(self, store: tl.ContextStore) -> None:
        """Exceptions and cancellation pass through a snapshot's coroutine."""
        snap = tl.snapshot()

        async def fails() -> None:
            await asyncio.sleep(0)
            raise LookupError("inside")

        with pytest.raises(LookupError, match=r"^inside$"):
            await snap.run(fails)

        started = asyncio.Event()

        async def waits() -> None:
            started.set()
            await asyncio.sleep(3600)

        task = asyncio.ensure_future(snap.run(waits))
        await started.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()


def test_bind_names_what_is_not_callable() -> None:
    """bind() of something that cannot be called says so at once, not at the first call."""
    with pytest.raises(TypeError, match=r"bind\(\) takes a callable, got dict"):
        tl.bind({"request_id": "r1"})  # type: ignore[type-var]
