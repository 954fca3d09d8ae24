"""httpx and requests clients whose every host name connects to 127.0.0.1 (as `LoopbackResolver`).

The tests call "other" hosts (``thirdparty.example``, ``api.internal``) on
this machine's servers: the name stays the request's (its ``Host``, the
trust decision), only the connection goes to loopback. Nothing global is
patched: each helper is a transport or adapter given to one client.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx
import requests
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
        self._dns_host = "127.0.0.1"
        return super()._new_conn()


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
