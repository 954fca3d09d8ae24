"""One request id across every hop: header, else trusted baggage, else a new id.

Real services on loopback: gateway (threadline) -> relay that forwards only
`traceparent` and `baggage` (plain aiohttp, or Node.js) -> backend (threadline).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import threadline as tl
import threadline.aiohttp as tla
from tests.helpers import Serve
from threadline import diagnostics

RELAY_JS = Path(__file__).resolve().parent.parent / "examples" / "interop" / "relay.js"
FORWARDED = ("traceparent", "baggage")

CLIENT = web.AppKey("client", aiohttp.ClientSession)


async def seen_by_backend(request: web.Request) -> web.Response:
    """What the last service sees: its request id, and the headers that reached it."""
    value = tl.request.get() or {}
    headers = {k.lower() for k in request.headers}
    return web.json_response({"request_id": value.get("request_id"), "headers": sorted(headers)})


def backend_app(**options: Any) -> web.Application:
    app = web.Application(middlewares=[tla.middleware(**options)])
    app.router.add_get("/work", seen_by_backend)
    return app


def gateway_app(next_hop: str) -> web.Application:
    async def front(request: web.Request) -> web.Response:
        async with request.app[CLIENT].get(next_hop) as response:
            body = await response.json()
        return web.json_response({**body, "gateway_request_id": tl.request.get()["request_id"]})

    async def client(app: web.Application) -> AsyncIterator[None]:
        app[CLIENT] = aiohttp.ClientSession(trace_configs=[tla.trace_config()])
        yield
        await app[CLIENT].close()

    app = web.Application(middlewares=[tla.middleware()])
    app.router.add_get("/front", front)
    app.cleanup_ctx.append(client)
    return app


def python_relay_app(next_hop: str) -> web.Application:
    """Forwards only traceparent and baggage, as a mesh or a service in another language does."""

    async def relay(request: web.Request) -> web.Response:
        headers = {name: request.headers[name] for name in FORWARDED if name in request.headers}
        async with request.app[CLIENT].get(next_hop, headers=headers) as response:
            return web.json_response(await response.json(), status=response.status)

    async def client(app: web.Application) -> AsyncIterator[None]:
        app[CLIENT] = aiohttp.ClientSession()
        yield
        await app[CLIENT].close()

    app = web.Application()
    app.router.add_get("/relay", relay)
    app.cleanup_ctx.append(client)
    return app


@pytest.fixture
def node_relay() -> Iterator[Callable[[str], str]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    processes: list[subprocess.Popen[str]] = []

    def run(next_hop: str) -> str:
        process = subprocess.Popen(
            [node, str(RELAY_JS), next_hop], stdout=subprocess.PIPE, text=True
        )
        processes.append(process)
        assert process.stdout is not None
        return process.stdout.readline().strip()

    yield run
    for process in processes:
        process.terminate()
        process.communicate(timeout=30)


async def call(url: str, headers: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        assert 200 == response.status
        return response.headers["X-Request-ID"], await response.json()


async def chain(serve: Serve, relay: Callable[[str], Awaitable[str]], **backend: Any) -> str:
    """Start backend, relay and gateway; return the gateway's URL."""
    backend_url = await serve(backend_app(**backend))
    relay_url = await relay(f"{backend_url}/work")
    return f"{await serve(gateway_app(relay_url))}/front"


