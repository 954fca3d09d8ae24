"""A FastAPI service with threadline, served by uvicorn; prints what each request made.

Run as ``python examples/fastapi_service.py [MODE]`` (or under ``opentelemetry-instrument``):

- ``native`` (default): FastAPI's own telemetry makes the SERVER span, threadline continues it;
- ``own``: FastAPI's telemetry off (``telemetry={"tracing": False}``): threadline's SERVER span;
- ``contrib``: OpenTelemetry's FastAPI instrumentation, switched on by hand;
- ``launcher``: nothing instrumented here: ``opentelemetry-instrument`` did it.

Each of 3 requests (``X-Request-ID: req-N``) logs in the handler, in a ``def``
helper run in the thread pool and in a background task after the response;
then one stream and one failing route. The program prints one JSON object:
the spans, the log lines and the answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import BackgroundTasks, FastAPI
from fastapi.responses import StreamingResponse
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.concurrency import run_in_threadpool

import threadline as tl
import threadline.asgi
from threadline.logging import JSONFormatter, install

MODE = sys.argv[1] if len(sys.argv) > 1 else "native"
LINES: list[dict[str, Any]] = []
BACKGROUND_DONE = asyncio.Event()
log = logging.getLogger("orders")


class Collect(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        LINES.append(json.loads(JSONFormatter().format(record)))


def set_up() -> InMemorySpanExporter:
    if MODE != "launcher":
        trace.set_tracer_provider(TracerProvider())
    exporter = InMemorySpanExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    install()  # request_id, user_id, trace_id, span_id on every record
    logging.getLogger().addHandler(Collect())
    logging.getLogger().setLevel(logging.INFO)
    return exporter


def stock(order: str) -> int:
    """Plain sync code, run in Starlette's thread pool: it sees the request."""
    log.info("stock for %s", order)
    return 3


async def send_receipt(order: str) -> None:
    """A background task: after the response, still in the request's context."""
    log.info("receipt for %s", order)
    if order == "2":
        BACKGROUND_DONE.set()


def current_user(scope: dict[str, Any]) -> str | None:  # your authentication
    headers = dict(scope["headers"])
    return headers.get(b"x-user", b"").decode() or None


def make_app() -> FastAPI:
    app = FastAPI(telemetry={"tracing": False}) if MODE == "own" else FastAPI()
    if MODE == "contrib":
        FastAPIInstrumentor.instrument_app(app)  # what opentelemetry-instrument does

    @app.get("/orders/{order}")
    async def order(order: str, tasks: BackgroundTasks) -> dict[str, Any]:
        log.info("order %s", order)
        count = await run_in_threadpool(stock, order)
        tasks.add_task(send_receipt, order)
        return {"stock": count, **tl.request.get()}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def lines() -> AsyncIterator[str]:
            for n in range(3):
                log.info("chunk %d", n)
                yield f"data: {n}\n\n"

        return StreamingResponse(lines(), media_type="text/event-stream")

    @app.get("/fail")
    async def fail() -> None:
        raise RuntimeError("out of stock")

    # beside OpenTelemetry's middleware, if any; the trace's id back to trusted callers
    threadline.asgi.setup(app, user_id=current_user, server_timing=True)
    return app


def get(url: str, headers: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - a loopback URL
    try:
        with urllib.request.urlopen(request) as response:  # noqa: S310
            status, got, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, got, body = error.code, error.headers, error.read()
    return {
        "status": status,
        "X-Request-ID": got["X-Request-ID"],
        "Server-Timing": got["Server-Timing"],
        "body": body.decode(),
    }


async def main() -> dict[str, Any]:
    exporter = set_up()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(make_app(), lifespan="off", access_log=False, log_level="critical")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn tells only by this flag
        await asyncio.sleep(0.01)
    answers = []
    for i in range(3):
        headers = {"X-Request-ID": f"req-{i}", "X-User": f"u-{i}"}
        answers.append(await asyncio.to_thread(get, f"{url}/orders/{i}", headers))
    await asyncio.wait_for(BACKGROUND_DONE.wait(), 10)
    answers.append(await asyncio.to_thread(get, f"{url}/stream", {"X-Request-ID": "stream"}))
    answers.append(await asyncio.to_thread(get, f"{url}/fail", {"X-Request-ID": "fail"}))
    server.should_exit = True
    await serving
    spans = [
        {
            "name": span.name,
            "kind": span.kind.name,
            "trace_id": f"{span.context.trace_id:032x}",
            "span_id": f"{span.context.span_id:016x}",
            "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
            "scope": span.instrumentation_scope.name if span.instrumentation_scope else "",
            "request_id": (span.attributes or {}).get("request.id"),
        }
        for span in exporter.get_finished_spans()
    ]
    return {"spans": spans, "logs": LINES, "answers": answers}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
