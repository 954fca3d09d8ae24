"""The loss detector's watches: wrappers that see a hand-off about to lose its context.

`install` puts them in place as the layer ``"lost"`` of the patch registry
(`.registry`), outside ``instrument()``'s, and `uninstall` takes them out; the
two may be interleaved with ``instrument()``/``uninstrument()`` in any order.
They watch ``ThreadPoolExecutor.submit``, ``ProcessPoolExecutor.submit``,
``Thread.start``, ``BaseProcess.start``, ``subprocess.Popen.__init__``, the
FIFO queues' ``_put``/``_get`` and the log record factory (the ``logging``
module's ``_logRecordFactory``, which ``setLogRecordFactory`` sets).

What they find goes to the `Listener` given to `install`; `threadline.lost`
keeps the reports. A watch called while none is installed (a reference kept,
or one under someone's plain function) passes the call straight through.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import functools
import logging
import multiprocessing.process
import os
import queue
import subprocess
import sys
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

from .._boundary.handoff import CARRIES_CONTEXT
from .._core import lifecycle as _hooks
from .._core.context import STORE_KEY_PREFIX, get_current, span_in
from .._core.snapshot import Snapshot
from .._core.stores import request
from .._wire.carrier import BAGGAGE, TRACEPARENT
from .._wire.environment import ENV_NAMES
from . import registry

__all__ = ["LAYER", "Listener", "install", "request_id", "uninstall"]

LAYER = "lost"
"""The registry layer of the watches."""


class Listener(NamedTuple):
    """Where the watches send what they find."""

    report: Callable[[str, str, str], object]
    """Called with ``(cause, "file:line", message)`` for each hand-off that loses its context."""
    record: Callable[[logging.LogRecord], None]
    """Called with each log record made (not threadline's own)."""


_listener: Listener | None = None
_lock = threading.Lock()
# per queue, the tag of each item on it: (request id, where it was put), or None
_tags: weakref.WeakKeyDictionary[Any, collections.deque[tuple[str, str] | None]]
_tags = weakref.WeakKeyDictionary()


def install(listener: Listener) -> None:
    """Start watching: each hand-off that loses its context goes to *listener*."""
    global _listener, _tags  # noqa: PLW0603 - the switch every watch reads, and its queues
    _tags = weakref.WeakKeyDictionary()  # no tag from an earlier run is taken for a new one
    _listener = listener
    registry.add(LAYER, *_patches())


def uninstall() -> None:
    """Stop watching: the watches are taken out, and any left somewhere pass calls through."""
    global _listener  # noqa: PLW0603 - the switch every watch reads
    _listener = None
    registry.remove(LAYER)


def _patches() -> list[registry.Patch]:
    thread_fix = "threadline.Thread, or threadline.bind(target)"
    return [
        registry.Patch(
            concurrent.futures.ThreadPoolExecutor,
            "submit",
            functools.partial(_watch_submit, "ThreadPoolExecutor"),
        ),
        registry.Patch(
            concurrent.futures.ProcessPoolExecutor,
            "submit",
            functools.partial(_watch_submit, "ProcessPoolExecutor"),
        ),
        registry.Patch(
            threading.Thread,
            "start",
            functools.partial(_watch_start, "thread.start", "Thread", thread_fix),
        ),
        registry.Patch(
            multiprocessing.process.BaseProcess,
            "start",
            functools.partial(
                _watch_start, "process.start", "BaseProcess", "threadline.processes.Process"
            ),
        ),
        registry.Patch(subprocess.Popen, "__init__", _watch_popen),
        *(
            registry.Patch(cls, name, watch)
            for cls in (queue.Queue, asyncio.Queue)
            for name, watch in (("_put", _watch_put), ("_get", _watch_get))
        ),
        registry.Patch(logging, "_logRecordFactory", _watch_records),
    ]


# -- what carries the context ----------------------------------------------------------------


def request_id() -> str | None:
    """The request id of the current `threadline.request` value, if it has a str one."""
    value = request.get()
    found = value.get("request_id") if value is not None else None
    return found if isinstance(found, str) else None


def _in_scope() -> bool:
    """Whether there is context to lose here: a store value or a span."""
    context = get_current()
    return span_in(context) is not None or any(
        value is not None and key.startswith(STORE_KEY_PREFIX) for key, value in context.items()
    )


def _carries(obj: object) -> bool:
    """Whether *obj* (a callable, an executor, a thread) runs in its caller's context."""
    while isinstance(obj, functools.partial):
        if _carries(obj.func):
            return True
        obj = obj.func
    if isinstance(getattr(obj, "__self__", None), contextvars.Context):
        return True  # a Context.run
    if getattr(obj, CARRIES_CONTEXT, False):
        return True  # threadline's classes, instrument()'s wrappers
    # threadline.bind's wrappers (their code is threadline's); a C function cannot log
    code = getattr(obj, "__code__", None)
    if code is not None and code.co_filename.startswith(_hooks.PACKAGE_DIR):
        return True
    return isinstance(obj, types.BuiltinFunctionType)


def _caller_file() -> str:
    """The file of the code that called the watch that calls this."""
    return sys._getframe(2).f_code.co_filename


# OpenTelemetry's threading instrumentation, a wrapt proxy over the watches, carries the
# context itself: its submit hands over a job that attaches the submitter's context, its
# Thread.start keeps the starter's context for the thread's run.
_OPENTELEMETRY_THREADING = os.path.join("opentelemetry", "instrumentation", "threading", "")


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


# -- the watches -----------------------------------------------------------------------------


def _watch_submit(what: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original, updated=())
    def submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        listener = _listener
        if listener is None:
            return original(self, fn, *args, **kwargs)
        caller = _caller_file()
        by_carrier = caller.startswith(_hooks.PACKAGE_DIR) or _OPENTELEMETRY_THREADING in caller
        if not (by_carrier or _carries(self) or _carries(fn) or _carries(original)) and _in_scope():
            listener.report(
                "executor.submit",
                _hooks.location(1),
                f"{_name(fn)} was given to a plain {what}.submit inside a scope and runs "
                f"without its context: use threadline.{what}, or threadline.bind({_name(fn)})",
            )
        return original(self, fn, *args, **kwargs)

    return submit


def _watch_start(
    cause: str, kind: str, fix: str, original: Callable[[Any], None]
) -> Callable[[Any], None]:
    @functools.wraps(original, updated=())
    def start(self: Any) -> None:
        listener = _listener
        if listener is None:
            return original(self)
        caller = _caller_file()
        by_library = _hooks.in_library(caller) or _OPENTELEMETRY_THREADING in caller
        # a patch over this one may carry the context in the thread's own run (an attribute)
        run = getattr(self, "__dict__", {}).get("run")
        # a target bound already (threadline.bind's result, a Snapshot's run) carries it
        target = getattr(self, "_target", None)
        if (
            not (by_library or _carries(self) or _carries(original) or _carries(run))
            and not (target is not None and _carries(target))
            and _in_scope()
        ):
            listener.report(
                cause,
                _hooks.location(1),
                f"a plain {kind} was started inside a scope and runs without its "
                f"context: use {fix}",
            )
        return original(self)

    return start


_POPEN_ENV_POSITION = 9  # Popen(args, bufsize, executable, stdin, stdout, stderr,
#                                 preexec_fn, close_fds, shell, cwd, env, ...)


def _watch_popen(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original, updated=())
    def __init__(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:  # noqa: N807
        listener = _listener
        env = kwargs.get("env")
        if env is None and len(rest) > _POPEN_ENV_POSITION:
            env = rest[_POPEN_ENV_POSITION]
        # called through subprocess.run and friends too: the environment decides, not the caller
        if (
            listener is not None
            and not _carries(original)
            and _in_scope()
            and not _has_carrier(env)
        ):
            listener.report(
                "subprocess.start",
                _hooks.location(1),
                "a child process was started inside a scope with an environment without "
                "the context: use threadline.subprocess.run / Popen, or "
                "env=threadline.subprocess.child_env()",
            )
        original(self, args, *rest, **kwargs)

    return __init__


def _has_carrier(env: Any) -> bool:
    """Whether a child given *env* (None: this process's) gets a trace or the stores."""
    source = os.environ if env is None else env
    return any(name in source for name in _CARRIER_NAMES)


_CARRIER_NAMES = tuple(
    spelled
    for field in (TRACEPARENT, BAGGAGE)
    for spelled in (ENV_NAMES[field], ENV_NAMES[field].encode())
)


def _watch_put(put: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """Tag each item a scope puts on a FIFO queue, for `_watch_get` to check who takes it."""

    @functools.wraps(put, updated=())
    def _put(self: Any, item: Any) -> None:
        put(self, item)
        if _listener is None:
            return
        tag = None
        if _in_scope() and not _put_by_library() and not _carries_its_context(item):
            found = request_id()
            tag = (found, _hooks.location(2)) if found is not None else None
        tags = _tags
        with _lock:  # the queue's own lock guards its deque, not this dict
            waiting = tags.get(self)
            if waiting is None:  # the items already queued were put before the watch
                # queue.Queue's lock is held here (its qsize() would wait on it)
                size = self._qsize() if hasattr(self, "_qsize") else self.qsize()
                waiting = tags[self] = collections.deque([None] * (size - 1))
        waiting.append(tag)

    return _put


def _watch_get(get: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Check that whoever takes an item a scope put runs in that request."""

    @functools.wraps(get, updated=())
    def _get(self: Any) -> Any:
        item = get(self)
        listener, waiting = _listener, _tags.get(self)
        tag = waiting.popleft() if waiting else None
        if listener is not None and tag is not None and request_id() != tag[0]:
            listener.report(
                "queue.consumer",
                tag[1],
                f"an item put here inside request {tag[0]!r} is taken by a consumer that runs "
                "without that request's context: put a threadline.snapshot() with the item "
                "and run its work in it (or make the consumer inside the request)",
            )
        return item

    return _get


_QUEUE_FILES = (queue.__file__, asyncio.queues.__file__)


def _carries_its_context(item: Any) -> bool:
    """Whether a queued item brings its context along: a snapshot, or a bound callable."""
    parts = item if isinstance(item, (tuple, list)) else (item,)
    return any(isinstance(part, Snapshot) or _carries(part) for part in parts)


def _put_by_library() -> bool:
    """Whether the put was made by a library (a pool's own queues), not the application."""
    frame: Any = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename in _QUEUE_FILES:
        frame = frame.f_back
    return frame is None or _hooks.in_library(frame.f_code.co_filename)


def _watch_records(previous: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        listener = _listener
        if listener is not None and not record.name.startswith("threadline"):
            listener.record(record)
        return record

    return factory
