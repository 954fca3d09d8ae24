"""ASGI servers (FastAPI, Starlette, Django, any ASGI 3 app): each request in its own context.

A page of adaptation: it reads the ASGI scope for `threadline._http.server.ServerExchange`,
tells it how the application answered, and adds its headers to ``http.response.start``::

    app.add_middleware(threadline.asgi.Middleware)    # Starlette, FastAPI
    app = threadline.asgi.Middleware(app)             # any ASGI app
    threadline.asgi.setup(app)                        # beside OpenTelemetry's middleware

Every HTTP request runs in the context that arrived with it (strictly parsed),
under a SERVER span ``"{method} {route}"`` (or OpenTelemetry's, or FastAPI's,
continued) and in a `threadline.request` scope with ``request_id``,
``user_id`` and ``start_time``; the id goes back in ``X-Request-ID`` on every
response, 500s and streams included. The span and the access line end with
the last body chunk; background tasks run after it, still in the request's
scope. Lifespan and WebSocket scopes pass through untouched.

.. versionadded:: 0.2
"""

from __future__ import annotations

import logging
import types
from collections.abc import Awaitable, Callable, Generator, Iterable, MutableMapping
from contextvars import Context as _Contextvars
from contextvars import copy_context
from functools import partial
from typing import Any, cast

from ._boundary.coexistence import is_contrib
from ._core.context import attach, get_current, mark_error, restore, span_in
from ._core.stores import merged_into
from ._core.stores import request as request_store
from ._http.access import log_unhandled
from ._http.incoming import REQUEST_ID_HEADER as REQUEST_ID_HEADER
from ._http.incoming import GetAll
from ._http.options import ServerOptions
from ._http.server import ServerExchange, ServerFields

__all__ = [
    "BACKGROUND_MODES",
    "REQUEST_ID_HEADER",
    "Middleware",
    "Scope",
    "UserIdExtractor",
    "set_route",
    "setup",
]

Scope = MutableMapping[str, Any]
"""An ASGI connection scope."""
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_ASGIApp = Callable[[Scope, _Receive, _Send], Awaitable[None]]

UserIdExtractor = Callable[[Scope], Any]
"""Called with the request's ASGI scope (it may be ``async``); returns the user id, or None.

On Starlette and FastAPI, ``starlette.requests.Request(scope)`` reads it."""

BACKGROUND_MODES = ("child", "new_trace")
"""The ``background_tasks`` option: what spans of work done after the response hang under."""

_access_log = logging.getLogger("threadline.asgi")
_CONTRIB = "asgi"
_EXCHANGE = "threadline.exchange"  # the scope's key, where OpenTelemetry's middleware is next
_ERROR_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")]


