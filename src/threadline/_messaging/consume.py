"""Processing a message: its context restored from its headers, under a CONSUMER span, then undone.

`Processing` is one message's work (or one batch's). As a context manager
(``with`` or ``async with``) it frames a consumer loop's body; adapters
driven by two framework signals call `Processing.begin` and
`Processing.end` instead. Either way the work runs in the context the
message brought (an empty one when it brought nothing: never the previous
message's, never the loop's), as a ``message.process`` hook resource (a
request, so the loss detector sees what outlives it), and the loop's own
context is back afterwards, however the work ended.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from opentelemetry.trace import SpanKind

from .._boundary.coexistence import plan_span
from .._boundary.handoff import Arrival
from .._core.context import Context, get_current, span_key
from .._telemetry.spans import is_recording, record_error, start_boundary_span
from .headers import Headers, fields_of, message_context, retry_link
from .semconv import PROCESS, Operation, span_attributes, span_name

if TYPE_CHECKING:
    from opentelemetry.trace import Link, Span

__all__ = ["PROCESS_RESOURCE", "Processing", "consumer_span", "report_processing"]

PROCESS_RESOURCE = "message.process"
"""The lifecycle-hook resource type of a message's processing (a request: it begins one)."""


class Processing:
    """One message's processing: its context, its CONSUMER span, its hook resource.

    Args:
        headers: the message's headers as the client gives them (`Headers`):
            read strictly, each bad field dropped whole, counted and reported.
        operation: the operation's names (system, destination, message id),
            or a callable that makes them, called only when a span is made.
        context: the context to run in instead of the headers' (an eager
            task runs in its caller's own).
        trust: False for messages from outside the application: the work
            starts a new trace with a link to the publisher's span, and
            baggage is not read.
        retry: the message is a retry; its span links to the processing
            named in `RETRY_OF_HEADER`.
        other_makes_it: another instrumentation makes the CONSUMER span
            next; threadline makes none.
        where: the ``"file:line"`` of the work, for hooks, or a callable
            that finds it (called only while hooks are on).
        only_if_current: see `Arrival` (signal-driven adapters).

    Attributes:
        context: the context the work runs in, once begun.
        span: threadline's own CONSUMER span, or None (nothing records, or
            another instrumentation's span stands for the operation).
    """

    __slots__ = (
        "_arrival",
        "_batch",
        "_links",
        "_only_if_current",
        "_other_makes_it",
        "_retry",
        "_trust",
        "_where",
        "context",
        "headers",
        "operation",
        "span",
    )

    def __init__(
        self,
        headers: Headers,
        operation: Operation | Callable[[], Operation],
        *,
        context: Context | None = None,
        trust: bool = True,
        retry: bool = False,
        other_makes_it: bool = False,
        where: str | Callable[[], str] | None = None,
        only_if_current: bool = False,
    ) -> None:
        self.headers = headers
        self.operation = operation
        self.context = context
        self.span: Span | None = None
        self._trust = trust
        self._retry = retry
        self._other_makes_it = other_makes_it
        self._where = where
        self._only_if_current = only_if_current
        self._links: list[Link] | None = None
        self._batch: int | None = None
        self._arrival: Arrival | None = None

    @classmethod
    def batch(cls, headers: Iterable[Headers], operation: Operation) -> Processing:
        """One processing of a batch of messages: the loop's own context, one span linked to each.

        The batch's work runs in the current context (no one message's
        stores), under one CONSUMER span with ``messaging.batch.message_count``,
        a child of the current span if any, linked to each message's
        publisher.
        """
        processing = cls(None, operation, context=get_current())
        processing._links = []
        processing._batch = 0
        for one in headers:
            processing._batch += 1
            _, link = message_context(fields_of(one), trust=False)
            if link is not None:
                processing._links.append(link)
        return processing

    def begin(self) -> Context:
        """Attach the message's context (with its span) and run the hooks' ``before``; return it."""
        context, links = self.context, self._links
        if context is None:
            context, link = message_context(fields_of(self.headers), trust=self._trust)
            links = [link] if link is not None else None
        if self._retry:
            link = retry_link(fields_of(self.headers))
            links = [*(links or ()), link] if link is not None else links
        plan = plan_span(
            "CONSUMER",
            get_current(),
            True,
            self._other_makes_it,
            not self._trust or self._batch is not None,
            parent=context,
        )
        if plan.continued is not None:
            context = Context({**context, span_key(): plan.continued})
        elif plan.own:
            operation = self.operation
            if callable(operation):
                self.operation = operation = operation()
            self.span = consumer_span(context, operation, links, batch=self._batch)
            context = Context({**context, span_key(): self.span})
        self.context = context
        # (positionally: a class called with keywords pays for a dict, per message)
        self._arrival = Arrival(
            context, None, PROCESS_RESOURCE, self._where, True, self._only_if_current
        )
        entered = self._arrival.__enter__()
        resource = self._arrival.resource
        if resource is not None:  # hooks on: name it for people (the live view)
            operation = self.operation
            if callable(operation):
                self.operation = operation = operation()
            resource.name = span_name(PROCESS, operation)
        return entered

    def fail(self, error: BaseException) -> None:
        """Mark threadline's span of the processing failed by *error* (it is ended by `end`)."""
        if self.span is not None:
            record_error(self.span, error)

    def end(
        self,
        error: BaseException | None = None,
        *,
        end_span: bool = True,
        only_if_current: bool = False,
    ) -> None:
        """The work is over: fail and end the span, run the hooks' ``after``, restore the context.

        *end_span* False leaves the span open, for a process that reports it
        itself. *only_if_current*: put the context from before back only while
        the work's own is current (ended from elsewhere, what is current there
        stays). Calling it again does nothing.
        """
        span, self.span = self.span, None
        if span is not None:
            if error is not None:
                record_error(span, error)
            if end_span:
                span.end()
        arrival, self._arrival = self._arrival, None
        if arrival is not None:
            arrival.leave(only_if_current=only_if_current)

    def __enter__(self) -> Context:
        return self.begin()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # a way out that is no error (a break's GeneratorExit, a cancellation) ends it as it is
        self.end(error if isinstance(error, Exception) else None)

    async def __aenter__(self) -> Context:
        return self.begin()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(kind, error, traceback)


def consumer_span(
    context: Context,
    operation: Operation,
    links: Sequence[Link] | None = None,
    start_time: int | None = None,
    batch: int | None = None,
) -> Span:
    """Start the CONSUMER span ``process {destination}`` of *operation*, a child of *context*."""
    return start_boundary_span(
        operation.system,
        span_name(PROCESS, operation),
        kind=SpanKind.CONSUMER,
        attributes=span_attributes(PROCESS, operation, batch),
        context=context,
        links=links,
        start_time=start_time,
    )


def report_processing(
    headers: Headers, operation: Operation, error: BaseException, start_time: int | None
) -> None:
    """Report, failed, a processing whose own process could not (it was killed).

    Its CONSUMER span is made here after the fact, dated *start_time*
    (nanoseconds since the epoch), when a child of the message's context
    would be recorded.
    """
    context, _ = message_context(fields_of(headers))
    if is_recording(context):
        span = consumer_span(context, operation, start_time=start_time)
        record_error(span, error)
        span.end()
