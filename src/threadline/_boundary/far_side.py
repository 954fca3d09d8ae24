"""The far side of a process boundary: restore the context around the work, flush at exit.

Runs in worker processes, ``Process`` children and bootstrapped Python
children; kept apart from the parent-side code so that they import only what
they run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .._core.context import Context
from .handoff import Arrival

if TYPE_CHECKING:
    from multiprocessing import util
else:  # a bootstrapped child loads neither unless it runs them (multiprocessing: ~9 ms)
    util = None

__all__ = [
    "WorkerStep",
    "add_worker_setup",
    "adopt_settings",
    "call_in",
    "child_exit_timeout",
    "configure_like_parent",
    "ensure_flush_at_exit",
    "exit_on_terminate",
    "flush_tracing",
    "initialize_worker",
    "run_worker_steps",
    "worker_steps",
]

T = TypeVar("T")
WorkerStep = Callable[[], object]
"""Something a worker runs once at start: picklable (a module-level function or a partial)."""

_worker_setups: list[Callable[[str], WorkerStep | None]] = []

_flush_pid: int | None = None
_flushing = False
_terminating = False
_jobs_running = 0
_last: tuple[str | None, Context] | None = None
_CONFIGURED_ENV = "THREADLINE_CONFIGURED"  # settings.CONFIGURED_ENV, without loading settings


def call_in(carrier: Mapping[str, str], fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` in the context *carrier* brought, then drop that context.

    The worker's own context before and after the job is untouched, so no job
    sees another's values. Runs in the worker process. In a worker told to
    stop (`exit_on_terminate`), the worker leaves when the job ends, however
    the job took the news.
    """
    global _jobs_running  # noqa: PLW0603 - read by the SIGTERM handler
    ensure_flush_at_exit()
    _jobs_running += 1
    try:
        with Arrival(_context_of(carrier)):
            return fn(*args, **kwargs)
    finally:
        _jobs_running -= 1
        if _terminating:  # (set by the SIGTERM handler, so signal is loaded)
            import signal  # noqa: PLC0415 - not loaded for a child's start-up

            _leave(128 + signal.SIGTERM)


def _context_of(carrier: Mapping[str, str]) -> Context:
    from .._wire.carrier import (  # noqa: PLC0415
        BAGGAGE,
        TRACEPARENT,
        extract_context,
    )

    def get(field: str) -> tuple[str, ...]:
        return (carrier[field],) if field in carrier else ()

    # Jobs from one scope carry the same baggage, each with its own parent
    # span: parse the baggage once, only the traceparent each time.
    global _last  # noqa: PLW0603 - a one-entry cache for this process
    key = carrier.get(BAGGAGE)
    last = _last
    if last is not None and last[0] == key:
        stores = last[1]
    else:
        stores = extract_context(lambda field: get(field) if field == BAGGAGE else ())
        _last = (key, stores)
    if TRACEPARENT not in carrier:
        return stores
    return extract_context(lambda field: () if field == BAGGAGE else get(field), stores)


def ensure_flush_at_exit() -> None:
    """Make this process export its finished spans before it exits, once per process.

    multiprocessing children leave through ``os._exit``, so ``atexit`` never
    runs in them; multiprocessing's own exit finalizers do, on a normal end,
    at pool shutdown and when a worker is recycled (``max_tasks_per_child``).
    """
    global _flush_pid  # noqa: PLW0603 - once per process, forks included
    pid = os.getpid()
    if _flush_pid == pid:
        return
    _flush_pid = pid
    configure_like_parent()
    _util().Finalize(None, flush_tracing, exitpriority=100)


def _util() -> Any:
    global util  # noqa: PLW0603 - imported when first used
    if util is None:
        from multiprocessing import util  # noqa: PLC0415

    return util


def configure_like_parent() -> None:
    """Set up tracing as the parent did, when it did so with `threadline.tracing.configure`.

    The parent said so in the settings it handed over (``THREADLINE_CONFIGURED``
    in a child's environment, or adopted by a worker): the same settings, the
    same resource (the service name the parent gave in code included), a
    shorter exit bound (`child_exit_timeout`).
    """
    if not os.environ.get(_CONFIGURED_ENV):  # the common child: no settings to read (~10 ms)
        return
    from .._core.settings import read_settings  # noqa: PLC0415

    settings = read_settings()
    if settings.parent_configured:
        from .._telemetry.pipeline import configure  # noqa: PLC0415 - the parent loaded the SDK too

        configure(
            service_name=settings.service_name,
            shutdown_timeout=settings.child_exit_timeout,
            export_process=False,  # a worker or child, often short-lived: no process of its own
        )


def bound_exit_export() -> None:
    """Bound this process's exit export by `child_exit_timeout`, whoever set its tracing up.

    For a bootstrapped child whose provider ``opentelemetry-instrument`` made:
    OpenTelemetry's own exit handler waits as long as its exporter retries
    (seconds, against a Collector that is down). threadline's runs before every
    ``atexit`` handler, shuts the provider down within the bound, and the SDK's
    handler then finds it shut down already.
    """
    # threading._register_atexit runs at interpreter exit before the atexit
    # handlers; concurrent.futures relies on it too (CPython bpo-39812).
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(_exit_within_bound)


def _exit_within_bound() -> None:
    module = sys.modules.get("opentelemetry.trace")
    provider = module.get_tracer_provider() if module is not None else None
    if provider is None or not callable(getattr(provider, "shutdown", None)):
        return  # no SDK provider: nothing is waiting to be exported
    from .._telemetry.pipeline import shutdown  # noqa: PLC0415 - the SDK is loaded when a provider is set

    shutdown(provider, child_exit_timeout())


