"""The implementation of `threadline.processes`: worker processes that carry the context."""

from __future__ import annotations

import concurrent.futures
import functools
import multiprocessing
import multiprocessing.context
import multiprocessing.pool
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from concurrent.futures.process import _process_chunk
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .._core import lifecycle as _hooks
from .._core.checks import require_bool
from .._core.context import Context
from .._core.settings import for_workers
from .._telemetry.spans import call_in_span, callable_name, is_recording, job_span
from .._wire.carrier import inject_context, inject_span
from .far_side import adopt_settings, call_in, initialize_worker, run_worker_steps, worker_steps
from .handoff import Handoff, carries_context, hand_off

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = [
    "ForkProcess",
    "ForkServerProcess",
    "Pool",
    "Process",
    "ProcessPoolExecutor",
    "SpawnProcess",
    "ThreadlineContext",
    "get_context",
]

T = TypeVar("T")
BOUNDARY = "process"


def capture_settings() -> dict[str, str]:
    """The settings this process hands its workers (``OTEL_*``, ``THREADLINE_*``, configure's)."""
    return for_workers()


def _steps(context: Any) -> tuple[Any, ...]:
    """The set-up steps for workers of *context* (None: multiprocessing's default)."""
    return worker_steps((context or multiprocessing.get_context()).get_start_method())


def capture() -> dict[str, str]:
    """Return the current context as a carrier dict for another process.

    Raises:
        TypeError: a store value cannot cross a process boundary; the message
            names the store and the key.
    """
    carrier: dict[str, str] = {}
    inject_context(carrier.__setitem__)
    return carrier


@carries_context
class ProcessPoolExecutor(concurrent.futures.ProcessPoolExecutor):
    """A `concurrent.futures.ProcessPoolExecutor` whose jobs run in their submitter's context.

    Each `submit` (and `map`) captures the stores and the trace; the job runs
    in them in the worker, which keeps nothing of them afterwards. A store
    value that cannot cross (not JSON-typed) is a `TypeError` at submit,
    naming the store and the key. When the submitter's span records, each job
    gets a span ``"process {function}"``, a child of the submitter's, from
    submit until its result is back; spans made in the job are its children.
    The span ends with an error status when the job raises or its worker dies
    (the future then fails with `BrokenProcessPool`, as usual). Workers export
    their spans before they exit, also when recycled by ``max_tasks_per_child``
    and when the pool breaks: CPython then ends the other workers with SIGTERM,
    which they take as `Pool` workers do, exporting what they finished first.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: multiprocessing.context.BaseContext | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        max_tasks_per_child: int | None = None,
        job_spans: bool = True,
    ) -> None:
        require_bool("job_spans", job_spans)
        if max_tasks_per_child is not None and sys.version_info < (3, 11):
            raise TypeError("max_tasks_per_child needs Python 3.11 or later, as in CPython")
        extra = {} if max_tasks_per_child is None else {"max_tasks_per_child": max_tasks_per_child}
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        super().__init__(
            max_workers,
            mp_context,
            initialize_worker,
            (initializer, tuple(initargs), capture_settings(), _steps(mp_context)),
            **extra,
        )
        self._job_spans = job_spans

    def _adjust_process_count(self) -> None:
        # CPython gh-115634 (3.11 up to its fix): when a worker leaves at
        # max_tasks_per_child, the manager thread's replacement consults the
        # idle-worker semaphore, may find a stale token, spawns nobody, and the
        # queued jobs hang forever. Replace exited workers unconditionally, as
        # the fix does. Fixed versions no longer call this from that thread.
        if threading.current_thread() is getattr(self, "_executor_manager_thread", None):
            if len(self._processes) < self._max_workers:  # type: ignore[attr-defined]
                self._spawn_process()  # type: ignore[attr-defined]
            return
        workers = len(self._processes)
        super()._adjust_process_count()
        if len(self._processes) > workers:
            # submit wakes the manager thread before it spawns the worker, so
            # the manager may go back to waiting without the new worker's
            # sentinel and not notice its death (no BrokenProcessPool) until
            # something else wakes it, such as another job's end (seen on
            # CPython 3.11). Wake it once more now that the worker exists.
            self._executor_manager_thread_wakeup.wakeup()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)`` in a worker, in a copy of the caller's context."""
        return submit_in_context(super().submit, fn, args, kwargs, job_spans=self._job_spans)


