"""Two aiohttp services beside OpenTelemetry's own instrumentations; prints what they made.

Run as ``python examples/coexistence.py MODE`` (or under ``opentelemetry-instrument``):

- ``alone``: threadline only;
- ``contrib-outer``: the contrib aiohttp-server/-client, threading and logging
  instrumentors, threadline's middleware in the list (the contrib one goes first);
- ``contrib-setup``: the same, threadline added with ``setup(app)`` afterwards;
- ``contrib-inner``: threadline's middleware put before OpenTelemetry's;
- ``launcher``: nothing instrumented here: ``opentelemetry-instrument`` did it.

Each of 3 requests goes client -> front -> back -> a thread-pool job and a
process-pool job (spawn), with an
``X-Request-ID``; the program prints one JSON object: the spans, the log lines
and what each request answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from multiprocessing import get_context
from typing import Any

import aiohttp
from aiohttp import web
from opentelemetry import trace
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
from opentelemetry.instrumentation.logging import LoggingInstrumentor
from opentelemetry.instrumentation.threading import ThreadingInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import threadline as tl
import threadline.aiohttp as tla
from threadline.logging import JSONFormatter, install

MODE = sys.argv[1]
CLIENT = web.AppKey("client", aiohttp.ClientSession)
BACK = web.AppKey("back", str)
POOL = tl.ThreadPoolExecutor(max_workers=2)
PROCESSES: tl.ProcessPoolExecutor | None = None
LINES: list[dict[str, Any]] = []


class Collect(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        LINES.append(json.loads(JSONFormatter().format(record)))


def set_up() -> InMemorySpanExporter:
    if MODE != "launcher":
        trace.set_tracer_provider(TracerProvider())
    provider = trace.get_tracer_provider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    if MODE.startswith("contrib"):  # what opentelemetry-instrument does, by hand
        AioHttpClientInstrumentor().instrument()
        AioHttpServerInstrumentor().instrument()
        ThreadingInstrumentor().instrument()
        LoggingInstrumentor().instrument()
    install()
    root = logging.getLogger()
    root.addHandler(Collect())
    root.setLevel(logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return exporter


def stock() -> int:
    logging.getLogger("back.thread").info("thread read the stock")
    return 3


def checksum() -> str:
    """Runs in a worker process: it answers with the request id it sees."""
    return str(tl.request.get()["request_id"])


async def back(request: web.Request) -> web.Response:
    logging.getLogger("back").info("back got the request")
    count = await tl.run_in_executor(POOL, stock)
    assert PROCESSES is not None
    in_worker = await asyncio.wrap_future(PROCESSES.submit(checksum))
    request_id = tl.request.get()["request_id"]
    return web.json_response({"stock": count, "request_id": request_id, "worker": in_worker})


async def front(request: web.Request) -> web.Response:
    logging.getLogger("front").info("front got the request")
    async with request.app[CLIENT].get(f"{request.app[BACK]}/back") as response:
        return web.json_response(await response.json())


def application(handler: Any, path: str) -> web.Application:
    if MODE == "contrib-inner":
        app = web.Application()  # the instrumented one: OpenTelemetry's middleware first
        app.middlewares.insert(0, tla.middleware())  # ... and threadline's before it
    elif MODE == "contrib-setup":
        app = web.Application()
        tla.setup(app)
    else:
        app = web.Application(middlewares=[tla.middleware()])
    app.router.add_get(path, handler)
    return app


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def client_session(app: web.Application) -> AsyncIterator[None]:
    app[CLIENT] = aiohttp.ClientSession(trace_configs=[tla.trace_config()])
    yield
    await app[CLIENT].close()


async def main() -> dict[str, Any]:
    global PROCESSES  # noqa: PLW0603 - made once the tracing is set up
    exporter = set_up()
    PROCESSES = tl.ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
    back_runner, back_url = await serve(application(back, "/back"))
    front_app = application(front, "/front")
    front_app[BACK] = back_url
    front_app.cleanup_ctx.append(client_session)
    front_runner, front_url = await serve(front_app)
    answers = []
    try:
        async with aiohttp.ClientSession() as session:
            for i in range(3):
                headers = {"X-Request-ID": f"req-{i}"}
                async with session.get(f"{front_url}/front", headers=headers) as response:
                    answers.append(
                        {"status": response.status, "body": await response.json(), **headers}
                    )
    finally:
        await front_runner.cleanup()
        await back_runner.cleanup()
        POOL.shutdown()
        PROCESSES.shutdown()
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
