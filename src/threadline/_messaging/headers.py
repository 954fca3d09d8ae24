"""A message's headers: the context written into them at publish, read back strictly at consume.

Brokers give headers in one of two shapes: a mapping (a Celery task's
request, RabbitMQ's ``message.headers``) or a sequence of ``(key, value)``
pairs where a key may repeat (Kafka); values are text (Celery) or bytes
(Kafka, AMQP). `fields_of` turns either into the `GetAll` that one reader,
`READER`, reads for every broker, with HTTP's field limits: a value that is
not text or not UTF-8, a field given twice, a field over its limit is
dropped whole, counted and reported, and the message is still processed
(without it). Keys are matched exactly, as brokers keep them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union

from opentelemetry.propagators.textmap import Setter
from opentelemetry.trace import Link, SpanContext, get_current_span

from .._core.context import Context
from .._wire.carrier import BAGGAGE, FIELD_LIMITS, TRACEPARENT, extract_context, inject_span
from .._wire.fields import FieldGetter, GetAll
from .._wire.formats import DEFAULT, configured_formats, extract_formats
from .._wire.tracecontext import MAX_TRACEPARENT_CHARS

__all__ = [
    "PAIRS",
    "READER",
    "RETRY_OF_HEADER",
    "Headers",
    "fields_of",
    "message_context",
    "retry_link",
    "write_retry_of",
]

RETRY_OF_HEADER = "threadline_retry_of"
"""The message header that names, as a traceparent, the processing a retry follows."""

Headers = Union[Mapping[str, Any], Iterable[tuple[Any, Any]], None]  # noqa: UP007 - a runtime alias
"""A message's headers as its client gives them: a mapping, ``(key, value)`` pairs, or None."""

READER = FieldGetter(
    repeatable=False, limits={**FIELD_LIMITS, RETRY_OF_HEADER: MAX_TRACEPARENT_CHARS}
)
"""The one reader of message headers: text or UTF-8 bytes, one value a key, within the limits."""

_NONE: Sequence[Any] = ()
_PAIR_SHAPES = (list, tuple)
_EMPTY = Context()


def fields_of(headers: Headers) -> GetAll:
    """Return the `GetAll` over *headers* (a mapping, or pairs whose keys may repeat).

    A mapping is looked up per field, as it is (a Celery request's ``vars``
    costs no copy); pairs are grouped by key once, keeping every value so a
    repeated key is seen. Keys that are not text are passed over.
    """
    if headers is None:
        return _absent
    # the usual shapes first: an ABC's isinstance costs more than the rest of this
    if type(headers) is dict or (
        type(headers) not in _PAIR_SHAPES and isinstance(headers, Mapping)
    ):
        get = headers.get

        def get_all(key: str, default: Sequence[Any]) -> Sequence[Any]:
            value = get(key)
            return default if value is None else (value,)

        return get_all
    grouped: dict[str, list[Any]] = {}
    for pair in headers:
        if type(pair) is tuple and len(pair) == 2 and type(pair[0]) is str:
            grouped.setdefault(pair[0], []).append(pair[1])
    return grouped.get


def _absent(key: str, default: Sequence[Any]) -> Sequence[Any]:
    return default


def message_context(fields: GetAll, *, trust: bool = True) -> tuple[Context, Link | None]:
    """Return the context a message brought, built on an empty one, and None.

    Read in the configured formats through `READER`; a message that brought
    nothing gives the empty context (never the consumer's own). Distrusted
    (*trust* False): an empty context and a link to the span the message
    named, when valid; its baggage is not read.
    """
    formats = configured_formats()
    if formats is DEFAULT and not fields(TRACEPARENT, _NONE) and not fields(BAGGAGE, _NONE):
        return _EMPTY, None  # nothing came: nothing to parse
    context = extract_formats(fields, READER, formats, with_baggage=trust)
    if trust:
        return context, None
    span_context = get_current_span(context).get_span_context()
    return _EMPTY, Link(span_context) if span_context.is_valid else None


def retry_link(fields: GetAll) -> Link | None:
    """Return the link to the processing a retried message follows (`RETRY_OF_HEADER`), or None.

    The header is read by `READER` and parsed by the carrier's strict
    traceparent decoder; a bad one is dropped and counted as a traceparent.
    """
    values = READER.get(fields, RETRY_OF_HEADER)
    if not values:
        return None
    context = extract_context(lambda field: values if field == TRACEPARENT else ())
    span_context = get_current_span(context).get_span_context()
    return Link(span_context) if span_context.is_valid else None


class PairSetter(Setter[list[tuple[str, bytes]]]):
    """Sets a field in a list of ``(key, bytes)`` pairs (Kafka's headers), in UTF-8.

    A field set again replaces every pair of that key, so the consumer never
    sees it twice (a repeated field is dropped whole there).
    """

    def set(self, carrier: list[tuple[str, bytes]], key: str, value: str) -> None:
        """Replace the pairs of *key* in *carrier* by one holding *value*."""
        if carrier:
            carrier[:] = [pair for pair in carrier if pair[0] != key]
        carrier.append((key, value.encode()))


PAIRS = PairSetter()
"""The setter of Kafka-style headers: a list of ``(key, bytes)`` pairs."""


def write_retry_of(headers: Any, setter: Setter[Any], span_context: SpanContext) -> None:
    """Name the processing *span_context* in *headers* as the one a retry follows."""

    def set_field(field: str, value: str) -> None:
        if field == TRACEPARENT:  # not its tracestate: one header, one traceparent
            setter.set(headers, RETRY_OF_HEADER, value)

    inject_span(set_field, span_context)
