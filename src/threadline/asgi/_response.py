"""One request's response, seen through the ``send`` the application calls.

Its headers get the request's (``X-Request-ID``, maybe ``Server-Timing``);
its status and route go to the exchange; its last chunk ends the span and the
access line; a failure before any chunk is answered 500 (unless a Starlette
app's own 500 handler will answer). The server's ``receive`` and ``send`` run
in the context the request arrived in (`._stepped`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from contextvars import Context
from typing import Any, cast

from opentelemetry.trace import Link

from .._core.context import attach, get_current, mark_error, restore, span_in, span_key
from .._core.stores import merged_into
from .._core.stores import request as request_store
from .._http.access import log_unhandled
from .._http.server import ServerExchange
from .._telemetry.spans import record_error, start_boundary_span
from ._reader import NAMES, READER, Scope, route_of
from ._stepped import first_step, rest_in, run_in

__all__ = ["ACCESS_LOG", "Response", "answers_errors_itself", "with_headers"]

_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]

ACCESS_LOG = logging.getLogger("threadline.asgi")
"""The adapter's logger: the access line and the unhandled-exception line."""
_ERROR_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")]


class Response:
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
        arrived: Context,
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
        try:
            steps, yielded = arrived.run(first_step, self._receive)
        except StopIteration as stop:
            message: _Message = stop.value
            return message
        return cast("_Message", await rest_in(arrived, steps, yielded))

    async def send(self, message: _Message) -> None:
        """The server's send, run in the context the request arrived in; our headers added."""
        kind = message["type"]
        last = False
        if kind == "http.response.start":
            exchange = self._exchange
            self.status = status = message["status"]
            route = route_of(self._scope)
            if route is not None:
                exchange.set_route(route)
            exchange.finish(status)
            message["headers"] = with_headers(
                message.get("headers") or (), exchange.response_headers()
            )
        elif (
            kind == "http.response.body" and not message.get("more_body", False)
        ) or kind == "http.response.pathsend":
            last = True
        # (most sends finish in one step: no generator then)
        arrived = self._arrived
        try:
            steps, yielded = arrived.run(first_step, self._send, message)
        except StopIteration:
            pass
        else:
            await rest_in(arrived, steps, yielded)
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
                record_error(self._background[0], error)
            mark_error(error, get_current())
            reader = READER
            log_unhandled(ACCESS_LOG, reader.method(self._scope), reader.path(self._scope), error)
            return
        exchange.fail(error)
        if self.status is None and not answers_errors_itself(self._scope):
            self.status = 500
            start = {
                "type": "http.response.start",
                "status": 500,
                "headers": with_headers(_ERROR_HEADERS, exchange.response_headers()),
            }
            body = {"type": "http.response.body", "body": b"Internal Server Error"}
            try:
                await run_in(self._arrived, self._send, start)
                await run_in(self._arrived, self._send, body)
            except Exception:  # noqa: BLE001 - the client went away: the error stays the app's
                ACCESS_LOG.debug("could not answer 500", exc_info=True)

    def close(self) -> None:
        """The application returned: the ``background`` span (``new_trace``) ends."""
        if self._background is not None:
            span, token = self._background
            self._background = None
            span.end()
            restore(token)


def with_headers(
    headers: Iterable[tuple[bytes, bytes]], ours: tuple[tuple[str, str], ...]
) -> list[tuple[bytes, bytes]]:
    """*headers* and ours, as a new list (the application's may be shared); its own stay."""
    written = list(headers)
    for name, value in ours:
        key = NAMES.get(name)
        if key is None:
            key = NAMES[name] = name.lower().encode("latin-1")
        for field, _ in written:
            if field.lower() == key:
                break
        else:
            written.append((key, value.encode("latin-1")))
    return written


def answers_errors_itself(scope: Scope) -> bool:
    """Whether the Starlette app around has a handler of its own for 500s (it answers)."""
    handlers = getattr(scope.get("app"), "exception_handlers", None)
    return isinstance(handlers, dict) and (500 in handlers or Exception in handlers)
