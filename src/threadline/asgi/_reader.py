"""What the exchange reads of an ASGI scope: headers (lazily), method, path, route, span fields."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

from .._http.incoming import GetAll
from .._http.server import ServerFields

__all__ = ["EXCHANGE", "NAMES", "READER", "Reader", "Scope", "code_location", "route_of"]

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
        return _Headers(scope["headers"]).get_all

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
        return code_location(scope.get("endpoint")) or str(scope["path"])


def code_location(handler: object) -> str | None:
    """``"file:line"`` where *handler* (a function, or what wraps one) is defined, or None."""
    code = getattr(handler, "__code__", None)
    if code is None:  # a class-based view, a partial: the function inside
        inner = getattr(handler, "__wrapped__", None) or getattr(handler, "func", None)
        code = getattr(inner, "__code__", None)
    if code is None:
        return None
    return f"{code.co_filename}:{code.co_firstlineno}"


class _Headers:
    """One request's headers, the ones threadline reads indexed when first asked (asked ~6 times).

    Any other name (another propagator's field) is looked for when asked.
    """

    __slots__ = ("_headers", "_index")

    def __init__(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        self._headers = headers
        self._index: dict[bytes, list[bytes]] | None = None

    def get_all(self, name: str, default: Any) -> list[bytes] | Any:
        """Every value of the header *name* (lower case: ASGI servers lower-case names)."""
        key = NAMES.get(name)
        if key is None:
            key = NAMES[name] = name.lower().encode("latin-1")
        if key not in INDEXED:
            return _all(self._headers, key) or default
        index = self._index
        if index is None:
            index = self._index = _indexed(self._headers)
        return index.get(key, default)


INDEXED = frozenset({b"traceparent", b"tracestate", b"baggage", b"x-request-id"})
"""The headers every request is asked for (the trace context, baggage, request id)."""


def _indexed(headers: Iterable[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
    # one pass, keeping only what is asked: the rest of a request's headers cost a look-up each
    index: dict[bytes, list[bytes]] = {}
    for field, value in headers:
        name = field
        if type(name) is not bytes:
            if not isinstance(name, (bytearray, memoryview)):
                continue  # not a header name ASGI allows: never one asked for
            name = bytes(name)
        if name in INDEXED:
            values = index.get(name)
            if values is None:
                index[name] = [value]
            else:
                values.append(value)
    return index


def _all(headers: Iterable[tuple[bytes, bytes]], key: bytes) -> list[bytes]:
    return [value for field, value in headers if field == key]


def _first(headers: Iterable[tuple[bytes, bytes]], key: bytes) -> bytes | None:
    for field, value in headers:
        if field == key:
            return value
    return None


READER = Reader()
