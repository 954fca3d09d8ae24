"""Span and log files for `threadline view` and `threadline doctor`, made by real code.

The spans are real OpenTelemetry SDK spans of several services, exported by
threadline's `OTLPJsonFileSpanExporter` to one file; the log lines are real
records written by `threadline.logging.JSONFormatter`. `clean_request` makes
a request as threadline carries it; the other functions plant one fault each.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from pathlib import Path

from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

import threadline as tl
from threadline.export import OTLPJsonFileSpanExporter
from threadline.logging import JSONFormatter
from threadline.tracing import StoreSpanProcessor


class CodeLocation(logging.Filter):
    """The call site on records as OpenTelemetry's ``code.*`` fields (JSONFormatter keeps them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__["code.filepath"] = record.pathname
        record.__dict__["code.lineno"] = record.lineno
        return True


class Telemetry:
    """Spans of any number of services into *spans*, JSON log lines into *logs*."""

    def __init__(self, folder: Path) -> None:
        self.spans = folder / "traces.jsonl"
        self.logs = folder / "logs.jsonl"
        self._handler = logging.FileHandler(self.logs, encoding="utf-8")
        self._handler.setFormatter(JSONFormatter())
        self._handler.addFilter(CodeLocation())
        root = logging.getLogger()
        root.addHandler(self._handler)  # the suite's autouse fixture puts logging back
        root.setLevel(logging.INFO)

    def tracer(self, service: str, *, exported: bool = True) -> trace.Tracer:
        """A tracer of a provider for *service*; its spans reach the file if *exported*."""
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(StoreSpanProcessor())
        if exported:
            provider.add_span_processor(SimpleSpanProcessor(OTLPJsonFileSpanExporter(self.spans)))
        return provider.get_tracer("tests.span_files")

    def close(self) -> None:
        self._handler.close()
        logging.getLogger().removeHandler(self._handler)


def count() -> None:
    """The worker's job: one log line, from the same place whichever way it was handed over."""
    logging.getLogger("worker").info("worker counted")


def clean_request(tm: Telemetry, request_id: str) -> None:
    """Gateway SERVER -> CLIENT -> backend SERVER (the carrier) -> a pool thread, all logged."""
    gateway = tm.tracer("gateway")
    with tl.request.scope(request_id=request_id):
        with gateway.start_as_current_span("GET /orders/{order}", kind=SpanKind.SERVER):
            logging.getLogger("gateway").info("gateway got the order")
            with gateway.start_as_current_span("GET", kind=SpanKind.CLIENT):
                carrier: dict[str, str] = {}
                tl.inject(carrier)
                _backend(tm, carrier)


def _backend(tm: Telemetry, carrier: dict[str, str]) -> None:
    """The backend's side of a call: nothing but what came in the carrier."""
    backend = tm.tracer("backend")
    token = context.attach(context.Context())
    try:
        with tl.extract(carrier), backend.start_as_current_span("GET /stock", kind=SpanKind.SERVER):
            logging.getLogger("backend").info("backend checks the stock")
            with backend.start_as_current_span("thread work"), tl.ThreadPoolExecutor(1) as pool:
                pool.submit(count).result()
    finally:
        context.detach(token)


def parent_never_exported(tm: Telemetry, request_id: str) -> None:
    """A span whose parent comes from a process that exports nothing."""
    lost, child = tm.tracer("lost-parent", exported=False), tm.tracer("child")
    with tl.request.scope(request_id=request_id), lost.start_as_current_span("process job"):
        with child.start_as_current_span("resize image"):
            logging.getLogger("child").info("child resized the image")


def split_request(tm: Telemetry, request_id: str) -> None:
    """A backend that starts a new trace for the gateway's request: the traceparent never came."""
    gateway, backend = tm.tracer("gateway"), tm.tracer("backend")
    with tl.request.scope(request_id=request_id):
        with gateway.start_as_current_span("GET /orders/{order}", kind=SpanKind.SERVER):
            logging.getLogger("gateway").info("gateway got the order")
        token = context.attach(context.Context())
        try:
            with tl.request.scope(request_id=request_id):  # only X-Request-ID crossed
                with backend.start_as_current_span("GET /stock", kind=SpanKind.SERVER):
                    logging.getLogger("backend").info("backend checks the stock")
        finally:
            context.detach(token)


def bled_requests(tm: Telemetry, first: str, second: str) -> None:
    """Two requests served in one reused Context, the first's context attached and never detached.

    The second request begins with the first's span and request id current:
    its SERVER span is a child of the first's, which had ended, and its log
    line goes under the first's trace.
    """
    api = tm.tracer("api")
    shared = contextvars.copy_context()  # one Context for every request: the bug

    def serve(request_id: str) -> None:
        with tl.request.scope(request_id=request_id):
            with api.start_as_current_span("GET /orders", kind=SpanKind.SERVER):
                logging.getLogger("api").info("order served")
                kept = context.get_current()
        context.attach(kept)  # never detached

    shared.run(serve, first)
    shared.run(serve, second)


def raw_thread(tm: Telemetry, request_id: str) -> None:
    """A plain threading.Thread started in a request: its log line has no ids."""
    gateway = tm.tracer("gateway")
    with tl.request.scope(request_id=request_id):
        with gateway.start_as_current_span("GET /report", kind=SpanKind.SERVER):
            worker = threading.Thread(target=count)
            worker.start()
            worker.join()


def failed_span(tm: Telemetry, request_id: str, name: str) -> None:
    """A request whose one span failed, named *name* (which may hold HTML or controls)."""
    gateway = tm.tracer("gateway")
    with tl.request.scope(request_id=request_id):
        with gateway.start_as_current_span(name, kind=SpanKind.SERVER) as span:
            span.set_status(Status(StatusCode.ERROR, "stock <service> down"))
            logging.getLogger("gateway").error("order failed: <b>%s</b>", "no stock")


# Hand-written OTLP JSON lines: files no SDK would write (hostile, malformed, huge).

TRACE_ID = "ab" * 16
START_NS = 1_700_000_000_000_000_000


def otlp_span(
    span_id: str, parent_id: str | None = None, name: object = "work", **fields: object
) -> dict[str, object]:
    """One span as OTLP/JSON writes it (ids in hex, times as decimal strings); *fields* override."""
    span: dict[str, object] = {
        "traceId": TRACE_ID,
        "spanId": span_id,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(START_NS),
        "endTimeUnixNano": str(START_NS + 1_000_000),
    }
    if parent_id is not None:
        span["parentSpanId"] = parent_id
    span.update(fields)
    return span


def otlp_line(spans: list[dict[str, object]], service: object = "svc") -> str:
    """One OTLP JSON line (an ExportTraceServiceRequest) of *spans* from *service*."""
    import json

    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
    request = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}
    return json.dumps(request) + "\n"


def span_id(number: int) -> str:
    """The span id of hand-written span *number* (from 1)."""
    return f"{number:016x}"


def write_chain(path: Path, count: int) -> None:
    """One trace of *count* spans, each the child of the one before (as deep as it is long)."""
    spans = [
        otlp_span(
            span_id(number),
            span_id(number - 1) if number > 1 else None,
            f"step {number}",
            startTimeUnixNano=str(START_NS + number),
        )
        for number in range(1, count + 1)
    ]
    path.write_text(otlp_line(spans))
