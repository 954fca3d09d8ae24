"""Threads and thread pools that carry the submitter's context into the work."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from .._core import lifecycle as _hooks
from .._core.checks import require_bool
from .._telemetry.spans import call_as_job, callable_name
from .handoff import Handoff, arrive, carries_context, hand_off

__all__ = ["Thread", "ThreadPoolExecutor", "run_in_executor"]

T = TypeVar("T")
BOUNDARY = "thread"


@carries_context
class ThreadPoolExecutor(concurrent.futures.ThreadPoolExecutor):
    """A `concurrent.futures.ThreadPoolExecutor` whose jobs run in their submitter's context.

    Each `submit` (and so `map`) captures every `contextvars` variable (the
    stores and the OpenTelemetry context among them); the job runs in that
    copy and the pool thread keeps nothing of it afterwards. When the
    submitter's span records, the job runs under a child span
    ``"thread {function}"``; ``job_spans=False`` turns that off.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        job_spans: bool = True,
    ) -> None:
        super().__init__(max_workers, thread_name_prefix, initializer, initargs)
        self._job_spans = require_bool("job_spans", job_spans)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)`` to run in a copy of the caller's context."""
        context = contextvars.copy_context()
        if _hooks.active:
            return self._submit_hooked(context, fn, args, kwargs)
        if self._job_spans:
            return super().submit(context.run, call_as_job, BOUNDARY, fn, args, kwargs)
        return super().submit(context.run, fn, *args, **kwargs)

    def _submit_hooked(
        self, context: contextvars.Context, fn: Callable[..., T], args: Any, kwargs: Any
    ) -> Future[T]:
        handoff = hand_off("thread.job")
        job: Any = functools.partial(call_as_job, BOUNDARY, fn, args, kwargs)
        if not self._job_spans:
            job = functools.partial(fn, *args, **kwargs)
        try:
            future = super().submit(context.run, arrive, None, handoff.resource, job)
        except BaseException:
            handoff.end()
            raise
        _hooks.set_future(handoff.resource, future)
        future.add_done_callback(handoff.end_with)
        return future


@carries_context
class Thread(threading.Thread):
    """A `threading.Thread` that runs in the context of the code that called `start`.

    Subclasses that override `run` are covered too. With a recording span at
    `start`, the thread's work runs under a child span ``"thread {target}"``.

    .. versionadded:: 0.1
    """

    def start(self) -> None:
        """Capture the caller's context, then start the thread as `threading.Thread` does."""
        context = contextvars.copy_context()
        run = self.run
        name = callable_name(getattr(self, "_target", None) or run)
        handoff = hand_off("thread") if _hooks.active else None
        # An instance attribute shadows the method for _bootstrap_inner's
        # self.run() call, so an overridden run() is wrapped as well.
        self.run = functools.partial(  # type: ignore[method-assign]
            self._run_in, context, run, name, handoff
        )
        try:
            super().start()
        except BaseException:
            if handoff is not None:
                handoff.end()
            raise

    def _run_in(
        self,
        context: contextvars.Context,
        run: Callable[[], None],
        name: str,
        handoff: Handoff | None,
    ) -> None:
        try:
            if handoff is None:
                context.run(call_as_job, BOUNDARY, run, (), {}, name)
            else:
                context.run(
                    arrive, None, handoff.resource, call_as_job, BOUNDARY, run, (), {}, name
                )
        finally:
            del self.run  # the context goes with it, as Thread drops its target
            if handoff is not None:
                handoff.end()


async def run_in_executor(
    executor: Executor | None, fn: Callable[..., T], /, *args: Any, **kwargs: Any
) -> T:
    """Await ``fn(*args, **kwargs)`` run in *executor* (None: the loop's default) in this context.

    Like ``loop.run_in_executor`` but the job sees the calling task's stores,
    span and contextvars, and takes keyword arguments.

    .. versionadded:: 0.1
    """
    loop = asyncio.get_running_loop()
    if isinstance(executor, ThreadPoolExecutor):
        job = functools.partial(fn, *args, **kwargs)
    elif _hooks.active:
        result: T = await _run_hooked(loop, executor, fn, args, kwargs)
        return result
    else:
        context = contextvars.copy_context()
        job = functools.partial(context.run, call_as_job, BOUNDARY, fn, args, kwargs)
    return await loop.run_in_executor(executor, job)


async def _run_hooked(
    loop: asyncio.AbstractEventLoop, executor: Executor | None, fn: Any, args: Any, kwargs: Any
) -> Any:
    handoff = hand_off("thread.job")
    context = contextvars.copy_context()
    job = functools.partial(
        context.run, arrive, None, handoff.resource, call_as_job, BOUNDARY, fn, args, kwargs
    )
    try:
        return await loop.run_in_executor(executor, job)
    finally:
        handoff.end()