class TestThroughARelay:
    async def python_relay(self, serve: Serve, next_hop: str) -> str:
        return f"{await serve(python_relay_app(next_hop))}/relay"

    async def test_given_id_survives_the_relay(self, serve: Serve) -> None:
        """The id a caller sent reaches the backend through a hop that drops X-Request-ID."""
        front = await chain(serve, lambda hop: self.python_relay(serve, hop))
        answered, body = await call(front, {"X-Request-ID": "req-42"})
        assert ("req-42", "req-42", "req-42") == (
            answered,
            body["gateway_request_id"],
            body["request_id"],
        )
        assert "x-request-id" not in body["headers"]  # the relay really dropped it

    async def test_minted_id_survives_the_relay(self, serve: Serve) -> None:
        """An id the gateway made is the backend's too."""
        front = await chain(serve, lambda hop: self.python_relay(serve, hop))
        answered, body = await call(front)
        assert answered == body["request_id"] == body["gateway_request_id"]

    async def test_each_request_keeps_its_own_id_under_concurrency(self, serve: Serve) -> None:
        """Two hundred concurrent requests arrive at the backend each under its own id."""
        front = await chain(serve, lambda hop: self.python_relay(serve, hop))
        results = await asyncio.gather(
            *(call(front, {"X-Request-ID": f"c-{i}"}) for i in range(200))
        )
        assert [f"c-{i}" for i in range(200)] == [body["request_id"] for _, body in results]

    async def test_distrusting_backend_ignores_baggage(self, serve: Serve) -> None:
        """trust_incoming=False reads no baggage, so no request id from it: a new one."""
        front = await chain(serve, lambda hop: self.python_relay(serve, hop), trust_incoming=False)
        _, body = await call(front, {"X-Request-ID": "req-42"})
        assert "req-42" != body["request_id"]

    async def test_refused_ids_are_not_taken_from_baggage(self, serve: Serve) -> None:
        """accept_request_id=False makes a new id whatever came."""
        front = await chain(
            serve, lambda hop: self.python_relay(serve, hop), accept_request_id=False
        )
        _, body = await call(front, {"X-Request-ID": "req-42"})
        assert "req-42" != body["request_id"]


class TestRules:
    async def test_header_wins_over_baggage(self, serve: Serve) -> None:
        """A well-formed X-Request-ID wins over the request id in the baggage."""
        backend = await serve(backend_app())
        headers = {"X-Request-ID": "from-header", "baggage": "request.request_id=from-baggage;tl"}
        _, body = await call(f"{backend}/work", headers)
        assert "from-header" == body["request_id"]

    async def test_malformed_header_falls_back_to_baggage(self, serve: Serve) -> None:
        """A malformed header is dropped and counted; the baggage's id is used."""
        backend = await serve(backend_app())
        headers = {"X-Request-ID": "bad id!", "baggage": "request.request_id=from-baggage;tl"}
        _, body = await call(f"{backend}/work", headers)
        assert "from-baggage" == body["request_id"]
        assert 1 == diagnostics.drop_counts()["request_id.invalid"]

    @pytest.mark.parametrize(
        "member",
        [
            "request.request_id=bad%20id;tl",  # not the id grammar
            "request.request_id=" + "x" * 129 + ";tl",  # too long
            "request.request_id=42;tl=json",  # not a string
        ],
    )
    async def test_malformed_baggage_id_is_replaced(self, serve: Serve, member: str) -> None:
        """An id in the baggage that a header could not carry is dropped, counted, replaced."""
        backend = await serve(backend_app())
        answered, body = await call(f"{backend}/work", {"baggage": member})
        assert answered == body["request_id"]
        assert 32 == len(answered)
        assert 1 == diagnostics.drop_counts()["request_id.invalid"]


class TestThroughNode:
    async def test_id_survives_a_node_service(
        self, serve: Serve, node_relay: Callable[[str], str]
    ) -> None:
        """A Node.js service (AsyncLocalStorage; forwards traceparent, baggage) keeps the id."""

        async def relay(next_hop: str) -> str:
            return await asyncio.to_thread(node_relay, next_hop)

        front = await chain(serve, relay)
        results = await asyncio.gather(
            *(call(front, {"X-Request-ID": f"n-{i}"}) for i in range(50))
        )
        assert [f"n-{i}" for i in range(50)] == [body["request_id"] for _, body in results]
        assert all("x-request-id" not in body["headers"] for _, body in results)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_workers_make_ids_of_their_own() -> None:
    """A server forked after import (gunicorn --preload) never repeats its parent's request ids."""
    program = (
        "import os\n"
        "from threadline._core.context import Context\n"
        "from threadline._http.incoming import request_id_of\n"
        "def new_id():\n"
        "    return request_id_of(lambda name, default: default, True, Context())\n"
        "new_id()\n"
        "reader, writer = os.pipe()\n"
        "if os.fork() == 0:\n"
        "    os.write(writer, new_id().encode())\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "print(new_id(), os.read(reader, 64).decode())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    parent, child = done.stdout.split()
    assert parent != child
