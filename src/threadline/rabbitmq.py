"""RabbitMQ (aio-pika): the publisher's context in message headers; each message's work in its own.

::

    channel = threadline.rabbitmq.instrument(await connection.channel())
    await channel.default_exchange.publish(aio_pika.Message(b"..."), routing_key="orders")

    async with queue.iterator() as queue_iterator:
        async for message in threadline.rabbitmq.consume(queue_iterator):
            async with message.process():
                handle(message)   # in the message's context, under its CONSUMER span

Each publish writes the context (trace, baggage with the stores, in the
configured formats) into the message's header table under a PRODUCER span
``send {destination}``, ended when the publish returns (the broker's confirm,
on a channel with confirms). Each message's body runs in the context read
strictly from its headers (a message that brought nothing runs in an empty
one, never the previous message's) under a CONSUMER span ``process
{destination}``, a child of the publisher's; the consumer's own context is
back before the next message is awaited and the moment the body is left (see
`consume`). A header value that is not text or UTF-8 bytes, is too large or
malformed is dropped whole, counted and reported; the loop goes on.

Beside OpenTelemetry's aio-pika instrumentation, its PRODUCER span (current
while threadline's publish runs inside its wrapper) is continued, not doubled;
its CONSUMER span of a queue iterator's delivery, which ends before the loop
body runs, stands for the message: `consume` then makes none, and the body
runs in the message's context, the PRODUCER span its parent.

.. versionadded:: 0.2
"""

from __future__ import annotations

import functools
from typing import Any

from ._boundary.coexistence import contrib_method
from ._core.text import escape_controls
from ._messaging.consume import Processing
from ._messaging.loop import AsyncConsumerLoop
from ._messaging.publish import publish
from ._messaging.semconv import Operation

__all__ = ["BOUNDARY", "consume", "instrument", "processing"]

BOUNDARY = "rabbitmq"
"""``messaging.system`` and ``threadline.boundary`` of RabbitMQ's PRODUCER and CONSUMER spans."""

_MARK = "_threadline_instrumented"
_INTEGRATION = "aio_pika"


def instrument(exchange_or_channel: Any) -> Any:
    """Make publishes through an aio-pika exchange, or a channel's exchanges, carry the context.

    An ``Exchange``: its ``publish``. A ``Channel``: its default exchange and
    every exchange ``declare_exchange`` or ``get_exchange`` returns from now
    on. Returns what it was given; instrumenting again changes nothing.

    Raises:
        TypeError: it is neither an aio-pika exchange nor a channel.
    """
    target = exchange_or_channel
    if getattr(target, _MARK, False):
        return target
    if callable(getattr(target, "declare_exchange", None)):
        _instrument_channel(target)
    elif callable(getattr(target, "publish", None)) and hasattr(target, "name"):
        _instrument_exchange(target)
    else:
        raise TypeError(
            f"threadline.rabbitmq.instrument: {type(target).__qualname__} is no aio-pika "
            "Exchange or Channel"
        )
    setattr(target, _MARK, True)
    return target


def _instrument_channel(channel: Any) -> None:
    default = getattr(channel, "default_exchange", None)
    if default is not None:
        instrument(default)
    # A channel makes its default exchange anew each time it opens (a robust one reopens).
    on_open = getattr(channel, "_on_open", None)
    if callable(on_open):

        async def opened() -> None:
            await on_open()
            instrument(channel.default_exchange)

        channel._on_open = opened
    for name in ("declare_exchange", "get_exchange"):
        method = getattr(channel, name)

        async def instrumented(*args: Any, __method: Any = method, **kwargs: Any) -> Any:
            return instrument(await __method(*args, **kwargs))

        setattr(channel, name, functools.wraps(method)(instrumented))


def _instrument_exchange(exchange: Any) -> None:
    owner = type(exchange)

    async def publish_message(message: Any, routing_key: str, **options: Any) -> Any:
        contrib = contrib_method(owner, "publish", _INTEGRATION)  # at each call: it may come later
        if contrib is None:
            return await _publish(owner.publish, exchange, message, routing_key, options)
        wrapper, wrapped = contrib

        async def inner(message: Any, routing_key: str, **options: Any) -> Any:
            return await _publish(wrapped, exchange, message, routing_key, options)

        return await wrapper(inner, exchange, (message, routing_key), options)

    exchange.publish = publish_message


async def _publish(
    send: Any, exchange: Any, message: Any, routing_key: str, options: dict[str, Any]
) -> Any:
    if message.headers is None:
        message.headers = {}
    handoff = publish(
        message.headers,
        functools.partial(_operation, exchange.name, routing_key, None, message.message_id),
    )
    try:
        confirmed = await send(exchange, message, routing_key, **options)
    except BaseException as error:
        handoff.end(error)
        raise
    handoff.end()
    return confirmed


def _operation(
    exchange: object, routing_key: object, queue: object, message_id: object
) -> Operation:
    """A RabbitMQ operation's names, as the messaging conventions join them.

    ``messaging.destination.name`` is ``{exchange}:{routing key}`` at the
    publisher and ``{exchange}:{routing key}:{queue}`` at the consumer, each
    part only when it is there.
    """
    parts = [part for part in (exchange, routing_key, queue) if isinstance(part, str) and part]
    attributes: dict[str, Any] = {}
    if isinstance(routing_key, str) and routing_key:
        attributes["messaging.rabbitmq.destination.routing_key"] = escape_controls(routing_key)
    return Operation(
        BOUNDARY,
        escape_controls(":".join(parts)) if parts else None,
        escape_controls(message_id) if isinstance(message_id, str) else None,
        attributes=attributes,
    )


def processing(message: Any, queue: str | None = None) -> Processing:
    """The processing of an aio-pika incoming *message*, for loops of your own.

    ``async with processing(message):`` (or ``with``) runs the block in the
    message's context under its CONSUMER span, and puts the context from
    before back however the block ends (its span failed by an exception).
    *queue*: the queue's name, for the destination's name.
    """
    return _processing(message, queue)


def _processing(message: Any, queue: str | None, other_makes_it: bool = False) -> Processing:
    return Processing(
        message.headers,
        functools.partial(
            _operation, message.exchange, message.routing_key, queue, message.message_id
        ),
        other_makes_it=other_makes_it,
    )


def consume(queue_iterator: Any) -> AsyncConsumerLoop[Any]:
    """Iterate over an aio-pika ``QueueIterator``, the loop body in each message's context.

    ``async for message in consume(queue.iterator())``: each message's body
    runs in its context and CONSUMER span; the consumer's own context is back
    before the next message is awaited. Left by ``break``, an exception or a
    cancellation, the loop ends the message's processing there: as a context
    manager (``async with consume(queue_iterator) as messages:``; the queue
    iterator is still yours to enter and close) in every case, the span
    failed by the body's exception; as a bare loop over ``consume(…)``
    written in the ``async for`` statement, when CPython frees the loop
    object as the loop is left. Acknowledge as usual (``message.process()``).
    """
    queue = getattr(queue_iterator, "_amqp_queue", None)
    # Beside OpenTelemetry's aio-pika instrumentation, a queue iterator's deliveries get its
    # CONSUMER span (ended before the body runs): it stands for the message, not doubled.
    contrib = queue is not None and contrib_method(type(queue), "consume", _INTEGRATION) is not None
    name = getattr(queue, "name", None)

    def process(message: Any) -> Processing:
        return _processing(message, name, contrib)

    return AsyncConsumerLoop(queue_iterator.__anext__, process)
