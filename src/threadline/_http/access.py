"""A server's log lines about its requests: the access line, and the unhandled exception.

Text from the request (the method, the path) is escaped (`escape_controls`):
no control character from outside reaches a line raw.
"""

from __future__ import annotations

import logging
import sys
import time

from .._core.text import escape_controls

__all__ = ["log_access", "log_unhandled"]


def log_access(
    logger: logging.Logger,
    *,
    method: str,
    path: str,
    status: int | None,
    started: float,
    route: str | None,
) -> None:
    """Write the access line ``{method} {path} {status} {duration}ms`` at INFO on *logger*.

    The record also has ``http_status``, ``duration_ms`` and ``route``;
    *started* is the request's start (`time.time`). The status shows as
    ``-`` for a request that got no response (the client went away).
    """
    duration_ms = (time.time() - started) * 1000
    args = (
        method if method.isprintable() else escape_controls(method),
        path if path.isprintable() else escape_controls(path),
        status if status is not None else "-",
        duration_ms,
    )
    if type(logger) is logging.Logger and logging._srcfile:
        # What Logger.info does, but the record's place (here) is known: no walk up the
        # stack to find it, a sixth of the line's cost; and the three fields set at once,
        # where makeRecord checks each of an extra's keys against the record's.
        if logger.isEnabledFor(logging.INFO):
            line = sys._getframe().f_lineno  # this line, where findCaller would stop
            record = logging.getLogRecordFactory()(
                logger.name, logging.INFO, _FILE, line, _FORMAT, args, None, "log_access", None
            )
            fields = record.__dict__
            fields["http_status"] = status
            fields["duration_ms"] = round(duration_ms, 3)
            fields["route"] = route
            logger.handle(record)
        return
    extra = {"http_status": status, "duration_ms": round(duration_ms, 3), "route": route}
    logger.info(_FORMAT, *args, extra=extra)


_FORMAT = "%s %s %s %.1fms"
_FILE = log_access.__code__.co_filename


def log_unhandled(logger: logging.Logger, method: str, path: str, error: BaseException) -> None:
    """Log ``unhandled exception in {method} {path}`` at ERROR on *logger*, with *error*."""
    logger.error(
        "unhandled exception in %s %s",
        escape_controls(method),
        escape_controls(path),
        exc_info=error,
    )
