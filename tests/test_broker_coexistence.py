"""threadline.kafka and threadline.rabbitmq beside OpenTelemetry's aiokafka, confluent-kafka and
aio-pika instrumentations, over the real brokers.

tests/broker_coexistence_app.py runs one request in a process of its own,
instrumented by hand or under the real ``opentelemetry-instrument`` launcher:
each message is one PRODUCER and one CONSUMER span, in the request's trace,
and each body sees the request's stores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.broker_coexistence_app import REQUEST
from tests.helpers import clean_env
from tests.redis_broker import LAUNCHER, ROOT
from threadline.export import read_spans

PRODUCER, CONSUMER = 4, 5


def run(client: str, mode: str, tmp_path: Path, **env: str) -> tuple[dict[str, Any], Path]:
    spans_file = tmp_path / "spans.jsonl"
    command = [sys.executable, "-m", "tests.broker_coexistence_app", client]
    environment = clean_env(
        THREADLINE_TEST_CONTRIB=mode,
        THREADLINE_TRACES_FILE=str(spans_file),
        OTEL_TRACES_EXPORTER="file",
        PYTHONPATH=str(ROOT),
        **env,
    )
    if mode == "launcher":
        command = [str(LAUNCHER), *command]
        environment.update(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none")
        environment.update(OTEL_LOGS_EXPORTER="none")
    done = subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120, check=False
    )
    assert 0 == done.returncode, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1]), spans_file


def check(result: dict[str, Any], spans_file: Path) -> None:
    spans = [s for s in read_spans(spans_file) if s.kind in (PRODUCER, CONSUMER)]
    assert {PRODUCER: 3, CONSUMER: 3} == dict(Counter(s.kind for s in spans))
    assert {result["trace_id"]} == {s.trace_id for s in spans}
    by_id = {s.span_id: s for s in spans}
    for span in spans:
        if span.kind == CONSUMER:
            assert PRODUCER == by_id[span.parent_id or ""].kind
    seen = result["seen"]
    assert [REQUEST] * 3 == [seen[key]["request"] for key in sorted(seen)]
    assert {result["trace_id"]} == {seen[key]["trace_id"] for key in seen}


@pytest.mark.parametrize("mode", ["hand", "launcher"])
@pytest.mark.parametrize("client", ["aiokafka", "confluent"])
def test_kafka_beside_opentelemetry(
    client: str, mode: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """One PRODUCER and one CONSUMER span per message, one trace, the stores in each body."""
    check(*run(client, mode, tmp_path, THREADLINE_TEST_KAFKA=kafka_bootstrap))


@pytest.mark.parametrize("mode", ["hand", "launcher"])
def test_rabbitmq_beside_opentelemetry(mode: str, rabbitmq_url: str, tmp_path: Path) -> None:
    """One PRODUCER and one CONSUMER span per message, one trace, the stores in each body."""
    check(*run("aio_pika", mode, tmp_path, THREADLINE_TEST_RABBITMQ=rabbitmq_url))
