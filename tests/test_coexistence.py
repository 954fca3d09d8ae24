"""One trace per request beside OpenTelemetry's own instrumentations, in every arrangement.

Two real aiohttp services on loopback (examples/coexistence.py) in a child process:
threadline alone; with the contrib aiohttp-server/-client, threading and
logging instrumentations (threadline's middleware after theirs, added by
`setup`, or put before theirs); and under the real `opentelemetry-instrument`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.trace import SpanKind

import threadline.aiohttp as tla
from tests.helpers import Serve, Spans, SuiteTracerProvider, clean_env
from threadline.tracing import current_trace_ids

APP = Path(__file__).resolve().parent.parent / "examples" / "coexistence.py"
LAUNCHER = Path(sys.executable).parent / "opentelemetry-instrument"
CONTRIB_CLIENT = "opentelemetry.instrumentation.aiohttp_client"


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


@pytest.mark.parametrize(
    "mode", ["alone", "contrib-outer", "contrib-setup", "contrib-inner", "launcher"]
)
def test_one_trace_per_request(mode: str) -> None:
    """One SERVER span per hop, one CLIENT span per call, the right parents, ids on every line."""
    seen = run(mode)
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in seen["spans"]:
        by_trace[span["trace_id"]].append(span)
    assert 3 == len(by_trace)  # one trace per request
    trace_of_request = {}
    for spans in by_trace.values():
        # the test's own client is instrumented too where contrib's client is: its span is the root
        driver = [s for s in spans if s["parent_id"] is None and s["scope"] == CONTRIB_CLIENT]
        rest = [s for s in spans if s not in driver]
        names = ["GET", "GET /back", "GET /front", "process checksum", "thread stock"]
        assert names == sorted(s["name"] for s in rest)
        named = {s["name"]: s for s in rest}
        front, call, back, job, worker = (
            named[n] for n in ("GET /front", "GET", "GET /back", "thread stock", "process checksum")
        )
        assert ("SERVER", "CLIENT", "SERVER") == (front["kind"], call["kind"], back["kind"])
        assert (driver[0]["span_id"] if driver else None) == front["parent_id"]
        assert front["span_id"] == call["parent_id"]
        assert call["span_id"] == back["parent_id"]
        assert back["span_id"] == job["parent_id"] == worker["parent_id"]
        assert front["request_id"] == back["request_id"]
        trace_of_request[front["request_id"]] = front["trace_id"]
    assert {"req-0", "req-1", "req-2"} == set(trace_of_request)
    for line in seen["logs"]:
        assert trace_of_request[line["request_id"]] == line["trace_id"], line
    loggers = [line["logger"] for line in seen["logs"]]
    for logger in ("front", "back", "back.thread", "threadline.aiohttp"):
        assert 3 <= loggers.count(logger), logger
    for answer in seen["answers"]:
        body = answer["body"]
        assert (200, answer["X-Request-ID"]) == (answer["status"], body["request_id"])
        assert answer["X-Request-ID"] == body["worker"]


def test_launcher_is_installed() -> None:
    """The real `opentelemetry-instrument` launcher is what the launcher case runs."""
    assert os.access(LAUNCHER, os.X_OK)


class _TraceOfEachLine(logging.Handler):
    """Keeps each record's logger, message and the trace id current when it was written."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[str, str, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        ids = current_trace_ids()
        self.lines.append((record.name, record.getMessage(), ids[0] if ids else None))


async def test_threadline_first_every_line_of_a_request_has_its_trace(
    serve: Serve, spans: Spans, tracer_provider: SuiteTracerProvider
) -> None:
    """threadline's middleware before OpenTelemetry's aiohttp-server middleware, requests with no
    traceparent: every line of a request (the access line, the unhandled exception's) carries the
    trace id of the SERVER span OpenTelemetry made for it."""
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    async def handled(request: web.Request) -> web.Response:
        logging.getLogger("app").info("handled")
        return web.Response(text="ok")

    async def failing(request: web.Request) -> web.Response:
        logging.getLogger("app").info("failing")
        raise RuntimeError("boom")

    instrumentor = AioHttpServerInstrumentor()
    with warnings.catch_warnings():  # its subclass of web.Application, which aiohttp discourages
        warnings.simplefilter("ignore", DeprecationWarning)
        instrumentor.instrument(tracer_provider=tracer_provider)
    try:
        app = web.Application()  # the instrumented one: OpenTelemetry's middleware first
    finally:
        instrumentor.uninstrument()
    app.middlewares.insert(0, tla.middleware())  # ... and threadline's before it
    app.router.add_get("/handled", handled)
    app.router.add_get("/failing", failing)
    url = await serve(app)
    lines = _TraceOfEachLine()
    loggers = [logging.getLogger(name) for name in ("app", "threadline.aiohttp")]
    for logger in loggers:
        logger.addHandler(lines)
        logger.setLevel(logging.INFO)
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/handled", "/failing"):
                async with session.get(url + path) as response:
                    await response.read()
    finally:
        for logger in loggers:
            logger.removeHandler(lines)
            logger.setLevel(logging.NOTSET)
    traces = [f"{s.context.trace_id:032x}" for s in spans.finished() if s.kind is SpanKind.SERVER]
    assert 2 == len(set(traces))
    assert 5 == len(lines.lines)  # two app lines, two access lines, one unhandled exception
    for logger, message, trace_id in lines.lines:
        assert trace_id in traces, (logger, message)


@pytest.mark.parametrize("placement", ["setup", "first"])
async def test_two_traceparents_begin_a_new_trace_beside_opentelemetry(
    serve: Serve, spans: Spans, tracer_provider: SuiteTracerProvider, placement: str
) -> None:
    """OpenTelemetry's aiohttp-server middleware continues the first of two traceparents, which
    W3C Trace Context (and threadline, after it or before it) drops: the handler runs in a new
    trace, under threadline's SERVER span linked to OpenTelemetry's."""
    from multidict import CIMultiDict
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    async def handled(request: web.Request) -> web.Response:
        ids = current_trace_ids()
        return web.Response(text=ids[0] if ids else "-")

    instrumentor = AioHttpServerInstrumentor()
    with warnings.catch_warnings():  # its subclass of web.Application, which aiohttp discourages
        warnings.simplefilter("ignore", DeprecationWarning)
        instrumentor.instrument(tracer_provider=tracer_provider)
    try:
        app = web.Application()  # the instrumented one: OpenTelemetry's middleware first
    finally:
        instrumentor.uninstrument()
    if placement == "setup":
        tla.setup(app)  # threadline's after it
    else:
        app.middlewares.insert(0, tla.middleware())  # threadline's before it
    app.router.add_get("/handled", handled)
    url = await serve(app)
    first, second = "1" * 32, "2" * 32
    headers = CIMultiDict([("traceparent", f"00-{first}-{'3' * 16}-01")])
    headers.add("traceparent", f"00-{second}-{'3' * 16}-01")
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + "/handled", headers=headers) as response,
    ):
        handler_trace = await response.text()
    servers = {
        s.instrumentation_scope.name: s for s in spans.finished() if s.kind is SpanKind.SERVER
    }
    ours, theirs = servers["threadline"], servers["opentelemetry.instrumentation.aiohttp_server"]
    assert handler_trace == f"{ours.context.trace_id:032x}"
    assert handler_trace not in (first, second)
    assert None is ours.parent
    assert [theirs.context] == [link.context for link in ours.links]
