"""Counters and rate-limited warnings for context that threadline had to drop.

Context that arrives from outside (headers, environment, IPC) and fails the
strict parse is dropped whole; each drop is counted here under a reason such
as ``"traceparent.invalid"`` and reported by a warning on the ``threadline``
logger at most once per `WARNING_INTERVAL` seconds per reason. A forked
child starts with its own counters at zero.

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
import os
import threading
import time

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
    _logger.warning("threadline dropped context (%s): %s%s", reason, detail, more)


def _start_afresh_after_fork() -> None:
    # A thread of the parent may have held the lock at the fork: the child
    # gets a new one, and counts its own drops from zero.
    global _lock  # noqa: PLW0603 - the child's own
    _lock = threading.Lock()
    _counts.clear()
    _last_warning.clear()
    _unreported.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_start_afresh_after_fork)
