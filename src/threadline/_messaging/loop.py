"""A consumer loop whose body runs in each message's context, and leaves it the moment it is left.

``for message in ConsumerLoop(...)`` (or ``async for`` over `AsyncConsumerLoop`)
reads one message from the client, begins its `Processing` (the message's
context attached, its CONSUMER span current) and hands it to the loop body.
The next ``__next__``/``__anext__`` ends that processing before it reads again,
so the consumer's own context is current while it waits for the client.

Python tells an iterator nothing when a loop body is left by ``break``, by an
exception or by a cancellation: the loop only drops its reference to the
iterator. Two ways keep the promise that the consumer's context is back at that
moment:

* as a context manager (``with consume(c) as messages: for m in messages``,
  or ``async with``), the exit ends the current processing, failing its span
  with the body's exception: whatever else holds the loop object.
* a bare loop over the object made in the ``for`` statement itself
  (``for m in consume(c):``): CPython frees the object as the loop is left
  (reference counting, on every supported version), and freeing it ends the
  current processing then, in the same thread and context. A loop object kept
  in a variable lives on after a ``break``, and so does the message's context,
  until the next iteration, `close`, or the object is freed.

A plain generator cannot promise either: its ``finally`` runs when it is
closed, which for an async generator may be in another task, later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Generic, TypeVar

from .consume import Processing

__all__ = ["AsyncConsumerLoop", "ConsumerLoop"]

M = TypeVar("M")


class _Loop(Generic[M]):
    """What both loops share: the processing under way, ended once."""

    __slots__ = ("_current", "_process")

    def __init__(self, process: Callable[[M], Processing | None]) -> None:
        self._process = process
        self._current: Processing | None = None

    def _begin(self, message: M) -> M:
        processing = self._process(message)
        if processing is not None:
            processing.begin()
            self._current = processing
        return message

    def _end(self, error: BaseException | None = None) -> None:
        current, self._current = self._current, None
        if current is not None:
            # a way out that is no error (a cancellation, GeneratorExit) ends it as it is
            current.end(error if isinstance(error, Exception) else None)

    def __del__(self) -> None:
        # A bare `for` left by break or raise frees its iterator right there (CPython):
        # the consumer's context is back before the code after the loop runs. Freed
        # later or elsewhere (a kept loop object, another thread, the cycle collector),
        # whatever is current there stays: only the span and the hooks are ended.
        current = getattr(self, "_current", None)
        if current is not None:
            self._current = None
            current.end(only_if_current=True)


class ConsumerLoop(_Loop[M]):
    """``for message in loop``: each message read by *fetch* and processed as *process* says.

    Args:
        fetch: reads the next message, blocking; raises StopIteration at the end.
        process: the `Processing` of a message (or a batch), or None to hand
            it to the body in the consumer's own context.
    """

    __slots__ = ("_fetch",)

    def __init__(self, fetch: Callable[[], M], process: Callable[[M], Processing | None]) -> None:
        super().__init__(process)
        self._fetch = fetch

    def __iter__(self) -> ConsumerLoop[M]:
        return self

    def __next__(self) -> M:
        self._end()
        return self._begin(self._fetch())

    def close(self) -> None:
        """End the current message's processing: the consumer's own context is back."""
        self._end()

    def __enter__(self) -> ConsumerLoop[M]:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._end(error)


class AsyncConsumerLoop(_Loop[M]):
    """``async for message in loop``: as `ConsumerLoop`, with *fetch* awaited.

    *fetch* raises StopAsyncIteration at the end. The loop's ``async with``
    frames the processing only: the client's own iterator or consumer is
    started and closed by its owner.
    """

    __slots__ = ("_fetch",)

    def __init__(
        self, fetch: Callable[[], Awaitable[M]], process: Callable[[M], Processing | None]
    ) -> None:
        super().__init__(process)
        self._fetch = fetch

    def __aiter__(self) -> AsyncConsumerLoop[M]:
        return self

    async def __anext__(self) -> M:
        self._end()
        return self._begin(await self._fetch())

    async def aclose(self) -> None:
        """End the current message's processing: the consumer's own context is back."""
        self._end()

    async def __aenter__(self) -> AsyncConsumerLoop[M]:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._end(error)
