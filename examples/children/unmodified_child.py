"""A Python child that knows nothing of threadline: it logs, and records a span.

With THREADLINE_BOOTSTRAP=1 in its environment (threadline.subprocess sets it),
its log lines carry the parent's request id and trace id and its span joins
the parent's trace. Its tracing set-up is its own: spans go to a JSON file.
"""

import json
import logging
import os
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


class JsonFileExporter(SpanExporter):
    def __init__(self, path):
        self.path = path

    def export(self, spans):
        with open(self.path, "a", encoding="utf-8") as out:
            for span in spans:
                parent = f"{span.parent.span_id:016x}" if span.parent else None
                record = {
                    "name": span.name,
                    "trace_id": f"{span.context.trace_id:032x}",
                    "parent_id": parent,
                }
                out.write(json.dumps(record) + "\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
if os.environ.get("CHILD_SPAN_FILE"):
    provider.add_span_processor(
        SimpleSpanProcessor(JsonFileExporter(os.environ["CHILD_SPAN_FILE"]))
    )
trace.set_tracer_provider(provider)

logging.basicConfig(level=logging.INFO, stream=sys.stdout)
with trace.get_tracer("child").start_as_current_span("child work"):
    logging.info("python child working")
