"""Kafka: the publisher's context in message headers; each message's work in its own context.

For aiokafka (``AIOKafkaProducer``, ``AIOKafkaConsumer``) and confluent-kafka
(``Producer``, ``Consumer``)::

    producer = threadline.kafka.instrument(producer)
    await producer.send_and_wait("orders", b"...")        # or producer.produce(...)

    async for record in threadline.kafka.consume(consumer):   # for ... in, with confluent-kafka
        handle(record)        # in the record's context, under its CONSUMER span

Each send writes the context (trace, baggage with the stores, in the
configured formats) into the message's headers under a PRODUCER span
``send {topic}``, ended when the broker acknowledges. Each message's body runs
in the context read strictly from its headers (a message that brought
nothing runs in an empty one, never the previous message's) under a CONSUMER
span ``process {topic}``, a child of the publisher's, and the consumer's own
context is back before the next message is read and the moment the body is
left (see `consume`). Bad header fields (not UTF-8, repeated, too large,
malformed) are dropped whole, counted and reported; the loop goes on.

.. versionadded:: 0.2
"""

from __future__ import annotations

import sys
from typing import Any

from .._messaging.consume import Processing
from ._confluent import InstrumentedProducer as InstrumentedProducer
from ._records import BOUNDARY as BOUNDARY
from ._records import MAX_KEY_CHARS as MAX_KEY_CHARS
from ._records import processing as _processing

__all__ = [
    "BOUNDARY",
    "MAX_KEY_CHARS",
    "InstrumentedProducer",
    "consume",
    "instrument",
    "processing",
]


def _is(obj: Any, module: str, name: str) -> bool:
    loaded = sys.modules.get(module)
    kind = getattr(loaded, name, None)
    return isinstance(kind, type) and isinstance(obj, kind)


def _client(obj: Any, what: str) -> str:
    if _is(obj, "aiokafka", f"AIOKafka{what}"):
        return "aiokafka"
    if _is(obj, "confluent_kafka", what) or _is(obj, "confluent_kafka.cimpl", what):
        return "confluent"
    raise TypeError(
        f"threadline.kafka: {type(obj).__qualname__} is no aiokafka AIOKafka{what} "
        f"or confluent_kafka {what}"
    )


def instrument(producer: Any) -> Any:
    """Make *producer*'s sends carry the current context; return the producer to use.

    An aiokafka ``AIOKafkaProducer`` is instrumented in place (its ``send``,
    and so ``send_and_wait``) and returned. A confluent-kafka ``Producer`` is
    a C type that cannot be patched: an `InstrumentedProducer` wrapping it
    (``produce`` carries the context, everything else is the producer's) is
    returned; use it in its place. Instrumenting again changes nothing.

    Raises:
        TypeError: *producer* is neither.
    """
    if isinstance(producer, InstrumentedProducer):
        return producer
    if _client(producer, "Producer") == "aiokafka":
        from ._aiokafka import instrument as instrument_aiokafka  # noqa: PLC0415

        return instrument_aiokafka(producer)
    return InstrumentedProducer(producer)


def consume(consumer: Any, *, batch: int | None = None, timeout: float = 1.0) -> Any:
    """Iterate over *consumer*'s messages, the loop body in each message's context.

    ``async for record in consume(aiokafka_consumer)`` (it ends when the
    consumer is stopped); ``for message in consume(confluent_consumer)``
    (polling *timeout* seconds at a time, for ever). Each message's body runs
    in its context and CONSUMER span; the consumer's own context is back
    before the next message is read. Left by ``break``, an exception or a
    cancellation, the loop ends the message's processing there: as a
    context manager (``async with consume(c) as records:`` / ``with``) in
    every case, the span failed by the body's exception; as a bare loop over
    ``consume(c)`` written in the ``for`` statement, when CPython frees the
    loop object as the loop is left.

    *batch*: read up to that many messages at a time (``getmany`` /
    ``consume(num_messages=…)``), waiting *timeout* seconds at most; each
    non-empty batch is one list for the body, in the consumer's own context,
    under one CONSUMER span linked to each message's publisher.

    Raises:
        TypeError: *consumer* is no aiokafka ``AIOKafkaConsumer`` or
            confluent-kafka ``Consumer``; *batch* is not a positive int.
    """
    if batch is not None and (type(batch) is not int or batch < 1):
        raise TypeError(f"threadline.kafka.consume: batch must be a positive int, not {batch!r}")
    if _client(consumer, "Consumer") == "aiokafka":
        from ._aiokafka import consume as consume_aiokafka  # noqa: PLC0415

        return consume_aiokafka(consumer, batch, timeout)
    from ._confluent import consume as consume_confluent  # noqa: PLC0415

    return consume_confluent(consumer, batch, timeout)


def processing(message: Any) -> Processing:
    """The processing of *message*, for loops of your own: a (async) context manager.

    ``with processing(message):`` (or ``async with``) runs the block in the
    message's context under its CONSUMER span, and puts the context from
    before back however the block ends (its span failed by an exception).
    A list of messages is a batch: one span linked to each one's publisher,
    in the current context.
    """
    return _processing(message)
