"""Publishing a message: the publisher's context into its headers, under a PRODUCER span.

An adapter calls `publish` where its client sends (a signal, a wrapped
``send``), with the message's headers, how to set one, and the operation's
names; it ends the returned `Handoff` when the broker acknowledged the
message (or at once where there is no acknowledgement).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry.propagators.textmap import Setter, default_setter
from opentelemetry.trace import SpanKind

from .._boundary.coexistence import plan_span
from .._boundary.handoff import Handoff, hand_off
from .._core.context import Context, get_current
from .._telemetry.spans import start_boundary_span
from .._wire.formats import configured_formats, inject_formats
from .headers import write_retry_of
from .semconv import SEND, Operation, span_attributes, span_name

if TYPE_CHECKING:
    from opentelemetry.trace import Span, SpanContext

__all__ = ["PUBLISH_RESOURCE", "Unacked", "publish"]

PUBLISH_RESOURCE = "message.publish"
"""The lifecycle-hook resource type of a publish: made at the send, destroyed at the ack."""


def publish(
    headers: Any,
    operation: Operation | Callable[[], Operation],
    *,
    setter: Setter[Any] = default_setter,
    other_makes_it: bool = False,
    retry_of: SpanContext | None = None,
    where: str | Callable[[], str] | None = None,
) -> Handoff:
    """Write the current context into *headers*; return the publish's `Handoff`.

    *operation* names the publish (system, destination, message id), or is
    a callable that makes the names, called only when a span is made.

    The publish is a PRODUCER span ``send {destination}`` when `plan_span`
    says so: another instrumentation's PRODUCER span, current here, is
    continued instead; none is made when *other_makes_it* (its receiver
    comes next) or nothing records. The carrier goes in the configured
    formats (the consumer may not be threadline), through *setter*, the
    span's traceparent in it. It never fails the publish: a store value that
    cannot cross is counted as ``baggage.outbound_invalid`` and the message
    goes without baggage. *retry_of*: the processing this publish retries,
    named in `RETRY_OF_HEADER` for the next attempt's link. *where*: the
    application's line, for hooks (default: the first frame outside the
    libraries).

    End the `Handoff` when the broker has the message: that ends the span
    and destroys the ``message.publish`` hook resource.
    """
    context = get_current()
    plan = plan_span("PRODUCER", context, other_makes_it=other_makes_it)
    handoff = hand_off(
        PUBLISH_RESOURCE,
        where=where,
        span=_producer_span(operation) if plan.own else None,
        context=context,
    )
    inject_formats(headers, setter, handoff.context, configured_formats())
    if retry_of is not None and retry_of.is_valid:
        write_retry_of(headers, setter, retry_of)
    return handoff


class Unacked:
    """Publishes waiting for their broker's acknowledgement, by message id.

    For adapters told of the send and of its acknowledgement apart (two
    signals). A publish whose send failed is ended, failed, by `fail`; one
    that never comes back for a reason nobody reports is ended when *limit*
    newer ones wait, so the map stays bounded.
    """

    __slots__ = ("_handoffs", "_limit")

    def __init__(self, limit: int = 10_000) -> None:
        self._handoffs: dict[str, Handoff] = {}
        self._limit = limit

    def add(self, message_id: object, handoff: Handoff) -> None:
        """Keep *handoff* until `ack` of *message_id* (unless it has no span and no resource)."""
        if not isinstance(message_id, str) or (handoff.span is None and handoff.resource is None):
            return
        if len(self._handoffs) >= self._limit:
            self._handoffs.pop(next(iter(self._handoffs))).end()
        self._handoffs[message_id] = handoff

    def ack(self, message_id: object) -> None:
        """The broker has the message *message_id*: end its publish."""
        handoff = self._handoffs.pop(message_id, None) if isinstance(message_id, str) else None
        if handoff is not None:
            handoff.end()

    def fail(self, message_id: object, error: BaseException) -> None:
        """The send of *message_id* failed with *error*: end its publish, its span failed."""
        handoff = self._handoffs.pop(message_id, None) if isinstance(message_id, str) else None
        if handoff is not None:
            handoff.end(error)


def _producer_span(names: Operation | Callable[[], Operation]) -> Callable[[Context], Span]:
    def start(context: Context) -> Span:
        operation = names() if callable(names) else names
        return start_boundary_span(
            operation.system,
            span_name(SEND, operation),
            kind=SpanKind.PRODUCER,
            attributes=span_attributes(SEND, operation),
            context=context,
        )

    return start