def submit_in_context(
    submit: Callable[..., Future[T]],
    fn: Callable[..., T],
    args: Any,
    kwargs: Any,
    *,
    job_spans: bool = True,
) -> Future[T]:
    """Submit ``fn(*args, **kwargs)`` through a process pool's *submit*, in this context.

    The carrier goes with the job; when the caller's span records (and
    *job_spans*), the job gets its span from submit until its result is back.
    The job runs in another process: its hook resource gets init and destroy here.
    """
    carrier = capture()  # first: a store value that cannot cross fails the submit, nothing else
    if not (job_spans or _hooks.active):
        return submit(call_in, carrier, fn, *args, **kwargs)
    handoff = hand_off("process.job", span=_job_span(fn) if job_spans else None)
    if handoff.span is not None:
        inject_span(carrier.__setitem__, handoff.span.get_span_context())
    try:
        future = submit(call_in, carrier, fn, *args, **kwargs)
    except BaseException as exc:
        handoff.end(exc)
        raise
    _hooks.set_future(handoff.resource, future)
    if handoff.span is not None or handoff.resource is not None:
        future.add_done_callback(functools.partial(_end_with_future, handoff))
    return future


def _job_span(fn: Callable[..., Any]) -> Callable[[Context], Span | None]:
    def start(context: Context) -> Span | None:
        return job_span(BOUNDARY, _job_name(fn)) if is_recording(context) else None

    return start


def _job_name(fn: Callable[..., Any]) -> str:
    # ProcessPoolExecutor.map submits partial(_process_chunk, fn): name the fn.
    if isinstance(fn, functools.partial) and fn.func is _process_chunk and fn.args:
        return callable_name(fn.args[0])
    return callable_name(fn)


def _end_with_future(handoff: Handoff, future: Future[Any]) -> None:
    if future.cancelled():
        handoff.end(concurrent.futures.CancelledError("the job was cancelled"))
    else:
        handoff.end(future.exception())


@carries_context
class _CarriesContext(multiprocessing.process.BaseProcess):
    """Mixin: capture the context at `start`, run the child in it."""

    _threadline_carrier: dict[str, str] | None = None
    _threadline_settings: dict[str, str] | None = None
    _threadline_steps: tuple[Any, ...] = ()
    _threadline_handoff: Handoff | None = None

    def start(self) -> None:
        """Capture the caller's context (a `TypeError` if it cannot cross), then start."""
        self._threadline_carrier = capture()
        self._threadline_settings = capture_settings()
        method = getattr(self, "_start_method", None) or multiprocessing.get_start_method()
        self._threadline_steps = worker_steps(method)
        super().start()
        if _hooks.active:
            # The child runs in another process: its resource gets init here (after start,
            # so it never travels to the child), destroy at join.
            self._threadline_handoff = hand_off("process")

    def join(self, timeout: float | None = None) -> None:
        """Wait for the child as `multiprocessing.Process.join` does."""
        super().join(timeout)
        handoff = self._threadline_handoff
        if handoff is not None and self.exitcode is not None:
            self._threadline_handoff = None
            handoff.end()

    def _bootstrap(self, *args: Any, **kwargs: Any) -> int:
        # Runs first in the child under every start method; wrapping run here
        # also covers subclasses that override run().
        carrier = self.__dict__.pop("_threadline_carrier", None)
        adopt_settings(self.__dict__.pop("_threadline_settings", None) or {})
        run_worker_steps(self.__dict__.pop("_threadline_steps", ()))
        if carrier is not None:
            run = self.run
            name = callable_name(getattr(self, "_target", None) or run)
            self.run = functools.partial(_run_child, carrier, run, name)  # type: ignore[method-assign]
        return super()._bootstrap(*args, **kwargs)  # type: ignore[misc,no-any-return]


def _run_child(carrier: Mapping[str, str], run: Callable[[], None], name: str) -> None:
    call_in(carrier, _run_in_span, run, name)


def _run_in_span(run: Callable[[], None], name: str) -> None:
    # A remote parent never "records" here, so ask the child's own tracer: a
    # no-op one (nothing configured) costs next to nothing.
    call_in_span(job_span(BOUNDARY, name), run, (), {})


