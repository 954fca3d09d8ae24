"""OpenTelemetry's metrics signal: data points carrying the request's tenant.

docs/exporting.md#the-metrics-signal. configure() sets up the metrics
pipeline that OTEL_METRICS_EXPORTER names; here the console exporter, which
prints the data points as JSON at exit (run it with OTEL_METRICS_EXPORTER=otlp
and OTEL_EXPORTER_OTLP_ENDPOINT to send them to a Collector instead). With
metric_attributes, each measurement made in a request carries the chosen
store values: here the tenant, never the request id (a series per request).
"""

from __future__ import annotations

import os

from opentelemetry import metrics

import threadline as tl
from threadline.tracing import configure

# The defaults of this example; settings given to it win.
os.environ.setdefault("OTEL_METRICS_EXPORTER", "console")
os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")

configure(service_name="orders", metric_attributes={"tenant": "tenant.id"})
meter = metrics.get_meter("orders")
orders = meter.create_counter("orders.placed")
amounts = meter.create_histogram("orders.amount", unit="EUR")

for request_id, tenant, amount in (("r1", "acme", 30.0), ("r2", "globex", 12.5), ("r3", "acme", 8)):
    with tl.request.scope(request_id=request_id, tenant=tenant):
        orders.add(1)
        amounts.record(amount)
orders.add(1, {"source": "batch"})  # outside any request: only its own attributes
