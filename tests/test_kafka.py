"""threadline.kafka over a real Kafka broker (KRaft), with aiokafka and with confluent-kafka.

Each test uses a topic and a consumer group of its own on the session's
broker (tests/kafka_broker.py). Both clients hold the messaging contract; the
per-client tests check what only a consumer loop shows: 200 messages of 20
requests interleaved in one loop, the consumer's context back after a break,
a raise or a cancellation, batches, and hostile headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from confluent_kafka import Consumer, Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import threadline as tl
import threadline.kafka
from tests.broker_consumers import TIMEOUT, LoopThread, Observer, own_context
from tests.helpers import Spans, hook_calls
from tests.messaging_contract import MessagingContract, Seen
from threadline import diagnostics
from threadline.logging import ContextFilter

OWN = {"request": None, "trace_id": None}


def new_topic() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def kafka_headers(headers: Mapping[str, Any] | None) -> list[tuple[str, bytes]]:
    """The contract's raw headers as Kafka carries them: text in UTF-8, bytes as they are."""
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in (headers or {}).items()]


def trace_id_of(span: trace.Span) -> str:
    return f"{span.get_span_context().trace_id:032x}"


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
    logger = logging.getLogger("tests.consumer")
    handler = Lines()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


# --------------------------------------------------------------------------- aiokafka


@pytest.fixture
async def aio(
    kafka_bootstrap: str,
) -> AsyncIterator[tuple[str, AIOKafkaProducer, AIOKafkaConsumer]]:
    """A topic, an instrumented producer and a started consumer (its own group) on it."""
    topic = new_topic()
    producer = threadline.kafka.instrument(AIOKafkaProducer(bootstrap_servers=kafka_bootstrap))
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"g-{topic}",
        auto_offset_reset="earliest",
    )
    await producer.start()
    await consumer.start()
    yield topic, producer, consumer
    await consumer.stop()
    await producer.stop()


class BoomError(Exception):
    """What a body raises on purpose."""


async def test_aiokafka_200_messages_of_20_requests_each_in_its_own_context(
    aio: tuple[str, AIOKafkaProducer, AIOKafkaConsumer], tracer: trace.Tracer, lines: Lines
) -> None:
    """Interleaved messages of 20 requests in one loop, some bodies raising: each body sees its
    own request id and trace, its log lines carry them, and the loop's own context is back
    after each raise."""
    topic, producer, consumer = aio

    async def request(n: int) -> str:
        with tl.request.scope(request_id=f"req-{n}"), tracer.start_as_current_span("r") as span:
            for i in range(10):
                await producer.send(topic, b"", key=f"{n}-{i}".encode())
                await asyncio.sleep(0)
            return trace_id_of(span)

    traces = await asyncio.gather(*(request(n) for n in range(20)))
    await producer.flush()
    seen: dict[str, tuple[str | None, str | None]] = {}
    after_raise: list[dict[str, Any]] = []
    log = logging.getLogger("tests.consumer")
    while len(seen) < 200:
        try:
            async for record in threadline.kafka.consume(consumer):
                key = record.key.decode()
                await asyncio.sleep(0)
                log.info("processing %s", key)
                seen[key] = (
                    (own_context()["request"] or {}).get("request_id"),
                    own_context()["trace_id"],
                )
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
    logged = {r.getMessage().split()[-1]: (r.request_id, r.trace_id) for r in lines.records}  # type: ignore[attr-defined]
    assert expected == logged


