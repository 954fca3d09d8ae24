"""JSON log lines with request, user, trace and span ids, set up by dictConfig (docs/logging.md)."""

from __future__ import annotations

import logging
import logging.config

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import threadline as tl

logging.config.dictConfig(
    {
        "version": 1,
        "filters": {"context": {"()": "threadline.logging.ContextFilter"}},
        "formatters": {"json": {"()": "threadline.logging.JSONFormatter"}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "filters": ["context"],
                "formatter": "json",
            }
        },
        "root": {"level": "INFO", "handlers": ["stdout"]},
    }
)
trace.set_tracer_provider(TracerProvider())
log = logging.getLogger("orders")

log.info("starting up")  # outside any request: placeholders
with (
    trace.get_tracer("example").start_as_current_span("GET /orders"),
    tl.request.scope(request_id="r1", user_id=42),
):
    log.info("listing orders", extra={"count": 3})
    with tl.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(log.info, "from the pool").result()
