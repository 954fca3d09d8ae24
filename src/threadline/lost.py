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
- ``"bleed"``: a request, task or job that began with *another* request's
  context still in place: the request id of a request that had ended, a
  store value such a request set, or a span that had ended (one request's
  context bleeding into the next: a
  context attached and never detached, a cached ``contextvars.Context``
  reused, asyncio's CPython issue 140947 under uvicorn without
  ``--reset-contextvars``). The report names that request and where it
  began; every occurrence is also counted under the reason
  `BLEED_REASON` of `threadline.diagnostics.drop_counts`.

Each report is a `Report` in `reports`, and a warning on the logger
`LOGGER_NAME`. Hand-offs that carry the context (threadline's executors,
threads and processes, `threadline.bind`, `contextvars.Context.run`, anything
`threadline.instrument()` wraps, OpenTelemetry's threading instrumentation)
are never reported. While on, the detector wraps
``ThreadPoolExecutor.submit``, ``ProcessPoolExecutor.submit``,
``Thread.start``, ``BaseProcess.start``, ``subprocess.Popen``, the FIFO
queues' ``_put``/``_get`` and the log record factory, through the one patch
registry ``threadline.instrument()`` uses too: the two may be switched on and
off in any order, and `disable` takes out only the detector's wrappers.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ._core import lifecycle as _hooks
from ._core.checks import require_bool
from ._core.context import STORE_KEY_PREFIX
from ._core.drops import record_drop
from ._patching import watchers
from ._patching.watchers import request_id as _request_id
from .hooks import track_tasks, tracking, untrack_tasks

__all__ = [
    "BLEED_REASON",
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

BLEED_REASON = "context.bleed"
"""The reason every bleed is counted under (`threadline.diagnostics.drop_counts`)."""

_logger = logging.getLogger(LOGGER_NAME)
_lock = threading.RLock()


@dataclass(frozen=True)
class Report:
    """One place where context is (or will be) lost, and why.

    Attributes:
        cause: ``"executor.submit"``, ``"thread.start"``, ``"process.start"``,
            ``"subprocess.start"``, ``"queue.consumer"``,
            ``"scope.hides"``, ``"log.sometimes_without"``, ``"outlived"`` or
            ``"bleed"``.
        location: ``"file:line"`` of the application code.
        message: what happened and the fix, in a sentence.
        request_id: the request current where it was seen, if any (for
            ``"bleed"``: the request whose context bled in).
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
    require_bool("log", log)
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
        _uninstall()
        loops = list(_state.loops)
        _state.loops.clear()
    for loop in loops:
        untrack_tasks(loop)


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
    require_bool("log", log)
    clear()
    enable(log=log)
    try:
        yield Detection()
    finally:
        disable()


def _report(cause: str, where: str, message: str, request_id: str | None = None) -> Report | None:
    with _lock:
        if (cause, where) in _state.seen:
            return None
        _state.seen.add((cause, where))
        found = Report(cause, where, message, request_id or _request_id())
        _state.reports.append(found)
        log = _state.log
    if log:
        _logger.warning("context lost (%s) at %s: %s", cause, where, message)
    return found


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


_BEGAN = {
    "http.server": "an HTTP request",
    "message.process": "a message's processing",
    "scope": "a request scope",
}


def _bled(resource: _hooks.Resource, request_id: str | None, held: str) -> None:
    record_drop(BLEED_REASON, "", warn=False)
    if resource.request:
        kind = _BEGAN.get(resource.type, f"a {resource.type}")
    else:
        kind = f"a {resource.type}"
    _report(
        "bleed",
        resource.location,
        f"{kind} began here in a context that still held {held}: one request's context "
        "bled into the next. Some code attached a context and never detached it, or reused "
        "one contextvars.Context for several requests (under uvicorn: --reset-contextvars)",
        request_id,
    )


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


def _install() -> None:
    watchers.install(watchers.Listener(_report, _count_log))
    _hooks.watchers.scope = _scope_entered
    _hooks.watchers.outlived = _outlived
    _hooks.forget_requests()
    _hooks.watchers.bleed = _bled
    _hooks.set_watchers(+1)


def _uninstall() -> None:
    _hooks.set_watchers(-1)
    _hooks.watchers.scope = None
    _hooks.watchers.outlived = None
    _hooks.watchers.bleed = None
    _hooks.forget_requests()
    watchers.uninstall()
