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

from ._spans import call_as_job, callable_name

__all__ = ["Thread", "ThreadPoolExecutor", "run_in_executor"]

T = TypeVar("T")
BOUNDARY = "thread"


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
        self._job_spans = job_spans

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)`` to run in a copy of the caller's context."""
        context = contextvars.copy_context()
        if self._job_spans:
            return super().submit(context.run, call_as_job, BOUNDARY, fn, args, kwargs)
        return super().submit(context.run, fn, *args, **kwargs)


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
        # An instance attribute shadows the method for _bootstrap_inner's
        # self.run() call, so an overridden run() is wrapped as well.
        self.run = functools.partial(  # type: ignore[method-assign]
            self._run_in, context, run, name
        )
        super().start()

    def _run_in(self, context: contextvars.Context, run: Callable[[], None], name: str) -> None:
        try:
            context.run(call_as_job, BOUNDARY, run, (), {}, name)
        finally:
            del self.run  # the context goes with it, as Thread drops its target


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
    else:
        context = contextvars.copy_context()
        job = functools.partial(context.run, call_as_job, BOUNDARY, fn, args, kwargs)
    return await loop.run_in_executor(executor, job)
