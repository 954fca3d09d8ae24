"""Every program in examples/ runs and shows what its docs page promises."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from threadline.export import read_spans

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(name: str, **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env={**os.environ, **env},
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert 0 == result.returncode, result.stderr
    return result


def traces_by_request(lines: list[str]) -> dict[str, set[str]]:
    """The trace ids each request id's log lines show (lines read `request=ID trace=ID`)."""
    by_request: dict[str, set[str]] = {}
    for line in lines:
        match = re.search(r"request=(\S+) trace=(\w+)", line)
        assert match is not None, line
        by_request.setdefault(match[1], set()).add(match[2])
    return by_request


def test_main_job_request_across_threads() -> None:
    """The README's main job: each request's log lines share one request id and trace id."""
    out = run("request_across_threads.py").stdout
    assert "3 requests, 18 log lines: each request's lines share one" in out
    lines = [line for line in out.splitlines() if "request=" in line]
    by_request = traces_by_request(lines)
    assert {"req-0", "req-1", "req-2"} == set(by_request)
    assert all(len(traces) == 1 for traces in by_request.values())
    assert any(line.startswith("pool_") for line in lines)


def test_stores() -> None:
    out = run("stores.py").stdout
    assert "merge: {'request_id': 'r1', 'user_id': 42, 'tenant': 'acme'}" in out
    assert "after the block: None" in out
    assert "run, async: handled r2" in out
    assert "immutable: ContextStore 'request' is immutable" in out
    assert "bound generator: [{'page': 1}] outside: None" in out


def test_threads() -> None:
    out = run("threads.py").stdout
    for where in ("pool job", "run_in_executor", "tl.Thread", "bound callback"):
        assert f"{where} sees: r1" in out
    root = re.search(r"span 'request' parent=\(root\) id=(\w+)", out)
    assert root is not None
    assert 3 == out.count(f"parent={root[1]}")


def test_carrier() -> None:
    result = run("carrier.py")
    assert "baggage: request.request_id=r%201+2;tl,request.user_id=42;tl=json" in result.stdout
    assert "server sees: {'request_id': 'r 1+2', 'user_id': 42, 'roles': ('admin', 'dev')}" in (
        result.stdout
    )
    assert "same trace: True" in result.stdout
    assert "dropped: {'traceparent.invalid': 1, 'baggage.invalid': 1}" in result.stdout
    assert "threadline dropped context (traceparent.invalid)" in result.stderr


def test_logging_json() -> None:
    records = [json.loads(line) for line in run("logging_json.py").stdout.splitlines()]
    assert "-" == records[0]["request_id"]
    assert [("r1", 42)] * 2 == [(r["request_id"], r["user_id"]) for r in records[1:]]
    assert records[1]["trace_id"] == records[2]["trace_id"] != "-"
    assert 3 == records[1]["count"]


def test_process_pool() -> None:
    """Worker lines carry their request's id and trace id under every start method."""
    out = run("process_pool.py").stdout
    for method in ("spawn", "forkserver", "fork"):
        parent = re.search(rf"MainProcess +request=req-{method} trace=(\w+)", out)
        assert parent is not None
        workers = re.findall(r"Process-\d+ +request=(\S+) trace=(\w+)… resized image", out)
        assert 3 <= sum(
            1 for request, trace in workers if (request, trace) == (f"req-{method}", parent[1])
        )
        assert f"{method}: results [0, 2, 4]" in out
    assert "9 job spans" in out


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH")
def test_subprocess_children() -> None:
    """Shell, Node.js and unmodified Python children all report the parent's trace and request."""
    out = run("subprocess_children.py").stdout
    trace_id = re.search(r"parent: trace_id=(\w+)", out)
    assert trace_id is not None
    assert f"shell child: trace_id={trace_id[1]} request_id=req-7" in out
    assert f"python child working request_id=req-7 trace_id={trace_id[1]}" in out
    assert f"node child: trace_id={trace_id[1]} request_id=req-7 user_id=42" in out
    assert 3 == out.count("exit=0")


def test_http_services() -> None:
    """Gateway -> backend -> thread and process pools: a request's lines share one id and trace."""
    out = run("http_services.py").stdout
    assert "2 requests, 2 traces; every line of both services carries its request's one id" in out
    lines = [line for line in out.splitlines() if " request=" in line]
    by_request = traces_by_request(lines)
    assert 2 == len(by_request)
    assert all(1 == len(traces) for traces in by_request.values())
    assert any("SpawnProcess" in line for line in lines)
    for request_id in by_request:
        assert f"X-Request-ID={request_id}" in out


def test_fastapi_service() -> None:
    """FastAPI under uvicorn: each request's lines (pool, background task, stream) share its ids."""
    seen = json.loads(run("fastapi_service.py").stdout)
    ids = {answer["X-Request-ID"] for answer in seen["answers"]}
    assert {"req-0", "req-1", "req-2", "stream", "fail"} == ids
    for request_id in ids:
        traces = {line["trace_id"] for line in seen["logs"] if line["request_id"] == request_id}
        assert 1 == len(traces), request_id
    assert any(line["message"] == "receipt for 1" for line in seen["logs"])


