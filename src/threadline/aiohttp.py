"""aiohttp integration: a server middleware and a client `TraceConfig` that carry the context.

Server::

    app = web.Application(middlewares=[threadline.aiohttp.middleware()])

Every request runs in the context that arrived with it (strictly parsed), under
a SERVER span ``"{method} {route}"`` and in a `threadline.request` scope with
``request_id``, ``user_id`` and ``start_time``; the id goes back in the
``X-Request-ID`` response header, on errors too.

Client::

    session = aiohttp.ClientSession(trace_configs=[threadline.aiohttp.trace_config()])

Every outgoing request carries the caller's context, under a CLIENT span of
its own; baggage and store values go only to the hosts you allow.

.. versionadded:: 0.1
"""

from __future__ import annotations

import ipaddress
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import Token
from types import SimpleNamespace
from typing import Any

from aiohttp import (
    ClientSession,
    TraceConfig,
    TraceRequestEndParams,
    TraceRequestExceptionParams,
    TraceRequestStartParams,
    web,
)
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDictProxy
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from ._carrier import BAGGAGE, FIELDS, TRACEPARENT, TRACESTATE, extract_context, inject_context
from ._context import Context, attach, get_current, restore, store_key
from ._spans import provider_set, record_error, tracer
from ._store import request as request_store
from ._values import FrozenMapping, freeze
from .diagnostics import record_drop

__all__ = [
    "REQUEST_ID_HEADER",
    "middleware",
    "setup",
    "trace_config",
]

REQUEST_ID_HEADER = "X-Request-ID"
HEADER_LIMITS = {TRACEPARENT: 512, TRACESTATE: 8192, BAGGAGE: 8192}
"""The most characters a field may have, all its header lines together; a longer one is dropped."""

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=@-]{1,128}")
_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"}
)
_REQUEST_ID_KEY = (
    web.RequestKey("threadline_request_id", str)
    if hasattr(web, "RequestKey")
    else "threadline_request_id"
)
_REQUEST_STORE_KEY = store_key(request_store.name)
_EMPTY = Context()
# Request ids need to be unique, not secret; OpenTelemetry's trace ids come from
# the same generator. It spares a system call per request.
_ids = random.Random()  # noqa: S311
_access_log = logging.getLogger("threadline.aiohttp")

UserIdExtractor = Callable[[web.Request], Any]


def middleware(
    *,
    trust_incoming: bool = True,
    accept_request_id: bool = True,
    user_id: UserIdExtractor | None = None,
    spans: bool = True,
    access_log: bool = True,
    remember_request_id: bool = False,
) -> Middleware:
    """Return an aiohttp middleware that runs each request in its own context.

    Args:
        trust_incoming: continue the trace and baggage that came with the
            request. False, for a public edge: start a new trace (the incoming
            one, when valid, becomes a span link) and drop incoming baggage.
        accept_request_id: reuse a well-formed incoming ``X-Request-ID``
            (1-128 letters, digits and ``._:+/=@-``); otherwise, and when
            False, a new id is made.
        user_id: called with the request (it may be ``async``); what it
            returns becomes ``user_id`` in the request scope and ``enduser.id``
            on spans.
        spans: record a SERVER span per request.
        access_log: log one line per request at its end, with its duration,
            on the ``threadline.aiohttp`` logger.
        remember_request_id: keep the id on the request for `setup`'s
            response hook (set by `setup`).
    """
    log_access = _access_log.isEnabledFor if access_log else None

    @web.middleware
    async def threadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.time()
        headers = request.headers
        incoming, link = _extract(headers, trust_incoming)
        request_id = _request_id(headers, accept_request_id)
        if remember_request_id:
            request[_REQUEST_ID_KEY] = request_id
        span = (
            _start_server_span(request, incoming, link, request_id)
            if spans and provider_set()
            else None
        )
        values: dict[str, Any] = {"request_id": request_id, "start_time": started}
        token = attach(_handler_context(incoming, span, values))
        with_user: Token[Context] | None = None
        status: int | None = None
        try:
            # the extractor runs in the request's context, and its errors are the request's
            if user_id is not None and await _add_user_id(values, user_id, request, span):
                with_user = attach(_handler_context(incoming, span, values))
            response = await handler(request)
        except web.HTTPException as exc:
            status = exc.status
            exc.headers.setdefault(REQUEST_ID_HEADER, request_id)
            raise
        except Exception as exc:  # noqa: BLE001 - answer 500 here, so the request id goes with it
            status = 500
            _access_log.exception("unhandled exception in %s %s", request.method, request.path)
            if span is not None:
                record_error(span, exc)
            raise web.HTTPInternalServerError(headers={REQUEST_ID_HEADER: request_id}) from None
        except BaseException as exc:  # cancelled: the client went away
            if span is not None:
                record_error(span, exc)
            raise
        else:
            status = response.status
            if not response.prepared:
                response.headers.setdefault(REQUEST_ID_HEADER, request_id)
            return response
        finally:
            _finish(
                request, span, status, started, log_access is not None and log_access(logging.INFO)
            )
            if with_user is not None:
                restore(with_user)
            restore(token)

    return threadline_middleware


