"""Drop counters and rate-limited warnings; `threadline.diagnostics` is their public face."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from .text import escape_controls

__all__ = ["METRIC_NAME", "WARNING_INTERVAL", "drop_counts", "record_drop", "reset_drop_counts"]

WARNING_INTERVAL = 10.0
"""Seconds between two warnings for the same reason; drops in between are only counted."""
METRIC_NAME = "threadline.drops"
"""The OpenTelemetry counter of every drop, with the attribute ``reason``."""

_logger = logging.getLogger("threadline")
_lock = threading.Lock()
_counts: dict[str, int] = {}
_last_warning: dict[str, float] = {}
_unreported: dict[str, int] = {}
_counter: Any = None


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


def record_drop(reason: str, detail: str, count: int = 1, *, warn: bool = True) -> None:
    """Count *count* drops under *reason*; warn unless this reason warned in the last interval.

    *warn* False: only count (the caller reports it its own way).
    """
    now = time.monotonic()
    _add_to_metric(reason, count)
    with _lock:
        _counts[reason] = _counts.get(reason, 0) + count
        if not warn:
            return
        last = _last_warning.get(reason)
        if last is not None and now - last < WARNING_INTERVAL:
            _unreported[reason] = _unreported.get(reason, 0) + 1
            return
        _last_warning[reason] = now
        suppressed = _unreported.pop(reason, 0)
    more = f" ({suppressed} more since the last warning)" if suppressed else ""
    what = "could not export spans" if reason.startswith("export.") else "dropped context"
    _logger.warning("threadline %s (%s): %s%s", what, reason, escape_controls(detail), more)


def _add_to_metric(reason: str, count: int) -> None:
    global _counter  # noqa: PLW0603 - made once, on the first drop
    if _counter is None:
        from opentelemetry import metrics  # noqa: PLC0415 - drops are rare; imports are not free

        # a proxy until the application sets a meter provider, a no-op if it never does
        _counter = metrics.get_meter("threadline").create_counter(
            METRIC_NAME,
            unit="{drop}",
            description="Context dropped as invalid and spans not exported, by reason",
        )
    _counter.add(count, {"reason": reason})


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