def test_django_service() -> None:
    """A def view under uvicorn and its thread hop: one request id and trace on every line."""
    out = run("django_service.py").stdout.splitlines()
    assert {"order-7": {"0af7651916cd43dd8448eb211c80319c"}} == traces_by_request(
        [line for line in out if " request=" in line]
    )
    for start in (
        "orders: order 7 ",
        "orders: stock for 7 ",
        "threadline.asgi: GET /orders/7 200 ",
    ):
        assert any(line.startswith(start) for line in out), start
    (answer,) = [line for line in out if line.startswith("answer: ")]
    assert answer.startswith(
        'answer: order-7 {"stock": 3, "tenant": "acme", "request_id": "order-7"'
    )
    assert "span: GET orders/<int:order> SERVER trace=0af7651916cd43dd8448eb211c80319c" in out
    assert "span: thread stock INTERNAL trace=0af7651916cd43dd8448eb211c80319c" in out


def test_demo_services() -> None:
    """The demo's two services: every process logs each order's one request id and one trace id."""
    result = run("demo_services.py", OTEL_TRACES_EXPORTER="none")
    request_ids = re.findall(r"^order \d: \{.*\} request (\w{32})$", result.stdout, re.MULTILINE)
    assert 2 == len(set(request_ids))
    records = [json.loads(line) for line in result.stderr.splitlines()]
    for request_id in request_ids:
        mine = [record for record in records if record["request_id"] == request_id]
        loggers = {"gateway", "backend", "backend.thread", "backend.worker"}
        assert loggers | {"python-child", "shell-child"} <= {record["logger"] for record in mine}
        assert 1 == len({record["trace_id"] for record in mine})


def test_celery_request(redis_url: str, tmp_path: Path) -> None:
    """An aiohttp request's Celery task: the worker's spans join its trace, its lines its ids."""
    traces, logs = tmp_path / "traces.jsonl", tmp_path / "logs.jsonl"
    out = run(
        "celery_request.py",
        CELERY_BROKER_URL=redis_url,
        THREADLINE_TRACES_FILE=str(traces),
        CELERY_EXAMPLE_LOGS=str(logs),
    ).stdout
    assert "2 requests, 2 traces: each request's web and worker spans are one trace" in out
    request_ids = re.findall(r"^request (\w{32}): receipt \d for user-\d$", out, re.MULTILINE)
    lines = [json.loads(line) for line in logs.read_text().splitlines()]
    worker = [line for line in lines if line["message"].startswith("sending the receipt")]
    assert sorted(request_ids) == sorted(line["request_id"] for line in worker)
    spans = read_spans(traces)
    for line in worker:
        names = sorted(s.name for s in spans if s.trace_id == line["trace_id"])
        assert [
            "POST /orders/{order}",
            "process orders.send_receipt",
            "send orders.send_receipt",
        ] == names
    view = subprocess.run(
        [sys.executable, "-m", "threadline", "view", str(traces), "--logs", str(logs)],
        capture_output=True,
        check=True,
        text=True,
        timeout=60,
    ).stdout
    assert 2 == view.count("process orders.send_receipt")
    assert 2 == view.count("sending the receipt")


def test_export_process(tmp_path: Path) -> None:
    """The spans the export process wrote carry the request's id and the service's name."""
    out = run("export_process.py", THREADLINE_TRACES_FILE=str(tmp_path / "spans.jsonl")).stdout
    assert "load order: request order-7, service shop" in out
    assert "GET /orders/7: request order-7, service shop" in out


def test_httpx_client() -> None:
    """httpx, async and from a pool thread: the service sees the caller's id, user and trace."""
    out = run("httpx_client.py").stdout
    assert "async client: the service saw request req-1, user 42, same trace: True" in out
    assert (
        "streamed 3 lines; its span open once the headers came: True, ended with the body: True"
        in out
    )
    assert "sync client in a pool thread: the service saw request req-2" in out
    assert "CLIENT spans: ['GET', 'GET', 'GET']" in out


def test_requests_client() -> None:
    """requests from pool threads, each job its own request; a redirect; a stream."""
    out = run("requests_client.py").stdout
    for user in (1, 2, 3):
        assert f"pool thread: the service saw request req-{user}, user {user}" in out
    assert "after a redirect: the service saw request req-4; streamed 3 lines" in out
    assert "CLIENT spans: ['GET', 'GET', 'GET', 'GET', 'GET']" in out