def child_exit_timeout() -> float:
    """Seconds the exit of a worker or child waits at most for its spans to be exported.

    ``THREADLINE_CHILD_EXIT_TIMEOUT``, else half a second: a process started
    inside a request must not hold the request for an unreachable Collector.
    """
    from .._core.settings import read_settings  # noqa: PLC0415 - see configure_like_parent

    return read_settings().child_exit_timeout


def flush_tracing(timeout_millis: int | None = None) -> bool:
    """Export the spans the process's tracer provider still holds, waiting at most the timeout.

    The wait is bounded even where the provider ignores the timeout it is
    given (OpenTelemetry's batch processor does): the flush runs in a daemon
    thread that the process leaves behind when time runs out. Returns False
    then; the spans not exported are lost, counted as ``export.flush_timeout``,
    and the exporters `threadline.tracing.configure` set up stop retrying.
    The default is `child_exit_timeout`.
    """
    global _flushing  # noqa: PLW0603 - read by the SIGTERM handler
    _flushing = True
    module = sys.modules.get("opentelemetry.trace")
    if module is None:
        return True
    force_flush = getattr(module.get_tracer_provider(), "force_flush", None)
    if force_flush is None:
        return True
    millis = round(child_exit_timeout() * 1000) if timeout_millis is None else timeout_millis
    flushed: list[object] = []
    flushing = threading.Thread(
        target=lambda: flushed.append(force_flush(millis)), name="threadline-flush", daemon=True
    )
    flushing.start()
    flushing.join(millis / 1000)
    # (threadline's processors keep the timeout themselves, and say False when it ran out)
    if not flushing.is_alive() and flushed != [False]:
        return True
    tracing = sys.modules.get("threadline._telemetry.pipeline")
    if tracing is not None:
        tracing._abandon_exports("export.flush_timeout", millis / 1000)
    else:
        from .._core.drops import record_drop  # noqa: PLC0415 - only when time ran out

        record_drop("export.flush_timeout", f"spans not exported within {millis / 1000:g}s of exit")
    return False


def adopt_settings(settings: Mapping[str, str]) -> None:
    """Take the settings the parent handed over (`threadline._core.settings.for_workers`).

    They go into this worker's own environment, as if it had been started
    with them, for OpenTelemetry reads its ``OTEL_*`` settings there: a
    forkserver worker's environment is the server's, from when it started,
    which may be before the parent set tracing up.
    """
    os.environ.update(settings)


def add_worker_setup(capture: Callable[[str], WorkerStep | None]) -> None:
    """Have worker processes set up like this one, for a module above the process boundary.

    ``capture(start_method)`` runs in the parent when a pool is made or a
    `Process` started, and returns the step each of its workers runs once
    (after the user's ``initializer``), or None. Registering twice is once.
    """
    if capture not in _worker_setups:
        _worker_setups.append(capture)


def worker_steps(start_method: str) -> tuple[WorkerStep, ...]:
    """The steps workers started by *start_method* run, captured now, in the parent."""
    steps = (capture(start_method) for capture in _worker_setups)
    return tuple(step for step in steps if step is not None)


def run_worker_steps(steps: tuple[WorkerStep, ...]) -> None:
    """Run each step in this worker; one that fails is reported on stderr, never fatal."""
    for step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001, PERF203 - a worker starts even if a step fails
            sys.stderr.write(f"threadline worker set-up: {type(exc).__name__}: {exc}\n")


def initialize_worker(
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
    settings: Mapping[str, str] | None = None,
    steps: tuple[WorkerStep, ...] = (),
) -> None:
    """A pool worker's initializer: the parent's settings and set-up, exit flush, SIGTERM."""
    if settings:
        adopt_settings(settings)
    ensure_flush_at_exit()
    exit_on_terminate()
    if initializer is not None:
        initializer(*initargs)
    run_worker_steps(steps)


def exit_on_terminate() -> None:
    """Turn SIGTERM into a prompt, orderly exit: the exit finalizers (and the flush) run.

    ``multiprocessing.Pool.terminate()`` (and so leaving its ``with`` block)
    ends workers with SIGTERM, and so does a ``ProcessPoolExecutor`` whose
    pool broke because one worker died. A job running when SIGTERM arrives is
    cut by a `SystemExit` (its ``with`` blocks end, and so its spans; the
    parent-side job span is the one marked as an error); the worker leaves when
    the job ends, also if the job caught the `SystemExit`. Only the first SIGTERM
    is acted on: a later one cuts neither the job's unwinding (its ``finally``
    blocks, its spans' end) nor the exit flush. CPython 3.12 and later send two
    to each worker of a broken ``ProcessPoolExecutor``.
    """
    import signal  # noqa: PLC0415 - in a pool worker only, not in a child's start-up

    signal.signal(signal.SIGTERM, _on_terminate)


def _on_terminate(signum: int, _frame: object) -> None:
    global _terminating  # noqa: PLW0603 - read where a job ends
    if _terminating or _flushing or getattr(_util(), "_exiting", False):
        return  # already on the way out: let the unwinding and the flush finish
    _terminating = True
    if _jobs_running:
        raise SystemExit(128 + signum)
    _leave(128 + signum)


def _leave(code: int) -> None:
    # Not SystemExit: an executor worker catches every exception of a job and
    # of sending its result back, then waits for the next job, while the
    # parent waits for it to exit (concurrent.futures.process._process_worker).
    # So leave as multiprocessing's _bootstrap does, without returning.
    _util()._exit_function()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _reset_after_fork() -> None:
    global _flushing, _terminating  # noqa: PLW0603 - a forked child starts its own exit
    _flushing = _terminating = False


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_after_fork)
