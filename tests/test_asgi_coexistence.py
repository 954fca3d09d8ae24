"""One trace per request for a FastAPI service beside every telemetry it may have.

examples/fastapi_service.py in a child process: FastAPI's own telemetry,
threadline's span alone, OpenTelemetry's FastAPI instrumentation, and under
the real ``opentelemetry-instrument``; each time one SERVER span per request,
the request id on it, and the ids on every log line (the thread pool's and
the background task's, the stream's chunks, the failure's).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import clean_env

APP = Path(__file__).resolve().parent.parent / "examples" / "fastapi_service.py"
LAUNCHER = Path(sys.executable).parent / "opentelemetry-instrument"
SCOPES = {
    "native": "fastapi",
    "own": "threadline",
    "contrib": "opentelemetry.instrumentation.fastapi",
    "launcher": "opentelemetry.instrumentation.fastapi",
}
REQUESTS = ["req-0", "req-1", "req-2", "stream", "fail"]


def run(mode: str) -> dict[str, Any]:
    command = [sys.executable, str(APP), mode]
    env = clean_env()
    if mode == "launcher":
        command = [str(LAUNCHER), *command]
        env.update(
            OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none"
        )
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert 0 == result.returncode, result.stderr[-3000:]
    seen: dict[str, Any] = json.loads(result.stdout)
    return seen


@pytest.mark.parametrize("mode", list(SCOPES))
def test_one_trace_per_request(mode: str) -> None:
    """One SERVER span per request (whose telemetry made it), ids on every line and answer."""
    seen = run(mode)
    servers = [s for s in seen["spans"] if s["kind"] == "SERVER"]
    assert REQUESTS == [s["request_id"] for s in servers]
    assert {SCOPES[mode]} == {s["scope"] for s in servers}
    trace_of = {s["request_id"]: s["trace_id"] for s in servers}
    assert len(REQUESTS) == len(set(trace_of.values()))  # each request its own trace
    for span in seen["spans"]:  # every other span hangs in one request's trace
        assert span["trace_id"] in trace_of.values()
    by_request: dict[str, list[str]] = {}
    for line in seen["logs"]:
        assert trace_of[line["request_id"]] == line["trace_id"], line
        by_request.setdefault(line["request_id"], []).append(line["message"])
    for request in ("req-0", "req-1", "req-2"):
        n = request[-1]
        assert {f"order {n}", f"stock for {n}", f"receipt for {n}"} <= set(by_request[request])
    assert {"chunk 0", "chunk 1", "chunk 2"} <= set(by_request["stream"])
    assert "unhandled exception in GET /fail" in by_request["fail"]
    for answer, request in zip(seen["answers"], REQUESTS, strict=True):
        assert request == answer["X-Request-ID"]
        span_part = answer["Server-Timing"].split("-")
        assert trace_of[request] == span_part[1]
    assert [200, 200, 200, 200, 500] == [a["status"] for a in seen["answers"]]
