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
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
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
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from ._carrier import BAGGAGE, TRACEPARENT, TRACESTATE, extract_context, inject_context
from ._context import Context, attach, get_current, restore
from ._spans import tracer
from ._store import request as request_store
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
_STATE_KEY = (
    web.RequestKey("threadline", SimpleNamespace) if hasattr(web, "RequestKey") else "threadline"
)
_access_log = logging.getLogger("threadline.aiohttp")

UserIdExtractor = Callable[[web.Request], Any]


def middleware(
    *,
    trust_incoming: bool = True,
    accept_request_id: bool = True,
    user_id: UserIdExtractor | None = None,
    spans: bool = True,
    access_log: bool = True,
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
    """

    @web.middleware
    async def threadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = _extract(request, trust_incoming)
        token = attach(incoming.context)
        state = _State(
            request_id=_request_id(request, accept_request_id),
            started=time.time(),
            span=_start_server_span(request, incoming.link) if spans else None,
        )
        request[_STATE_KEY] = state
        try:
            return await _handle(request, handler, state, user_id, access_log)
        finally:
            restore(token)

    return threadline_middleware


def setup(app: web.Application, **options: Any) -> None:
    """Add `middleware` to *app* (first), and the request id header to every response.

    Unlike the middleware alone, this also covers responses that a handler
    prepares (streams) itself. Takes the options of `middleware`.
    """
    app.middlewares.insert(0, middleware(**options))
    app.on_response_prepare.append(_add_request_id_header)


async def _add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    state = request.get(_STATE_KEY)
    if state is not None and REQUEST_ID_HEADER not in response.headers:
        response.headers[REQUEST_ID_HEADER] = state.request_id


class _Incoming(SimpleNamespace):
    context: Context
    link: Link | None


def _extract(request: web.Request, trust: bool) -> _Incoming:
    headers = request.headers

    def get(field: str) -> Sequence[str]:
        values = headers.getall(field, ())
        if values and sum(map(len, values)) > HEADER_LIMITS[field]:
            record_drop(f"{field}.too_large", f"{sum(map(len, values))} characters in {field}")
            return ()
        return values

    if trust:
        return _Incoming(context=extract_context(get), link=None)
    remote = trace.get_current_span(extract_context(lambda f: get(f) if f != BAGGAGE else ()))
    remote_context = remote.get_span_context()
    link = Link(remote_context) if remote_context.is_valid else None
    return _Incoming(context=Context(), link=link)


def _request_id(request: web.Request, accept: bool) -> str:
    if accept:
        given = request.headers.getall(REQUEST_ID_HEADER, ())
        if len(given) == 1 and _REQUEST_ID.fullmatch(given[0]):
            return given[0]
        if given:
            record_drop("request_id.invalid", f"{REQUEST_ID_HEADER} {given[0][:64]!r}")
    return uuid.uuid4().hex


class _State(SimpleNamespace):
    request_id: str
    started: float
    span: Any
    status: int | None = None


async def _handle(
    request: web.Request,
    handler: Handler,
    state: _State,
    user_id: UserIdExtractor | None,
    access_log: bool,
) -> web.StreamResponse:
    span = state.span
    span_token = attach(trace.set_span_in_context(span, get_current())) if span else None
    try:
        values = await _scope_values(request, state, user_id)
        with request_store.merge(values):
            try:
                response = await _respond(request, handler, state)
            except BaseException as exc:
                state.status = exc.status if isinstance(exc, web.HTTPException) else None
                if span is not None:
                    _end_server_span(span, state.status, exc)
                raise
            else:
                state.status = response.status
                if span is not None:
                    _end_server_span(span, response.status, None)
            finally:
                if access_log:  # inside the scope and span: the line carries their ids
                    _log_access(request, state)
    finally:
        if span_token is not None:
            restore(span_token)
    return response


async def _scope_values(
    request: web.Request, state: _State, user_id: UserIdExtractor | None
) -> dict[str, Any]:
    values: dict[str, Any] = {"request_id": state.request_id, "start_time": state.started}
    if user_id is not None:
        found = user_id(request)
        if isinstance(found, Awaitable):
            found = await found
        if found is not None:
            values["user_id"] = found
    if state.span is not None:
        state.span.set_attribute("request.id", state.request_id)
        if "user_id" in values:
            state.span.set_attribute("enduser.id", str(values["user_id"]))
    return values


async def _respond(request: web.Request, handler: Handler, state: _State) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.setdefault(REQUEST_ID_HEADER, state.request_id)
        raise
    except Exception as exc:  # noqa: BLE001 - answer 500 here, so the request id goes with it
        _access_log.exception("unhandled exception in %s %s", request.method, request.path)
        raise _InternalError(state.request_id, exc) from None
    if not response.prepared:
        response.headers.setdefault(REQUEST_ID_HEADER, state.request_id)
    return response


class _InternalError(web.HTTPInternalServerError):
    """The 500 answered for an unhandled exception, which it keeps for the span."""

    def __init__(self, request_id: str, original: Exception) -> None:
        super().__init__(headers={REQUEST_ID_HEADER: request_id})
        self.original = original


def _start_server_span(request: web.Request, link: Link | None) -> Any:
    method = request.method if request.method in _KNOWN_METHODS else "_OTHER"
    route = _route(request)
    shown = method if method != "_OTHER" else "HTTP"
    name = f"{shown} {route}" if route else shown
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": request.path,
        "url.scheme": request.scheme,
        "network.protocol.version": f"{request.version.major}.{request.version.minor}",
    }
    if method == "_OTHER":
        attributes["http.request.method_original"] = request.method
    if route:
        attributes["http.route"] = route
    if request.query_string:
        attributes["url.query"] = request.query_string
    host = request.url.host
    if host:
        attributes["server.address"] = host
    if request.url.port:
        attributes["server.port"] = request.url.port
    if request.remote:
        attributes["client.address"] = request.remote
    agent = request.headers.get("User-Agent")
    if agent:
        attributes["user_agent.original"] = agent
    return tracer().start_span(
        name, kind=SpanKind.SERVER, attributes=attributes, links=[link] if link else None
    )


def _route(request: web.Request) -> str | None:
    match_info = request.match_info
    route = getattr(match_info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None or getattr(match_info, "http_exception", None) is not None:
        return None
    canonical = getattr(resource, "canonical", None)
    return canonical if isinstance(canonical, str) else None


def _end_server_span(span: Any, status: int | None, error: BaseException | None) -> None:
    if isinstance(error, _InternalError):
        error = error.original
    if status is not None:
        span.set_attribute("http.response.status_code", status)
    if error is not None and not isinstance(error, web.HTTPException):
        # an exception (or a cancelled request) that no response answered
        span.set_attribute("error.type", type(error).__qualname__)
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    elif status is not None and status >= 500:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))
    span.end()


def _log_access(request: web.Request, state: _State) -> None:
    duration_ms = (time.time() - state.started) * 1000
    status = state.status
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
            span.set_attribute("error.type", type(params.exception).__qualname__)
            span.record_exception(params.exception)
            span.set_status(Status(StatusCode.ERROR, str(params.exception)))
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
