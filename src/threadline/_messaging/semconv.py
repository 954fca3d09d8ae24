"""The messaging semantic conventions (v1.x): what one operation is called, and its attributes.

One span per operation: ``send {destination}`` (PRODUCER) where a message is
published, ``process {destination}`` (CONSUMER) where it is processed, with
``messaging.system``, ``messaging.operation.type`` and ``.name``,
``messaging.destination.name``, ``messaging.message.id`` and, for a batch,
``messaging.batch.message_count``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["PROCESS", "SEND", "Operation", "span_attributes", "span_name"]

SEND = "send"
"""``messaging.operation.type`` of a publish."""
PROCESS = "process"
"""``messaging.operation.type`` of a message's processing."""


class Operation(NamedTuple):
    """The names of one message operation, as the adapter knows them.

    Attributes:
        system: ``messaging.system`` (``"celery"``, ``"kafka"``, ``"rabbitmq"``);
            also the spans' ``threadline.boundary``.
        destination: ``messaging.destination.name``: the queue, topic or exchange.
        message_id: ``messaging.message.id``, when the broker gives one.
        name: ``messaging.operation.name``, where the system's own word differs
            from the type (``send``, ``process``).
        target: what the span's name says after the operation (default: the
            destination), e.g. a Celery task's name.
        attributes: the system's own attributes (``celery.task_name``).
    """

    system: str
    destination: str | None = None
    message_id: str | None = None
    name: str | None = None
    target: str | None = None
    attributes: Mapping[str, Any] | None = None


def span_name(operation_type: str, operation: Operation) -> str:
    """``"{operation name} {target}"``, or the operation name alone when there is no target."""
    target = operation.target or operation.destination
    verb = operation.name or operation_type
    return f"{verb} {target}" if target else verb


def span_attributes(
    operation_type: str, operation: Operation, batch: int | None = None
) -> dict[str, Any]:
    """The span's attributes for *operation* of *operation_type*; *batch*: the batch's size."""
    attributes: dict[str, Any] = {
        "messaging.system": operation.system,
        "messaging.operation.type": operation_type,
        "messaging.operation.name": operation.name or operation_type,
    }
    if operation.attributes:
        attributes.update(operation.attributes)
    if isinstance(operation.message_id, str):
        attributes["messaging.message.id"] = operation.message_id
    if isinstance(operation.destination, str) and operation.destination:
        attributes["messaging.destination.name"] = operation.destination
    if batch is not None:
        attributes["messaging.batch.message_count"] = batch
    return attributes
