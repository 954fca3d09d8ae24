"""Real ASGI servers for the tests: uvicorn and hypercorn, in this process, on free loopback ports.

``async with serving(app, "uvicorn") as base: ...`` starts the server in the
running event loop on a socket bound to port 0 and stops it after the block;
the `asgi_serve` fixture in conftest.py does the same for a whole test.
uvicorn runs with its defaults (no ``--reset-contextvars``), h11 and the
asyncio loop; hypercorn with its asyncio worker.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

SERVERS = ("uvicorn", "hypercorn")

AsgiServe = Callable[..., Awaitable[str]]
"""The `asgi_serve` fixture: ``await asgi_serve(app, server)`` -> the base URL."""


def _bound() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@asynccontextmanager
async def serving(app: Any, server: str = "uvicorn") -> AsyncIterator[str]:
    """Serve *app* with the real *server* (``uvicorn`` or ``hypercorn``); yield its base URL."""
    sock = _bound()
    port = sock.getsockname()[1]
    if server == "uvicorn":
        import uvicorn

        config = uvicorn.Config(
            app, lifespan="off", access_log=False, log_level="warning", http="h11"
        )
        instance = uvicorn.Server(config)
        instance.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        task = asyncio.create_task(instance.serve(sockets=[sock]))
        try:
            await _until_accepting(port, task)
            yield f"http://127.0.0.1:{port}"
        finally:
            instance.should_exit = True
            await task
            sock.close()
    elif server == "hypercorn":
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"fd://{sock.fileno()}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        config.graceful_timeout = 1
        stop = asyncio.Event()
        task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait, mode="asgi"))
        try:
            await _until_accepting(port, task)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop.set()
            await task
            sock.detach()  # hypercorn closed the socket it made of our descriptor
    else:
        raise ValueError(f"no server {server!r}")


async def _until_accepting(port: int, task: asyncio.Task[Any]) -> None:
    for _ in range(500):
        if task.done():
            task.result()
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise TimeoutError(f"nothing accepts on port {port}")


@asynccontextmanager
async def asgi_servers() -> AsyncIterator[AsgiServe]:
    """What the `asgi_serve` fixture yields: start servers in the block, all stopped after it."""
    async with AsyncExitStack() as stack:

        async def start(app: Any, server: str = "uvicorn") -> str:
            return await stack.enter_async_context(serving(app, server))

        yield start
