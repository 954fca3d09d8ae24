"""One outgoing call, redirects included: `ClientExchange`.

An adapter makes one exchange where the call is made (in the caller's
context), has it write the request's headers, tells it of each redirect
and of the outcome::

    exchange = ClientExchange(options, method, url, host, port)
    exchange.write_headers(headers)
    ...
    exchange.redirect(headers, next_url)   # every hop: stripped, decided again
    ...
    exchange.finish(status)                # or exchange.fail(error)

``traceparent`` and ``tracestate`` go to every host; baggage (with the store
values) and ``X-Request-ID`` only to the hosts the options allow, decided for
each hop by the host it goes to: a trusted service that redirects to a third
party never hands it the request's store values.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING

from opentelemetry.propagators.textmap import default_setter
from opentelemetry.trace import SpanKind

from .._boundary.coexistence import plan_span
from .._boundary.handoff import hand_off
from .._core.context import Context, attach, get_current, restore, span_in, span_key
from .._core.stores import request as request_store
from .._telemetry.spans import start_boundary_span
from .._wire.carrier import (
    BAGGAGE,
    TRACESTATE,
    inject_baggage,
    inject_span,
    without_baggage,
)
from .._wire.formats import DEFAULT, configured_formats, inject_formats
from .hosts import host_of
from .incoming import REQUEST_ID_HEADER
from .options import ClientOptions
from .semconv import client_attributes, set_status

if TYPE_CHECKING:
    from contextvars import Token
    from types import TracebackType

    from opentelemetry.trace import Span

__all__ = ["CLIENT_BOUNDARY", "ClientExchange", "Sending"]

CLIENT_BOUNDARY = "http.client"
"""The boundary of a call made: the CLIENT span's ``threadline.boundary`` and the
lifecycle-hook resource's type."""

_TRUSTED_ONLY = frozenset({BAGGAGE, REQUEST_ID_HEADER.lower()})


