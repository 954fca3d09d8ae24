"""The carrier: context out as W3C text, and strictly back in (docs/carrier.md)."""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import threadline as tl
from threadline import diagnostics

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("example")

with (
    tracer.start_as_current_span("client"),
    tl.request.scope(request_id="r 1+2", user_id=42, roles=["admin", "dev"]),
):
    headers: dict[str, str] = {}
    tl.inject(headers)  # e.g. the headers of an outgoing request
for name, value in headers.items():
    print(f"{name}: {value}")

# The other side: a strict parse, and a Snapshot to run the work in.
arrived = tl.extract(headers)
with arrived, tracer.start_as_current_span("server") as span:
    print("server sees:", dict(tl.request.get() or {}))
    print("same trace:", f"{span.get_span_context().trace_id:032x}" in headers["traceparent"])

# Bad input is dropped whole, counted and reported; it never raises.
tl.extract({"traceparent": "00-NOT-A-VALID-TRACEPARENT-01", "baggage": "k=%zz"})
print("dropped:", diagnostics.drop_counts())
