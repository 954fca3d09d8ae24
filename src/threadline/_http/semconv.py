"""The HTTP semantic conventions of SERVER and CLIENT spans, and what counts as an error.

Every HTTP span's name and attributes are made here, from what an adapter
read of its framework's request: the method (unknown ones as ``_OTHER``),
the server's address and port (IPv6 included), ``url.*``, the status code and
``error.type``. Text from the request is made valid UTF-8 first, so the OTLP
exporter never fails on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from opentelemetry.trace import Span, Status, StatusCode

from .._core.text import valid_utf8

__all__ = [
    "KNOWN_METHODS",
    "OTHER_METHOD",
    "ServerFields",
    "StatusPolicy",
    "client_attributes",
    "client_error",
    "method_attributes",
    "redacted_query",
    "server_address",
    "server_attributes",
    "server_error",
    "server_span_name",
    "set_status",
    "text",
    "without_credentials",
]

KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"}
)
"""The methods a span names as they are; any other is ``_OTHER`` (and ``HTTP`` in the name)."""
OTHER_METHOD = "_OTHER"

StatusPolicy = Callable[[int], bool]
"""Whether a response's status makes its span an error: one policy per side of an exchange
(an HTTP server fails on 5xx, an HTTP client on 4xx and 5xx; gRPC codes are not HTTP's)."""


def server_error(status: int) -> bool:
    """A server's rule: 5xx is its error; 4xx is the client's, not the server's."""
    return status >= 500


def client_error(status: int) -> bool:
    """A client's rule: 4xx and 5xx are errors of the call."""
    return status >= 400


class ServerFields(NamedTuple):
    """What a server span is made of besides its method, path and route; read only for a span.

    Text may be ``str`` or ``bytes`` (as ASGI gives it): it is made valid UTF-8 here.
    """

    scheme: str
    query: str | bytes
    host: str | bytes | None
    client_address: str | None
    user_agent: str | bytes | None
    protocol_version: str


def text(value: str | bytes) -> str:
    """*value* from the request as valid UTF-8 text: bytes that were not UTF-8 become U+FFFD."""
    if type(value) is str and value.isascii():  # the common case, without a further call
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return valid_utf8(value)


def method_attributes(method: str) -> tuple[str, dict[str, Any]]:
    """The span name's method part and the method attributes (unknown methods as ``_OTHER``)."""
    if method in KNOWN_METHODS:
        return method, {"http.request.method": method}
    return "HTTP", {
        "http.request.method": OTHER_METHOD,
        "http.request.method_original": text(method),
    }


def server_span_name(method: str, route: str | None) -> str:
    """``"{method} {route}"``, or just the method when no route matched (``HTTP`` when unknown)."""
    return _named(method if method in KNOWN_METHODS else "HTTP", route)


def _named(shown: str, route: str | None) -> str:
    return f"{shown} {route}" if route else shown


def server_address(host: str | None) -> tuple[str, int | None]:
    """Split a ``Host`` header into the name (IPv6 without brackets) and the port, if any."""
    name, separator, port = (host or "").rpartition(":")
    if not separator or not port.isdigit():  # no port, or the end of an IPv6 address
        return (host or "").strip("[]"), None
    return name.strip("[]"), int(port)


def server_attributes(
    method: str, route: str | None, path: str, fields: ServerFields, request_id: str
) -> tuple[str, dict[str, Any]]:
    """The SERVER span's name and attributes, all known at its start (samplers see them)."""
    shown, attributes = method_attributes(method)
    attributes["url.path"] = text(path)
    attributes["url.scheme"] = fields.scheme
    attributes["request.id"] = request_id
    attributes["network.protocol.version"] = fields.protocol_version
    if route:
        attributes["http.route"] = route
    if fields.query:
        attributes["url.query"] = redacted_query(text(fields.query))
    name, port = _address_of(fields.host) if fields.host else ("", None)
    if name:
        attributes["server.address"] = name
    if port is not None:
        attributes["server.port"] = port
    if fields.client_address:
        attributes["client.address"] = fields.client_address
    if fields.user_agent:
        attributes["user_agent.original"] = text(fields.user_agent)
    return _named(shown, route), attributes


_addresses: dict[str | bytes, tuple[str, int | None]] = {}
"""`server_address` of the ``Host`` values seen, for the next request with the same one."""
_MAX_ADDRESSES = 64  # a server answers to a few names; others (any client may send any) not kept


def _address_of(host: str | bytes) -> tuple[str, int | None]:
    if type(host) is not str and type(host) is not bytes:  # (a subclass may hash as it likes)
        return server_address(text(host))
    found = _addresses.get(host)
    if found is None:
        found = server_address(text(host))
        if len(_addresses) < _MAX_ADDRESSES:
            _addresses[host] = found
    return found


def client_attributes(
    method: str, url: str, host: str | None, port: int | None
) -> tuple[str, dict[str, Any]]:
    """The CLIENT span's name ``"{method}"`` and attributes (``url.full`` without credentials)."""
    shown, attributes = method_attributes(method)
    attributes["url.full"] = without_credentials(url)
    if host:
        attributes["server.address"] = host
    if port:
        attributes["server.port"] = port
    return shown, attributes


def without_credentials(url: str) -> str:
    """*url* without the ``user:password@`` of its authority, its query `redacted_query`.

    Everything else is kept byte for byte.
    """
    if "@" not in url and "?" not in url:  # no user info, no query: most URLs, as they are
        return url
    url = _with_query_redacted(url)
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    end = min((index for index in map(rest.find, "/?#") if index >= 0), default=len(rest))
    _credentials, at, host = rest[:end].rpartition("@")
    return f"{scheme}://{host}{rest[end:]}" if at else url


# The HTTP semantic conventions (url.full, url.query): the values of these query keys
# SHOULD be replaced by "REDACTED" by default; they are credentials of signed URLs.
_SIGNATURE_KEYS = frozenset({"AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"})
_REDACTED = "REDACTED"


def redacted_query(query: str) -> str:
    """*query* with the values of its signed URLs' credentials replaced by ``REDACTED``.

    The keys are the ones the HTTP semantic conventions name (``AWSAccessKeyId``,
    ``Signature``, ``sig``, ``X-Goog-Signature``); everything else is kept byte
    for byte.
    """
    # every key ends in "Signature", "sig" or "AWSAccessKeyId": most queries pass untouched
    if "sig=" not in query and "Signature=" not in query and "AWSAccessKeyId=" not in query:
        return query
    parts = query.split("&")
    for index, part in enumerate(parts):
        key, equals, value = part.partition("=")
        if equals and value and key in _SIGNATURE_KEYS:
            parts[index] = f"{key}={_REDACTED}"
    return "&".join(parts)


def _with_query_redacted(url: str) -> str:
    end = url.find("#")
    end = len(url) if end < 0 else end
    start = url.find("?", 0, end)  # a "?" in the fragment begins no query
    if start < 0:
        return url
    query = url[start + 1 : end]
    redacted = redacted_query(query)
    return url if redacted is query else f"{url[: start + 1]}{redacted}{url[end:]}"


def set_status(span: Span, status: int, is_error: StatusPolicy) -> None:
    """Give *span* ``http.response.status_code``; an error status when *is_error* says so.

    An error keeps the ``error.type`` an exception already gave the span;
    otherwise ``error.type`` is the status code.
    """
    span.set_attribute("http.response.status_code", status)
    if not is_error(status):
        return
    current = getattr(span, "status", None)  # an SDK span's; an exception set its own error.type
    if current is None or current.status_code is not StatusCode.ERROR:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))
