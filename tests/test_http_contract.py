"""The HTTP contract (tests/http_contract.py) for each adapter.

aiohttp's server and client, httpx's Client and AsyncClient, requests' Session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import pytest
import requests
from aiohttp import web

import threadline.aiohttp as tla
import threadline.httpx as tlx
import threadline.requests as tlr
from tests.helpers import LoopbackResolver, Serve
from tests.http_contract import ClientContract, ServerContract, probe
from tests.loopback_clients import async_loopback_transport, loopback_session, loopback_transport


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


def _answer(status: int, content_type: str, body: Callable[[], Any]) -> tuple[int, Any]:
    return status, body() if content_type.startswith("application/json") else None


class TestHttpxClient(ClientContract):
    """httpx.Client, called in a thread with the caller's context (asyncio.to_thread copies it)."""

    connection_error = httpx.ConnectError

    async def call(self, url: str, **options: Any) -> tuple[int, dict[str, Any] | None]:
        return await asyncio.to_thread(self.call_in_thread, url, options)

    @staticmethod
    def call_in_thread(url: str, options: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        with httpx.Client(transport=loopback_transport(), follow_redirects=True) as client:
            tlx.instrument(client, **options)
            response = client.get(url)
            return _answer(
                response.status_code, response.headers.get("content-type", ""), response.json
            )


class TestHttpxAsyncClient(ClientContract):
    connection_error = httpx.ConnectError

    async def call(self, url: str, **options: Any) -> tuple[int, dict[str, Any] | None]:
        transport = async_loopback_transport()
        async with httpx.AsyncClient(transport=transport, follow_redirects=True) as client:
            tlx.instrument(client, **options)
            response = await client.get(url)
            return _answer(
                response.status_code, response.headers.get("content-type", ""), response.json
            )


class TestRequestsSession(ClientContract):
    """requests.Session, called in a thread that has the caller's context."""

    connection_error = requests.ConnectionError

    async def call(self, url: str, **options: Any) -> tuple[int, dict[str, Any] | None]:
        return await asyncio.to_thread(self.call_in_thread, url, options)

    @staticmethod
    def call_in_thread(url: str, options: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        with loopback_session() as session:
            tlr.instrument(session, **options)
            response = session.get(url, timeout=30)
            return _answer(
                response.status_code, response.headers.get("content-type", ""), response.json
            )