def test_structlog_request() -> None:
    """Every line of the request, the pool's and the spawned worker's, has its ids, escaped."""
    lines = [json.loads(line) for line in run("structlog_request.py").stdout.splitlines()]
    first, *request = lines
    assert ("starting up", "-", "-") == (first["event"], first["request_id"], first["trace_id"])
    events = ["taking order", "checking stock", "shipping", "done"]
    assert events == [line["event"] for line in request]
    assert ["r1", "r1", "r1", "r1-override"] == [line["request_id"] for line in request]
    assert {"alice\\nFORGED"} == {line["user_id"] for line in request}
    assert 1 == len({line["trace_id"] for line in request})


def test_loguru_request() -> None:
    """Every record through the enqueued sink, the worker's too, has the ids of its call."""
    records = [json.loads(line)["record"] for line in run("loguru_request.py").stdout.splitlines()]
    assert ["starting up", "taking order 7", "checking stock 7", "shipping 7"] == [
        record["message"] for record in records
    ]
    first, *request = (record["extra"] for record in records)
    assert "-" == first["request_id"] == first["trace_id"]
    assert {("r1", "alice\\nFORGED")} == {(e["request_id"], e["user_id"]) for e in request}
    assert 1 == len({e["trace_id"] for e in request})
    assert "SpawnProcess-1" == records[-1]["process"]["name"]


def test_otel_logs() -> None:
    """The console exporter prints the records: the request's values, one trace, the exception."""
    out = run("otel_logs.py").stdout
    decoder, records, at = json.JSONDecoder(), [], 0
    while out[at:].strip():
        record, end = decoder.raw_decode(out, len(out) - len(out[at:].lstrip()))
        records.append(record)
        at = end
    assert ["taking order 7", "ValueError: card declined for order 7"] == [
        r["body"] for r in records
    ]
    assert 1 == len({r["trace_id"] for r in records})
    for record in records:
        assert {"request.id": "r1", "enduser.id": 42, "tenant.id": "acme"}.items() <= (
            record["attributes"].items()
        )
    assert "ValueError" == records[1]["attributes"]["exception.type"]


def test_kafka_request(kafka_bootstrap: str, tmp_path: Path) -> None:
    """An aiohttp request's Kafka event: the consumer process joins its trace, logs its ids."""
    traces, logs = tmp_path / "traces.jsonl", tmp_path / "logs.jsonl"
    out = run(
        "kafka_request.py",
        KAFKA_BOOTSTRAP=kafka_bootstrap,
        THREADLINE_TRACES_FILE=str(traces),
        KAFKA_EXAMPLE_LOGS=str(logs),
    ).stdout
    assert "2 requests, 2 traces: each request's web and consumer spans are one trace" in out
    request_ids = re.findall(r"^request (\w{32}): order \d published$", out, re.MULTILINE)
    lines = [json.loads(line) for line in logs.read_text().splitlines()]
    shipped = [line for line in lines if line["message"].startswith("shipping order")]
    assert sorted(request_ids) == sorted(line["request_id"] for line in shipped)
    spans = read_spans(traces)
    for line in shipped:
        names = sorted(s.name.split(" ")[0] for s in spans if s.trace_id == line["trace_id"])
        assert ["POST", "process", "send"] == names
    view = subprocess.run(
        [sys.executable, "-m", "threadline", "view", str(traces), "--logs", str(logs)],
        capture_output=True,
        check=True,
        text=True,
        timeout=60,
    ).stdout
    assert 2 == view.count("process orders-")
    assert 2 == view.count("shipping order")


def test_rabbitmq_request(rabbitmq_url: str) -> None:
    """Two requests' messages in one consumer loop: each body logs its own request id."""
    out = run("rabbitmq_request.py", RABBITMQ_URL=rabbitmq_url).stdout
    lines = [line for line in out.splitlines() if line.startswith("handled")]
    assert 4 == len(lines)
    assert {"request=r1", "request=r2"} == {line.split()[-2] for line in lines}
    assert "each message ran in its own request's context" in out


def test_otel_metrics() -> None:
    """The console exporter prints the data points at exit, each request's with its tenant."""
    out = run("otel_metrics.py").stdout
    exported = json.loads(out)
    [scope] = exported["resource_metrics"][0]["scope_metrics"]
    found = {
        metric["name"]: sorted(
            (
                json.dumps(point["attributes"], sort_keys=True),
                point.get("value", point.get("count")),
            )
            for point in metric["data"]["data_points"]
        )
        for metric in scope["metrics"]
    }
    assert {
        "orders.placed": [
            ('{"source": "batch"}', 1),
            ('{"tenant.id": "acme"}', 2),
            ('{"tenant.id": "globex"}', 1),
        ],
        "orders.amount": [('{"tenant.id": "acme"}', 2), ('{"tenant.id": "globex"}', 1)],
    } == found


def test_live_view() -> None:
    """The example's service shows its three orders in flight, each with what it made."""
    out = run("live_view.py").stdout
    assert "6 requests in flight" in out
    assert 3 == out.count("GET /orders/{order}")
    assert 3 == out.count("3 of 4 running")
    assert out.index("order-1") < out.index("order-2") < out.index("order-3")
