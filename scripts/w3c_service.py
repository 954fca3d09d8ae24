"""A W3C Trace Context harness service made of threadline's aiohttp middleware and client.

The harness (``test/`` of the w3c/trace-context repository, not part of this
repository) POSTs a JSON list of ``{"url", "arguments"}``; the service POSTs
each ``arguments`` to its ``url`` from inside the request, as the harness asks.
Run by ``scripts/w3c-harness``; prints its URL, then serves until stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import threadline.aiohttp

CLIENT = web.AppKey("client", aiohttp.ClientSession)


async def test(request: web.Request) -> web.Response:
    """Make the calls the harness asks for, from inside the request."""
    for call in await request.json():
        async with request.app[CLIENT].post(call["url"], json=call["arguments"]) as response:
            await response.read()
    return web.Response(text="ok")


async def client(app: web.Application) -> AsyncIterator[None]:
    """One client session with threadline's trace config, for the app's life."""
    app[CLIENT] = aiohttp.ClientSession(trace_configs=[threadline.aiohttp.trace_config()])
    yield
    await app[CLIENT].close()


async def main() -> None:
    """Serve on a free loopback port, printing the URL first."""
    trace.set_tracer_provider(TracerProvider())  # spans recorded, not exported
    app = web.Application(middlewares=[threadline.aiohttp.middleware(access_log=False)])
    app.router.add_post("/test", test)
    app.cleanup_ctx.append(client)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}/test", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
