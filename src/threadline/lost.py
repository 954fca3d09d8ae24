"""The loss detector: each hand-off that will run without its request's context, once per place.

Off by default (it is a debugging aid); `enable` turns it on, `disable` off,
`detecting` does both around a block. While on, it reports, once per code
location and cause:

- ``"executor.submit"``: a job given to a plain `concurrent.futures` executor
  (``submit``, ``map``, ``loop.run_in_executor``) inside a scope; it runs
  without the submitter's context.
- ``"thread.start"``: a plain `threading.Thread` started inside a scope.
- ``"process.start"``: a plain `multiprocessing.Process` started inside a scope.
- ``"subprocess.start"``: a child process started inside a scope with an
  environment that lacks the context (``subprocess.Popen``, and so
  ``subprocess.run`` and ``asyncio.create_subprocess_*``).
- ``"queue.consumer"``: an item put on a `queue.Queue` or `asyncio.Queue`
  inside a scope and taken off it by a consumer that runs without that
  request's context (a thread or task made before the scope); reported at the
  ``put``.
- ``"scope.hides"``: a nested ``store.scope()`` that hides keys of the outer
  value, where ``merge()`` was probably meant.
- ``"log.sometimes_without"``: a logging call site that ran both with a
  request id and without one; the report counts both.
- ``"outlived"``: a task or job still running after the request that made it
  ended (fire-and-forget), with where it was made.

Each report is a `Report` in `reports`, and a warning on the logger
`LOGGER_NAME`. Hand-offs that carry the context (threadline's executors,
threads and processes, `threadline.bind`, `contextvars.Context.run`, anything
`threadline.instrument()` wraps) are never reported. While on, the detector
wraps ``ThreadPoolExecutor.submit``, ``ProcessPoolExecutor.submit``,
``Thread.start``, ``BaseProcess.start``, ``subprocess.Popen``, the FIFO
queues' ``_put``/``_get`` and the log record factory, and `disable` puts each
back.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import dataclasses
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ._core import lifecycle as _hooks
from ._core.context import STORE_KEY_PREFIX, get_current, span_in
from ._core.snapshot import Snapshot
from ._core.stores import request
from .hooks import track_tasks, tracking, untrack_tasks

__all__ = [
    "LOGGER_NAME",
    "Detection",
    "Report",
    "clear",
    "detecting",
    "disable",
    "enable",
    "is_enabled",
    "reports",
]

LOGGER_NAME = "threadline.lost"
"""The logger every report is written to, at WARNING."""

_logger = logging.getLogger(LOGGER_NAME)
_lock = threading.RLock()


@dataclass(frozen=True)
class Report:
    """One place where context is (or will be) lost, and why.

    Attributes:
        cause: ``"executor.submit"``, ``"thread.start"``, ``"process.start"``,
            ``"subprocess.start"``, ``"queue.consumer"``,
            ``"scope.hides"``, ``"log.sometimes_without"`` or ``"outlived"``.
        location: ``"file:line"`` of the application code.
        message: what happened and the fix, in a sentence.
        request_id: the request current where it was seen, if any.
        with_request: for ``"log.sometimes_without"``: records logged there
            with a request id (so far).
        without_request: and without one.

    .. versionadded:: 0.1
    """

    cause: str
    location: str
    message: str
    request_id: str | None = None
    with_request: int = 0
    without_request: int = 0

    @property
    def filename(self) -> str:
        """The file part of `location`."""
        return self.location.rpartition(":")[0]

    @property
    def lineno(self) -> int:
        """The line part of `location` (0 when unknown)."""
        line = self.location.rpartition(":")[2]
        return int(line) if line.isdigit() else 0


class _State:
    enabled = 0
    log = True
    reports: list[Report] = []  # noqa: RUF012 - the one instance's
    seen: set[tuple[str, str]] = set()  # noqa: RUF012 - the one instance's
    sites: dict[tuple[str, int], list[int]] = {}  # noqa: RUF012 - [with, without, report index + 1]
    undo: list[Callable[[], None]] = []  # noqa: RUF012 - the one instance's
    loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()  # noqa: RUF012 - ditto


_state = _State()


def enable(*, log: bool = True) -> None:
    """Start detecting (calls nest: each `enable` needs its `disable`).

    Args:
        log: also write each report to the logger `LOGGER_NAME` at WARNING.

    Tasks are watched on the running event loop, if there is one, and on
    each loop where a scope is entered later (`threadline.hooks.track_tasks`,
    until `disable`). Log call sites are counted for the records that pass
    their logger's level.
    """
    with _lock:
        _state.enabled += 1
        _state.log = log
        if _state.enabled == 1:
            _install()
    loop = asyncio._get_running_loop()
    if loop is not None and loop not in _state.loops:
        _track(loop)


def _track(loop: asyncio.AbstractEventLoop) -> None:
    """Watch the tasks of *loop* until `disable` (a loop tracked already stays the user's)."""
    with _lock:
        if loop in _state.loops or tracking(loop):
            return
        _state.loops.add(loop)
    track_tasks(loop)


def disable() -> None:
    """Stop detecting (after as many calls as `enable` had); the reports stay."""
    with _lock:
        if _state.enabled == 0:
            return
        _state.enabled -= 1
        if _state.enabled:
            return
        undo, _state.undo = _state.undo, []
        loops = list(_state.loops)
        _state.loops.clear()
    for loop in loops:
        untrack_tasks(loop)
    for step in reversed(undo):
        step()


def is_enabled() -> bool:
    """Whether the detector runs now."""
    return _state.enabled > 0


def reports() -> list[Report]:
    """Return every report since the start (or the last `clear`), oldest first.

    A ``"log.sometimes_without"`` report carries the counts as they are now.
    """
    with _lock:
        found = list(_state.reports)
        for with_id, without, index in _state.sites.values():
            if index:
                found[index - 1] = dataclasses.replace(
                    found[index - 1], with_request=with_id, without_request=without
                )
        return found


def clear() -> None:
    """Forget every report and every place already reported, so each may be reported again."""
    with _lock:
        _state.reports.clear()
        _state.seen.clear()
        _state.sites.clear()


class Detection:
    """What `detecting` yields: the reports made since the block began."""

    def reports(self) -> list[Report]:
        """Return the reports since the block began (it cleared the earlier ones)."""
        return reports()


@contextmanager
def detecting(*, log: bool = True) -> Iterator[Detection]:
    """Detect inside a ``with`` block, from a fresh start: `clear`, `enable`, then `disable`.

    What a test harness uses: ``with detecting() as found: ...; found.reports()``.
    """
    clear()
    enable(log=log)
    try:
        yield Detection()
    finally:
        disable()


def _report(cause: str, where: str, message: str) -> Report | None:
    with _lock:
        if (cause, where) in _state.seen:
            return None
        _state.seen.add((cause, where))
        found = Report(cause, where, message, _request_id())
        _state.reports.append(found)
        log = _state.log
    if log:
        _logger.warning("context lost (%s) at %s: %s", cause, where, message)
    return found


def _request_id() -> str | None:
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
    if getattr(obj, "_threadline_carries_context", False):
        return True  # threadline's classes, instrument()'s wrappers
    # threadline.bind's wrappers (their code is threadline's); a C function cannot log
    code = getattr(obj, "__code__", None)
    if code is not None and code.co_filename.startswith(_hooks.PACKAGE_DIR):
        return True
    return isinstance(obj, types.BuiltinFunctionType)


def _caller_file() -> str:
    """The file of the code that called the wrapper that calls this."""
    return sys._getframe(2).f_code.co_filename


def _watch_submit(cls: type[concurrent.futures.Executor], what: str) -> None:
    original = cls.__dict__["submit"]

    @functools.wraps(original)
    def submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        by_threadline = _caller_file().startswith(_hooks.PACKAGE_DIR)
        if not (by_threadline or _carries(self) or _carries(fn) or _carries(original)) and (
            _in_scope()
        ):
            _report(
                "executor.submit",
                _hooks.location(1),
                f"{_name(fn)} was given to a plain {what}.submit inside a scope and runs "
                f"without its context: use threadline.{what}, or threadline.bind({_name(fn)})",
            )
        return original(self, fn, *args, **kwargs)

    cls.submit = submit  # type: ignore[method-assign]
    _state.undo.append(functools.partial(setattr, cls, "submit", original))


def _watch_start(cls: type[Any], cause: str, fix: str) -> None:
    original = cls.__dict__["start"]

    @functools.wraps(original)
    def start(self: Any) -> None:
        by_library = _hooks.in_library(_caller_file())
        # a patch over this one may carry the context in the thread's own run (an attribute)
        run = getattr(self, "__dict__", {}).get("run")
        if not (by_library or _carries(self) or _carries(original) or _carries(run)) and (
            _in_scope()
        ):
            _report(
                cause,
                _hooks.location(1),
                f"a plain {cls.__name__} was started inside a scope and runs without its "
                f"context: use {fix}",
            )
        original(self)

    cls.start = start
    _state.undo.append(functools.partial(setattr, cls, "start", original))


def _scope_entered(key: str, outer: Any, value: Any, merge: bool) -> None:
    loop = asyncio._get_running_loop()
    if loop is not None and loop not in _state.loops:
        _track(loop)
    if merge or value is None or not outer:
        return
    hidden = set(outer) - set(value)
    if not hidden:
        return
    name = key.removeprefix(STORE_KEY_PREFIX)
    if name == "request" and value.get("request_id") not in (None, outer.get("request_id")):
        return  # a new request: hiding the outer one is the point
    _report(
        "scope.hides",
        _hooks.location(0),
        f"a nested {name}.scope() hides {sorted(hidden)} of the outer value; "
        f"use {name}.merge() to add to it",
    )


def _outlived(ended: _hooks.Resource, running: list[_hooks.Resource]) -> None:
    for resource in running:
        _report(
            "outlived",
            resource.location,
            f"a {resource.type} made here still runs after its request "
            f"{ended.request_id!r} (begun at {ended.location}) ended: what it logs or "
            "traces goes under a finished request; await it before the request ends",
        )


def _watch_logging() -> None:
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        # it may stay in the chain after disable (a factory set over it): count only while on
        if _state.enabled and not record.name.startswith("threadline"):
            _count_log(record)
        return record

    logging.setLogRecordFactory(factory)

    def undo() -> None:
        if logging.getLogRecordFactory() is factory:
            logging.setLogRecordFactory(previous)

    _state.undo.append(undo)


def _count_log(record: logging.LogRecord) -> None:
    site = (record.pathname, record.lineno)
    has_id = _request_id() is not None
    with _lock:
        counts = _state.sites.setdefault(site, [0, 0, 0])
        counts[0 if has_id else 1] += 1
        if counts[2] or not (counts[0] and counts[1]):
            return
    where = f"{record.pathname}:{record.lineno}"
    found = _report(
        "log.sometimes_without",
        where,
        "this log call ran with a request id and without one: the path without it "
        "reached here through a hand-off that lost the context (see the other reports) "
        "or outside any request",
    )
    if found is not None:
        with _lock:
            counts[2] = _state.reports.index(found) + 1


def _watch_popen() -> None:
    original = subprocess.Popen.__dict__["__init__"]

    @functools.wraps(original)
    def __init__(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:  # noqa: N807
        env = kwargs.get("env")
        if env is None and len(rest) > _POPEN_ENV_POSITION:
            env = rest[_POPEN_ENV_POSITION]
        # called through subprocess.run and friends too: the environment decides, not the caller
        if not _carries(original) and _in_scope() and not _has_carrier(env):
            _report(
                "subprocess.start",
                _hooks.location(1),
                "a child process was started inside a scope with an environment without "
                "the context: use threadline.subprocess.run / Popen, or "
                "env=threadline.subprocess.child_env()",
            )
        original(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = __init__  # type: ignore[method-assign]
    _state.undo.append(functools.partial(setattr, subprocess.Popen, "__init__", original))


_POPEN_ENV_POSITION = 9  # Popen(args, bufsize, executable, stdin, stdout, stderr,
#                                 preexec_fn, close_fds, shell, cwd, env, ...)


def _has_carrier(env: Any) -> bool:
    """Whether a child given *env* (None: this process's) gets a trace or the stores."""
    names = ("TRACEPARENT", "BAGGAGE", b"TRACEPARENT", b"BAGGAGE")
    source = os.environ if env is None else env
    return any(name in source for name in names)


def _watch_queue(cls: type[Any]) -> None:
    """Tag each item a scope puts on a FIFO queue; check the context of whoever takes it."""
    put, get = cls.__dict__["_put"], cls.__dict__["_get"]
    tags: weakref.WeakKeyDictionary[Any, collections.deque[tuple[str, str] | None]]
    tags = weakref.WeakKeyDictionary()

    def _put(self: Any, item: Any) -> None:
        put(self, item)
        request_id = None
        if _in_scope() and not _put_by_library() and not _carries_its_context(item):
            request_id = _request_id()
        tag = (request_id, _hooks.location(2)) if request_id is not None else None
        with _lock:  # the queue's own lock guards its deque, not this dict
            waiting = tags.get(self)
            if waiting is None:  # the items already queued were put before the watch
                # queue.Queue's lock is held here (its qsize() would wait on it)
                size = self._qsize() if hasattr(self, "_qsize") else self.qsize()
                waiting = tags[self] = collections.deque([None] * (size - 1))
        waiting.append(tag)

    def _get(self: Any) -> Any:
        item = get(self)
        waiting = tags.get(self)
        tag = waiting.popleft() if waiting else None
        if tag is not None and _request_id() != tag[0]:
            _report(
                "queue.consumer",
                tag[1],
                f"an item put here inside request {tag[0]!r} is taken by a consumer that runs "
                "without that request's context: put a threadline.snapshot() with the item "
                "and run its work in it (or make the consumer inside the request)",
            )
        return item

    cls._put, cls._get = _put, _get
    _state.undo.append(functools.partial(_restore_queue, cls, put, get))


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


def _restore_queue(cls: type[Any], put: Any, get: Any) -> None:
    cls._put, cls._get = put, get


def _install() -> None:
    _watch_submit(concurrent.futures.ThreadPoolExecutor, "ThreadPoolExecutor")
    _watch_submit(concurrent.futures.ProcessPoolExecutor, "ProcessPoolExecutor")
    _watch_start(threading.Thread, "thread.start", "threadline.Thread, or threadline.bind(target)")
    _watch_start(
        multiprocessing.process.BaseProcess, "process.start", "threadline.processes.Process"
    )
    _watch_popen()
    _watch_queue(queue.Queue)
    _watch_queue(asyncio.Queue)
    _watch_logging()
    _hooks.watchers.scope = _scope_entered
    _hooks.watchers.outlived = _outlived
    _hooks.set_watchers(+1)
    _state.undo.append(_uninstall_watchers)


def _uninstall_watchers() -> None:
    _hooks.set_watchers(-1)
    _hooks.watchers.scope = None
    _hooks.watchers.outlived = None


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
