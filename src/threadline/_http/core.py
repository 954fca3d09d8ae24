"""Everything HTTP that is not framework-specific; framework adapters are thin layers over it.

The incoming fields and their size limits, the trust decision, the request-id
rules, the host allow-list for baggage, the HTTP semantic-convention
attributes of SERVER and CLIENT spans, and the access-log line. An adapter
(`threadline.aiohttp`) turns its framework's request objects into these calls.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from typing import Any

from opentelemetry.propagators.textmap import Getter, default_setter
from opentelemetry.trace import (
    Link,
    Span,
    SpanKind,
    Status,
    StatusCode,
    get_current_span,
)

from .._core.context import Context, span_key
from .._core.drops import record_drop
from .._core.stores import merged_into, with_store_values
from .._core.stores import request as request_store
from .._core.text import escape_controls, valid_utf8
from .._telemetry.spans import start_boundary_span
from .._wire.carrier import BAGGAGE, FIELD_LIMITS, TRACEPARENT
from .._wire.formats import DEFAULT, configured_formats, extract_formats, inject_formats

__all__ = [
    "REQUEST_ID_HEADER",
    "GetAll",
    "HostAllowList",
    "end_client_span",
    "end_server_span",
    "handler_context",
    "incoming_context",
    "log_access",
    "request_id_of",
    "start_client_span",
    "start_server_span",
    "without_incoming_user",
    "write_outgoing",
]

REQUEST_ID_HEADER = "X-Request-ID"
SERVER_BOUNDARY = "http.server"
CLIENT_BOUNDARY = "http.client"

GetAll = Callable[[str, Sequence[str]], Sequence[str]]
"""``get_all(name, ())``: every value of one request header (its name matched
case-insensitively), or the default given; a multidict's bound ``getall``."""

_NONE: Sequence[str] = ()

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=@-]{1,128}")
_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"}
)
_EMPTY = Context()
# Request ids need to be unique, not secret; OpenTelemetry's trace ids come from
# the same generator. It spares a system call per request.
_ids = random.Random()  # noqa: S311
if hasattr(os, "register_at_fork"):  # a forked worker (gunicorn --preload) makes ids of its own
    os.register_at_fork(after_in_child=_ids.seed)


# --------------------------------------------------------------------------- incoming


def incoming_context(get_all: GetAll, trust: bool) -> tuple[Context, Link | None]:
    """Return the context a request brought, and None; distrusted, an empty one and a link.

    Read in the configured formats (threadline's carrier unless
    ``OTEL_PROPAGATORS`` says otherwise). A threadline field longer than its
    limit (`threadline._carrier.FIELD_LIMITS`, all its header lines together)
    is dropped unread. Distrusted: the incoming span, when valid, becomes the
    link of a new trace, and baggage is never read.
    """
    formats = configured_formats()
    if formats is DEFAULT and not get_all(TRACEPARENT, _NONE) and not get_all(BAGGAGE, _NONE):
        return _EMPTY, None  # nothing came (tracestate alone means nothing): nothing to parse
    context = extract_formats(get_all, _LimitedHeaders(), formats, with_baggage=trust)
    if trust:
        return context, None
    remote_context = get_current_span(context).get_span_context()
    return _EMPTY, Link(remote_context) if remote_context.is_valid else None


class _LimitedHeaders(Getter[GetAll]):
    """Reads request headers through their `GetAll`; threadline's fields within their limits."""

    def get(self, carrier: GetAll, key: str) -> list[str] | None:
        values = list(carrier(key, _NONE))
        limit = FIELD_LIMITS.get(key)
        if limit is not None and values and sum(map(len, values)) > limit:
            record_drop(f"{key}.too_large", f"{sum(map(len, values))} characters in {key}")
            return None
        return values or None

    def keys(self, carrier: GetAll) -> list[str]:
        return []


