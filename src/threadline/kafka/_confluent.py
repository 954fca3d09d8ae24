"""confluent-kafka: `InstrumentedProducer` wraps a producer (a C type: it cannot be patched).

`consume` is a `ConsumerLoop` over ``poll`` (or ``consume(num_messages=…)``).
A message that is an error event (``message.error()``) is handed to the body
as it is, in the consumer's own context. Beside OpenTelemetry's confluent-kafka
instrumentation: its ``produce`` span is current when threadline's runs, and is
continued; the loop polls past its ``poll``/``consume`` wrappers, which leave
their span's context attached until the next poll, and makes the one CONSUMER span.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .._boundary.coexistence import contrib_method, is_contrib
from .._boundary.handoff import Handoff
from .._messaging.consume import Processing
from .._messaging.headers import PAIRS
from .._messaging.loop import ConsumerLoop
from .._messaging.publish import publish
from .._messaging.semconv import Operation
from . import _records

__all__ = ["InstrumentedProducer", "consume"]

_INTEGRATION = "confluent_kafka"


class InstrumentedProducer:
    """A confluent-kafka ``Producer`` whose ``produce`` carries the context.

    Every other attribute is the producer's own (``poll``, ``flush``, …).
    The PRODUCER span ends when the delivery report comes (in ``poll`` or
    ``flush``), failed if the delivery failed.
    """

    __slots__ = ("_inner", "producer")

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        # (the producer, the one inside OpenTelemetry's proxy if it is one): found once
        self._inner = (producer, _unproxied(producer, "original_producer"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.producer, name)

    def __len__(self) -> int:
        return len(self.producer)

    def produce(self, topic: str, value: Any = None, key: Any = None, **options: Any) -> None:
        """Produce as ``Producer.produce`` does, with the current context in the headers."""
        headers = options.pop("headers", None)
        options["headers"] = list(headers.items() if isinstance(headers, dict) else headers or ())
        given, producer = self._inner
        if given is not self.producer:  # replaced since
            producer = _unproxied(self.producer, "original_producer")
            self._inner = (self.producer, producer)
        contrib = contrib_method(type(producer), "produce", _INTEGRATION)
        if contrib is None:
            _produce(producer.produce, topic, value, key, options)
            return
        wrapper, wrapped = contrib

        def inner(*args: Any, **kwargs: Any) -> None:  # OpenTelemetry's span is current here
            given = dict(kwargs)
            given.pop("topic", None)
            _produce(
                functools.partial(wrapped, producer),
                args[0] if args else kwargs["topic"],
                given.pop("value", None),
                given.pop("key", None),
                given,
            )

        wrapper(inner, producer, (topic,), {"value": value, "key": key, **options})


def _produce(
    produce: Callable[..., Any], topic: str, value: Any, key: Any, options: dict[str, Any]
) -> None:
    handoff = publish(
        options["headers"],
        functools.partial(_records.operation, topic, options.get("partition"), key),
        setter=PAIRS,
    )
    if handoff.span is not None or handoff.resource is not None:
        reported = options.pop("on_delivery", None) or options.pop("callback", None)
        options["on_delivery"] = functools.partial(_delivered, handoff, reported)
    # else the delivery ends nothing of threadline's: no callback of its own, so the client's
    # delivery reports stay in C (a Python call per message in a burst otherwise)
    try:
        produce(topic, value, key, **options)
    except BaseException as error:
        handoff.end(error)
        raise


def _delivered(
    handoff: Handoff, reported: Callable[..., Any] | None, error: Any, message: Any
) -> None:
    if error is not None:
        from confluent_kafka import KafkaException  # noqa: PLC0415 - with confluent-kafka only

        handoff.end(KafkaException(error))
    else:
        handoff.end()
    if reported is not None:
        reported(error, message)


def _unproxied(client: Any, original: str) -> Any:
    """The client inside OpenTelemetry's ``instrument_producer``/``_consumer`` proxy, if it is one.

    The proxy's producer span would be a second one (it writes its carrier after
    threadline's); its consumer leaves its span's context attached until the
    next poll. threadline's spans stand for both operations instead.
    """
    unwrap = getattr(client, original, None)
    return unwrap() if callable(unwrap) and is_contrib(type(client), _INTEGRATION) else client


def _consumer(consumer: Any, name: str) -> Callable[..., Any]:
    """The consumer's method *name*, past OpenTelemetry's wrapper of it."""
    consumer = _unproxied(consumer, "original_consumer")
    contrib = contrib_method(type(consumer), name, _INTEGRATION)
    if contrib is None:
        return getattr(consumer, name)  # type: ignore[no-any-return]
    return functools.partial(contrib[1], consumer)


def _processing(message: Any) -> Processing | None:
    if message.error() is not None:
        return None
    return Processing(message.headers(), functools.partial(_operation_of, message))


def _operation_of(message: Any) -> Operation:
    return _records.operation(message.topic(), message.partition(), message.key(), message.offset())


def _batch(messages: list[Any]) -> Processing:
    return _records.batch([message for message in messages if message.error() is None])


def consume(consumer: Any, batch: int | None, timeout: float) -> ConsumerLoop[Any]:
    """The loop over *consumer*'s messages (or batches of up to *batch*), polling *timeout* s."""
    if batch is None:
        poll = _consumer(consumer, "poll")

        def fetch() -> Any:
            while True:
                message = poll(timeout)
                if message is not None:
                    return message

        return ConsumerLoop(fetch, _processing)
    many = _consumer(consumer, "consume")

    def fetch_batch() -> list[Any]:
        while True:
            messages = many(num_messages=batch, timeout=timeout)
            if messages:
                return list(messages)

    return ConsumerLoop(fetch_batch, _batch)
