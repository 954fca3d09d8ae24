"""aiokafka: `instrument` wraps one producer's ``send``; `consume` is an `AsyncConsumerLoop`.

Beside OpenTelemetry's aiokafka instrumentation: its ``send`` wrapper makes
the PRODUCER span and writes its traceparent, then calls threadline's, which
names that span in the carrier it writes (with the stores) rather than making
a second; the loop reads messages past its ``getone``/``getmany`` wrappers,
whose CONSUMER spans end before the body runs, and makes the one CONSUMER span.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import NonRecordingSpan, set_span_in_context

from .._boundary.coexistence import contrib_method
from .._boundary.handoff import Handoff
from .._core.context import attach, get_current, restore
from .._messaging.consume import Processing
from .._messaging.headers import PAIRS, fields_of, message_context
from .._messaging.loop import AsyncConsumerLoop
from .._messaging.publish import publish
from .._messaging.semconv import Operation
from . import _records

__all__ = ["consume", "instrument"]

_MARK = "_threadline_send"
_INTEGRATION = "aiokafka"


def instrument(producer: Any) -> Any:
    """Make *producer*'s ``send`` (and so ``send_and_wait``) carry the context; return it."""
    if getattr(vars(producer).get("send"), _MARK, False):
        return producer
    owner = type(producer)

    async def send(  # noqa: PLR0917 - aiokafka's own signature
        topic: str,
        value: Any = None,
        key: Any = None,
        partition: Any = None,
        timestamp_ms: Any = None,
        headers: Any = None,
    ) -> Any:
        pairs = list(headers or ())
        arguments = (topic, value, key, partition, timestamp_ms)
        contrib = contrib_method(owner, "send", _INTEGRATION)  # at each call: it may come later
        if contrib is None:
            return await _send(functools.partial(owner.send, producer), arguments, pairs)
        wrapper, wrapped = contrib
        inner = functools.partial(_send_in_contrib, functools.partial(wrapped, producer))
        return await wrapper(inner, producer, arguments, {"headers": pairs})

    setattr(send, _MARK, True)
    producer.send = send
    return producer


async def _send(
    send: Callable[..., Any],
    arguments: tuple[Any, ...],
    headers: list[tuple[str, bytes]],
    *,
    other_makes_it: bool = False,
) -> Any:
    topic, _, key, partition, _ = arguments
    handoff = publish(
        headers,
        functools.partial(_records.operation, topic, partition, key),
        setter=PAIRS,
        other_makes_it=other_makes_it,
    )
    try:
        delivery = await send(*arguments, headers)
    except BaseException as error:
        handoff.end(error)
        raise
    if handoff.span is not None or handoff.resource is not None:
        delivery.add_done_callback(functools.partial(_delivered, handoff))
    return delivery


async def _send_in_contrib(send: Callable[..., Any], *arguments: Any, headers: Any = None) -> Any:
    # OpenTelemetry's span has ended by now; the traceparent it wrote names it
    headers = headers if isinstance(headers, list) else list(headers or ())
    arguments = (*arguments, None, None, None, None, None)[:5]
    _, written = message_context(fields_of(headers), trust=False)
    token = None
    if written is not None:
        token = attach(set_span_in_context(NonRecordingSpan(written.context), get_current()))
    try:
        return await _send(send, arguments, headers, other_makes_it=True)
    finally:
        if token is not None:
            restore(token)


def _delivered(handoff: Handoff, delivery: asyncio.Future[Any]) -> None:
    if delivery.cancelled():
        handoff.end(asyncio.CancelledError())
    else:
        handoff.end(delivery.exception())


def _method(consumer: Any, name: str) -> Callable[..., Any]:
    """The consumer's method *name*, past OpenTelemetry's wrapper of it."""
    contrib = contrib_method(type(consumer), name, _INTEGRATION)
    if contrib is None:
        return getattr(consumer, name)  # type: ignore[no-any-return]
    return functools.partial(contrib[1], consumer)


def _processing(record: Any) -> Processing:
    return Processing(record.headers, functools.partial(_operation_of, record))


def _operation_of(record: Any) -> Operation:
    return _records.operation(record.topic, record.partition, record.key, record.offset)


def consume(consumer: Any, batch: int | None, timeout: float) -> AsyncConsumerLoop[Any]:
    """The loop over *consumer*'s records (or batches of up to *batch*), until it stops."""
    from aiokafka.errors import (  # type: ignore[import-untyped]  # noqa: PLC0415 - aiokafka only
        ConsumerStoppedError,
    )

    if batch is None:
        getone = _method(consumer, "getone")

        async def fetch() -> Any:
            try:
                return await getone()
            except ConsumerStoppedError:
                raise StopAsyncIteration from None

        return AsyncConsumerLoop(fetch, _processing)
    getmany = _method(consumer, "getmany")

    async def fetch_batch() -> Any:
        while True:
            try:
                found = await getmany(timeout_ms=int(timeout * 1000), max_records=batch)
            except ConsumerStoppedError:
                raise StopAsyncIteration from None
            records = [record for records in found.values() for record in records]
            if records:
                return records

    return AsyncConsumerLoop(fetch_batch, _records.batch)