def request_id_of(get_all: GetAll, accept: bool, incoming: Context) -> str:
    """Return the request's id, by one rule for every hop.

    With *accept*: a well-formed ``X-Request-ID`` header, else the request id
    that came in the trusted baggage (*incoming*: a hop that forwards only
    ``traceparent`` and ``baggage`` keeps it), else a new one. Well-formed is
    one value of 1-128 letters, digits and ``._:+/=@-``; anything else is
    dropped and counted as ``request_id.invalid``. A distrusted request brings
    no baggage, so it gets the header's id or a new one.
    """
    if accept:
        given = get_all(REQUEST_ID_HEADER, _NONE)
        if len(given) == 1 and _REQUEST_ID.fullmatch(given[0]):
            return given[0]
        if given:
            record_drop("request_id.invalid", f"{REQUEST_ID_HEADER} {given[0][:64]!r}")
        values = request_store.get(incoming) if incoming else None
        carried = values.get("request_id") if values is not None else None
        if isinstance(carried, str) and _REQUEST_ID.fullmatch(carried):
            return carried
        if carried is not None:
            record_drop("request_id.invalid", f"baggage request.request_id {str(carried)[:64]!r}")
    return _ids.randbytes(16).hex()


def without_incoming_user(incoming: Context) -> Context:
    """Return *incoming* without a ``user_id`` that came in the baggage.

    Where the application says who the user is (a ``user_id`` extractor), its
    answer is the only one: a client's own claim never stands in for "nobody".
    """
    value = request_store.get(incoming) if incoming else None
    if value is None or "user_id" not in value:
        return incoming
    kept = {key: item for key, item in value.items() if key != "user_id"}
    return with_store_values(incoming, {request_store.name: kept})


def handler_context(incoming: Context, span: Span | None, values: dict[str, Any]) -> Context:
    """One context for the handler: what came in, the server span, the request scope.

    *values* (frozen already) are merged into the `threadline.request` value
    that came in, if any.
    """
    return merged_into(
        incoming, request_store, values, {span_key(): span} if span is not None else None
    )


# --------------------------------------------------------------------------- spans


def _method_attributes(method: str, original: str) -> tuple[str, dict[str, Any]]:
    """The span name's method part and the method attributes (unknown methods as ``_OTHER``)."""
    if method in _KNOWN_METHODS:
        return method, {"http.request.method": method}
    return "HTTP", {"http.request.method": "_OTHER", "http.request.method_original": original}


def _server_address(host: str | None) -> tuple[str, int | None]:
    """Split a ``Host`` header into the name (IPv6 without brackets) and the port, if any."""
    name, separator, port = (host or "").rpartition(":")
    if not separator or not port.isdigit():  # no port, or the end of an IPv6 address
        return (host or "").strip("[]"), None
    return name.strip("[]"), int(port)


def start_server_span(
    method: str,
    route: str | None,
    *,
    path: str,
    scheme: str,
    query: str,
    host: str | None,
    client_address: str | None,
    user_agent: str | None,
    protocol_version: str,
    request_id: str,
    parent: Context,
    link: Link | None,
) -> Span:
    """Start the SERVER span ``"{method} {route}"`` with the HTTP semantic-convention attributes.

    All of them are given at the start, so samplers see them; *route* is the
    matched route template (None when no route matched). Text from the
    request is made valid UTF-8 (bytes that were not become U+FFFD).
    """
    shown, attributes = _method_attributes(method, valid_utf8(method))
    attributes["url.path"] = valid_utf8(path)
    attributes["url.scheme"] = scheme
    attributes["request.id"] = request_id
    attributes["network.protocol.version"] = protocol_version
    if route:
        attributes["http.route"] = route
    if query:
        attributes["url.query"] = valid_utf8(query)
    name, port = _server_address(valid_utf8(host) if host else host)
    if name:
        attributes["server.address"] = name
    if port is not None:
        attributes["server.port"] = port
    if client_address:
        attributes["client.address"] = client_address
    if user_agent:
        attributes["user_agent.original"] = valid_utf8(user_agent)
    return start_boundary_span(
        SERVER_BOUNDARY,
        f"{shown} {route}" if route else shown,
        kind=SpanKind.SERVER,
        attributes=attributes,
        context=parent,
        links=[link] if link else None,
    )