class ClientExchange:
    """One outgoing call: its CLIENT span, its hook resource, its headers hop by hop, its outcome.

    Made where the call is made, it captures the caller's context with
    `hand_off` (resource ``"http.client"``). The span is planned with
    `plan_span`: none when the caller's span would not record, none when
    *other_makes_it* (OpenTelemetry's client instrumentation traces the
    call), another instrumentation's CLIENT span current here is the call's;
    else threadline's own ``"{method}"``.

    Args:
        options: the client's options.
        method: the request's method.
        url: the request's URL (credentials in it never reach the span).
        host: the host it goes to; port: its port, if known.
        other_makes_it: OpenTelemetry's client instrumentation makes the span.
        where: finds the ``file:line`` the call was made at, for the hook
            resource (called only while hooks are on); default: the first
            frame outside threadline and the standard library.
    """

    __slots__ = ("_caller", "_handoff", "_options", "_other", "_trusted")

    def __init__(
        self,
        options: ClientOptions,
        method: str,
        url: str,
        host: str | None,
        port: int | None,
        *,
        other_makes_it: bool = False,
        where: Callable[[], str] | None = None,
    ) -> None:
        self._options = options
        self._other = other_makes_it
        self._trusted = options.allowed.allows(host)
        self._caller = caller = get_current()

        def start(context: Context) -> Span | None:
            plan = plan_span("CLIENT", context, spans=options.spans, other_makes_it=other_makes_it)
            if not plan.own:
                return None
            name, attributes = client_attributes(method, url, host, port)
            return start_boundary_span(
                CLIENT_BOUNDARY, name, kind=SpanKind.CLIENT, attributes=attributes, context=context
            )

        self._handoff = handoff = hand_off(CLIENT_BOUNDARY, where=where, span=start, context=caller)
        if handoff.resource is not None:
            handoff.resource.name = f"{method} {host or '?'}" + (f":{port}" if port else "")

    @property
    def context(self) -> Context:
        """The caller's context, with the call's own span current in it when there is one."""
        return self._handoff.context

    @property
    def span(self) -> Span | None:
        """The call's own CLIENT span, or None (until the call ends)."""
        return self._handoff.span

    def write_headers(self, headers: MutableMapping[str, str]) -> None:
        """Write the call's context into the request's *headers*; never raises for its baggage.

        The trace goes to every host, in the configured formats (threadline's
        carrier unless ``OTEL_PROPAGATORS`` says otherwise), with the span
        current here as the parent when another instrumentation makes the
        call's span; baggage and
        ``X-Request-ID`` (unless the application set one, or the options
        keep it back) only to an allowed host. A context whose baggage
        cannot be encoded goes without it, counted.
        """
        trusted = self._trusted
        formats = configured_formats()
        own = self._handoff.span
        if own is not None and formats is DEFAULT and not self._other:
            _write_for_span(headers, self._caller, own, trusted)
        else:
            context = self._handoff.context
            if self._other:
                # the other instrumentation's span, current where the hop is sent, is its parent
                span = span_in(get_current())
                if span is not None:
                    context = Context({**context, span_key(): span})
            inject_formats(headers, default_setter, context, formats, with_baggage=trusted)
        if not (trusted and self._options.send_request_id):
            return
        value = request_store.get(self._caller)
        request_id = value.get("request_id") if value is not None else None
        if isinstance(request_id, str) and REQUEST_ID_HEADER not in headers:
            headers[REQUEST_ID_HEADER] = request_id

    def redirect(self, headers: MutableMapping[str, str], url: str | None) -> None:
        """The call goes on to *url* (absolute; None when unknown) with *headers*.

        What only a trusted host may have (baggage, ``X-Request-ID``) is
        taken out of *headers*, and the decision is made again for the host
        of *url*: an unknown or unparsable one is not trusted.
        """
        self._trusted = self._options.allowed.allows(host_of(url))
        for name in list(headers):
            if name.lower() in _TRUSTED_ONLY and name in headers:  # a multidict deletes every copy
                del headers[name]
        self.write_headers(headers)

    def finish(self, status: int) -> None:
        """The response came with *status*: the span gets it (an error per the options) and ends."""
        span = self._handoff.span
        if span is not None:
            set_status(span, status, self._options.is_error)
        self._handoff.end()

    def fail(self, error: BaseException) -> None:
        """The call failed with *error* (no response): the span records it and ends."""
        self._handoff.end(error)

    def sending(self) -> Sending:
        """A context manager around the client's own send of the call (every hop of it).

        An error leaving it fails the call (`fail`) and goes on. When another
        instrumentation makes the call's span (*other_makes_it*), its
        injection runs inside: the block runs in
        `threadline._wire.carrier.without_baggage`, so that injection writes
        the trace only, and which host gets baggage stays this exchange's decision.
        """
        return Sending(self)


def _write_for_span(
    headers: MutableMapping[str, str], caller: Context, span: Span, trusted: bool
) -> None:
    """Write the caller's context into *headers* with the call's own *span* as the parent.

    The caller's baggage, not the one of a context with the call's span in it:
    the carrier keeps the last context it encoded, so every call made from one
    context encodes its baggage once; the trace fields are the call's own.
    """
    set_field = headers.__setitem__
    if trusted:  # the trace fields are the call's span's: the caller's are not formatted
        inject_baggage(set_field, caller)
    own = span.get_span_context()
    parent = span_in(caller)
    if parent is None or parent.get_span_context().trace_state is not own.trace_state:
        # a sampler gave the call's span a tracestate of its own (or none)
        headers.pop(TRACESTATE, None)
    inject_span(set_field, own)


class Sending:
    """`ClientExchange.sending`'s context manager."""

    __slots__ = ("_exchange", "_token")

    def __init__(self, exchange: ClientExchange) -> None:
        self._exchange = exchange
        self._token: Token[Context] | None = None

    def __enter__(self) -> None:
        if self._exchange._other:
            self._token = attach(without_baggage(get_current()))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if error is not None:
                self._exchange.fail(error)
        finally:
            if self._token is not None:
                restore(self._token)
