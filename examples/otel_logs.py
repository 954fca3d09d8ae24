"""OpenTelemetry's logs signal: log records with trace ids and the request's values.

docs/exporting.md#the-logs-signal. configure() sets up the logs pipeline that
OTEL_LOGS_EXPORTER names; here the console exporter, which prints each
record as JSON (run it with OTEL_LOGS_EXPORTER=otlp and
OTEL_EXPORTER_OTLP_ENDPOINT to send them to a Collector instead). With
OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN=logs a failed job's exception is a log
record too.
"""

from __future__ import annotations

import logging
import os

from opentelemetry import trace

import threadline as tl
from threadline.tracing import configure

# The defaults of this example; settings given to it win.
os.environ.setdefault("OTEL_LOGS_EXPORTER", "console")
os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
os.environ.setdefault("OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN", "logs")


def charge(order: int) -> None:
    raise ValueError(f"card declined for order {order}")


logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
configure(
    service_name="orders",
    log_attributes={"request_id": "request.id", "user_id": "enduser.id", "tenant": "tenant.id"},
)
with (
    trace.get_tracer("example").start_as_current_span("POST /orders"),
    tl.request.scope(request_id="r1", user_id=42, tenant="acme"),
):
    logging.getLogger("orders").info("taking order 7")
    with tl.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(charge, 7).exception()  # the job's span fails: the exception is a record
