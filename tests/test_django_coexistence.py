"""One trace per request for the Django test project beside OpenTelemetry's Django instrumentation.

tests/django_project/run.py in a child process: threadline alone, with
``DjangoInstrumentor().instrument()``, under the real
``opentelemetry-instrument``, and with the instrumentation but threadline's
spans off; each time one SERVER span per request with the request id on it,
and the ids on every log line (the ``def`` view's, the ``async`` view's,
the failure's).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import clean_env

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = Path(sys.executable).parent / "opentelemetry-instrument"
SCOPES = {
    "own": "threadline",
    "contrib": "threadline",
    "launcher": "threadline",
    "contrib-alone": "opentelemetry.instrumentation.django",
}
REQUESTS = ["req-sync", "req-async", "req-fail"]
CONTRIB = "opentelemetry.instrumentation.django"


def run(mode: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "tests.django_project.run", mode]
    env = clean_env(DJANGO_SETTINGS_MODULE="tests.django_project.settings", PYTHONPATH=str(ROOT))
    if mode == "launcher":
        command = [str(LAUNCHER), *command]
        env.update(
            OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none"
        )
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert 0 == result.returncode, result.stderr[-3000:]
    seen: dict[str, Any] = json.loads(result.stdout)
    return seen


@pytest.mark.parametrize("mode", list(SCOPES))
def test_one_trace_per_request(mode: str) -> None:
    """One SERVER span per request (whose is said), the id on it, ids on every line and answer."""
    seen = run(mode)
    assert (mode != "own") == any(m.startswith(CONTRIB) for m in seen["middleware"])
    servers = [s for s in seen["spans"] if s["kind"] == "SERVER"]
    assert REQUESTS == [s["request_id"] for s in servers]
    assert {SCOPES[mode]} == {s["scope"] for s in servers}
    assert [
        "places/sync/<int:item_id>",
        "places/async/<int:item_id>",
        "boom/sync",
    ] == [s["route"] for s in servers]
    trace_of = {s["request_id"]: s["trace_id"] for s in servers}
    assert len(REQUESTS) == len(set(trace_of.values()))
    for span in seen["spans"]:  # contrib's INTERNAL span and threadline's thread span too
        assert span["trace_id"] in trace_of.values()
    by_request: dict[str, list[str]] = {}
    for line in seen["logs"]:
        assert trace_of[line["request_id"]] == line["trace_id"], line
        by_request.setdefault(line["request_id"], []).append(line["message"])
    assert "sync view 1" in by_request["req-sync"]
    assert "async view 2" in by_request["req-async"]
    assert {
        "about to fail",
        "signal: /boom/sync failed",
        "Internal Server Error: /boom/sync",
        "unhandled exception in GET /boom/sync",
    } <= set(by_request["req-fail"])
    assert [200, 200, 500] == [a["status"] for a in seen["answers"]]
    assert REQUESTS == [a["X-Request-ID"] for a in seen["answers"]]
    for answer, request in zip(seen["answers"][:2], REQUESTS[:2], strict=True):
        for saw in json.loads(answer["body"]).values():  # every place of the request
            assert (request, trace_of[request]) == (saw["request_id"], saw["trace_id"])
