"""The Celery app the tests' real workers run (``celery -A tests.celery_tasks worker``).

Each task reports what it sees: the `tl.request` values, the trace, the
process and the drop counts. A worker (THREADLINE_TEST_WORKER set) sets up
tracing from the OTEL_* settings and writes its task logs as JSON lines to
THREADLINE_TEST_LOGS, as the docs tell workers to.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from celery import Celery, signals

import threadline as tl
import threadline.celery
from threadline import diagnostics
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


if os.environ.get("THREADLINE_TEST_WORKER"):
    signals.worker_ready.connect(_ready, weak=False)
    trace_beside_contrib("celery-worker")
    threadline.logging.install()
    handler = logging.FileHandler(os.environ["THREADLINE_TEST_LOGS"])
    handler.setFormatter(JSONFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

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