class Middleware:
    """A pure ASGI 3 middleware that runs each HTTP request in its own context.

    Args:
        app: the ASGI application. A Starlette or FastAPI application is
            changed as `setup` changes it (threadline goes inside it, around
            its error middleware), and this one only passes requests on.
        trust_incoming: continue the trace and baggage that came with the
            request. False, for a public edge: start a new trace (the incoming
            one, when valid, becomes a span link) and drop incoming baggage.
        accept_request_id: reuse a well-formed incoming ``X-Request-ID``
            (1-128 letters, digits and ``._:+/=@-``), else the request id that
            came in the trusted baggage; otherwise, and when False, a new id.
        user_id: called with the request's ASGI scope (it may be ``async``);
            what it returns becomes ``user_id`` in the request scope and
            ``enduser.id`` on the span. When it returns None the request has
            no ``user_id``, even if one came in the baggage.
        spans: record a SERVER span per request.
        access_log: log one line per request when its response is over, on
            the ``threadline.asgi`` logger.
        server_timing: answer trusted callers (*trust_incoming*) with the
            SERVER span's traceparent in a ``Server-Timing`` header (Trace
            Context Level 3).
        background_tasks: where spans of work done after the response
            (Starlette's ``BackgroundTasks``) go: ``"child"`` (default), under
            the request's SERVER span, in its trace; ``"new_trace"``, under a
            span ``background`` that begins a new trace linked to the request.

    Raises:
        TypeError: an option of the wrong type, named.
        ValueError: a ``background_tasks`` that is neither mode.
    """

    __slots__ = ("_delegated", "_new_trace", "_options", "_other_makes_it", "app")

    def __init__(
        self,
        app: _ASGIApp,
        *,
        trust_incoming: bool = True,
        accept_request_id: bool = True,
        user_id: UserIdExtractor | None = None,
        spans: bool = True,
        access_log: bool = True,
        server_timing: bool = False,
        background_tasks: str = "child",
    ) -> None:
        if background_tasks not in BACKGROUND_MODES:
            raise ValueError(
                f"background_tasks takes 'child' or 'new_trace', got {background_tasks!r}"
            )
        self._options = ServerOptions(
            trust_incoming=trust_incoming,
            accept_request_id=accept_request_id,
            user_id=user_id,
            spans=spans,
            access_log=access_log,
            logger=_access_log,
            server_timing=server_timing,
        )
        self._new_trace = background_tasks == "new_trace"
        self.app = app
        self._delegated = _is_starlette(app)
        if self._delegated:  # wrapped from outside: go inside, where its own telemetry is current
            _install(app, self)
        self._other_makes_it = is_contrib(app, _CONTRIB)
        if self._other_makes_it:  # OpenTelemetry's middleware next: the request goes on inside it
            app.app = _Inside(app.app)  # type: ignore[attr-defined]

    def _again(self, app: _ASGIApp) -> Middleware:
        """A middleware like this one (same options) around *app*."""
        twin = object.__new__(Middleware)
        twin._options, twin._new_trace, twin.app = self._options, self._new_trace, app
        twin._delegated = False
        twin._other_makes_it = is_contrib(app, _CONTRIB)
        if twin._other_makes_it:
            app.app = _Inside(app.app)  # type: ignore[attr-defined]
        return twin

    async def __call__(self, scope: Scope, receive: _Receive, send: _Send) -> None:
        """Serve one connection scope: an HTTP request in its context; others pass on."""
        if scope["type"] != "http" or _EXCHANGE in scope:
            await self.app(scope, receive, send)
            return
        if self._delegated:  # threadline is inside the app: here, only the server's side
            await _guarded(self.app, scope, receive, send)
            return
        # The server's receive and send run in the context the request came in with: a
        # server that starts the next request on the connection from inside them (uvicorn's
        # keep-alive and flow control, CPython issue 140947) starts it clean, not in this one.
        arrived = copy_context()
        # (positional: a class called with keywords pays for a dict, per request)
        exchange = ServerExchange(self._options, _READER, scope, self._other_makes_it)
        scope[_EXCHANGE] = exchange  # a second threadline middleware inside passes it on
        response = _Response(exchange, scope, receive, send, arrived, self._new_trace)
        with exchange:
            try:
                pending = exchange.identify()
                if pending is not None:
                    await pending
                await self.app(scope, response.receive, response.send)
            except Exception as error:
                await response.failed(error)
                raise
            finally:
                response.close()


class _Response:
    """One request's response, seen through the ``send`` the application calls."""

    __slots__ = (
        "_arrived",
        "_background",
        "_exchange",
        "_new_trace",
        "_over",
        "_receive",
        "_scope",
        "_send",
        "status",
    )

    def __init__(  # noqa: PLR0917 - positional: keywords cost a dict per request
        self,
        exchange: ServerExchange[Scope],
        scope: Scope,
        receive: _Receive,
        send: _Send,
        arrived: _Contextvars,
        new_trace: bool,
    ) -> None:
        self._exchange = exchange
        self._scope = scope
        self._receive = receive
        self._send = send
        self._arrived = arrived
        self._new_trace = new_trace
        self._background: tuple[Any, Any] | None = None
        self._over = False
        self.status: int | None = None

    async def receive(self) -> _Message:
        """The server's receive, run in the context the request arrived in."""
        arrived = self._arrived
        steps = _steps(arrived.run(self._receive))
        try:
            yielded = arrived.run(steps.send, None)
        except StopIteration as stop:
            message: _Message = stop.value
            return message
        return cast("_Message", await _rest_in(arrived, steps, yielded))

    async def send(self, message: _Message) -> None:
        """The server's send, run in the context the request arrived in; our headers added."""
        kind = message["type"]
        last = False
        if kind == "http.response.start":
            exchange = self._exchange
            self.status = status = message["status"]
            route = _route(self._scope)
            if route is not None:
                exchange.set_route(route)
            exchange.finish(status)
            message["headers"] = _with_headers(
                message.get("headers") or (), exchange.response_headers()
            )
        elif (
            kind == "http.response.body" and not message.get("more_body", False)
        ) or kind == "http.response.pathsend":
            last = True
        # (most sends finish in one step: no generator then)
        arrived = self._arrived
        steps = _steps(arrived.run(self._send, message))
        try:
            yielded = arrived.run(steps.send, None)
        except StopIteration:
            pass
        else:
            await _rest_in(arrived, steps, yielded)
        if last:
            self._done()

    def _done(self) -> None:
        """The last chunk went: the span and the access line end (a 5xx's wait for its error)."""
        if self.status is None or self.status >= 500:
            return
        self._over = True
        self._exchange.complete()
        if self._new_trace:
            self._begin_background()

    def _begin_background(self) -> None:
        from opentelemetry.trace import Link  # noqa: PLC0415 - with spans only

        from ._core.context import span_key  # noqa: PLC0415
        from ._telemetry.spans import start_boundary_span  # noqa: PLC0415

        current = get_current()
        request_span = span_in(current)
        if request_span is None or not request_span.get_span_context().is_valid:
            return
        span = start_boundary_span(
            "http.server",
            "background",
            context=merged_into(current, request_store, {}, {span_key(): None}),
            links=[Link(request_span.get_span_context())],
        )
        context = merged_into(current, request_store, {}, {span_key(): span})
        self._background = (span, attach(context))

    async def failed(self, error: Exception) -> None:
        """The application raised: the exchange fails; answer 500 when nothing was sent."""
        exchange = self._exchange
        if self._over:  # after the response (a background task): the request itself went well
            if self._background is not None:
                from ._telemetry.spans import record_error  # noqa: PLC0415

                record_error(self._background[0], error)
            mark_error(error, get_current())
            reader = _READER
            log_unhandled(_access_log, reader.method(self._scope), reader.path(self._scope), error)
            return
        exchange.fail(error)
        if self.status is None and not _answers_errors_itself(self._scope):
            self.status = 500
            start = {
                "type": "http.response.start",
                "status": 500,
                "headers": _with_headers(_ERROR_HEADERS, exchange.response_headers()),
            }
            body = {"type": "http.response.body", "body": b"Internal Server Error"}
            try:
                await _run_in(self._arrived, self._send, start)
                await _run_in(self._arrived, self._send, body)
            except Exception:  # noqa: BLE001 - the client went away: the error stays the app's
                _access_log.debug("could not answer 500", exc_info=True)

    def close(self) -> None:
        if self._background is not None:
            span, token = self._background
            self._background = None
            span.end()
            restore(token)


