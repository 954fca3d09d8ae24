"""threadline.celery beside OpenTelemetry's Celery instrumentation, over a real Redis and worker.

The publisher (tests/celery_publisher.py) and the worker run in their own
processes, both instrumented: by hand (`CeleryInstrumentor().instrument()`,
after `setup` in the publisher and before it in the worker), or by the real
``opentelemetry-instrument`` launcher. One request publishes a task and a task
that publishes one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.celery_publisher import REQUEST
from tests.helpers import clean_env
from tests.redis_broker import LAUNCHER, ROOT, CeleryWorker
from threadline.export import ExportedSpan, read_spans

PRODUCER, CONSUMER = 4, 5


@dataclass
class Run:
    """What one request beside the instrumentation did, read after the worker's shutdown."""

    trace_id: str
    results: dict[str, Any]
    spans: list[ExportedSpan]
    logs: list[dict[str, Any]]


def _publish(mode: str, broker: str, spans_file: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "tests.celery_publisher"]
    env = clean_env(
        THREADLINE_TEST_CONTRIB=mode,
        THREADLINE_TEST_REDIS=broker,
        THREADLINE_TRACES_FILE=str(spans_file),
        OTEL_TRACES_EXPORTER="file",
        PYTHONPATH=str(ROOT),
    )
    if mode == "launcher":
        command = [str(LAUNCHER), *command]
        env.update(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none")
        env.update(OTEL_LOGS_EXPORTER="none")
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert 0 == done.returncode, done.stderr[-3000:]
    seen: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return seen


@pytest.fixture(
    scope="module", params=[("hand", "prefork"), ("hand", "threads"), ("launcher", "prefork")]
)
def run(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Run:
    mode, pool = request.param
    directory = tmp_path_factory.mktemp(f"contrib-{mode}-{pool}")
    env = {"THREADLINE_TEST_CONTRIB": mode}
    if mode == "launcher":
        env.update(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none")
        env.update(OTEL_LOGS_EXPORTER="none")
    worker = CeleryWorker(redis_url, pool, directory, launcher=mode == "launcher", **env)
    try:
        seen = _publish(mode, redis_url, directory / "publisher.jsonl")
    finally:
        assert 0 == worker.stop(), worker.log()[-3000:]
    spans = read_spans(directory / "publisher.jsonl") + worker.spans()
    return Run(seen["trace_id"], seen["results"], spans, worker.logs())


def _tasks_seen(run: Run) -> list[dict[str, Any]]:
    return [run.results["direct"], run.results["nested"]["seen"], run.results["child"]]


def test_stores_arrive_in_every_task(run: Run) -> None:
    """Each task, the one a task published too, sees the request's stores."""
    assert [REQUEST] * 3 == [seen["request"] for seen in _tasks_seen(run)]


def test_one_trace(run: Run) -> None:
    """Every span on both sides and every task is in the request's trace."""
    assert {run.trace_id} == {span.trace_id for span in run.spans}
    assert {run.trace_id} == {seen["trace_id"] for seen in _tasks_seen(run)}


def test_one_producer_span_per_publish(run: Run) -> None:
    """Three publishes, three PRODUCER spans: the instrumentation's, continued, not doubled."""
    producers = [s for s in run.spans if s.kind == PRODUCER]
    assert 3 == len({s.attributes["messaging.message.id"] for s in producers})
    assert ["apply_async"] * 3 == [s.attributes.get("celery.action") for s in producers]


def test_one_consumer_span_per_execution(run: Run) -> None:
    """Three executions, three CONSUMER spans, each a child of its publish's PRODUCER span."""
    by_id = {s.span_id: s for s in run.spans}
    consumers = [s for s in run.spans if s.kind == CONSUMER]
    assert ["run"] * 3 == [s.attributes.get("celery.action") for s in consumers]
    assert [PRODUCER] * 3 == [by_id[s.parent_id or ""].kind for s in consumers]


def test_no_span_of_threadline_beside_the_instrumentation(run: Run) -> None:
    """threadline made no Celery span of its own: the instrumentation made them all."""
    assert [] == [s.name for s in run.spans if s.attributes.get("threadline.boundary")]


def test_task_logs_have_the_request_and_trace_ids(run: Run) -> None:
    """Each task log line carries the request id and the request's trace id."""
    assert 3 == len(run.logs)
    expected = {(REQUEST["request_id"], run.trace_id)}
    assert expected == {(line["request_id"], line["trace_id"]) for line in run.logs}
