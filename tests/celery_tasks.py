"""The Celery app the tests' real workers run (``celery -A tests.celery_tasks worker``).

Each task reports what it sees: the `tl.request` values, the trace, the
process and the drop counts. A worker (THREADLINE_TEST_WORKER set) sets up
tracing from the OTEL_* settings and writes its task logs as JSON lines to
THREADLINE_TEST_LOGS, as the docs tell workers to.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from celery import Celery, signals
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

import threadline as tl
import threadline.celery
from tests import message_probe
from threadline import diagnostics, hooks
from threadline.logging import JSONFormatter
from threadline.tracing import current_trace_ids

BROKER_ENV = "THREADLINE_TEST_REDIS"

app = Celery("threadline_tests", set_as_current=False)
app.conf.update(
    broker_url=os.environ.get(BROKER_ENV, "redis://127.0.0.1:1/0"),
    result_backend=os.environ.get(BROKER_ENV, "redis://127.0.0.1:1/0"),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_acks_late=False,
)
logger = logging.getLogger("tasks")

LIBRARY_LOGS_ENV = "THREADLINE_TEST_LIBRARY_LOGS"  # a folder: structlog and loguru lines there
HOOKS_ENV = "THREADLINE_TEST_HOOKS"  # a file: every hook call in the worker, as JSON lines
CONTRIB_ENV = "THREADLINE_TEST_CONTRIB"  # "hand": instrumented here; "launcher": by the launcher


def trace_beside_contrib(service_name: str) -> None:
    """Set tracing up beside the Celery instrumentation, as THREADLINE_TEST_CONTRIB says.

    ``hand``: `CeleryInstrumentor` is enabled here, threadline's provider
    exports to THREADLINE_TRACES_FILE. ``launcher``: ``opentelemetry-instrument``
    made the provider and instrumented Celery; the file is added to its provider.
    """
    mode = os.environ.get(CONTRIB_ENV)
    if mode == "hand":
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument()
    provider = threadline.tracing.configure(service_name=service_name)
    if mode == "launcher":
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        from threadline.export import OTLPJsonFileSpanExporter

        exporter = OTLPJsonFileSpanExporter(os.environ["THREADLINE_TRACES_FILE"])
        provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[union-attr]


def _ready(**_: Any) -> None:
    # the worker's own "ready." line is not printed where another root handler is set
    # (opentelemetry-instrument's): the tests wait for this file
    Path(os.environ["THREADLINE_TEST_READY"]).touch()


_arrivals: dict[str, dict[str, Any]] = {}


def _arrived(request: Any = None, **_: Any) -> None:
    """The consumer's own context when a message arrives, before its processing (solo pool)."""
    _arrivals[request.id] = {
        "request": tl.request.get(),
        "trace_id": (current_trace_ids() or [None])[0],
    }


def record_hooks(path: str) -> hooks.Hook:
    """Enable a hook that appends each call to *path*: event, resource, its request id, the pid."""
    lock = threading.Lock()

    def record(event: str) -> Any:
        def write(resource: hooks.Resource, *_: Any) -> None:
            line = {"event": event, "type": resource.type, "id": resource.id, "pid": os.getpid()}
            line.update(request_id=resource.request_id, request=resource.request)
            with lock, open(path, "a") as out:
                out.write(json.dumps(line) + "\n")

        return write

    events = ("init", "before", "after", "destroy")
    return hooks.create_hook(**{event: record(event) for event in events}).enable()


_library_loggers: dict[str, Any] = {}


def log_with_libraries(folder: str) -> None:
    """structlog (JSON lines) and loguru (an enqueued, serialized sink), as their docs say."""
    import structlog
    from loguru import logger as loguru_logger

    import threadline.loguru
    import threadline.structlog

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            threadline.structlog.add_context,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.WriteLoggerFactory(open(Path(folder, "structlog.jsonl"), "a")),  # noqa: SIM115 - the worker's for its life
    )
    loguru_logger.remove()
    loguru_logger.add(Path(folder, "loguru.jsonl"), serialize=True, enqueue=True)
    _library_loggers["loguru"] = threadline.loguru.patch(loguru_logger)
    _library_loggers["structlog"] = structlog.get_logger("tasks")


if os.environ.get("THREADLINE_TEST_WORKER"):
    signals.worker_ready.connect(_ready, weak=False)
    signals.task_received.connect(_arrived, weak=False)
    trace_beside_contrib("celery-worker")
    threadline.logging.install()
    handler = logging.FileHandler(os.environ["THREADLINE_TEST_LOGS"])
    handler.setFormatter(JSONFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if os.environ.get(HOOKS_ENV):
        record_hooks(os.environ[HOOKS_ENV])
    if os.environ.get(LIBRARY_LOGS_ENV):
        log_with_libraries(os.environ[LIBRARY_LOGS_ENV])

threadline.celery.setup(app)


def seen() -> dict[str, Any]:
    value = tl.request.get()
    ids = current_trace_ids()
    return {
        "request": dict(value) if value is not None else None,
        "trace_id": ids[0] if ids else None,
        "pid": os.getpid(),
        "drops": diagnostics.drop_counts(),
    }


@app.task
def observe(tag: str = "") -> dict[str, Any]:
    logger.info("observe %s", tag)
    return seen()


@app.task
def log_libraries(tag: str) -> dict[str, Any]:
    """Log through structlog and loguru (set up by `log_with_libraries`)."""
    _library_loggers["structlog"].info("structlog", tag=tag)
    _library_loggers["loguru"].info("loguru {}", tag)
    return seen()


@app.task
def publish_child(tag: str) -> dict[str, Any]:
    logger.info("publish_child %s", tag)
    child = observe.delay(f"{tag}-child")
    return {"seen": seen(), "child": child.id}


@app.task
def collect(results: list[dict[str, Any]]) -> dict[str, Any]:
    logger.info("collect %d", len(results))
    return {"seen": seen(), "results": results}


@app.task(bind=True, max_retries=2)
def flaky(self: Any) -> dict[str, Any]:
    logger.info("flaky attempt %d", self.request.retries)
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return seen()


@app.task
def sleepy(seconds: float) -> None:
    logger.info("sleepy %s", seconds)
    time.sleep(seconds)


@app.task(bind=True, max_retries=1)
def contract_body(
    self: Any, retry: bool = False, retried_from: str | None = None
) -> dict[str, Any]:
    """The messaging contract's consumer body: what it sees; with *retry*, after one retry."""
    seen = message_probe.observe()
    if retry:
        first = (seen["span"] or {}).get("span_id")
        raise self.retry(countdown=0, kwargs={"retried_from": first})
    return {**seen, "retried_from": retried_from, "loop": _arrivals.pop(self.request.id, None)}


@app.task
def leak_span(tag: str) -> dict[str, Any]:
    """Attach a recording CONSUMER span of another tracer and never detach it (as some
    consumer instrumentations do); return what the task saw before."""
    logger.info("leak_span %s", tag)
    before = seen()
    span = trace.get_tracer("foreign-consumer").start_span("foreign", kind=SpanKind.CONSUMER)
    otel_context.attach(trace.set_span_in_context(span))
    return before


@app.task
def killed(tag: str) -> None:
    """Die as an OOM kill ends a prefork child: SIGKILL, mid-task."""
    logger.info("killed %s", tag)
    os.kill(os.getpid(), signal.SIGKILL)
