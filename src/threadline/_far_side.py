"""The far side of a process boundary: restore the context around the work, flush at exit.

Runs in worker processes, ``Process`` children and bootstrapped Python
children; kept apart from the parent-side code so that they import only what
they run.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Mapping
from multiprocessing import util
from typing import Any, TypeVar

from ._context import Context, attach, restore
from ._settings import CONFIGURED_ENV

__all__ = [
    "FLUSH_TIMEOUT_MILLIS",
    "call_in",
    "configure_like_parent",
    "ensure_flush_at_exit",
    "exit_on_terminate",
    "flush_tracing",
]

T = TypeVar("T")
FLUSH_TIMEOUT_MILLIS = 5000
"""How long a worker's exit waits for its spans to be exported, at most."""

_flush_pid: int | None = None
_flushing = False
_last: tuple[str | None, Context] | None = None


def call_in(carrier: Mapping[str, str], fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` in the context *carrier* brought, then drop that context.

    The worker's own context before and after the job is untouched, so no job
    sees another's values. Runs in the worker process.
    """
    ensure_flush_at_exit()
    token = attach(_context_of(carrier))
    try:
        return fn(*args, **kwargs)
    finally:
        restore(token)


def _context_of(carrier: Mapping[str, str]) -> Context:
    from ._carrier import BAGGAGE, TRACEPARENT, extract_context  # noqa: PLC0415

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
    util.Finalize(None, flush_tracing, exitpriority=100)


def configure_like_parent() -> None:
    """Set up tracing as the parent did, when it did so with `threadline.tracing.configure`."""
    if os.environ.get(CONFIGURED_ENV):
        from .tracing import configure  # noqa: PLC0415 - the parent loaded the SDK too

        configure()


def flush_tracing(timeout_millis: int = FLUSH_TIMEOUT_MILLIS) -> None:
    """Export the spans the process's tracer provider still holds, waiting at most the timeout."""
    global _flushing  # noqa: PLW0603 - read by the SIGTERM handler
    _flushing = True
    module = sys.modules.get("opentelemetry.trace")
    if module is None:
        return
    force_flush = getattr(module.get_tracer_provider(), "force_flush", None)
    if force_flush is not None:
        force_flush(timeout_millis)


def exit_on_terminate() -> None:
    """Turn SIGTERM into a normal exit, so the exit finalizers (and the flush) run.

    ``multiprocessing.Pool.terminate()``, and so leaving its ``with`` block,
    ends workers with SIGTERM.
    """
    signal.signal(signal.SIGTERM, _raise_exit)


def _raise_exit(signum: int, _frame: object) -> None:
    if not _flushing:  # already on the way out: let the flush finish
        raise SystemExit(128 + signum)
