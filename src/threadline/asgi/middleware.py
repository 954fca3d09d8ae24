"""`Middleware`, a pure ASGI 3 middleware on the exchange core, and `setup`, which places it.

A page of adaptation: it reads the ASGI scope for `threadline._http.server.ServerExchange`
(`._reader`), tells it how the application answered (`._response`), and runs the
server's side in the context the request arrived in (`._stepped`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AbstractContextManager, nullcontext
from contextvars import copy_context
from typing import Any

from .._boundary.coexistence import is_contrib
from .._http.options import ServerOptions
from .._http.server import ServerExchange
from ._reader import EXCHANGE, READER, code_location
from ._reader import Scope as Scope
from ._response import ACCESS_LOG, Response
from ._stepped import Guard, guarded

__all__ = [
    "BACKGROUND_MODES",
    "Middleware",
    "Scope",
    "UserIdExtractor",
    "inside",
    "set_exception",
    "set_route",
    "setup",
]

_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_ASGIApp = Callable[[Scope, _Receive, _Send], Awaitable[None]]

UserIdExtractor = Callable[[Scope], Any]
"""Called with the request's ASGI scope (it may be ``async``); returns the user id, or None.

On Starlette and FastAPI, ``starlette.requests.Request(scope)`` reads it."""

BACKGROUND_MODES = ("child", "new_trace")
"""The ``background_tasks`` option: what spans of work done after the response hang under."""

_CONTRIB = "asgi"


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
            (1-128 letters, digits and ``._:+/=@-``, at least one a letter or
            digit), else the request id that
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
        TypeError: an *app* that is not callable, or an option of the wrong
            type, named.
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
        if not callable(app):
            raise TypeError(f"app takes an ASGI application (a callable), got {app!r:.80}")
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
            logger=ACCESS_LOG,
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
        if scope["type"] != "http" or EXCHANGE in scope:
            await self.app(scope, receive, send)
            return
        if self._delegated:  # threadline is inside the app: here, only the server's side
            await guarded(self.app, scope, receive, send)
            return
        # The server's receive and send run in the context the request came in with: a
        # server that starts the next request on the connection from inside them (uvicorn's
        # keep-alive and flow control, CPython issue 140947) starts it clean, not in this one.
        arrived = copy_context()
        # (positional: a class called with keywords pays for a dict, per request)
        exchange = ServerExchange(self._options, READER, scope, self._other_makes_it)
        scope[EXCHANGE] = exchange  # a second threadline middleware inside passes it on
        response = Response(exchange, scope, receive, send, arrived, self._new_trace)
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
                scope.pop(EXCHANGE, None)  # no cycle (the exchange holds the scope) left to the GC


class _Inside:
    """Inside OpenTelemetry's ASGI middleware: the request's context again, under its span."""

    __slots__ = ("app",)

    def __init__(self, app: _ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: _Receive, send: _Send) -> None:
        exchange = scope.get(EXCHANGE)
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

    Raises:
        TypeError: an *app* that is not callable, or an option of the wrong
            type, named.
    """
    if _is_starlette(app):
        Middleware(app, **options)
        return app
    if isinstance(app, (Middleware, Guard)):
        return app
    if is_contrib(app, _CONTRIB):
        if not isinstance(app.app, Middleware):
            app.app = Middleware(app.app, **options)
        return Guard(app)  # its send runs with its span current: the server's side, clean
    return Middleware(app, **options)


def set_route(scope: Scope, route: str, *, handler: Callable[..., Any] | None = None) -> None:
    """Name the matched route's template (``/orders/<int:order>``) for the request of *scope*.

    For a router threadline cannot read (Starlette and FastAPI need none: the
    route is in their scope): call it from inside the app, once it matched,
    before the response starts. The span is renamed ``"{method} {route}"``
    and gets ``http.route``; the access line shows it, and the live view
    (`threadline.live`) shows the route, and *handler*'s ``file:line``
    as the request's location when given. Outside a request threadline
    serves, it does nothing.

    Raises:
        TypeError: a *route* that is not a ``str``.
    """
    if not isinstance(route, str):
        raise TypeError(f"route takes the route's template (a str), got {route!r:.80}")
    exchange = scope.get(EXCHANGE)
    if isinstance(exchange, ServerExchange):
        exchange.set_route(route, code_location(handler))


def inside(scope: Scope) -> AbstractContextManager[object]:
    """The request of *scope*'s context again, under the span current now (a context manager).

    For the code of an app another instrumentation runs in a context it
    built afresh from the headers (OpenTelemetry's Django middleware, when
    it makes the SERVER span, threadline making none): in the block, the
    request's stores and id are back, under that span, which gets
    ``request.id`` (and ``enduser.id``); the access line is written under
    it. Outside a request threadline serves, it changes nothing.
    """
    exchange = scope.get(EXCHANGE)
    if isinstance(exchange, ServerExchange):
        return exchange.inside()
    return nullcontext()


def set_exception(scope: Scope, error: BaseException) -> None:
    """Say that the request of *scope* failed with *error*, which the app answered itself.

    For a framework that turns an unhandled exception into its own 500
    (Django's handler does), so threadline never sees it raised: call it
    once, where the exception is handled. The span records *error* (status
    ERROR, ``error.type``, the exception) and one ``unhandled exception``
    line goes to the ``threadline.asgi`` logger, with the traceback, in the
    request's scope. Outside a request threadline serves, it does nothing.

    Raises:
        TypeError: an *error* that is not an exception.
    """
    if not isinstance(error, BaseException):
        raise TypeError(f"error takes the exception (a BaseException), got {error!r:.80}")
    exchange = scope.get(EXCHANGE)
    if isinstance(exchange, ServerExchange):
        exchange.fail(error)


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
            return Guard(stack)
        layer, seen = inner, seen + 1
    from starlette.middleware.errors import ServerErrorMiddleware  # noqa: PLC0415 - Starlette's app

    # an error middleware outermost, as Starlette builds it (what OpenTelemetry's FastAPI
    # instrumentation, applied later, expects to find)
    return ServerErrorMiddleware(middleware._again(stack))
