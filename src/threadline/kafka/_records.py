"""What threadline reads of a Kafka message, alike for aiokafka's records and confluent-kafka's.

aiokafka gives attributes (``record.topic``), confluent-kafka methods
(``message.topic()``); `read` takes either. The key is a span attribute only
as printable UTF-8 text (escaped, cut to `MAX_KEY_CHARS`): it comes from outside.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from .._core.text import escape_controls
from .._messaging.consume import Processing
from .._messaging.semconv import Operation

__all__ = ["BOUNDARY", "MAX_KEY_CHARS", "operation", "operation_of", "processing", "read"]

BOUNDARY = "kafka"
"""``messaging.system`` and ``threadline.boundary`` of Kafka's PRODUCER and CONSUMER spans."""
MAX_KEY_CHARS = 256
"""The longest message key put in ``messaging.kafka.message.key``; a longer one is cut."""


def read(message: Any, name: str) -> Any:
    """The message's *name* (``topic``, ``partition``, ``offset``, ``key``, ``headers``)."""
    value = getattr(message, name, None)
    return value() if callable(value) else value


def key_text(key: object) -> str | None:
    """A message key as span-attribute text: str or UTF-8 bytes, escaped and cut; else None."""
    if isinstance(key, bytes):
        try:
            key = key.decode()
        except UnicodeDecodeError:
            return None
    if not isinstance(key, str) or not key:
        return None
    return escape_controls(key[:MAX_KEY_CHARS])


def operation(topic: object, partition: object, key: object, offset: object = None) -> Operation:
    """The names of one Kafka operation on *topic* (the messaging semantic conventions)."""
    attributes: dict[str, Any] = {}
    if type(partition) is int and partition >= 0:
        attributes["messaging.destination.partition.id"] = str(partition)
    if type(offset) is int and offset >= 0:
        attributes["messaging.kafka.offset"] = offset
    text = key_text(key)
    if text is not None:
        attributes["messaging.kafka.message.key"] = text
    destination = escape_controls(topic) if isinstance(topic, str) else None
    return Operation(BOUNDARY, destination, attributes=attributes)


def operation_of(message: Any) -> Operation:
    """The names of the processing of *message*."""
    return operation(
        read(message, "topic"),
        read(message, "partition"),
        read(message, "key"),
        read(message, "offset"),
    )


def processing(message: Any) -> Processing:
    """The processing of one message, or of a batch (a list or tuple of messages)."""
    if isinstance(message, (list, tuple)):
        return batch(message)
    return Processing(read(message, "headers"), functools.partial(operation_of, message))


def batch(messages: Sequence[Any]) -> Processing:
    """One processing of *messages*: one span, linked to each message's publisher."""
    topics = {read(message, "topic") for message in messages}
    topic = topics.pop() if len(topics) == 1 else None
    names = Operation(
        BOUNDARY, escape_controls(topic) if isinstance(topic, str) else None, attributes={}
    )
    return Processing.batch((read(message, "headers") for message in messages), names)