def _with_headers(
    headers: Iterable[tuple[bytes, bytes]], ours: tuple[tuple[str, str], ...]
) -> list[tuple[bytes, bytes]]:
    """*headers* and ours, as a new list (the application's may be shared); its own stay."""
    written = list(headers)
    for name, value in ours:
        key = _NAMES.get(name)
        if key is None:
            key = _NAMES[name] = name.lower().encode("latin-1")
        for field, _ in written:
            if field.lower() == key:
                break
        else:
            written.append((key, value.encode("latin-1")))
    return written


def _route(scope: Scope) -> str | None:
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


def _answers_errors_itself(scope: Scope) -> bool:
    """Whether the Starlette app around has a handler of its own for 500s (it answers)."""
    handlers = getattr(scope.get("app"), "exception_handlers", None)
    return isinstance(handlers, dict) and (500 in handlers or Exception in handlers)


_STEPPABLE = (types.CoroutineType, types.GeneratorType)


def _steps(awaitable: Any) -> Any:
    """What to step *awaitable* through: a coroutine (or generator-based one) is its own."""
    return awaitable if type(awaitable) in _STEPPABLE else awaitable.__await__()


@types.coroutine
def _rest_in(context: _Contextvars, steps: Any, yielded: Any) -> Generator[Any, Any, Any]:
    """Go on stepping *steps* in *context*, from its first *yielded* value, to its result."""
    while True:
        try:
            value = yield yielded
        except BaseException as thrown:  # noqa: BLE001 - cancellation goes on to the step
            step, argument = steps.throw, thrown
        else:
            step, argument = steps.send, value
        try:
            yielded = context.run(step, argument)
        except StopIteration as stop:
            return stop.value


@types.coroutine
def _run_in(
    context: _Contextvars, fn: Callable[..., Awaitable[Any]], *args: Any
) -> Generator[Any, Any, Any]:
    """Await ``fn(*args)`` with each of its steps run in *context* (a `contextvars.Context`)."""
    steps = _steps(context.run(fn, *args))
    try:
        yielded = context.run(steps.send, None)
    except StopIteration as stop:
        return stop.value
    return (yield from _rest_in(context, steps, yielded))


async def _guarded(app: _ASGIApp, scope: Scope, receive: _Receive, send: _Send) -> None:
    """Call *app* with the server's receive and send run in the context the request came in."""
    arrived = copy_context()
    await app(scope, partial(_run_in, arrived, receive), partial(_run_in, arrived, send))


