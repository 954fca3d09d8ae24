"""The aiohttp server side: a middleware that runs each request in its own context.

A page of adaptation: it reads aiohttp's request for `threadline._http.server.ServerExchange`,
tells it how the handler ended, and writes its headers on aiohttp's responses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import HttpVersion10, HttpVersion11, web
from aiohttp.typedefs import Handler, Middleware

from .._boundary.coexistence import contrib_loaded, is_contrib
from .._core.checks import require_bool
from .._http.incoming import GetAll
from .._http.options import ServerOptions
from .._http.server import ServerExchange, ServerFields

__all__ = ["UserIdExtractor", "middleware", "setup"]

UserIdExtractor = Callable[[web.Request], Any]
"""Called with the request (it may be ``async``); returns the user id, or None."""

# the headers every response gets, for setup's response hook (kept as data: no cycle)
_HEADERS_KEY: Any = (
    web.RequestKey("threadline_response_headers", tuple)
    if hasattr(web, "RequestKey")
    else "threadline_response_headers"
)
_access_log = logging.getLogger("threadline.aiohttp")
_CONTRIB = "aiohttp.server"
_SETUP_MARK = "_threadline_setup"  # on the middleware setup adds: an app is set up once


def middleware(
    *,
    trust_incoming: bool = True,
    accept_request_id: bool = True,
    user_id: UserIdExtractor | None = None,
    spans: bool = True,
    access_log: bool = True,
    server_timing: bool = False,
    remember_request_id: bool = False,
) -> Middleware:
    """Return an aiohttp middleware that runs each request in its own context.

    Args:
        trust_incoming: continue the trace and baggage that came with the
            request. False, for a public edge: start a new trace (the incoming
            one, when valid, becomes a span link) and drop incoming baggage.
        accept_request_id: reuse a well-formed incoming ``X-Request-ID``
            (1-128 letters, digits and ``._:+/=@-``, at least one a letter or
            digit), else the request id that
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
        server_timing: answer trusted callers (*trust_incoming*) with the
            SERVER span's traceparent in a ``Server-Timing`` header (Trace
            Context Level 3: ``traceparent;desc="00-…"``).
        remember_request_id: keep the id on the request for `setup`'s
            response hook (set by `setup`).

    Raises:
        TypeError: an option of the wrong type (a flag that is not a bool,
            a ``user_id`` that is not callable), named.
    """
    options = ServerOptions(
        trust_incoming=trust_incoming,
        accept_request_id=accept_request_id,
        user_id=user_id,
        spans=spans,
        access_log=access_log,
        logger=_access_log,
        server_timing=server_timing,
    )
    return _middleware(options, require_bool("remember_request_id", remember_request_id))


def _middleware(options: ServerOptions, remember_request_id: bool) -> Middleware:
    """The middleware: each request an exchange, told how its handler ended."""

    @web.middleware
    async def threadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        inner = _opentelemetry_middleware(handler)
        # (positional: a class called with keywords pays for a dict, per request)
        exchange = ServerExchange(options, _READER, request, inner is not None)  # other_makes_it
        with exchange:
            if remember_request_id:
                request[_HEADERS_KEY] = exchange.response_headers()
            try:
                pending = exchange.identify()
                if pending is not None:
                    await pending
                response = await (
                    handler(request) if inner is None else _inside(inner, exchange, request)
                )
            except web.HTTPException as exc:
                exchange.finish(exc.status, exc.headers)
                raise
            except Exception as exc:  # noqa: BLE001 - answer 500 here, so the request id goes with it
                answer = web.HTTPInternalServerError()
                exchange.fail(exc, answer.headers)
                raise answer from None
            exchange.finish(response.status, None if response.prepared else response.headers)
            return response

    return threadline_middleware


def setup(app: web.Application, **options: Any) -> None:
    """Add `middleware` to *app* (first), and the request id header to every response.

    Unlike the middleware alone, this also covers responses that a handler
    prepares (streams) itself. Takes the options of `middleware`.

    Raises:
        RuntimeError: *app* was set up already (one middleware per app: a
            second would run each request twice).
        TypeError: an option of the wrong type, named.
    """
    if any(getattr(existing, _SETUP_MARK, False) for existing in app.middlewares):
        raise RuntimeError(
            "threadline.aiohttp.setup(app) was called for this app already; "
            "call it once, with all its options"
        )
    added = middleware(**options, remember_request_id=True)
    setattr(added, _SETUP_MARK, True)
    # after OpenTelemetry's own aiohttp-server middleware, if the app has it
    contrib = [
        index for index, existing in enumerate(app.middlewares) if is_contrib(existing, _CONTRIB)
    ]
    position = contrib[0] + 1 if contrib else 0
    app.middlewares.insert(position, added)
    app.on_response_prepare.append(_add_request_id_header)


async def _add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in request.get(_HEADERS_KEY, ()):
        response.headers.setdefault(name, value)


def _opentelemetry_middleware(handler: Handler) -> tuple[Any, Handler] | None:
    """OpenTelemetry's aiohttp-server middleware when it is the next one, and what follows it.

    aiohttp chains middlewares as ``partial(middleware, handler=rest)``.
    """
    if not contrib_loaded(_CONTRIB):  # the common case, decided without a lookup chain
        return None
    following = getattr(handler, "func", None)
    if is_contrib(following, _CONTRIB):
        rest = getattr(handler, "keywords", {}).get("handler")
        if rest is not None:
            return following, rest
    return None


async def _inside(
    inner: tuple[Any, Handler], exchange: ServerExchange[web.Request], request: web.Request
) -> web.StreamResponse:
    """Run OpenTelemetry's middleware, then the rest in the request's scope under its span.

    Its middleware builds its context afresh from the headers, so the scope
    is put back in, around what follows it, with its span as the parent.
    """
    following, rest = inner

    async def in_scope(request: web.Request) -> web.StreamResponse:
        with exchange.inside():
            return await rest(request)

    response: web.StreamResponse = await following(request, handler=in_scope)
    return response


class _Reader:
    """What `ServerExchange` reads of an aiohttp request."""

    def headers(self, request: web.Request) -> GetAll:
        return request.headers.getall

    def method(self, request: web.Request) -> str:
        return request.method

    def path(self, request: web.Request) -> str:
        return request.path

    def route(self, request: web.Request) -> str | None:
        match_info = request.match_info
        if getattr(match_info, "http_exception", None) is not None:
            return None
        route = getattr(match_info, "route", None)
        canonical = getattr(getattr(route, "resource", None), "canonical", None)
        return canonical if isinstance(canonical, str) else None

    def fields(self, request: web.Request) -> ServerFields:
        version = request.version
        return ServerFields(  # scheme, query, host, client address, user agent, protocol version
            request.scheme,
            request.query_string,
            request.host,
            request.remote,
            request.headers.get("User-Agent"),
            _PROTOCOLS.get(version) or f"{version.major}.{version.minor}",
        )

    def location(self, request: web.Request) -> str:
        """Where the request's handler is defined (its resource is made there)."""
        code = getattr(getattr(request.match_info, "handler", None), "__code__", None)
        return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else request.path


_PROTOCOLS = {HttpVersion10: "1.0", HttpVersion11: "1.1"}
"""``network.protocol.version`` of the versions aiohttp serves, made once."""

_READER = _Reader()
