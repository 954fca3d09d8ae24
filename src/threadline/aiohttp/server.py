"""The aiohttp server side: a middleware that runs each request in its own context.

A thin adapter of aiohttp's request and response objects to `threadline._http`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Awaitable, Callable
from contextvars import Token
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry.trace import get_current_span

from .._boundary.coexistence import foreign_span
from .._core import lifecycle as _hooks
from .._core.context import Context, attach, get_current, restore
from .._core.text import escape_controls
from .._core.values import freeze
from .._http.core import (
    REQUEST_ID_HEADER,
    end_server_span,
    handler_context,
    incoming_context,
    log_access,
    request_id_of,
    start_server_span,
    without_incoming_user,
)
from .._telemetry.spans import provider_set, record_error

if TYPE_CHECKING:
    from opentelemetry.trace import Link, Span

__all__ = ["UserIdExtractor", "middleware", "setup"]

UserIdExtractor = Callable[[web.Request], Any]
"""Called with the request (it may be ``async``); returns the user id, or None."""

_REQUEST_ID_KEY = (
    web.RequestKey("threadline_request_id", str)
    if hasattr(web, "RequestKey")
    else "threadline_request_id"
)
_access_log = logging.getLogger("threadline.aiohttp")
_CONTRIB_SERVER = "opentelemetry.instrumentation.aiohttp_server"


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
            (1-128 letters, digits and ``._:+/=@-``), else the request id that
            came in the trusted baggage (so a hop that forwards only
            ``traceparent`` and ``baggage`` keeps it); otherwise, and when
            False, a new id is made.
        user_id: called with the request (it may be ``async``); what it
            returns becomes ``user_id`` in the request scope and ``enduser.id``
            on spans. When it returns None the request has no ``user_id``,
            even if one came in the baggage.
        spans: record a SERVER span per request.
        access_log: log one line per request at its end, with its duration,
            on the ``threadline.aiohttp`` logger.
        remember_request_id: keep the id on the request for `setup`'s
            response hook (set by `setup`).
    """
    log_access_at = _access_log.isEnabledFor if access_log else None

    @web.middleware
    async def threadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.time()
        get_all = request.headers.getall
        incoming, link = incoming_context(get_all, trust_incoming)
        request_id = request_id_of(get_all, accept_request_id, incoming)
        # with an extractor, its answer is the only user id
        incoming = incoming if user_id is None else without_incoming_user(incoming)
        if remember_request_id:
            request[_REQUEST_ID_KEY] = request_id
        span, owned, inner = _server_span(request, handler, incoming, link, request_id, spans=spans)
        values: dict[str, Any] = {"request_id": request_id, "start_time": started}
        token = attach(handler_context(incoming, span, values))
        hooked = _hooked_request(request) if _hooks.active else None
        with_user: Token[Context] | None = None
        status: int | None = None
        try:
            # the extractor runs in the request's context, and its errors are the request's
            user = None if user_id is None else await _user_id(user_id, request, span)
            if user is not None:  # a new value: the one attached above stays as it was
                values = {**values, "user_id": user}
                with_user = attach(handler_context(incoming, span, values))
            response = await (
                handler(request)
                if inner is None
                else _inside(inner, request, incoming, values, user_id is not None)
            )
        except web.HTTPException as exc:
            status = exc.status
            exc.headers.setdefault(REQUEST_ID_HEADER, request_id)
            raise
        except Exception as exc:  # noqa: BLE001 - answer 500 here, so the request id goes with it
            status = 500
            _access_log.exception(
                "unhandled exception in %s %s",
                escape_controls(request.method),
                escape_controls(request.path),
            )
            if owned is not None:
                record_error(owned, exc)
            raise web.HTTPInternalServerError(headers={REQUEST_ID_HEADER: request_id}) from None
        except BaseException as exc:  # cancelled: the client went away
            if owned is not None:
                record_error(owned, exc)
            raise
        else:
            status = response.status
            if not response.prepared:
                response.headers.setdefault(REQUEST_ID_HEADER, request_id)
            return response
        finally:
            _finish(request, owned, status, started, log_access_at)
            if hooked is not None:
                _hooks.exit_scope(hooked)
            if with_user is not None:
                restore(with_user)
            restore(token)

    return threadline_middleware


def _hooked_request(request: web.Request) -> Any:
    """The request as a lifecycle-hook resource, made where its handler is defined."""
    handler = getattr(request.match_info, "handler", None)
    code = getattr(handler, "__code__", None)
    where = f"{code.co_filename}:{code.co_firstlineno}" if code is not None else request.path
    resource = _hooks.create("http.server", where, request=True)
    return resource, _hooks.before(resource)


