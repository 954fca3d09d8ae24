"""requests calling a service: the caller's request id, user id and trace arrive (docs/requests.md).

A small aiohttp service (threadline's middleware) runs on a free loopback
port. One instrumented `requests.Session` calls it from pool threads, each
job for its own request, follows a redirect and streams a response. The
program prints what the service saw and the CLIENT spans, one per call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import requests
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import threadline as tl
import threadline.aiohttp as tla
import threadline.requests as tlr


async def identify(request: web.Request) -> web.Response:
    """The service: answers the request id, user id and trace id it runs in."""
    value = tl.request.get() or {}
    trace_id = trace.get_current_span().get_span_context().trace_id
    return web.json_response(
        {"request_id": value["request_id"], "user_id": value.get("user_id"), "trace": trace_id}
    )


async def moved(request: web.Request) -> web.Response:
    raise web.HTTPFound("/whoami")


async def numbers(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    for number in range(3):
        await response.write(f"{number}\n".encode())
    await response.write_eof()
    return response


def client_spans(exporter: InMemorySpanExporter) -> list[str]:
    return [s.name for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]


async def main() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("example")

    app = web.Application(middlewares=[tla.middleware()])
    app.router.add_get("/whoami", identify)
    app.router.add_get("/moved", moved)
    app.router.add_get("/numbers", numbers)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()  # a free port
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"

    # loopback always gets baggage and X-Request-ID; your services by name
    session = tlr.instrument(requests.Session(), baggage_hosts=["*.internal"])

    def whoami() -> Any:
        """A pool job: one call, in the context of the code that submitted it."""
        return session.get(f"{base}/whoami", timeout=10).json()

    with tl.ThreadPoolExecutor(max_workers=3) as pool, tracer.start_as_current_span("batch"):
        futures = []
        for user in (1, 2, 3):
            with tl.request.scope(request_id=f"req-{user}", user_id=user):
                futures.append(pool.submit(whoami))
        for future in futures:
            seen = await asyncio.wrap_future(future)
            print(
                f"pool thread: the service saw request {seen['request_id']}, user {seen['user_id']}"
            )

    def redirected_and_streamed() -> tuple[Any, int]:
        with tracer.start_as_current_span("moved"), tl.request.scope(request_id="req-4"):
            seen = session.get(f"{base}/moved", timeout=10).json()
            with session.get(f"{base}/numbers", stream=True, timeout=10) as response:
                lines = list(response.iter_lines())
        return seen, len(lines)

    seen, lines = await asyncio.to_thread(redirected_and_streamed)
    print(f"after a redirect: the service saw request {seen['request_id']}; streamed {lines} lines")

    session.close()
    await runner.cleanup()
    print(f"CLIENT spans: {client_spans(exporter)}")


if __name__ == "__main__":
    asyncio.run(main())
