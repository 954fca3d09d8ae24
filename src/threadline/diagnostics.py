"""Counters and rate-limited warnings for context that threadline had to drop.

Context that arrives from outside (headers, environment, IPC) and fails the
strict parse is dropped whole; each drop is counted here under a reason such
as ``"traceparent.invalid"`` and reported by a warning on the ``threadline``
logger at most once per `WARNING_INTERVAL` seconds per reason.

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
import threading
import time

from ._text import escape_controls

__all__ = ["WARNING_INTERVAL", "drop_counts", "record_drop", "reset_drop_counts"]

WARNING_INTERVAL = 10.0
"""Seconds between two warnings for the same reason; drops in between are only counted."""

_logger = logging.getLogger("threadline")
_lock = threading.Lock()
_counts: dict[str, int] = {}
_last_warning: dict[str, float] = {}
_unreported: dict[str, int] = {}


def drop_counts() -> dict[str, int]:
    """Return how many times context was dropped since start (or the last reset), by reason."""
    with _lock:
        return dict(_counts)


def reset_drop_counts() -> None:
    """Set every counter back to zero and let the next drop of each reason warn at once."""
    with _lock:
        _counts.clear()
        _last_warning.clear()
        _unreported.clear()


def record_drop(reason: str, detail: str, count: int = 1) -> None:
    """Count *count* drops under *reason*; warn unless this reason warned in the last interval."""
    now = time.monotonic()
    with _lock:
        _counts[reason] = _counts.get(reason, 0) + count
        last = _last_warning.get(reason)
        if last is not None and now - last < WARNING_INTERVAL:
            _unreported[reason] = _unreported.get(reason, 0) + 1
            return
        _last_warning[reason] = now
        suppressed = _unreported.pop(reason, 0)
    more = f" ({suppressed} more since the last warning)" if suppressed else ""
    _logger.warning("threadline dropped context (%s): %s%s", reason, escape_controls(detail), more)
