"""Counters and rate-limited warnings for what threadline had to drop.

Context that arrives from outside (headers, environment, IPC) and fails the
strict parse is dropped whole; each drop is counted here under a reason such
as ``"traceparent.invalid"`` and reported by a warning on the ``threadline``
logger at most once per `WARNING_INTERVAL` seconds per reason. Spans that
could not be exported are counted the same way, under ``export.*`` reasons,
and reported as lost spans. Every count is also added to the OpenTelemetry
counter `METRIC_NAME` (attribute ``reason``), which a meter provider, when
the application sets one, exports like any other metric. A forked child
starts with its own counters at zero.

.. versionadded:: 0.1
"""

from __future__ import annotations

from ._core.drops import METRIC_NAME as METRIC_NAME
from ._core.drops import WARNING_INTERVAL as WARNING_INTERVAL
from ._core.drops import drop_counts as drop_counts
from ._core.drops import record_drop as record_drop
from ._core.drops import reset_drop_counts as reset_drop_counts

__all__ = [
    "METRIC_NAME",
    "WARNING_INTERVAL",
    "drop_counts",
    "record_drop",
    "reset_drop_counts",
]