async def test_aiokafka_context_back_after_break_raise_and_cancel(
    aio: tuple[str, AIOKafkaProducer, AIOKafkaConsumer], tracer: trace.Tracer, spans: Spans
) -> None:
    """Left by break, by a raising body, by cancellation (bare loops and `async with`), the
    consumer's own context is back at once; with `async with`, the raise fails the span."""
    topic, producer, consumer = aio
    with tl.request.scope(request_id="left"), tracer.start_as_current_span("publisher"):
        for _ in range(5):
            await producer.send_and_wait(topic, b"")
    states = []

    async for _record in threadline.kafka.consume(consumer):
        assert {"request_id": "left"} == tl.request.get()
        break
    states.append(own_context())

    with pytest.raises(BoomError):  # noqa: PT012 - the loop is what raises
        async for _record in threadline.kafka.consume(consumer):
            raise BoomError
    states.append(own_context())

    with pytest.raises(BoomError):  # noqa: PT012 - the loop is what raises
        async with threadline.kafka.consume(consumer) as records:
            async for _record in records:
                raise BoomError("in with")
    states.append(own_context())

    entered = asyncio.Event()

    async def body() -> None:  # cancelled while the body awaits
        async for _record in threadline.kafka.consume(consumer):
            entered.set()
            await asyncio.sleep(TIMEOUT)

    async def catching() -> dict[str, Any]:
        try:
            await body()
        except asyncio.CancelledError:
            return own_context()
        raise AssertionError("not cancelled")

    inner = asyncio.ensure_future(catching())
    await entered.wait()
    inner.cancel()
    states.append(await inner)
    assert [OWN] * 4 == states
    failed = [s for s in spans.finished() if s.kind == SpanKind.CONSUMER]
    assert 4 == len(failed)
    (errored,) = [s for s in failed if s.status.status_code is StatusCode.ERROR]
    assert "BoomError" == (errored.attributes or {})["error.type"]


async def test_aiokafka_kept_loop_object_needs_the_context_manager(
    aio: tuple[str, AIOKafkaProducer, AIOKafkaConsumer],
) -> None:
    """A loop object kept in a variable outlives a break: the message's context stays until
    `aclose` (what the docs say; `async with` does it for you)."""
    topic, producer, consumer = aio
    with tl.request.scope(request_id="kept"):
        await producer.send_and_wait(topic, b"")
    records = threadline.kafka.consume(consumer)
    async for _record in records:
        break
    assert {"request_id": "kept"} == tl.request.get()
    await records.aclose()
    assert OWN == own_context()


async def test_aiokafka_batches_are_one_span_linked_to_each_message(
    aio: tuple[str, AIOKafkaProducer, AIOKafkaConsumer], tracer: trace.Tracer, spans: Spans
) -> None:
    """`consume(batch=N)`: lists of messages, the body in the consumer's own context under one
    CONSUMER span linked to each message's PRODUCER span."""
    topic, producer, consumer = aio
    for n in range(3):
        with tl.request.scope(request_id=f"b{n}"), tracer.start_as_current_span("publisher"):
            await producer.send_and_wait(topic, b"")
    got: list[Any] = []
    async for batch in threadline.kafka.consume(consumer, batch=10):
        got += batch
        assert None is tl.request.get()
        current = trace.get_current_span()
        assert current.is_recording()
        if len(got) == 3:
            break
    assert OWN == own_context()
    producers = {s.context.span_id for s in spans.finished() if s.kind == SpanKind.PRODUCER}
    consumers = [s for s in spans.finished() if s.kind == SpanKind.CONSUMER]
    linked = {link.context.span_id for span in consumers for link in span.links}
    assert producers == linked
    assert sum((s.attributes or {})["messaging.batch.message_count"] for s in consumers) == 3
    assert {f"process {topic}"} == {s.name for s in consumers}


