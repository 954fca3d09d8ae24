"""Spans exported from a process of their own (THREADLINE_EXPORT_PROCESS=1).

A request's spans, made in this process, written by the exporter that the
export process runs: here the embedded file exporter, so nothing else is
needed; with OTEL_TRACES_EXPORTER=otlp the same goes to a Collector.

    python examples/export_process.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from opentelemetry import trace

import threadline as tl
from threadline import tracing
from threadline.export import read_spans


def main() -> None:
    folder = tempfile.mkdtemp()
    os.environ.setdefault("THREADLINE_TRACES_FILE", str(Path(folder, "spans.jsonl")))
    provider = tracing.configure(service_name="shop", export_process=True)
    assert provider is not None
    tracer = trace.get_tracer("shop")
    with tl.request.scope(request_id="order-7"), tracer.start_as_current_span("GET /orders/7"):
        tracer.start_span("load order").end()
    provider.force_flush()  # the export process answers once its exporters have the spans
    for span in read_spans(os.environ["THREADLINE_TRACES_FILE"]):
        print(f"{span.name}: request {span.attributes['request.id']}, service {span.service}")


if __name__ == "__main__":
    main()
