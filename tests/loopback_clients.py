"""What the httpx and requests tests share: clients to loopback, and a server that records hops.

The tests call "other" hosts (``thirdparty.example``, ``api.internal``) on
this machine's servers: the name stays the request's (its ``Host``, the
trust decision), only the connection goes to loopback (as `LoopbackResolver`
does for aiohttp). Nothing global is patched: each helper is a transport or
adapter given to one client. `hops_app` records every request it gets, so a
test sees each hop of a redirected call.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx
import requests
from aiohttp import web
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

SocketOptions = Iterable[tuple[int, int, int | bytes] | tuple[int, int, None, int]] | None


class _Backend(httpcore.SyncBackend):
    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: SocketOptions = None,
    ) -> httpcore.NetworkStream:
        return super().connect_tcp("127.0.0.1", port, timeout, local_address, socket_options)


class _AsyncBackend(httpcore.AnyIOBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: SocketOptions = None,
    ) -> httpcore.AsyncNetworkStream:
        return await super().connect_tcp("127.0.0.1", port, timeout, local_address, socket_options)


def loopback_transport() -> httpx.HTTPTransport:
    """httpx's own transport (so OpenTelemetry's instrumentor wraps it too), to loopback."""
    transport = httpx.HTTPTransport()
    transport._pool = httpcore.ConnectionPool(network_backend=_Backend())
    return transport


def async_loopback_transport() -> httpx.AsyncHTTPTransport:
    """httpx's own async transport, to loopback."""
    transport = httpx.AsyncHTTPTransport()
    transport._pool = httpcore.AsyncConnectionPool(network_backend=_AsyncBackend())
    return transport


class _Connection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        # urllib3 reads its host (and so the Host header) from the same attribute
        host, self._dns_host = self._dns_host, "127.0.0.1"
        try:
            return super()._new_conn()
        finally:
            self._dns_host = host


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class LoopbackAdapter(HTTPAdapter):
    """requests' own adapter whose connections go to 127.0.0.1 (mount it for ``http://``)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool}  # type: ignore[assignment]


def loopback_session() -> requests.Session:
    """A `requests.Session` whose ``http://`` hosts all connect to loopback."""
    session = requests.Session()
    session.mount("http://", LoopbackAdapter())
    return session


SEEN = web.AppKey("seen", list)


class Hop(dict[str, Any]):
    """A request `hops_app` got: ``host``, ``path``, ``method``, ``headers``, lower-case names."""


async def _record(request: web.Request, handler: Any) -> web.StreamResponse:
    request.app[SEEN].append(
        Hop(
            host=request.host.rsplit(":", 1)[0],
            path=request.path,
            method=request.method,
            headers={k.lower(): v for k, v in request.headers.items()},
        )
    )
    return await handler(request)  # type: ignore[no-any-return]


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"method": request.method, "host": request.host})


async def _redirect(request: web.Request) -> web.Response:
    code = int(request.query.get("code", "302"))
    return web.Response(status=code, headers={"Location": request.query["to"]})


async def _loop(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": "/loop"})


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    for chunk in (b"one ", b"two ", b"three"):
        await response.write(chunk)
    await response.write_eof()
    return response


async def _broken(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Length": "100"})
    await response.prepare(request)
    await response.write(b"only a part")
    assert request.transport is not None
    request.transport.close()  # the body never comes whole
    return response


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(1)
    return web.Response(text="late")


def hops_app() -> web.Application:
    """A plain aiohttp server that records each request (``app[SEEN]``).

    Routes: ``/echo`` (any method: JSON of its method), ``/redirect?to=&code=``,
    ``/loop`` (redirects to itself), ``/stream`` (a chunked body), ``/broken``
    (a body cut short), ``/slow`` (answers after a second).
    """
    app = web.Application(middlewares=[web.middleware(_record)])
    app[SEEN] = []
    app.router.add_route("*", "/echo", _echo)
    app.router.add_route("*", "/redirect", _redirect)
    app.router.add_get("/loop", _loop)
    app.router.add_get("/stream", _stream)
    app.router.add_get("/broken", _broken)
    app.router.add_get("/slow", _slow)
    return app
