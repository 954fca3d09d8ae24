"""OpenTelemetry SDK helpers: set-up from the ``OTEL_*`` settings, store values on every signal.

This module imports the OpenTelemetry SDK; ``import threadline`` does not.
"""

from __future__ import annotations

from ._core.settings import CONFIGURED_ENV as CONFIGURED_ENV
from ._core.settings import DEFAULT_TRACES_FILE as DEFAULT_TRACES_FILE
from ._core.settings import TRACES_FILE_ENV as TRACES_FILE_ENV
from ._telemetry.logs import StoreLogRecordProcessor as StoreLogRecordProcessor
from ._telemetry.metrics import StoreMeterProvider as StoreMeterProvider
from ._telemetry.pipeline import REQUEST_ATTRIBUTES as REQUEST_ATTRIBUTES
from ._telemetry.pipeline import StoreSpanProcessor as StoreSpanProcessor
from ._telemetry.pipeline import configure as configure
from ._telemetry.pipeline import shutdown as shutdown
from ._telemetry.spans import current_trace_ids as current_trace_ids

__all__ = [
    "CONFIGURED_ENV",
    "DEFAULT_TRACES_FILE",
    "REQUEST_ATTRIBUTES",
    "TRACES_FILE_ENV",
    "StoreLogRecordProcessor",
    "StoreMeterProvider",
    "StoreSpanProcessor",
    "configure",
    "current_trace_ids",
    "shutdown",
]
