"""What the exchange reads of an ASGI scope: headers (lazily), method, path, route, span fields."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from functools import partial
from typing import Any

from .._http.incoming import GetAll
from .._http.server import ServerFields

__all__ = ["EXCHANGE", "NAMES", "READER", "Reader", "Scope", "route_of"]

Scope = MutableMapping[str, Any]
"""An ASGI connection scope."""

EXCHANGE = "threadline.exchange"
"""The scope's key of the request's `ServerExchange` (a second threadline middleware inside,
OpenTelemetry's middleware next, `set_route`)."""

NAMES: dict[str, bytes] = {}
"""Header names as ASGI spells them (lower-case bytes), made once."""


def route_of(scope: Scope) -> str | None:
    """The matched route's template: Starlette and FastAPI put the route in the scope."""
    route = scope.get("route")
    if route is None:
        return None
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str):
        return None
    base = scope.get("app_root_path")  # set inside a Mount: the path it matched follows it
    if base is not None:
        root: str = scope.get("root_path", "")
        if len(root) > len(base) and root.startswith(base):
            return root[len(base) :] + template
    return template


class Reader:
    """What `ServerExchange` reads of an ASGI scope."""

    def headers(self, scope: Scope) -> GetAll:
        return partial(_get_all, scope["headers"])

    def method(self, scope: Scope) -> str:
        return str(scope["method"])

    def path(self, scope: Scope) -> str:
        return str(scope["path"])

    def route(self, scope: Scope) -> str | None:
        return route_of(scope)

    def fields(self, scope: Scope) -> ServerFields:
        headers = scope["headers"]
        host: str | bytes | None = _first(headers, b"host")
        if host is None and scope.get("server"):
            name, port = scope["server"][:2]
            host = f"{name}:{port}" if port is not None else str(name)
        client = scope.get("client")
        return ServerFields(  # scheme, query, host, client address, user agent, protocol version
            scope.get("scheme", "http"),
            scope.get("query_string", b""),
            host,
            client[0] if client else None,
            _first(headers, b"user-agent"),
            scope.get("http_version", "1.1"),
        )

    def location(self, scope: Scope) -> str:
        """Where the request's handler is defined, once routed; its path until then."""
        code = getattr(scope.get("endpoint"), "__code__", None)
        return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else scope["path"]


def _get_all(headers: Iterable[tuple[bytes, bytes]], name: str, default: Any) -> list[bytes] | Any:
    """Every value of the header *name* (lower case: ASGI servers lower-case names)."""
    key = NAMES.get(name)
    if key is None:
        key = NAMES[name] = name.lower().encode("latin-1")
    found = [value for field, value in headers if field == key]
    return found or default


def _first(headers: Iterable[tuple[bytes, bytes]], key: bytes) -> bytes | None:
    for field, value in headers:
        if field == key:
            return value
    return None


READER = Reader()
