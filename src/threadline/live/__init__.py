"""See context live: the requests in flight in this process, and what they left behind.

`serve` opens a read-only HTTP endpoint in the running service (a thread of
the standard library's ``http.server``; loopback addresses only, unless
``allow_remote=True``): ``/`` is a page, refreshing itself, with each request
in flight and the waterfall of the resources it made so far (tasks, pool
jobs, threads, processes, child programs, outgoing calls, messages), the
slowest first; ``/requests`` is the same as JSON (`snapshot`), and
``/leaks`` lists `leaks`. ``threadline top URL`` draws it in a terminal.
``THREADLINE_LIVE=127.0.0.1:PORT`` does the same without code, from the
first ``import threadline``. Each view served logs its URL once, at INFO on
`LOGGER_NAME`; `serving` returns it (port 0 asks for any free port).

It is off until asked, and costs nothing while off: no hook is enabled and
no thread runs. While on, one lifecycle hook (`threadline.hooks`) keeps the
tables, bounded: `MAX_REQUESTS` requests, `MAX_RESOURCES` resources each,
`MAX_LEAKS` leaks of each kind; what does not fit is counted
(``dropped_requests``, each request's ``dropped``). Nothing leaves the
machine unless the address given is not a loopback one.

`leaks` lists, on demand and once more at exit, what requests left behind:
work that outlived its request, exceptions nobody retrieved from a task or a
job, spans never ended, each with where it was made and its request, and
logs each on `LOGGER_NAME` in that request's context (its request id and
trace on the line), as TC39's AsyncContext runs a callback in the context
it was registered in.

.. versionadded:: 0.1
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading

from .._core.checks import require_bool
from .._core.context import attach, restore
from .._core.settings import LIVE_ENV, is_loopback, parse_address, read_settings
from .._core.text import escape_controls
from ._page import render_html
from ._server import LiveServer as LiveServer
from ._tracker import MAX_LEAKS as MAX_LEAKS
from ._tracker import MAX_REQUESTS as MAX_REQUESTS
from ._tracker import MAX_RESOURCES as MAX_RESOURCES
from ._tracker import Leak as Leak
from ._tracker import tracker

__all__ = [
    "LOGGER_NAME",
    "MAX_LEAKS",
    "MAX_REQUESTS",
    "MAX_RESOURCES",
    "REFRESH_SECONDS",
    "Leak",
    "LiveServer",
    "leaks",
    "serve",
    "serving",
    "snapshot",
]

LOGGER_NAME = "threadline.live"
"""The logger `leaks` writes to, at WARNING, each line in its request's context; and
where each view served says its URL, at INFO."""

REFRESH_SECONDS = 2
"""How often the page served at ``/`` reloads itself."""

_logger = logging.getLogger(LOGGER_NAME)
_lock = threading.Lock()
_servers: list[LiveServer] = []
_at_exit = False


def serve(address: str = "127.0.0.1:0", *, allow_remote: bool = False) -> LiveServer:
    """Serve the live view at *address* (``HOST:PORT``; port 0: any free one) until closed.

    Starts tracking the requests of this process (the running event loop's
    tasks too, and every loop a request begins on). Returns the
    `LiveServer` (its ``url``; ``close()`` or a ``with`` block stops it),
    and logs ``threadline.live: serving the live view at URL`` at INFO on
    `LOGGER_NAME`.

    Raises:
        ValueError: *address* is not ``HOST:PORT``, or is not a loopback
            address and *allow_remote* is not True (the view shows request
            ids, routes and code locations: keep it on the machine).
        OSError: the address cannot be bound (a port in use).
    """
    global _at_exit  # noqa: PLW0603 - registered once
    if not isinstance(address, str):
        raise TypeError(f"address must be a str 'HOST:PORT', not {type(address).__name__}")
    require_bool("allow_remote", allow_remote)
    host, port = parse_address(address)
    if not allow_remote and not is_loopback(host):
        raise ValueError(
            f"threadline.live.serve: {address!r} is not a loopback address; the view shows "
            "request ids, routes and code locations, so it serves on this machine only "
            "(127.0.0.1, ::1, localhost) unless you pass allow_remote=True"
        )
    with _lock:
        if not _servers:
            tracker.enable()
        try:
            server = LiveServer(
                host,
                port,
                allow_remote=allow_remote,
                page=_page,
                requests=snapshot,
                leaks=_leak_data,
                on_close=lambda: _closed(server),
            )
        except BaseException:
            if not _servers:
                tracker.disable()
            raise
        _servers.append(server)
        if not _at_exit:
            _at_exit = True
            atexit.register(_report_at_exit)
    _logger.info("threadline.live: serving the live view at %s", server.url)
    return server


def serving() -> LiveServer | None:
    """The live view served first of those still open (its ``url``), or None when none is.

    The one ``THREADLINE_LIVE`` started, when it did: with port 0 its
    ``url`` says which port it got.

    .. versionadded:: 0.1
    """
    with _lock:
        return _servers[0] if _servers else None


def _closed(server: LiveServer) -> None:
    with _lock:
        if server in _servers:
            _servers.remove(server)
            if not _servers:
                tracker.disable()


def snapshot() -> dict[str, object]:
    """The requests in flight now, slowest first, as plain data (what ``/requests`` serves).

    ``{"time": ..., "requests": [...], "dropped_requests": N, "limits": {...}}``;
    each request has its ``request_id``, ``type``, ``name`` (``"GET /items/{id}"``),
    ``location``, ``age`` (seconds), ``running``, ``dropped`` and ``resources``
    (each: ``type``, ``name``, ``location``, ``start`` after the request's,
    ``duration`` or None while it runs). Empty while no view is served.
    """
    return tracker.snapshot()


def leaks(*, log: bool = True) -> list[Leak]:
    """What requests left behind so far, oldest first in each kind (see `Leak`).

    Args:
        log: also log each on `LOGGER_NAME` at WARNING, in the context of
            the request it belongs to.

    Tracked while a view is served (and kept after it closes); at exit the
    same list is logged once more.
    """
    require_bool("log", log)
    found = tracker.leaks()
    if log:
        for leak, context in found:
            token = attach(context)
            try:
                _logger.warning("%s", _describe(leak))
            finally:
                restore(token)
    return [leak for leak, _ in found]


def _describe(leak: Leak) -> str:
    """One line saying what *leak* is, where it was made and its request (escaped)."""
    what = {
        "outlived": "still runs after its request ended",
        "unretrieved": "failed and nobody retrieved its exception",
        "unended": "was started and never ended",
    }[leak.kind]
    began = f" (begun at {leak.request_location})" if leak.request_location is not None else ""
    request = (
        f"request {escape_controls(repr(leak.request_id))}{began}"
        if leak.request_id is not None or leak.request_location is not None
        else "no request"
    )
    detail = f": {escape_controls(leak.detail)}" if leak.detail else ""
    return (
        f"threadline: a {escape_controls(leak.what)} made at {leak.location} {what}{detail}; "
        f"it belonged to {request}"
    )


def _leak_data() -> list[dict[str, object]]:
    return [
        {
            "kind": leak.kind,
            "what": leak.what,
            "location": leak.location,
            "request_id": leak.request_id,
            "request_location": leak.request_location,
            "detail": leak.detail,
        }
        for leak in leaks(log=False)
    ]


def _page() -> str:
    from ._page import read_snapshot  # noqa: PLC0415 - the same checked shape top draws

    return render_html(read_snapshot(snapshot()), refresh=REFRESH_SECONDS)


def _report_at_exit() -> None:
    leaks(log=True)


def _from_environment() -> LiveServer | None:
    """Serve at `LIVE_ENV`'s address, if it names one, in the main process only.

    A worker process of a pool, whose environment came from its parent,
    serves nothing; an address that cannot be bound is a warning, and off.
    """
    address = read_settings().live_address
    process = sys.modules.get("multiprocessing.process")
    if address is None or (process is not None and process.parent_process() is not None):
        return None
    host, port = address
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        return serve(shown)
    except OSError as exc:
        logging.getLogger("threadline").warning(
            "%s=%s: the live view cannot serve there (%s); it is off",
            LIVE_ENV,
            shown,
            escape_controls(exc.strerror or str(exc)),
        )
        return None
