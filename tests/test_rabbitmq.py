"""threadline.rabbitmq over a real RabbitMQ node (tests/rabbitmq_broker.py), with aio-pika.

Each test declares queues of its own on the session's node. aio-pika holds the
messaging contract; the other tests check the consumer loop: 200 messages of
20 requests interleaved in one loop, the consumer's context back after a
break, a raise or a cancellation, header tables of every AMQP type, and
exchanges declared on an instrumented channel.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from decimal import Decimal
from typing import Any

import aio_pika
import pytest
from aiormq.abc import DeliveredMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from pamqp import commands
from pamqp.header import ContentHeader

import threadline as tl
import threadline.rabbitmq
from tests.broker_consumers import TIMEOUT, LoopThread, Observer, own_context
from tests.helpers import Spans
from tests.messaging_contract import MessagingContract, Seen
from threadline import diagnostics
from threadline.logging import ContextFilter

OWN = {"request": None, "trace_id": None}


class BoomError(Exception):
    """What a body raises on purpose."""


class Lines(logging.Handler):
    """The records a logger writes, with threadline's fields."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(ContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def lines() -> Iterator[Lines]:
    logger = logging.getLogger("tests.rabbit")
    handler = Lines()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
async def channel(rabbitmq_url: str) -> AsyncIterator[Any]:
    """An instrumented channel on a connection of the test's own."""
    connection = await aio_pika.connect(rabbitmq_url)
    channel = threadline.rabbitmq.instrument(await connection.channel())
    yield channel
    await connection.close()


async def new_queue(channel: Any) -> Any:
    return await channel.declare_queue(f"q-{uuid.uuid4().hex[:12]}", exclusive=True)


def trace_id_of(span: trace.Span) -> str:
    return f"{span.get_span_context().trace_id:032x}"


async def test_200_messages_of_20_requests_each_in_its_own_context(
    channel: Any, tracer: trace.Tracer, lines: Lines
) -> None:
    """Interleaved messages of 20 requests in one loop, some bodies raising: each body sees its
    own request id and trace, its log lines carry them, and the loop's own context is back
    after each raise."""
    queue = await new_queue(channel)

    async def request(n: int) -> str:
        with tl.request.scope(request_id=f"req-{n}"), tracer.start_as_current_span("r") as span:
            for i in range(10):
                message = aio_pika.Message(b"", message_id=f"{n}-{i}")
                await channel.default_exchange.publish(message, routing_key=queue.name)
                await asyncio.sleep(0)
            return trace_id_of(span)

    traces = await asyncio.gather(*(request(n) for n in range(20)))
    seen: dict[str, tuple[str | None, str | None]] = {}
    after_raise = []
    log = logging.getLogger("tests.rabbit")
    async with queue.iterator() as queue_iterator:
        while len(seen) < 200:
            try:
                async for message in threadline.rabbitmq.consume(queue_iterator):
                    async with message.process():
                        key = message.message_id
                        await asyncio.sleep(0)
                        log.info("processing %s", key)
                        here = own_context()
                        seen[key] = ((here["request"] or {}).get("request_id"), here["trace_id"])
                    if key.endswith("-3"):
                        raise BoomError(key)  # noqa: TRY301 - the body raises out of the loop
                    if len(seen) == 200:
                        break
            except BoomError:
                after_raise.append(own_context())
    expected = {f"{n}-{i}": (f"req-{n}", traces[n]) for n in range(20) for i in range(10)}
    assert expected == seen
    assert [OWN] * 20 == after_raise
    assert OWN == own_context()
    logged = {
        r.getMessage().split()[-1]: (r.request_id, r.trace_id)  # type: ignore[attr-defined]
        for r in lines.records
    }
    assert expected == logged