class _Guard:
    """Outermost in a stack where threadline sits inside OpenTelemetry's middleware."""

    __slots__ = ("app",)

    def __init__(self, app: _ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await _guarded(self.app, scope, receive, send)


class _Inside:
    """Inside OpenTelemetry's ASGI middleware: the request's context again, under its span."""

    __slots__ = ("app",)

    def __init__(self, app: _ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: _Receive, send: _Send) -> None:
        exchange = scope.get(_EXCHANGE)
        if exchange is None:
            await self.app(scope, receive, send)
            return
        with exchange.inside():
            await self.app(scope, receive, send)


def setup(app: Any, **options: Any) -> Any:
    """Add `Middleware` to *app* beside OpenTelemetry's; return the app to serve.

    A Starlette or FastAPI application is changed in place (and returned):
    threadline goes right after OpenTelemetry's ASGI middleware when its
    stack has one (``opentelemetry-instrument``, ``FastAPIInstrumentor``),
    else around Starlette's error middleware, so the 500 it answers and a
    500 handler of yours run in the request's scope, with ``X-Request-ID``.
    Any other ASGI app comes back wrapped (after OpenTelemetry's middleware
    when *app* is one). A second call changes nothing. Takes the options of
    `Middleware`.
    """
    if _is_starlette(app):
        Middleware(app, **options)
        return app
    if isinstance(app, Middleware) or getattr(app, "app", None).__class__ is Middleware:
        return app
    if is_contrib(app, _CONTRIB):
        if not isinstance(app.app, Middleware):
            app.app = Middleware(app.app, **options)
        return app
    return Middleware(app, **options)


def set_route(scope: Scope, route: str) -> None:
    """Name the matched route's template (``/orders/<int:order>``) for the request of *scope*.

    For a router threadline cannot read (Starlette and FastAPI need none: the
    route is in their scope): call it from inside the app, once it matched,
    before the response starts. The span is renamed ``"{method} {route}"``
    and gets ``http.route``; the access line shows it. Outside a request
    threadline serves, it does nothing.
    """
    exchange = scope.get(_EXCHANGE)
    if isinstance(exchange, ServerExchange):
        exchange.set_route(route)


def _is_starlette(app: object) -> bool:
    return hasattr(app, "build_middleware_stack") and hasattr(app, "user_middleware")


def _install(app: Any, middleware: Middleware) -> None:
    """Build *app*'s middleware stack with threadline in it (once; rebuilt if built)."""
    if getattr(app.build_middleware_stack, "_threadline", False):
        return
    original = app.build_middleware_stack

    def build_middleware_stack() -> _ASGIApp:
        return _placed(original(), middleware)

    build_middleware_stack._threadline = True  # type: ignore[attr-defined]
    app.build_middleware_stack = build_middleware_stack
    if app.middleware_stack is not None:
        app.middleware_stack = app.build_middleware_stack()


def _placed(stack: Any, middleware: Middleware) -> _ASGIApp:
    """*stack* with threadline after OpenTelemetry's middleware, else around the error one."""
    layer, seen = stack, 0
    while layer is not None and seen < 32:
        inner = getattr(layer, "app", None)
        if is_contrib(layer, _CONTRIB) and inner is not None:
            layer.app = middleware._again(inner)
            # OpenTelemetry's middleware calls the server's send with its span current: the
            # guard runs that send in the context from before, so no next request starts in it
            return _Guard(stack)
        layer, seen = inner, seen + 1
    from starlette.middleware.errors import ServerErrorMiddleware  # noqa: PLC0415 - Starlette's app

    # an error middleware outermost, as Starlette builds it (what OpenTelemetry's FastAPI
    # instrumentation, applied later, expects to find)
    return ServerErrorMiddleware(middleware._again(stack))


class _Reader:
    """What `ServerExchange` reads of an ASGI scope."""

    def headers(self, scope: Scope) -> GetAll:
        return partial(_get_all, scope["headers"])

    def method(self, scope: Scope) -> str:
        return str(scope["method"])

    def path(self, scope: Scope) -> str:
        return str(scope["path"])

    def route(self, scope: Scope) -> str | None:
        return _route(scope)

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


_NAMES: dict[str, bytes] = {}


def _get_all(headers: Iterable[tuple[bytes, bytes]], name: str, default: Any) -> list[bytes] | Any:
    """Every value of the header *name* (lower case: ASGI servers lower-case names)."""
    key = _NAMES.get(name)
    if key is None:
        key = _NAMES[name] = name.encode("latin-1")
    found = [value for field, value in headers if field == key]
    return found or default


def _first(headers: Iterable[tuple[bytes, bytes]], key: bytes) -> bytes | None:
    for field, value in headers:
        if field == key:
            return value
    return None


_READER = _Reader()