@pytest.mark.parametrize("mode", ["context only", "span", "hooks"])
async def test_aiokafka_the_acknowledgement_ends_the_publish_in_every_mode(
    aio: tuple[str, AIOKafkaProducer, AIOKafkaConsumer],
    spans: Spans,
    tracer: trace.Tracer,
    mode: str,
) -> None:
    """``send`` returns the client's own delivery future, acknowledged as without threadline; a
    PRODUCER span ends, and a ``message.publish`` hook resource is destroyed, at the ack."""
    topic, producer, _ = aio
    with contextlib.ExitStack() as stack:
        stack.enter_context(tl.request.scope(request_id="a1"))
        calls = stack.enter_context(hook_calls()) if mode == "hooks" else []
        if mode == "span":
            stack.enter_context(tracer.start_as_current_span("r"))
        deliveries = [await producer.send(topic, b"", key=f"k{i}".encode()) for i in range(3)]
        metadata = [await delivery for delivery in deliveries]
        await asyncio.sleep(0)  # a future's done-callbacks run on the loop's next turn
        published = [(event, r.request_id) for event, r in calls if r.type == "message.publish"]
    assert [topic] * 3 == [m.topic for m in metadata]
    sent = [s for s in spans.finished() if s.name == f"send {topic}"]
    assert (3 if mode == "span" else 0) == len(sent)
    if mode == "hooks":
        assert [("init", "a1")] * 3 + [("destroy", "a1")] * 3 == sorted(published, reverse=True)


def _consumer_names(spans: Spans, topic: str) -> dict[str, Any]:
    (span,) = [s for s in spans.finished() if s.name == f"process {topic}"]
    names = ("messaging.destination.partition.id", "messaging.kafka.offset")
    return {
        name: (span.attributes or {}).get(name)
        for name in (*names, "messaging.kafka.message.key", "messaging.system")
    }


EXPECTED_NAMES = {
    "messaging.destination.partition.id": "0",
    "messaging.kafka.offset": 0,
    "messaging.kafka.message.key": "k-1",
    "messaging.system": "kafka",
}


async def test_aiokafka_consumer_span_names_the_partition_offset_and_key(
    aio: tuple[str, AIOKafkaProducer, AIOKafkaConsumer], tracer: trace.Tracer, spans: Spans
) -> None:
    """The CONSUMER span of a record says where it was read: partition, offset, key."""
    topic, producer, consumer = aio
    with tracer.start_as_current_span("publisher"):
        await producer.send_and_wait(topic, b"", key=b"k-1")
    async for _ in threadline.kafka.consume(consumer):
        break
    assert EXPECTED_NAMES == _consumer_names(spans, topic)


def test_confluent_consumer_span_names_the_partition_offset_and_key(
    confluent: tuple[str, Any, Any], tracer: trace.Tracer, spans: Spans
) -> None:
    """The CONSUMER span of a message says where it was read: partition, offset, key."""
    topic, producer, consumer = confluent
    with tracer.start_as_current_span("publisher"):
        producer.produce(topic, b"", key=b"k-1")
    assert producer.flush(TIMEOUT) == 0
    for message in threadline.kafka.consume(consumer, timeout=0.2):
        if message.error() is None:
            break
    assert EXPECTED_NAMES == _consumer_names(spans, topic)


async def test_aiokafka_repeated_and_undecodable_headers_are_dropped_and_the_loop_goes_on(
    aio: tuple[str, AIOKafkaProducer, AIOKafkaConsumer], tracer: trace.Tracer
) -> None:
    """A message with a repeated traceparent or a baggage that is no UTF-8 runs without them
    (counted), in no request, and the next message runs in its own."""
    topic, producer, consumer = aio
    with tracer.start_as_current_span("p") as span:
        valid = (
            f"00-{span.get_span_context().trace_id:032x}-{span.get_span_context().span_id:016x}-01"
        )
    bad = [
        [("traceparent", valid.encode()), ("traceparent", valid.encode())],
        [("baggage", b"request.request_id=\xff\xfe;tl")],
    ]
    for headers in bad:
        await producer.send_and_wait(topic, b"bad", headers=headers)
    with tl.request.scope(request_id="good"):
        await producer.send_and_wait(topic, b"good")
    diagnostics.reset_drop_counts()
    seen = []
    async for record in threadline.kafka.consume(consumer):
        seen.append((record.value, own_context()["request"], own_context()["trace_id"]))
        if record.value == b"good":
            break
    assert [(b"bad", None, None), (b"bad", None, None)] == seen[:2]
    assert (b"good", {"request_id": "good"}) == seen[2][:2]
    assert {"traceparent.duplicate", "baggage.not_utf8"} <= set(diagnostics.drop_counts())


