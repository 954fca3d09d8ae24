"""httpx and requests calls beside OpenTelemetry's client instrumentations, in every arrangement.

tests/clients_beside_contrib.py in a child process: threadline alone; with
OpenTelemetry's httpx and requests instrumentors; under the real
`opentelemetry-instrument`, with the default propagators and with
``OTEL_PROPAGATORS=threadline`` (where OpenTelemetry's own injection would
carry the stores). Always: one CLIENT span per hop, never two; the far side's
parent is that span; baggage (stores and plain entries) and X-Request-ID only
to the trusted host, never to the third party, on redirects too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import clean_env

APP = Path(__file__).resolve().parent / "clients_beside_contrib.py"
LAUNCHER = Path(sys.executable).parent / "opentelemetry-instrument"
CONTRIB_SCOPE = {
    "httpx": "opentelemetry.instrumentation.httpx",
    "httpx-async": "opentelemetry.instrumentation.httpx",
    "requests": "opentelemetry.instrumentation.requests",
}


def run(mode: str) -> dict[str, Any]:
    command = [sys.executable, str(APP), mode.split("-", maxsplit=1)[0]]
    env = clean_env()
    if mode.startswith("launcher"):
        command = [str(LAUNCHER), *command]
        env.update(
            OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none"
        )
    if mode == "launcher-threadline":
        env["OTEL_PROPAGATORS"] = "threadline"
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert 0 == result.returncode, result.stderr[-3000:]
    seen: dict[str, Any] = json.loads(result.stdout)
    return seen


@pytest.mark.parametrize("mode", ["alone", "contrib", "launcher", "launcher-threadline"])
def test_one_client_span_per_call_and_baggage_only_where_allowed(mode: str) -> None:
    """One CLIENT span per hop, the far side's parent; baggage and the id only to the trusted."""
    seen = run(mode)
    spans = seen["spans"]
    by_id = {span["span_id"]: span for span in spans}
    callers = {span["name"]: span for span in spans if span["scope"] == "app"}
    assert 9 == len(callers)
    for name, caller in callers.items():
        client, which = name.split()
        hops = [hop for hop in seen["hops"] if hop["headers"].get("x-call") == f"{client}/{which}"]
        assert (2 if which == "redirect" else 1) == len(hops), name
        calls = [s for s in spans if s["kind"] == "CLIENT" and s["trace_id"] == caller["trace_id"]]
        assert {"threadline" if mode == "alone" else CONTRIB_SCOPE[client]} == {
            s["scope"] for s in calls
        }, name
        if which != "redirect":
            assert [caller["span_id"]] == [s["parent_id"] for s in calls], name
        for hop in hops:
            assert by_id[hop["headers"]["traceparent"].split("-")[2]] in calls, name
            headers = hop["headers"]
            if hop["host"] == "127.0.0.1":
                assert f"{client}-{which}" == headers["x-request-id"]
                assert {"plain=1", "request.user_id=7;tl=json"} <= set(
                    headers["baggage"].split(",")
                ), name
            else:
                assert ("baggage" in headers, "x-request-id" in headers) == (False, False), name


def test_launcher_is_installed() -> None:
    """The real `opentelemetry-instrument` launcher is what the launcher cases run."""
    assert LAUNCHER.exists()
