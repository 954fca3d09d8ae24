"""One incoming request, from its headers to its access line: `ServerExchange`.

An adapter reads its framework's request through a `ServerReader` and tells
the exchange what happened; the exchange decides everything else, the same
way for every framework::

    exchange = ServerExchange(options, READER, request, other_makes_it=...)
    with exchange:                          # the span planned, the context attached
        pending = exchange.identify()       # the user-id extractor, when there is one
        if pending is not None:
            await pending
        try:
            response = await handler(request)
        except Exception as exc:
            answer = ...                    # the framework's 500
            exchange.fail(exc, answer.headers)  # logged, the span failed, the id on the 500
            raise answer from None
        exchange.finish(response.status, response.headers)  # the id on the response

A router that matches after the span started says so with `set_route`.
Leaving the block ends the span, writes the access line, runs the lifecycle
hooks' ``after`` and puts the previous context back; an exception that
leaves it unreported is reported there (a cancelled request gets no status).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from opentelemetry.trace import Link, SpanKind

from .._boundary.coexistence import plan_span
from .._boundary.handoff import Arrival
from .._core import lifecycle
from .._core.context import Context, attach, get_current, mark_error, restore, span_in, span_key
from .._core.stores import merged_into
from .._core.stores import request as request_store
from .._core.values import freeze
from .._telemetry.spans import record_error, start_boundary_span
from .access import log_access, log_unhandled
from .incoming import (
    REQUEST_ID_HEADER,
    GetAll,
    incoming_context,
    request_id_of,
    without_incoming_user,
)
from .options import ServerOptions
from .semconv import ServerFields, server_attributes, server_span_name, set_status

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = [
    "SERVER_BOUNDARY",
    "SERVER_TIMING_HEADER",
    "ServerExchange",
    "ServerFields",
    "ServerReader",
    "start_server_span",
]

SERVER_BOUNDARY = "http.server"
"""The boundary of a request served: the SERVER span's ``threadline.boundary`` and the
lifecycle-hook resource's type."""

SERVER_TIMING_HEADER = "Server-Timing"
"""Trace Context Level 3's response header (the ``server_timing`` option)."""

R = TypeVar("R")
R_contra = TypeVar("R_contra", contravariant=True)
_UNKNOWN: Any = object()


class ServerReader(Protocol[R_contra]):
    """What an adapter reads of its framework's request; the exchange asks only what it needs."""

    def headers(self, request: R_contra) -> GetAll:
        """Every value of one request header (`GetAll`); asked once per request."""

    def method(self, request: R_contra) -> str:
        """The request's method; asked for a span or a log line."""

    def path(self, request: R_contra) -> str:
        """The request's path, without the query; asked for a span or a log line."""

    def route(self, request: R_contra) -> str | None:
        """The matched route's template (``/orders/{id}``), None when none matched (yet)."""

    def fields(self, request: R_contra) -> ServerFields:
        """The rest of the SERVER span's attributes; asked only when the span is made."""

    def location(self, request: R_contra) -> str:
        """``file:line`` where the request's handler is defined; asked while hooks are on."""