def setup(app: web.Application, **options: Any) -> None:
    """Add `middleware` to *app* (first), and the request id header to every response.

    Unlike the middleware alone, this also covers responses that a handler
    prepares (streams) itself. Takes the options of `middleware`.
    """
    # after OpenTelemetry's own aiohttp-server middleware, if the app has it
    position = next(
        (
            index + 1
            for index, existing in enumerate(app.middlewares)
            if getattr(existing, "__module__", "").startswith(_CONTRIB_SERVER)
        ),
        0,
    )
    app.middlewares.insert(position, middleware(**options, remember_request_id=True))
    app.on_response_prepare.append(_add_request_id_header)


async def _add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    request_id = request.get(_REQUEST_ID_KEY)
    if request_id is not None and REQUEST_ID_HEADER not in response.headers:
        response.headers[REQUEST_ID_HEADER] = request_id


async def _user_id(extractor: UserIdExtractor, request: web.Request, span: Span | None) -> Any:
    """The user id *extractor* finds (frozen), also on *span*; None when it finds none."""
    found = extractor(request)
    if isinstance(found, Awaitable):
        found = await found
    if found is None:
        return None
    if span is not None:
        span.set_attribute("enduser.id", str(found))
    return freeze(found)


def _server_span(
    request: web.Request,
    handler: Handler,
    incoming: Context,
    link: Link | None,
    request_id: str,
    *,
    spans: bool,
) -> tuple[Span | None, Span | None, tuple[Any, Handler] | None]:
    """The request's SERVER span: ``(span, the one threadline owns, OpenTelemetry's inside)``.

    Another instrumentation's SERVER span, outside (current now) or inside
    (its middleware is next), is continued: threadline never makes a second.
    """
    outer = foreign_span(get_current(), "SERVER")
    if outer is not None:
        outer.set_attribute("request.id", request_id)
        return outer, None, None
    inner = _opentelemetry_middleware(handler)
    if inner is not None or not spans or not provider_set():
        return None, None, inner
    owned = _start_span(request, incoming, link, request_id)
    return owned, owned, None


def _opentelemetry_middleware(handler: Handler) -> tuple[Any, Handler] | None:
    """OpenTelemetry's aiohttp-server middleware when it is the next one, and what follows it.

    aiohttp chains middlewares as ``partial(middleware, handler=rest)``.
    """
    if _CONTRIB_SERVER not in sys.modules:  # the common case, decided without a lookup chain
        return None
    middleware = getattr(handler, "func", None)
    if getattr(middleware, "__module__", "").startswith(_CONTRIB_SERVER):
        rest = getattr(handler, "keywords", {}).get("handler")
        if rest is not None:
            return middleware, rest
    return None


async def _inside(
    inner: tuple[Any, Handler],
    request: web.Request,
    incoming: Context,
    values: dict[str, Any],
    with_user: bool,
) -> web.StreamResponse:
    """Run OpenTelemetry's middleware, then the rest in the request's scope under its span.

    Its middleware builds its context afresh from the headers, so the scope
    is put back in, around what follows it, with its span as the parent.
    """
    middleware, rest = inner

    async def in_scope(request: web.Request) -> web.StreamResponse:
        span = get_current_span()
        span.set_attribute("request.id", values["request_id"])
        if with_user and "user_id" in values:
            span.set_attribute("enduser.id", str(values["user_id"]))
        token = attach(handler_context(incoming, span, values))
        try:
            return await rest(request)
        finally:
            restore(token)

    response: web.StreamResponse = await middleware(request, handler=in_scope)
    return response


def _finish(
    request: web.Request,
    span: Span | None,
    status: int | None,
    started: float,
    log_access_at: Callable[[int], bool] | None,
) -> None:
    """End the span and write the access line, still inside the request's scope and span."""
    if span is not None:
        end_server_span(span, status)
    if log_access_at is not None and log_access_at(logging.INFO):
        log_access(
            _access_log,
            method=request.method,
            path=request.path,
            status=status,
            started=started,
            route=_route(request),
        )


def _start_span(request: web.Request, parent: Context, link: Link | None, request_id: str) -> Span:
    version = request.version
    return start_server_span(
        request.method,
        _route(request),
        path=request.path,
        scheme=request.scheme,
        query=request.query_string,
        host=request.host,
        client_address=request.remote,
        user_agent=request.headers.get("User-Agent"),
        protocol_version=f"{version.major}.{version.minor}",
        request_id=request_id,
        parent=parent,
        link=link,
    )


def _route(request: web.Request) -> str | None:
    """The matched route's template (``/orders/{id}``), or None when no route matched."""
    match_info = request.match_info
    if getattr(match_info, "http_exception", None) is not None:
        return None
    canonical = getattr(
        getattr(getattr(match_info, "route", None), "resource", None), "canonical", None
    )
    return canonical if isinstance(canonical, str) else None
