"""httpx calling a service: the caller's request id, user id and trace arrive (docs/httpx.md).

A small aiohttp service (threadline's middleware) runs on a free loopback
port. The program calls it with an instrumented `httpx.AsyncClient`, streams
a response, and calls it again with an `httpx.Client` from a pool thread. It
prints what the service saw and the CLIENT spans, one per call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import threadline as tl
import threadline.aiohttp as tla
import threadline.httpx as tlx


async def whoami(request: web.Request) -> web.Response:
    """The service: answers the request id, user id and trace id it runs in."""
    value = tl.request.get() or {}
    trace_id = trace.get_current_span().get_span_context().trace_id
    return web.json_response(
        {"request_id": value["request_id"], "user_id": value.get("user_id"), "trace": trace_id}
    )


async def numbers(request: web.Request) -> web.StreamResponse:
    """The service: a streamed body, a line at a time."""
    response = web.StreamResponse()
    await response.prepare(request)
    for number in range(3):
        await response.write(f"{number}\n".encode())
    await response.write_eof()
    return response


def call_from_a_thread(client: httpx.Client) -> Any:
    return client.get("/whoami").json()


def client_spans(exporter: InMemorySpanExporter) -> list[str]:
    return [s.name for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]


async def main() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("example")

    app = web.Application(middlewares=[tla.middleware()])
    app.router.add_get("/whoami", whoami)
    app.router.add_get("/numbers", numbers)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()  # a free port
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"

    # loopback always gets baggage and X-Request-ID; your services by name
    async with tlx.instrument(
        httpx.AsyncClient(base_url=base), baggage_hosts=["*.internal"]
    ) as client:
        with (
            tracer.start_as_current_span("checkout") as caller,
            tl.request.scope(request_id="req-1", user_id=42),
        ):
            seen = (await client.get("/whoami")).json()
            same = seen["trace"] == caller.get_span_context().trace_id
            print(
                f"async client: the service saw request {seen['request_id']}, "
                f"user {seen['user_id']}, same trace: {same}"
            )
            async with client.stream("GET", "/numbers") as response:
                open_at_headers = len(client_spans(exporter)) == 1  # the first call's only
                lines = [line async for line in response.aiter_lines()]
            print(
                f"streamed {len(lines)} lines; its span open once the headers came: "
                f"{open_at_headers}, ended with the body: {len(client_spans(exporter)) == 2}"
            )

    with (
        tlx.instrument(httpx.Client(base_url=base)) as sync_client,
        tl.ThreadPoolExecutor(max_workers=2) as pool,
        tracer.start_as_current_span("report"),
        tl.request.scope(request_id="req-2"),
    ):
        seen = await asyncio.wrap_future(pool.submit(call_from_a_thread, sync_client))
        print(f"sync client in a pool thread: the service saw request {seen['request_id']}")

    await runner.cleanup()
    print(f"CLIENT spans: {client_spans(exporter)}")


if __name__ == "__main__":
    asyncio.run(main())
