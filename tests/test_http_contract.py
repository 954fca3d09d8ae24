"""The HTTP contract (tests/http_contract.py) for each adapter: aiohttp's server and client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import threadline.aiohttp as tla
from tests.helpers import LoopbackResolver, Serve
from tests.http_contract import ClientContract, ServerContract, probe


async def _items(request: web.Request) -> web.Response:
    return web.json_response(probe())


async def _status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]))


async def _fail(request: web.Request) -> web.Response:
    raise RuntimeError("handler failed")


def probe_app(middleware: Callable[..., Awaitable[web.StreamResponse]]) -> web.Application:
    app = web.Application(middlewares=[middleware])
    app.router.add_route("*", "/items/{item_id}", _items)
    app.router.add_get("/status/{code}", _status)
    app.router.add_get("/fail", _fail)
    return app


class TestAiohttpServer(ServerContract):
    logger_name = "threadline.aiohttp"

    @pytest.fixture(autouse=True)
    def _serve(self, serve: Serve) -> None:
        self.serve = serve

    async def start(self, **options: Any) -> str:
        return await self.serve(probe_app(tla.middleware(**options)))

    def header_of(self, request: web.Request, name: str) -> str | None:
        return request.headers.get(name)


class TestAiohttpClient(ClientContract):
    connection_error = aiohttp.ClientConnectionError

    async def call(self, url: str, **options: Any) -> tuple[int, dict[str, Any] | None]:
        config = tla.trace_config(**options)
        connector = aiohttp.TCPConnector(resolver=LoopbackResolver())
        async with (
            aiohttp.ClientSession(connector=connector, trace_configs=[config]) as session,
            session.get(url) as response,
        ):
            is_json = response.content_type == "application/json"
            return response.status, await response.json() if is_json else None
