"""One request's context in child processes of three languages (docs/subprocess.md).

The parent runs each child through threadline.subprocess, which puts the
context in the child's environment (TRACEPARENT, BAGGAGE) and records a span
per child. A shell child and a Node.js child read the W3C text themselves; an
unmodified Python child gets it through threadline's automatic bootstrap.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import threadline as tl
from threadline import subprocess

children = Path(__file__).parent / "children"
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

with (
    trace.get_tracer("parent").start_as_current_span("request") as span,
    tl.request.scope(request_id="req-7", user_id=42),
):
    print(f"parent: trace_id={span.get_span_context().trace_id:032x} request_id=req-7")
    subprocess.run(["sh", str(children / "report_context.sh")], check=True)
    if shutil.which("node"):
        subprocess.run(["node", str(children / "report_context.js")], check=True)
    else:
        print("node child: skipped, node is not installed")
    subprocess.run([sys.executable, str(children / "unmodified_child.py")], check=True)

for finished in exporter.get_finished_spans():
    attributes = finished.attributes or {}
    if finished.name.startswith("subprocess"):
        print(
            f"span {finished.name!r}: pid={attributes['process.pid']} "
            f"exit={attributes['process.exit.code']} id={finished.context.span_id:016x}"
        )
