"""In-process consumers for the Kafka and RabbitMQ tests: a loop in a thread, what bodies saw.

`LoopThread` runs an asyncio loop in a thread of its own, so that a sync test
can publish in its own context (`LoopThread.run_here` carries it) while an
async consumer runs beside it. `Observer` keeps what each contract body saw
(`tests.message_probe.observe`) and the consumer's own context after each
message, for the contract's ``Seen``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from opentelemetry import trace

import threadline as tl
from tests.message_probe import observe
from tests.messaging_contract import Seen

T = TypeVar("T")
TIMEOUT = 60  # a hang guard only


def own_context() -> dict[str, Any]:
    """The request and trace current here (a consumer's own context: both None)."""
    value = tl.request.get()
    span_context = trace.get_current_span().get_span_context()
    return {
        "request": dict(value) if value is not None else None,
        "trace_id": f"{span_context.trace_id:032x}" if span_context.is_valid else None,
    }


class LoopThread:
    """An asyncio event loop running in a thread of its own until `stop`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run *coroutine* on the loop, in the loop thread's context; its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(TIMEOUT)

    def run_here(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run *coroutine* on the loop in the caller's context (its stores, its span)."""
        snapshot = tl.snapshot()

        async def within() -> T:
            with snapshot:
                return await coroutine

        return self.run(within())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


class Observer:
    """What contract bodies saw, by message id, and the consumer's context between messages."""

    def __init__(self) -> None:
        self._seen: dict[str, dict[str, Any]] = {}
        self._changed = threading.Condition()
        self._between = own_context()

    def body(self, message_id: str) -> None:
        """Called in a message's body: note what it sees, and the consumer's context before it."""
        seen = {**observe(), "loop": self._between}
        with self._changed:
            self._seen[message_id] = seen
            self._changed.notify_all()

    def between(self) -> None:
        """Called in the consumer after a message's body was left."""
        self._between = own_context()

    def seen(self, message_id: str) -> Seen:
        with self._changed:
            assert self._changed.wait_for(lambda: message_id in self._seen, TIMEOUT), message_id
            return Seen(**self._seen.pop(message_id))