HEADER_KEYS = st.sampled_from(
    ["traceparent", "tracestate", "baggage", "other", "threadline_retry_of"]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            HEADER_KEYS, st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode))
        ),
        max_size=6,
    )
)
def test_any_header_pairs_are_processed_without_raising(headers: list[tuple[str, bytes]]) -> None:
    """Whatever pairs a record brings, its processing begins and ends, the context from before
    is back, and nothing it keeps holds a control character."""
    record = ConsumerRecord("t", 0, 0, 0, 0, None, b"", None, 0, 0, headers)
    before = own_context()
    with threadline.kafka.processing(record):
        value = tl.request.get()
    assert before == own_context()
    if value is not None:
        assert all(str(v).isprintable() for v in value.values())


# --------------------------------------------------------------------------- confluent-kafka


def confluent_consumer(bootstrap: str, topic: str) -> Any:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    return consumer


@pytest.fixture
def confluent(kafka_bootstrap: str) -> Iterator[tuple[str, Any, Any]]:
    """A topic, an instrumented confluent producer and a subscribed consumer."""
    topic = new_topic()
    producer = threadline.kafka.instrument(Producer({"bootstrap.servers": kafka_bootstrap}))
    consumer = confluent_consumer(kafka_bootstrap, topic)
    yield topic, producer, consumer
    consumer.close()
    producer.flush(TIMEOUT)