def setup(app: web.Application, **options: Any) -> None:
    """Add `middleware` to *app* (first), and the request id header to every response.

    Unlike the middleware alone, this also covers responses that a handler
    prepares (streams) itself. Takes the options of `middleware`.
    """
    app.middlewares.insert(0, middleware(**options, remember_request_id=True))
    app.on_response_prepare.append(_add_request_id_header)


async def _add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    request_id = request.get(_REQUEST_ID_KEY)
    if request_id is not None and REQUEST_ID_HEADER not in response.headers:
        response.headers[REQUEST_ID_HEADER] = request_id


async def _add_user_id(
    values: dict[str, Any], extractor: UserIdExtractor, request: web.Request, span: Any
) -> bool:
    found = extractor(request)
    if isinstance(found, Awaitable):
        found = await found
    if found is None:
        return False
    values["user_id"] = freeze(found)
    if span is not None:
        span.set_attribute("enduser.id", str(found))
    return True


def _extract(headers: CIMultiDictProxy[str], trust: bool) -> tuple[Context, Link | None]:
    """The incoming context (or, distrusted, an empty one and a link to the incoming span)."""
    if TRACEPARENT not in headers and BAGGAGE not in headers:
        return _EMPTY, None  # nothing came (tracestate alone means nothing): nothing to parse
    fields = {field: headers.getall(field, ()) for field in FIELDS}

    def get(field: str) -> Sequence[str]:
        values = fields[field]
        if values and sum(map(len, values)) > HEADER_LIMITS[field]:
            record_drop(f"{field}.too_large", f"{sum(map(len, values))} characters in {field}")
            return ()
        return values

    if trust:
        return extract_context(get), None
    remote = trace.get_current_span(extract_context(lambda f: get(f) if f != BAGGAGE else ()))
    remote_context = remote.get_span_context()
    return _EMPTY, Link(remote_context) if remote_context.is_valid else None


def _request_id(headers: CIMultiDictProxy[str], accept: bool) -> str:
    if accept:
        given = headers.getall(REQUEST_ID_HEADER, ())
        if len(given) == 1 and _REQUEST_ID.fullmatch(given[0]):
            return given[0]
        if given:
            record_drop("request_id.invalid", f"{REQUEST_ID_HEADER} {given[0][:64]!r}")
    return f"{_ids.getrandbits(128):032x}"


def _handler_context(incoming: Context, span: Any, values: dict[str, Any]) -> Context:
    """One context for the handler: what came in, the server span, the request scope."""
    context = trace.set_span_in_context(span, incoming) if span is not None else incoming
    outer = request_store.get(context)
    merged = {**outer, **values} if outer else values
    return Context({**context, _REQUEST_STORE_KEY: FrozenMapping(merged, request_store.name)})


def _start_server_span(
    request: web.Request, parent: Context, link: Link | None, request_id: str
) -> Any:
    """Start the SERVER span (the caller checked that a tracer provider is set)."""
    method = request.method if request.method in _KNOWN_METHODS else "_OTHER"
    route = _route(request)
    shown = method if method != "_OTHER" else "HTTP"
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": request.path,
        "url.scheme": request.scheme,
        "request.id": request_id,
    }
    if route:
        attributes["http.route"] = route
    # All known at the start, so all given at the start: samplers see them, and
    # the SDK checks them in one pass.
    attributes.update(_more_request_attributes(request, method))
    return tracer().start_span(
        f"{shown} {route}" if route else shown,
        context=parent,
        kind=SpanKind.SERVER,
        attributes=attributes,
        links=[link] if link else None,
    )


def _more_request_attributes(request: web.Request, method: str) -> dict[str, Any]:
    version = request.version
    attributes: dict[str, Any] = {"network.protocol.version": f"{version.major}.{version.minor}"}
    if method == "_OTHER":
        attributes["http.request.method_original"] = request.method
    if request.query_string:
        attributes["url.query"] = request.query_string
    host, separator, port = (request.host or "").rpartition(":")
    if not separator or not port.isdigit():  # no port, or the end of an IPv6 address
        host, port = request.host or "", ""
    if host:
        attributes["server.address"] = host.strip("[]")
    if port:
        attributes["server.port"] = int(port)
    if request.remote:
        attributes["client.address"] = request.remote
    agent = request.headers.get("User-Agent")
    if agent:
        attributes["user_agent.original"] = agent
    return attributes


