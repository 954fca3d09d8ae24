"""A W3C Trace Context harness service made of threadline's server middleware and client.

Two stacks: ``aiohttp`` (threadline's aiohttp middleware and client trace
config) and ``asgi`` (a FastAPI app with `threadline.asgi.setup`, served by
uvicorn, calling out with an `httpx.AsyncClient` under
`threadline.httpx.instrument`). The harness (``test/`` of the
w3c/trace-context repository, not part of this repository) POSTs a JSON list
of ``{"url", "arguments"}``; the service POSTs each ``arguments`` to its
``url`` from inside the request, as the harness asks. Run by
``scripts/w3c-harness``; prints its URL, then serves until stopped::

    python scripts/w3c_service.py --stack asgi
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
import uvicorn
from aiohttp import web
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from starlette.requests import Request
from starlette.responses import PlainTextResponse

import threadline.aiohttp
import threadline.asgi
import threadline.httpx

STACKS = ("aiohttp", "asgi")


async def serve_aiohttp() -> None:
    """The aiohttp middleware and client trace config, on a free loopback port."""
    client = web.AppKey("client", aiohttp.ClientSession)

    async def test(request: web.Request) -> web.Response:
        for call in await request.json():
            async with request.app[client].post(call["url"], json=call["arguments"]) as response:
                await response.read()
        return web.Response(text="ok")

    async def session(app: web.Application) -> AsyncIterator[None]:
        app[client] = aiohttp.ClientSession(trace_configs=[threadline.aiohttp.trace_config()])
        yield
        await app[client].close()

    app = web.Application(middlewares=[threadline.aiohttp.middleware(access_log=False)])
    app.router.add_post("/test", test)
    app.cleanup_ctx.append(session)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}/test", flush=True)
    await asyncio.Event().wait()


async def serve_asgi() -> None:
    """FastAPI with `threadline.asgi`, under uvicorn, calling out with an instrumented httpx."""
    clients: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with threadline.httpx.instrument(httpx.AsyncClient()) as client:
            clients["client"] = client
            yield

    app = FastAPI(lifespan=lifespan)

    async def test(request: Request) -> PlainTextResponse:
        for call in await request.json():
            await clients["client"].post(call["url"], json=call["arguments"])
        return PlainTextResponse("ok")

    app.add_route("/test", test, methods=["POST"])  # a Starlette endpoint: no annotations read

    threadline.asgi.setup(app, access_log=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    print(f"http://127.0.0.1:{sock.getsockname()[1]}/test", flush=True)
    await serving


def main(argv: list[str] | None = None) -> None:
    """Serve the chosen stack on a free loopback port, printing the URL first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", choices=STACKS, default="aiohttp")
    args = parser.parse_args(argv)
    trace.set_tracer_provider(TracerProvider())  # spans recorded, not exported
    asyncio.run(serve_asgi() if args.stack == "asgi" else serve_aiohttp())


if __name__ == "__main__":
    main()