async def test_context_back_after_break_raise_and_cancel(
    channel: Any, tracer: trace.Tracer, spans: Spans
) -> None:
    """Left by break, by a raising body, by cancellation, the consumer's own context is back at
    once; `async with consume(...)` fails the span with the body's exception."""
    queue = await new_queue(channel)
    with tl.request.scope(request_id="left"), tracer.start_as_current_span("publisher"):
        for _ in range(4):
            await channel.default_exchange.publish(aio_pika.Message(b""), routing_key=queue.name)
    states = []
    async with queue.iterator() as queue_iterator:
        async for _message in threadline.rabbitmq.consume(queue_iterator):
            assert {"request_id": "left"} == tl.request.get()
            break
        states.append(own_context())
        with pytest.raises(BoomError):  # noqa: PT012 - the loop is what raises
            async for _message in threadline.rabbitmq.consume(queue_iterator):
                raise BoomError
        states.append(own_context())
    with pytest.raises(BoomError):  # noqa: PT012 - the loop is what raises
        async with (
            queue.iterator() as queue_iterator,
            threadline.rabbitmq.consume(queue_iterator) as messages,
        ):
            async for _message in messages:
                raise BoomError
    states.append(own_context())
    entered = asyncio.Event()

    async def cancelled() -> dict[str, Any]:
        try:
            async with queue.iterator() as queue_iterator:
                async for _message in threadline.rabbitmq.consume(queue_iterator):
                    entered.set()
                    await asyncio.sleep(TIMEOUT)
        except asyncio.CancelledError:
            return own_context()
        raise AssertionError("not cancelled")

    task = asyncio.ensure_future(cancelled())
    await entered.wait()
    task.cancel()
    states.append(await task)
    assert [OWN] * 4 == states
    consumers = [s for s in spans.finished() if s.kind == SpanKind.CONSUMER]
    assert 4 == len(consumers)
    assert [StatusCode.ERROR] == [
        s.status.status_code for s in consumers if s.status.status_code is StatusCode.ERROR
    ]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (5, "traceparent.not_text"),
        (["00-x"], "traceparent.not_text"),
        ({"a": 1}, "traceparent.not_text"),
        (Decimal("1.5"), "traceparent.not_text"),
        (bytearray(b"\xff\xfe"), "traceparent.not_utf8"),
        ("00-" + "0" * 32 + "-" + "0" * 16 + "-01", "traceparent.invalid"),
        ("x" * 600, "traceparent.too_large"),
    ],
    ids=["int", "array", "table", "decimal", "not-utf8", "zero-ids", "too-large"],
)
async def test_header_tables_of_any_type_are_read_strictly(
    channel: Any, value: Any, reason: str
) -> None:
    """Whatever AMQP type a carrier header has, a bad one is dropped and counted, the body runs
    in no request, and the next message runs in its own."""
    queue = await new_queue(channel)
    bad = aio_pika.Message(b"bad", headers={"traceparent": value, "baggage": "request.x=1;tl"})
    await channel.default_exchange.publish(bad, routing_key=queue.name)
    with tl.request.scope(request_id="good"):
        await channel.default_exchange.publish(aio_pika.Message(b"good"), routing_key=queue.name)
    diagnostics.reset_drop_counts()
    seen = []
    async with (
        queue.iterator() as queue_iterator,
        threadline.rabbitmq.consume(queue_iterator) as messages,
    ):
        async for message in messages:
            await message.ack()
            seen.append((message.body, tl.request.get() and dict(tl.request.get() or {})))
            if message.body == b"good":
                break
    assert [(b"bad", {"x": "1"}), (b"good", {"request_id": "good"})] == seen
    assert reason in diagnostics.drop_counts()


async def test_declared_exchanges_are_instrumented(
    channel: Any, tracer: trace.Tracer, spans: Spans
) -> None:
    """An exchange declared on an instrumented channel carries the context; the PRODUCER span
    names it, the CONSUMER span exchange, routing key and queue."""
    exchange = await channel.declare_exchange(f"x-{uuid.uuid4().hex[:8]}", auto_delete=True)
    queue = await new_queue(channel)
    await queue.bind(exchange, routing_key="orders")
    with tl.request.scope(request_id="via-exchange"), tracer.start_as_current_span("p"):
        await exchange.publish(aio_pika.Message(b"", message_id="m1"), routing_key="orders")
    async with (
        queue.iterator() as queue_iterator,
        threadline.rabbitmq.consume(queue_iterator) as messages,
    ):
        async for message in messages:
            await message.ack()
            assert {"request_id": "via-exchange"} == tl.request.get()
            break
    (producer,) = [s for s in spans.finished() if s.kind == SpanKind.PRODUCER]
    (consumer,) = [s for s in spans.finished() if s.kind == SpanKind.CONSUMER]
    assert f"send {exchange.name}:orders" == producer.name
    assert f"process {exchange.name}:orders:{queue.name}" == consumer.name
    assert "m1" == (consumer.attributes or {})["messaging.message.id"]
    assert producer.context.span_id == (consumer.parent and consumer.parent.span_id)