class ServerExchange(Generic[R]):
    """One incoming request: its context, id, user, span, status and access line.

    Made when the request comes in: reads its headers (within their limits),
    decides trust and the request id. Entered (``with``) around the
    handler: plans the span with `plan_span` (another instrumentation's
    SERVER span outside is continued; with *other_makes_it*, OpenTelemetry's
    middleware next, none here; else threadline's own when a tracer provider
    is set) and attaches the request's one context through `Arrival`
    (lifecycle-hook resource ``"http.server"``). Its other methods are
    called inside that block, except `response_headers`.

    Attributes:
        request_id: the request's id, for the response header.
    """

    __slots__ = (
        "_arrival",
        "_completed",
        "_handler",
        "_incoming",
        "_inner",
        "_link",
        "_options",
        "_other_makes_it",
        "_owned",
        "_reader",
        "_request",
        "_route",
        "_routed",
        "_settled",
        "_span",
        "_started",
        "_status",
        "_user_token",
        "_values",
        "request_id",
    )

    def __init__(
        self,
        options: ServerOptions,
        reader: ServerReader[R],
        request: R,
        other_makes_it: bool = False,
    ) -> None:
        self._started = started = time.time()
        self._options = options
        self._reader = reader
        self._request = request
        self._other_makes_it = other_makes_it
        get_all = reader.headers(request)
        incoming, self._link = incoming_context(get_all, options.trust_incoming)
        self.request_id = request_id_of(get_all, options.accept_request_id, incoming)
        # with an extractor, its answer is the only user id
        self._incoming = incoming if options.user_id is None else without_incoming_user(incoming)
        self._values: dict[str, Any] = {"request_id": self.request_id, "start_time": started}
        self._route: str | None = _UNKNOWN
        self._handler: str | None = None  # where the route's handler is, when a router said
        self._routed: Callable[[], tuple[str | None, str | None]] | None = None
        self._status: int | None = None
        self._settled = False
        self._completed = False
        self._user_token: Token[Context] | None = None
        self._inner: Span | None = None  # the span OpenTelemetry's middleware made inside, seen

    def __enter__(self) -> ServerExchange[R]:
        options = self._options
        # (positional: spans, other_makes_it, root; keywords would cost a dict per request)
        plan = plan_span("SERVER", get_current(), options.spans, self._other_makes_it, True)
        span, own = plan.continued, plan.own
        if span is not None:
            span.set_attribute("request.id", self.request_id)
            if not options.trust_incoming:
                _warn_if_it_continues_the_caller(span)
            elif _continues_what_was_dropped(span, self._incoming):
                # its propagator took a trace threadline's strict reading dropped (two
                # traceparents: OpenTelemetry's takes the first): the request begins a new
                # trace under threadline's span, linked to that one, as the W3C spec asks
                self._link, span, own = Link(span.get_span_context()), None, options.spans
        if own:
            span = self._start_span()
        self._owned: Span | None = span if own else None
        self._span: Span | None = span
        context = self._context(span)
        if self._other_makes_it and span is None and span_in(context) is not None:
            # the span that came is not the current one: OpenTelemetry's middleware, next,
            # makes the SERVER span (not an INTERNAL one under a span it finds current)
            context = Context({**context, span_key(): None})
        # the resource's type, where, a request; named (and placed) by `_show`, which the
        # arrival forgets when it ends (it holds this exchange); while only the live view
        # listens, no resource unless needed, and where it is asked only then
        if lifecycle.active:
            where = None if lifecycle.lazy_names else self._reader.location(self._request)
            arrival = Arrival(context, None, SERVER_BOUNDARY, where, True, False, self._show)
        else:
            arrival = Arrival(context)
        self._arrival = arrival
        arrival.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is not None and not self._settled:
            self.fail(error)
        try:
            self.complete()
        finally:
            if self._user_token is not None:
                restore(self._user_token)
            self._arrival.__exit__(kind, error, traceback)

    def complete(self) -> None:
        """The response is over: end threadline's span and write the access line, once.

        Leaving the block does it, unless the adapter did before: an ASGI
        response ends with its last body chunk, before background tasks run,
        which still run in the request's context (until the block is left).
        """
        if self._completed:
            return
        self._completed = True
        options, owned = self._options, self._owned
        if owned is not None:  # ended in the request's scope and span, as is the access line
            if self._status is not None:
                set_status(owned, self._status, options.is_error)
            owned.end()
        if options.access_log and options.logger.isEnabledFor(logging.INFO):
            token = self._in_inner_span()
            try:
                self._log_access()
            finally:
                if token is not None:
                    restore(token)

    def identify(self) -> Awaitable[None] | None:
        """Run the ``user_id`` extractor (in the request's context); None when it is done.

        With no extractor, or a synchronous one, it is done at once; an
        ``async`` one leaves an awaitable to await. What it finds becomes
        ``user_id`` in the request scope and ``enduser.id`` on the span; its
        errors are the request's (they propagate).
        """
        extractor = self._options.user_id
        if extractor is None:
            return None
        found = extractor(self._request)
        if isinstance(found, Awaitable):
            return self._identify_later(found)
        self._set_user(found)
        return None

    async def _identify_later(self, pending: Awaitable[Any]) -> None:
        self._set_user(await pending)

    def _set_user(self, found: Any) -> None:
        if found is None:
            return
        if self._span is not None:
            self._span.set_attribute("enduser.id", str(found))
        # a new value: the one attached on entry stays as it was
        self._values = {**self._values, "user_id": freeze(found)}
        self._user_token = attach(self._context(self._span))

    def inside(self) -> Arrival:
        """The request's context again, under the span current now (a context manager).

        For what runs inside OpenTelemetry's middleware (*other_makes_it*),
        which builds its context afresh from the headers; its span gets
        ``request.id`` and ``enduser.id``. A span that continues trace fields
        threadline dropped is not the request's: threadline's own begins a new
        trace, linked to it.
        """
        span: Span | None = span_in(get_current())
        options = self._options
        if (
            span is not None
            and self._owned is None
            and options.trust_incoming
            and _continues_what_was_dropped(span, self._incoming)
        ):  # as in __enter__: not that trace
            self._link = Link(span.get_span_context())
            span = self._owned = self._span = self._start_span() if options.spans else None
        if span is not None:
            self._inner = span
            span.set_attribute("request.id", self.request_id)
            user = self._values.get("user_id")
            if user is not None:
                span.set_attribute("enduser.id", str(user))
        return Arrival(self._context(span))

    def set_route(self, route: str | None, location: str | None = None) -> None:
        """The matched route's template, known after the span started (ASGI routers).

        threadline's own span is renamed ``"{method} {route}"`` and gets ``http.route``;
        the lifecycle-hook resource is named so too, and its location becomes
        *location* (the handler's ``file:line``), else what the reader finds.
        """
        self._route = route
        if location is not None:
            self._handler = location
        resource = self._arrival.resource
        if route and resource is not None:
            self._show(resource)
        span = self._owned
        if span is not None and route:
            span.update_name(server_span_name(self._reader.method(self._request), route))
            span.set_attribute("http.route", route)

    def follow(self, routed: Callable[[], tuple[str | None, str | None]]) -> None:
        """While hooks are on, ask *routed* for the route and handler when the live view looks.

        *routed* returns the route's template and the handler's ``file:line``
        (each None while unknown): for a router that matches inside the app
        (Django). Called in the block.
        """
        self._routed = routed

    def _show(self, resource: lifecycle.Resource) -> None:
        """Name *resource* by the route once routed, else by the path; place it at the handler.

        What the request's resource is named by, when made and each time the
        live view looks (`lifecycle.refresh`).
        """
        reader, request, known = self._reader, self._request, self._route
        route = known if isinstance(known, str) and known else None
        handler = self._handler
        routed = self._routed
        if route is None and routed is not None:
            route, found = routed()
            handler = handler or found
        if not route:
            route = reader.route(request)
        resource.name = server_span_name(reader.method(request), route or reader.path(request))
        resource.location = handler or reader.location(request)

    @property
    def route(self) -> str | None:
        """The matched route's template, or None."""
        if self._route is _UNKNOWN:
            self._route = self._reader.route(self._request)
        return self._route

    def response_headers(self) -> tuple[tuple[str, str], ...]:
        """The headers every response to this request has (``X-Request-ID``), as pairs.

        `finish` and `fail` write them into the response's headers; these are
        for an adapter that writes them later, or into a list of its own (ASGI's).
        With the ``server_timing`` option (and ``trust_incoming``), also
        ``Server-Timing: traceparent;desc="00-{trace}-{span}-{flags}"`` (Trace
        Context Level 3) for the span of this hop, when there is a valid one.
        """
        options = self._options
        if options.server_timing and options.trust_incoming:
            timing = server_timing(self._span if self._inner is None else self._inner)
            if timing is not None:
                return ((REQUEST_ID_HEADER, self.request_id), (SERVER_TIMING_HEADER, timing))
        return ((REQUEST_ID_HEADER, self.request_id),)

    def finish(self, status: int, headers: MutableMapping[str, str] | None = None) -> None:
        """The response has *status*: the span's ``http.response.status_code``, maybe its error.

        *headers*, the response's while it can still change (not sent yet),
        get `response_headers`; a header the application set stays as it is.
        """
        self._status = status
        self._settled = True
        if headers is not None:
            self._write_headers(headers)

    def fail(self, error: BaseException, headers: MutableMapping[str, str] | None = None) -> None:
        """The request failed with *error*, which the handler raised.

        An `Exception` is the server's failure: the request is answered 500
        (*headers*, the 500's, get `response_headers`), logged as ``unhandled
        exception`` on the options' logger. Anything else (a cancellation:
        the client went away) gets no response status. threadline's span
        records *error* either way.
        """
        self._settled = True
        if headers is not None:
            self._write_headers(headers)
        mark_error(error, get_current())  # its lines after the request still name the request
        if isinstance(error, Exception):
            self._status = 500
            reader, request = self._reader, self._request
            token = self._in_inner_span()
            try:
                log_unhandled(
                    self._options.logger, reader.method(request), reader.path(request), error
                )
            finally:
                if token is not None:
                    restore(token)
        if self._owned is not None:
            record_error(self._owned, error)

    def _write_headers(self, headers: MutableMapping[str, str]) -> None:
        if self._options.server_timing:
            for name, value in self.response_headers():
                headers.setdefault(name, value)
        else:
            headers.setdefault(REQUEST_ID_HEADER, self.request_id)

    def _in_inner_span(self) -> Token[Context] | None:
        """Attach the request's context under the span made inside, if any.

        For the lines written out here, after OpenTelemetry's middleware has
        put its own context back.
        """
        inner = self._inner
        if inner is None or span_in(get_current()) is inner:
            return None
        return attach(self._context(inner))

    def _context(self, span: Span | None) -> Context:
        """What came in, *span* current, the request's values merged into its scope."""
        also: dict[str, object] | None = {span_key(): span} if span is not None else None
        return merged_into(self._incoming, request_store, self._values, also)

    def _start_span(self) -> Span:
        reader, request = self._reader, self._request
        return start_server_span(
            reader.method(request),
            self.route,
            reader.path(request),
            reader.fields(request),
            request_id=self.request_id,
            parent=self._incoming,
            link=self._link,
        )

    def _log_access(self) -> None:
        reader, request = self._reader, self._request
        log_access(
            self._options.logger,
            method=reader.method(request),
            path=reader.path(request),
            status=self._status,
            started=self._started,
            route=self.route,
        )


