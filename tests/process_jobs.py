"""Functions that run in worker processes during the tests (importable by spawned children)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import threadline as tl

SPAN_FILE = "THREADLINE_TEST_SPAN_FILE"


class JsonLinesExporter(SpanExporter):
    """Appends one JSON line per span to a file shared by every process of a test."""

    def __init__(self, path: str) -> None:
        self._path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(describe(span)) + "\n" for span in spans)
        with open(self._path, "a", encoding="utf-8") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def describe(span: ReadableSpan) -> dict[str, object]:
    return {
        "name": span.name,
        "trace_id": f"{span.context.trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "pid": os.getpid(),
        "attributes": dict(span.attributes or {}),
    }


def configure_tracing(path: str) -> None:
    """A worker initializer: batch spans with a delay so long that only a flush exports them.

    A forked worker inherits the parent's provider (it can be set only once):
    the exporter is added to it, as an application's would already be there.
    """
    inherited = trace.get_tracer_provider()
    provider = inherited if isinstance(inherited, TracerProvider) else TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(
            JsonLinesExporter(path),
            schedule_delay_millis=600_000,
            max_queue_size=100_000,
            max_export_batch_size=10_000,
        )
    )
    if provider is not inherited:
        trace.set_tracer_provider(provider)


def read_spans(path: str) -> list[dict[str, object]]:
    try:
        with open(path, encoding="utf-8") as spans:
            return [json.loads(line) for line in spans]
    except FileNotFoundError:
        return []


def observe(tag: object = None) -> dict[str, object]:
    """What a job sees: its pid, the request store, and the current span's ids."""
    value = tl.request.get()
    sc = trace.get_current_span().get_span_context()
    return {
        "pid": os.getpid(),
        "request": dict(value) if value is not None else None,
        "trace_id": f"{sc.trace_id:032x}" if sc.is_valid else None,
        "span_id": f"{sc.span_id:016x}" if sc.is_valid else None,
        "tag": tag,
    }


def traced_job(i: int) -> int:
    """Records one span in the worker, a child of the job's context."""
    with trace.get_tracer("worker").start_as_current_span(f"work {i}"):
        return i


def leave_a_scope_open() -> None:
    """A job that forgets to close its scope: the next job must not see it."""
    tl.request.scope(leaked=True).__enter__()


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def clean_up_slowly(workdir: str) -> None:
    """Wait to be terminated, then clean up until the test says its second SIGTERM is sent.

    Writes ``pid`` when running, ``terminated`` when its ``finally`` starts, and
    ``cleaned`` when that ``finally`` ran to its end.
    """
    folder = Path(workdir)
    (folder / "pid.tmp").write_text(str(os.getpid()))
    (folder / "pid.tmp").rename(folder / "pid")
    try:
        time.sleep(240)
    finally:
        (folder / "terminated").touch()
        deadline = time.monotonic() + 60  # a hang guard, not a measured time
        while not (folder / "second sent").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        (folder / "cleaned").touch()


def fail() -> None:
    raise LookupError("job failed")


def configured_child(path: str, tag: str) -> None:
    """A Process target that sets up its own tracing, records a span, and reports."""
    configure_tracing(path)
    with trace.get_tracer("child").start_as_current_span(f"child {tag}"):
        pass
