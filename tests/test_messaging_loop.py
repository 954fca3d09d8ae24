"""The consumer loop core (threadline._messaging.loop): each body in its message's context, and
the consumer's own context back the moment the body is left, however it is left.

Messages here are carriers made by `tl.inject` in a request's scope, read from
a list: the broker adapters' tests run the same loops over real brokers.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import threadline as tl
from tests.helpers import Spans
from threadline._messaging.consume import Processing
from threadline._messaging.loop import AsyncConsumerLoop, ConsumerLoop
from threadline._messaging.semconv import Operation

NAMES = Operation("test", "queue")


class BoomError(Exception):
    """What a body raises on purpose."""


def carriers(*request_ids: str | None) -> list[dict[str, str]]:
    """One carrier per id, made in that request's scope (None: a message that brings nothing)."""
    made = []
    for request_id in request_ids:
        carrier: dict[str, str] = {}
        if request_id is not None:
            with tl.request.scope(request_id=request_id):
                tl.inject(carrier)
        made.append(carrier)
    return made


def process(message: dict[str, str]) -> Processing:
    return Processing(message, NAMES)


def loop(*request_ids: str | None) -> ConsumerLoop[dict[str, str]]:
    return ConsumerLoop(iter(carriers(*request_ids)).__next__, process)


def async_loop(*request_ids: str | None) -> AsyncConsumerLoop[dict[str, str]]:
    messages: Iterator[dict[str, str]] = iter(carriers(*request_ids))

    async def fetch() -> dict[str, str]:
        await asyncio.sleep(0)
        try:
            return next(messages)
        except StopIteration:
            raise StopAsyncIteration from None

    return AsyncConsumerLoop(fetch, process)


def request_id() -> Any:
    value = tl.request.get()
    return None if value is None else value["request_id"]


class TestSyncLoop:
    def test_each_body_in_its_message_context_and_none_in_a_bare_one(self) -> None:
        """Each body sees its message's request; one that brought nothing sees none."""
        seen = [request_id() for _ in loop("a", None, "b")]
        assert ["a", None, "b"] == seen
        assert None is request_id()

    def test_break_puts_the_consumers_context_back_at_once(self) -> None:
        """Left by break, the loop's own context is current on the next line."""
        with tl.request.scope(request_id="consumer"):
            for _ in loop("a", "b"):
                assert "a" == request_id()
                break
            assert "consumer" == request_id()

    def test_a_raising_body_puts_it_back_before_the_handler(self) -> None:
        """The except clause already runs in the consumer's own context."""
        with tl.request.scope(request_id="consumer"):
            try:
                for _ in loop("a"):
                    raise BoomError  # noqa: TRY301 - the body raises out of the loop
            except BoomError:
                assert "consumer" == request_id()

    def test_a_kept_loop_object_holds_the_context_until_closed(self) -> None:
        """A loop object kept in a variable outlives the break (documented): `close` ends it."""
        messages = loop("a", "b")
        for _ in messages:
            break
        assert "a" == request_id()
        messages.close()
        assert None is request_id()

    def test_a_kept_loop_freed_later_leaves_the_context_current_there(
        self, tracer: trace.Tracer, spans: Spans
    ) -> None:
        """A kept loop object freed inside a later scope ends its span, and leaves that scope's
        context as it is (nothing stale comes back when the scope ends)."""
        with tracer.start_as_current_span("carrier"):
            made = carriers("a")

        def consumer() -> list[Any]:
            messages = ConsumerLoop(iter(made).__next__, process)
            for _ in messages:
                break
            with tl.request.scope(request_id="later"):
                del messages
                inside = request_id()
            return [inside, request_id()]

        # in a context of its own: the message's stays current after it, as it was before
        assert ["later", "a"] == contextvars.copy_context().run(consumer)
        assert ["process queue"] == [s.name for s in spans.finished() if s.name != "carrier"]

    def test_the_with_block_fails_the_span_and_restores(
        self, tracer: trace.Tracer, spans: Spans
    ) -> None:
        """`with loop as messages`: the body's exception fails the span; the context is back."""
        with tracer.start_as_current_span("carrier"):
            made = carriers("a")
        with pytest.raises(BoomError), ConsumerLoop(iter(made).__next__, process) as messages:  # noqa: PT012
            for _ in messages:
                raise BoomError
        assert None is request_id()
        (consumer,) = [s for s in spans.finished() if s.name == "process queue"]
        assert StatusCode.ERROR is consumer.status.status_code

    def test_a_batch_runs_in_the_loops_context_linked_to_each(
        self, tracer: trace.Tracer, spans: Spans
    ) -> None:
        """A batch's body runs in the consumer's context, under one span linked to each message."""
        with tracer.start_as_current_span("publisher") as publisher:
            batch = carriers("a", "b")
        batches = ConsumerLoop(iter([batch]).__next__, lambda b: Processing.batch(b, NAMES))
        for got in batches:
            assert (2, None) == (len(got), request_id())
        (span,) = [s for s in spans.finished() if s.name == "process queue"]
        assert [publisher.get_span_context().span_id] * 2 == [
            link.context.span_id for link in span.links
        ]
        assert 2 == (span.attributes or {})["messaging.batch.message_count"]


class TestAsyncLoop:
    async def test_break_raise_and_cancel_put_the_context_back(self) -> None:
        """Left by break, raise or cancellation, the consumer's context is current at once."""
        states = []
        with tl.request.scope(request_id="consumer"):
            async for _ in async_loop("a", "b"):
                break
            states.append(request_id())
            try:
                async for _ in async_loop("a"):
                    raise BoomError  # noqa: TRY301 - the body raises out of the loop
            except BoomError:
                states.append(request_id())
            entered = asyncio.Event()

            async def cancelled() -> Any:
                try:
                    async for _ in async_loop("a"):
                        entered.set()
                        await asyncio.sleep(60)
                except asyncio.CancelledError:
                    return request_id()
                return "not cancelled"

            task = asyncio.ensure_future(cancelled())
            await entered.wait()
            task.cancel()
            states.append(await task)
        assert ["consumer"] * 3 == states

    async def test_async_with_and_aclose(self) -> None:
        """`async with` ends the processing at its exit; a kept loop ends it at `aclose`."""
        with pytest.raises(BoomError):  # noqa: PT012 - the loop is what raises
            async with async_loop("a") as messages:
                async for _ in messages:
                    raise BoomError
        assert None is request_id()
        kept = async_loop("a", "b")
        async for _ in kept:
            break
        assert "a" == request_id()
        await kept.aclose()
        assert None is request_id()