class Process(_CarriesContext, multiprocessing.Process):
    """A `multiprocessing.Process` (default start method) that runs in its starter's context.

    The child runs under a span ``"process {target}"`` when its tracing is
    configured, and exports its spans before it exits.
    """


class SpawnProcess(_CarriesContext, multiprocessing.context.SpawnProcess):
    """`Process` under the spawn start method."""


class ForkServerProcess(_CarriesContext, multiprocessing.context.ForkServerProcess):
    """`Process` under the forkserver start method."""


class ForkProcess(_CarriesContext, multiprocessing.context.ForkProcess):
    """`Process` under the fork start method."""


_PROCESS_CLASSES: dict[str, type[_CarriesContext]] = {
    "spawn": SpawnProcess,
    "forkserver": ForkServerProcess,
    "fork": ForkProcess,
}


def _in_callers_context(name: str) -> Callable[..., Any]:
    """The `multiprocessing.pool.Pool` method *name*, giving its tasks the caller's context."""

    def in_callers_context(self: Pool, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return getattr(super(Pool, self), name)(_bound(func), *args, **kwargs)

    in_callers_context.__name__ = name
    in_callers_context.__qualname__ = f"Pool.{name}"
    in_callers_context.__doc__ = f"As `multiprocessing.pool.Pool.{name}`, in the caller's context."
    return in_callers_context


class Pool(multiprocessing.pool.Pool):
    """A `multiprocessing.pool.Pool` whose tasks run in the context of the call that gave them.

    `apply`, `map`, `imap`, `imap_unordered`, `starmap` and their ``_async``
    forms capture the context once per call. Workers export their spans
    before they exit, also when `terminate` (or leaving ``with``) ends them.
    """

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: Any = None,
    ) -> None:
        super().__init__(
            processes,
            initialize_worker,
            (initializer, tuple(initargs), capture_settings(), _steps(context)),
            maxtasksperchild,
            context,
        )

    def terminate(self) -> None:
        """Stop the workers, as `multiprocessing.pool.Pool.terminate` does.

        With no task outstanding (the usual end of a ``with`` block), the
        workers are let go as `close` and `join` would, so each exports its
        spans on the way out; otherwise they are terminated at once.
        """
        if not getattr(self, "_cache", True) and self._state == multiprocessing.pool.RUN:  # type: ignore[attr-defined]
            self.close()
            self.join()
        super().terminate()

    apply_async = _in_callers_context("apply_async")  # and so apply
    map = _in_callers_context("map")
    map_async = _in_callers_context("map_async")
    starmap = _in_callers_context("starmap")
    starmap_async = _in_callers_context("starmap_async")
    imap = _in_callers_context("imap")
    imap_unordered = _in_callers_context("imap_unordered")


def _bound(func: Callable[..., T]) -> Callable[..., T]:
    return functools.partial(call_in, capture(), func)


@dataclass(frozen=True)
class ThreadlineContext:
    """The threadline counterparts of a multiprocessing context's Process and Pool."""

    method: str
    Process: type[_CarriesContext]

    def Pool(  # noqa: N802 - mirrors multiprocessing's context objects
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
    ) -> Pool:
        """A threadline `Pool` under this start method."""
        return Pool(
            processes,
            initializer,
            initargs,
            maxtasksperchild,
            multiprocessing.get_context(self.method),
        )

    def ProcessPoolExecutor(  # noqa: N802 - mirrors multiprocessing's context objects
        self, max_workers: int | None = None, **kwargs: Any
    ) -> ProcessPoolExecutor:
        """A threadline `ProcessPoolExecutor` under this start method."""
        return ProcessPoolExecutor(
            max_workers, mp_context=multiprocessing.get_context(self.method), **kwargs
        )


def get_context(method: str | None = None) -> ThreadlineContext:
    """Return threadline's `Process`, `Pool` and `ProcessPoolExecutor` for a start method.

    Like `multiprocessing.get_context`: *method* is ``"spawn"``, ``"forkserver"``
    or ``"fork"``, or None for the default.
    """
    resolved = method or multiprocessing.get_start_method()
    process_class = _PROCESS_CLASSES.get(resolved)
    if process_class is None:
        raise ValueError(
            f"unknown start method {method!r}: use one of {sorted(_PROCESS_CLASSES)} or None"
        )
    return ThreadlineContext(resolved, process_class)