def end_server_span(span: Span, status: int | None) -> None:
    """Give *span* its status code and end it; 5xx is an error, 4xx is the client's."""
    if status is not None:
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            _fail(span, status)
    span.end()


def start_client_span(method: str, url: str, host: str | None, port: int | None) -> Span:
    """Start the CLIENT span ``"{method}"`` of one outgoing request (*url* without credentials)."""
    shown, attributes = _method_attributes(method.upper(), method)
    attributes["url.full"] = url
    if host:
        attributes["server.address"] = host
    if port:
        attributes["server.port"] = port
    return start_boundary_span(CLIENT_BOUNDARY, shown, kind=SpanKind.CLIENT, attributes=attributes)


def end_client_span(span: Span, status: int) -> None:
    """Give *span* its status code and end it; 4xx and 5xx are errors of a client call."""
    span.set_attribute("http.response.status_code", status)
    if status >= 400:
        _fail(span, status)
    span.end()


def _fail(span: Span, status: int) -> None:
    current = getattr(span, "status", None)  # an SDK span's; an exception set its own error.type
    if current is None or current.status_code is not StatusCode.ERROR:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))


# --------------------------------------------------------------------------- outgoing


def write_outgoing(
    headers: MutableMapping[str, str],
    context: Context,
    *,
    trusted: bool,
    send_request_id: bool = True,
    again: bool = False,
) -> None:
    """Write *context* into an outgoing request's *headers*; never raises for its baggage.

    The trace goes to every host, in the configured formats (threadline's
    carrier unless ``OTEL_PROPAGATORS`` says otherwise); baggage (with the
    store values) and ``X-Request-ID`` only when the host is *trusted*, the
    id only with *send_request_id*. *again*: the headers were written for
    another host before (a redirect): the decision is made anew for this one,
    so a trusted service that redirects to a third party never hands it the
    request's store values.
    """
    if again:
        stripped = {BAGGAGE, REQUEST_ID_HEADER.lower()}
        for name in list(headers):
            if name.lower() in stripped and name in headers:  # a multidict deletes every copy
                del headers[name]
    inject_formats(headers, default_setter, context, configured_formats(), with_baggage=trusted)
    if not (trusted and send_request_id):
        return
    value = request_store.get(context)
    request_id = value.get("request_id") if value is not None else None
    if isinstance(request_id, str) and REQUEST_ID_HEADER not in headers:
        headers[REQUEST_ID_HEADER] = request_id


class HostAllowList:
    """Hosts that may receive baggage: loopback, exact names, and ``*.suffix`` patterns."""

    def __init__(self, hosts: Iterable[str]) -> None:
        self._exact: set[str] = set()
        self._suffixes: list[str] = []
        for given in hosts:
            if not isinstance(given, str) or not given:
                raise TypeError(f"baggage_hosts takes host names, got {given!r}")
            host = given.lower().rstrip(".")
            if host.startswith("*."):
                self._suffixes.append(host[1:])
            else:
                self._exact.add(host)

    def allows(self, host: str | None) -> bool:
        """Return True if *host* may receive baggage and the request id."""
        if not host:
            return False
        host = host.lower().rstrip(".")
        if host == "localhost" or host in self._exact or host.endswith(tuple(self._suffixes)):
            return True
        try:
            return ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            return False


# --------------------------------------------------------------------------- access log


def log_access(
    logger: logging.Logger,
    *,
    method: str,
    path: str,
    status: int | None,
    started: float,
    route: str | None,
) -> None:
    """Write the access line ``{method} {path} {status} {duration}ms`` at INFO on *logger*.

    The record also has ``http_status``, ``duration_ms`` and ``route``. The
    method and path are escaped (`escape_controls`): no control character
    from the request reaches the line raw.
    """
    duration_ms = (time.time() - started) * 1000
    logger.info(
        "%s %s %s %.1fms",
        escape_controls(method),
        escape_controls(path),
        status if status is not None else "-",
        duration_ms,
        extra={"http_status": status, "duration_ms": round(duration_ms, 3), "route": route},
    )