_warned_about_trust = False


def _warn_if_it_continues_the_caller(span: Span) -> None:
    """Say once that a distrusting server's SERVER span, made by another, continues the caller."""
    global _warned_about_trust  # noqa: PLW0603 - once per process
    parent = getattr(span, "parent", None)  # an SDK span's
    if _warned_about_trust or parent is None or not parent.is_remote:
        return
    _warned_about_trust = True
    scope = getattr(getattr(span, "instrumentation_scope", None), "name", "another instrumentation")
    logging.getLogger("threadline").warning(
        "trust_incoming=False, but the SERVER span threadline continues (made by %s) continues "
        "the caller's trace: turn that instrumentation's tracing off at a public edge "
        "(FastAPI: FastAPI(telemetry={'tracing': False}))",
        scope,
    )


_warned_about_dropped = False


def _continues_what_was_dropped(span: Span, incoming: Context) -> bool:
    """Whether *span*, another's, continues a remote parent that is not the one threadline read.

    Both read the same request's headers in the same formats; they differ only
    where threadline's strict reading dropped the trace fields. Said once, as a warning.
    """
    global _warned_about_dropped  # noqa: PLW0603 - once per process
    parent = getattr(span, "parent", None)  # an SDK span's
    if parent is None or not parent.is_remote:
        return False
    came = span_in(incoming)
    read = came.get_span_context() if came is not None else None
    if read is not None and (read.trace_id, read.span_id) == (parent.trace_id, parent.span_id):
        return False
    if not _warned_about_dropped:
        _warned_about_dropped = True
        scope = getattr(getattr(span, "instrumentation_scope", None), "name", "another")
        logging.getLogger("threadline").warning(
            "the SERVER span made by %s continues trace fields threadline dropped as invalid: "
            "the request begins a new trace under threadline's own SERVER span, linked to it "
            "(OTEL_PROPAGATORS=threadline makes both read the fields alike)",
            scope,
        )
    return True


def server_timing(span: Span | None) -> str | None:
    """The ``Server-Timing`` value that names *span* (``traceparent;desc="00-…"``), or None."""
    if span is None:
        return None
    span_context = span.get_span_context()
    if not span_context.is_valid:
        return None
    return (
        f'traceparent;desc="00-{span_context.trace_id:032x}-'
        f'{span_context.span_id:016x}-{span_context.trace_flags:02x}"'
    )


def start_server_span(
    method: str,
    route: str | None,
    path: str,
    fields: ServerFields,
    *,
    request_id: str,
    parent: Context,
    link: Link | None,
) -> Span:
    """Start the SERVER span ``"{method} {route}"``, a child of *parent*.

    It has the HTTP semantic-convention attributes (`server_attributes`),
    all given at its start so that samplers see them, and *link*, if any.
    """
    name, attributes = server_attributes(method, route, path, fields, request_id)
    return start_boundary_span(
        SERVER_BOUNDARY,
        name,
        kind=SpanKind.SERVER,
        attributes=attributes,
        context=parent,
        links=[link] if link is not None else None,
    )