async def test_processing_in_a_consume_callback(channel: Any, tracer: trace.Tracer) -> None:
    """`processing(message)` frames a `queue.consume` callback: the block in the message's
    context, the callback's own context back after it."""
    queue = await new_queue(channel)
    with tl.request.scope(request_id="callback"), tracer.start_as_current_span("p") as span:
        await channel.default_exchange.publish(aio_pika.Message(b""), routing_key=queue.name)
    seen: asyncio.Future[tuple[dict[str, Any], dict[str, Any]]] = (
        asyncio.get_running_loop().create_future()
    )

    async def callback(message: Any) -> None:
        async with threadline.rabbitmq.processing(message, queue.name), message.process():
            inside = own_context()
        if not seen.done():
            seen.set_result((inside, own_context()))

    tag = await queue.consume(callback)
    inside, after = await asyncio.wait_for(seen, TIMEOUT)
    await queue.cancel(tag)
    assert {"request": {"request_id": "callback"}, "trace_id": trace_id_of(span)} == inside
    assert OWN == after


def test_rabbitmq_rejects_what_is_no_client() -> None:
    """A programmer's mistake is a clear error naming what is wrong."""
    with pytest.raises(TypeError, match="is no aio-pika Exchange or Channel"):
        threadline.rabbitmq.instrument(object())


# --------------------------------------------------------------------------- the contract


class RabbitBroker:
    """The messaging contract's broker: one queue, an in-process consumer loop beside the test."""

    system = "rabbitmq"
    retries = False
    id_attribute = "messaging.message.id"

    def __init__(self, queue: str, observer: Observer, loop: LoopThread, channel: Any) -> None:
        self.destination = self.target = queue
        self.consumer_destination = self.consumer_target = f"{queue}:{queue}"
        self.observer, self.loop, self.channel = observer, loop, channel

    def carries(self, value: object) -> bool:
        return True

    def publish(self, headers: Mapping[str, Any] | None = None, *, retry: bool = False) -> str:
        message_id = uuid.uuid4().hex
        # AMQP tables carry bytes as byte arrays
        table = {k: bytearray(v) if isinstance(v, bytes) else v for k, v in (headers or {}).items()}
        message = aio_pika.Message(b"", headers=table, message_id=message_id)
        self.loop.run_here(self.channel.default_exchange.publish(message, self.destination))
        return message_id

    def seen(self, message_id: str) -> Seen:
        return self.observer.seen(message_id)


async def _contract_consumer(queue: Any, observer: Observer) -> None:
    async with queue.iterator() as queue_iterator:
        while True:
            async with threadline.rabbitmq.consume(queue_iterator) as messages:
                async for message in messages:
                    await message.ack()
                    observer.body(message.message_id)
                    break
            observer.between()


class TestRabbitMQContract(MessagingContract):
    """aio-pika holds the messaging contract (one consumer loop, in order)."""

    @pytest.fixture(scope="class")
    @classmethod
    def broker(cls, rabbitmq_url: str) -> Iterator[RabbitBroker]:
        loop, observer = LoopThread(), Observer()

        async def start() -> tuple[Any, Any, Any, asyncio.Task[None]]:
            connection = await aio_pika.connect(rabbitmq_url)
            channel = threadline.rabbitmq.instrument(await connection.channel())
            queue = await new_queue(channel)
            return (
                connection,
                channel,
                queue,
                asyncio.ensure_future(_contract_consumer(queue, observer)),
            )

        connection, channel, queue, task = loop.run(start())
        yield RabbitBroker(queue.name, observer, loop, channel)

        async def stop() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await connection.close()

        loop.run(stop())
        loop.stop()


AMQP_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=True),
        st.decimals(allow_nan=False, allow_infinity=False, places=2),
        st.text(max_size=200),
        st.binary(max_size=200).map(bytearray),
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["traceparent", "tracestate", "baggage", "x"]), AMQP_VALUES))
def test_any_header_table_is_processed_without_raising(table: dict[str, Any]) -> None:
    """Whatever AMQP values a delivered message's table holds, its processing begins and ends,
    the context from before is back, and no store value it brings holds a control character."""
    delivered = DeliveredMessage(
        delivery=commands.Basic.Deliver(
            consumer_tag="c", delivery_tag=1, redelivered=False, exchange="x", routing_key="k"
        ),
        header=ContentHeader(properties=commands.Basic.Properties(headers=table)),
        body=b"",
        channel=None,
    )
    message = aio_pika.IncomingMessage(delivered, no_ack=True)
    before = own_context()
    with threadline.rabbitmq.processing(message):
        value = tl.request.get()
    assert before == own_context()
    if value is not None:
        assert all(str(v).isprintable() for v in value.values())