def _route(request: web.Request) -> str | None:
    match_info = request.match_info
    if getattr(match_info, "http_exception", None) is not None:
        return None
    canonical = getattr(
        getattr(getattr(match_info, "route", None), "resource", None), "canonical", None
    )
    return canonical if isinstance(canonical, str) else None


def _end_server_span(span: Any, status: int | None) -> None:
    if status is not None:
        span.set_attribute("http.response.status_code", status)
        # 4xx is the client's error, not the server's; an exception set its own error.type
        if status >= 500 and span.status.status_code is not StatusCode.ERROR:
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR))
    span.end()


def _finish(request: web.Request, span: Any, status: int | None, started: float, log: bool) -> None:
    """End the span and write the access line, still inside the request's scope and span."""
    if span is not None:
        _end_server_span(span, status)
    if log:
        _log_access(request, status, started)


def _log_access(request: web.Request, status: int | None, started: float) -> None:
    duration_ms = (time.time() - started) * 1000
    _access_log.info(
        "%s %s %s %.1fms",
        request.method,
        request.path,
        status if status is not None else "-",
        duration_ms,
        extra={
            "http_status": status,
            "duration_ms": round(duration_ms, 3),
            "route": _route(request),
        },
    )


# --------------------------------------------------------------------------- client


def trace_config(
    *,
    baggage_hosts: Iterable[str] = (),
    spans: bool = True,
    send_request_id: bool = True,
) -> TraceConfig:
    """Return an `aiohttp.TraceConfig` that carries the caller's context on every request.

    ``traceparent`` and ``tracestate`` go to every host. Baggage (with the
    store values) and ``X-Request-ID`` go only to loopback hosts and to
    *baggage_hosts*: exact names (``"api.internal"``), or ``"*.internal"``
    for every subdomain; a user id never leaks to a third-party API.
    Each request gets a CLIENT span ``"{method}"``, so each call has its own
    parent id; without a recording span the caller's span is the parent.
    """
    allowed = _HostAllowList(baggage_hosts)
    config = TraceConfig()

    async def on_start(
        session: ClientSession, ctx: SimpleNamespace, params: TraceRequestStartParams
    ) -> None:
        context = get_current()
        span = None
        if spans and trace.get_current_span(context).is_recording():
            span = _start_client_span(params)
            context = trace.set_span_in_context(span, context)
        ctx.threadline_span = span
        _inject_headers(params, context, allowed.allows(params.url.host))

    async def on_end(
        session: ClientSession, ctx: SimpleNamespace, params: TraceRequestEndParams
    ) -> None:
        span = getattr(ctx, "threadline_span", None)
        if span is not None:
            status = params.response.status
            span.set_attribute("http.response.status_code", status)
            if status >= 400:
                span.set_attribute("error.type", str(status))
                span.set_status(Status(StatusCode.ERROR))
            span.end()

    async def on_exception(
        session: ClientSession, ctx: SimpleNamespace, params: TraceRequestExceptionParams
    ) -> None:
        span = getattr(ctx, "threadline_span", None)
        if span is not None:
            record_error(span, params.exception)
            span.end()

    config.on_request_start.append(on_start)
    config.on_request_end.append(on_end)
    config.on_request_exception.append(on_exception)
    return config


def _inject_headers(params: TraceRequestStartParams, context: Context, with_baggage: bool) -> None:
    headers = params.headers

    def set_field(field: str, value: str) -> None:
        headers[field] = value

    try:
        inject_context(set_field, context, with_baggage=with_baggage)
    except (TypeError, ValueError) as exc:  # never fail the caller's request over its baggage
        record_drop("baggage.outbound_invalid", str(exc))
        inject_context(set_field, context, with_baggage=False)
    if with_baggage:
        value = request_store.get(context)
        request_id = value.get("request_id") if value is not None else None
        if isinstance(request_id, str) and REQUEST_ID_HEADER not in headers:
            headers[REQUEST_ID_HEADER] = request_id


def _start_client_span(params: TraceRequestStartParams) -> Any:
    url = params.url
    method = params.method.upper()
    known = method if method in _KNOWN_METHODS else "_OTHER"
    attributes: dict[str, Any] = {
        "http.request.method": known,
        "url.full": str(url.with_user(None)),
    }
    if known == "_OTHER":
        attributes["http.request.method_original"] = params.method
    if url.host:
        attributes["server.address"] = url.host
    if url.port:
        attributes["server.port"] = url.port
    return tracer().start_span(
        known if known != "_OTHER" else "HTTP", kind=SpanKind.CLIENT, attributes=attributes
    )


class _HostAllowList:
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
        if not host:
            return False
        host = host.lower().rstrip(".")
        if host == "localhost" or host in self._exact or host.endswith(tuple(self._suffixes)):
            return True
        try:
            return ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            return False