def test_confluent_interleaved_requests_and_raising_bodies(
    confluent: tuple[str, Any, Any], tracer: trace.Tracer, lines: Lines
) -> None:
    """Messages of 20 requests, produced from 20 threads, in one sync loop, some raising: each
    body sees its own request and trace; its log lines carry them; after a raise the loop's own
    context is back."""
    topic, producer, consumer = confluent
    traces: dict[int, str] = {}

    def request(n: int) -> None:
        with tl.request.scope(request_id=f"req-{n}"), tracer.start_as_current_span("r") as span:
            for i in range(10):
                producer.produce(topic, b"", key=f"{n}-{i}".encode())
            traces[n] = trace_id_of(span)

    threads = [threading.Thread(target=request, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    producer.flush(TIMEOUT)
    seen: dict[str, tuple[str | None, str | None]] = {}
    after_raise = []
    log = logging.getLogger("tests.consumer")
    while len(seen) < 200:
        try:
            for message in threadline.kafka.consume(consumer, timeout=0.2):
                if message.error() is not None:  # an event (a topic not there yet)
                    continue
                key = message.key().decode()
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
    logged = {r.getMessage().split()[-1]: (r.request_id, r.trace_id) for r in lines.records}  # type: ignore[attr-defined]
    assert expected == logged


@pytest.mark.parametrize("mode", ["context only", "span", "hooks"])
@pytest.mark.parametrize("option", ["on_delivery", "callback"])
def test_confluent_delivery_reports_reach_the_application_and_end_the_publish(
    confluent: tuple[str, Any, Any], spans: Spans, tracer: trace.Tracer, mode: str, option: str
) -> None:
    """The application's delivery callback (``on_delivery=`` or ``callback=``) is called once per
    message with the message, whether or not the publish has anything of threadline's to end; a
    PRODUCER span ends, and a ``message.publish`` hook resource is destroyed, at the report."""
    topic, producer, _ = confluent
    reported: list[tuple[Any, bytes]] = []

    def report(error: Any, message: Any) -> None:
        reported.append((error, message.key()))

    with contextlib.ExitStack() as stack:
        stack.enter_context(tl.request.scope(request_id="d1"))
        calls = stack.enter_context(hook_calls()) if mode == "hooks" else []
        if mode == "span":
            stack.enter_context(tracer.start_as_current_span("r"))
        for i in range(3):
            producer.produce(topic, b"", key=f"k{i}".encode(), **{option: report})
        assert producer.flush(TIMEOUT) == 0
        published = [(event, r.request_id) for event, r in calls if r.type == "message.publish"]
    assert [(None, b"k0"), (None, b"k1"), (None, b"k2")] == reported
    sent = [s for s in spans.finished() if s.name == f"send {topic}"]
    assert (3 if mode == "span" else 0) == len(sent)
    if mode == "hooks":
        assert [("init", "d1")] * 3 + [("destroy", "d1")] * 3 == sorted(published, reverse=True)


def test_confluent_batches_and_with_block(
    confluent: tuple[str, Any, Any], tracer: trace.Tracer, spans: Spans
) -> None:
    """`consume(batch=N)` gives lists under one span linked to each publisher; `with` restores
    the consumer's context when its body raises, the span failed."""
    topic, producer, consumer = confluent
    for n in range(3):
        with tl.request.scope(request_id=f"b{n}"), tracer.start_as_current_span("publisher"):
            producer.produce(topic, b"")
    producer.flush(TIMEOUT)
    got: list[Any] = []
    with pytest.raises(BoomError):  # noqa: PT012 - the loop is what raises
        with threadline.kafka.consume(consumer, batch=10, timeout=0.5) as batches:
            for batch in batches:
                got += [message for message in batch if message.error() is None]
                assert None is tl.request.get()
                if len(got) == 3:
                    raise BoomError
    assert OWN == own_context()
    producers = {s.context.span_id for s in spans.finished() if s.kind == SpanKind.PRODUCER}
    consumers = [s for s in spans.finished() if s.kind == SpanKind.CONSUMER]
    assert producers == {link.context.span_id for span in consumers for link in span.links}
    assert StatusCode.ERROR is consumers[-1].status.status_code


def test_confluent_beside_opentelemetrys_proxies(
    kafka_bootstrap: str, tracer: trace.Tracer, spans: Spans
) -> None:
    """A producer and a consumer wrapped by OpenTelemetry's `instrument_producer`/`_consumer`:
    one PRODUCER and one CONSUMER span per message, one trace, the stores in the body, and the
    proxy's context not left attached after the loop."""
    from opentelemetry.instrumentation.confluent_kafka import ConfluentKafkaInstrumentor

    topic = new_topic()
    producer = threadline.kafka.instrument(
        ConfluentKafkaInstrumentor.instrument_producer(
            Producer({"bootstrap.servers": kafka_bootstrap})
        )
    )
    consumer = ConfluentKafkaInstrumentor.instrument_consumer(
        confluent_consumer(kafka_bootstrap, topic)
    )
    with tl.request.scope(request_id="proxied"), tracer.start_as_current_span("r") as root:
        producer.produce(topic, b"")
    producer.flush(TIMEOUT)
    seen = None
    for message in threadline.kafka.consume(consumer, timeout=0.2):
        if message.error() is None:
            seen = own_context()
            break
    after = own_context()
    consumer.close()
    assert seen is not None
    assert ({"request_id": "proxied"}, trace_id_of(root)) == (seen["request"], seen["trace_id"])
    assert OWN == after
    kinds = [s.kind for s in spans.finished() if s.kind in (SpanKind.PRODUCER, SpanKind.CONSUMER)]
    assert [SpanKind.PRODUCER, SpanKind.CONSUMER] == kinds


def test_kafka_rejects_what_is_no_client() -> None:
    """A programmer's mistake is a clear error naming what is wrong."""
    with pytest.raises(TypeError, match="no aiokafka AIOKafkaProducer"):
        threadline.kafka.instrument(object())
    with pytest.raises(TypeError, match="batch must be a positive int"):
        threadline.kafka.consume(object(), batch=0)


# --------------------------------------------------------------------------- the contract


class KafkaBroker:
    """The messaging contract's broker: one topic, an in-process consumer loop beside the test."""

    system = "kafka"
    retries = False
    id_attribute = "messaging.kafka.message.key"

    def __init__(self, topic: str, observer: Observer) -> None:
        self.destination = self.target = self.consumer_destination = self.consumer_target = topic
        self.observer = observer

    def carries(self, value: object) -> bool:
        return isinstance(value, (str, bytes))

    def seen(self, message_id: str) -> Seen:
        return self.observer.seen(message_id)


class AiokafkaBroker(KafkaBroker):
    def __init__(self, topic: str, observer: Observer, loop: LoopThread, producer: Any) -> None:
        super().__init__(topic, observer)
        self.loop, self.producer = loop, producer

    def publish(self, headers: Mapping[str, Any] | None = None, *, retry: bool = False) -> str:
        message_id = uuid.uuid4().hex
        send = self.producer.send_and_wait(
            self.destination, b"", key=message_id.encode(), headers=kafka_headers(headers)
        )
        self.loop.run_here(send)
        return message_id


async def _contract_consumer(consumer: AIOKafkaConsumer, observer: Observer) -> None:
    while True:
        async with threadline.kafka.consume(consumer) as records:
            async for record in records:
                observer.body(record.key.decode())
                break
        observer.between()


class TestAiokafkaContract(MessagingContract):
    """aiokafka holds the messaging contract (one consumer loop, in order)."""

    @pytest.fixture(scope="class")
    @classmethod
    def broker(cls, kafka_bootstrap: str) -> Iterator[AiokafkaBroker]:
        loop, observer, topic = LoopThread(), Observer(), new_topic()

        async def start() -> tuple[Any, AIOKafkaConsumer, asyncio.Task[None]]:
            producer = threadline.kafka.instrument(
                AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
            )
            consumer = AIOKafkaConsumer(
                topic,
                bootstrap_servers=kafka_bootstrap,
                group_id=f"g-{topic}",
                auto_offset_reset="earliest",
            )
            await producer.start()
            await consumer.start()
            return producer, consumer, asyncio.ensure_future(_contract_consumer(consumer, observer))

        producer, consumer, task = loop.run(start())
        yield AiokafkaBroker(topic, observer, loop, producer)

        async def stop() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await consumer.stop()
            await producer.stop()

        loop.run(stop())
        loop.stop()


class ConfluentBroker(KafkaBroker):
    def __init__(self, topic: str, observer: Observer, producer: Any) -> None:
        super().__init__(topic, observer)
        self.producer = producer

    def publish(self, headers: Mapping[str, Any] | None = None, *, retry: bool = False) -> str:
        message_id = uuid.uuid4().hex
        self.producer.produce(
            self.destination, b"", key=message_id.encode(), headers=kafka_headers(headers)
        )
        self.producer.flush(TIMEOUT)
        return message_id


STOP = "stop"


def _confluent_contract_consumer(consumer: Any, observer: Observer) -> None:
    while True:
        with threadline.kafka.consume(consumer, timeout=0.2) as messages:
            for message in messages:
                if message.error() is not None:  # an event (a topic not there yet)
                    continue
                key = message.key().decode()
                if key == STOP:
                    return
                observer.body(key)
                break
        observer.between()


class TestConfluentContract(MessagingContract):
    """confluent-kafka holds the messaging contract (one sync consumer loop in a thread)."""

    @pytest.fixture(scope="class")
    @classmethod
    def broker(cls, kafka_bootstrap: str) -> Iterator[ConfluentBroker]:
        observer, topic = Observer(), new_topic()
        producer = threadline.kafka.instrument(Producer({"bootstrap.servers": kafka_bootstrap}))
        consumer = confluent_consumer(kafka_bootstrap, topic)
        thread = threading.Thread(target=_confluent_contract_consumer, args=(consumer, observer))
        thread.start()
        yield ConfluentBroker(topic, observer, producer)
        producer.produce(topic, b"", key=STOP.encode())
        producer.flush(TIMEOUT)
        thread.join(TIMEOUT)
        consumer.close()
