"""One request beside contrib's broker instrumentations: ``python -m tests.broker_coexistence_app``.

tests/test_broker_coexistence.py runs it with the client to use (``aiokafka``,
``confluent``, ``aio_pika``) as its argument, THREADLINE_TEST_CONTRIB (``hand``:
OpenTelemetry's instrumentor is enabled here; ``launcher``: it runs under
``opentelemetry-instrument``), THREADLINE_TEST_KAFKA or THREADLINE_TEST_RABBITMQ,
and THREADLINE_TRACES_FILE. One request publishes three messages through an
instrumented producer; threadline's consumer loop processes them. It prints,
as JSON, the request's trace id and what each body saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import threadline as tl
import threadline.kafka
import threadline.rabbitmq
import threadline.tracing
from tests.broker_consumers import own_context
from threadline.export import OTLPJsonFileSpanExporter

REQUEST = {"request_id": "req-beside", "user_id": 5}
INSTRUMENTORS = {
    "aiokafka": ("opentelemetry.instrumentation.aiokafka", "AIOKafkaInstrumentor"),
    "confluent": ("opentelemetry.instrumentation.confluent_kafka", "ConfluentKafkaInstrumentor"),
    "aio_pika": ("opentelemetry.instrumentation.aio_pika", "AioPikaInstrumentor"),
}


def set_up(client: str) -> None:
    mode = os.environ["THREADLINE_TEST_CONTRIB"]
    if mode == "hand":
        module, name = INSTRUMENTORS[client]
        getattr(__import__(module, fromlist=[name]), name)().instrument()
    provider = threadline.tracing.configure(service_name=client)
    if mode == "launcher":
        exporter = OTLPJsonFileSpanExporter(os.environ["THREADLINE_TRACES_FILE"])
        provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[union-attr]


def body(key: str, seen: dict[str, Any]) -> None:
    span = trace.get_current_span().get_span_context()
    seen[key] = {**own_context(), "parent": f"{span.span_id:016x}" if span.is_valid else None}


async def with_aiokafka(bootstrap: str, seen: dict[str, Any]) -> str:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = f"t-{uuid.uuid4().hex[:8]}"
    producer = threadline.kafka.instrument(AIOKafkaProducer(bootstrap_servers=bootstrap))
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=topic, auto_offset_reset="earliest"
    )
    await producer.start()
    await consumer.start()
    with tl.request.scope(REQUEST), trace.get_tracer("app").start_as_current_span("r") as root:
        for n in range(3):
            await producer.send_and_wait(topic, b"", key=str(n).encode())
    async for record in threadline.kafka.consume(consumer):
        body(record.key.decode(), seen)
        if len(seen) == 3:
            break
    await consumer.stop()
    await producer.stop()
    return f"{root.get_span_context().trace_id:032x}"


def with_confluent(bootstrap: str, seen: dict[str, Any]) -> str:
    import confluent_kafka  # its classes as OpenTelemetry's instrumentor left them

    topic = f"t-{uuid.uuid4().hex[:8]}"
    producer = threadline.kafka.instrument(
        confluent_kafka.Producer({"bootstrap.servers": bootstrap})
    )
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": topic, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    with tl.request.scope(REQUEST), trace.get_tracer("app").start_as_current_span("r") as root:
        for n in range(3):
            producer.produce(topic, b"", key=str(n).encode())
    producer.flush(30)
    for message in threadline.kafka.consume(consumer, timeout=0.2):
        if message.error() is None:
            body(message.key().decode(), seen)
            if len(seen) == 3:
                break
    consumer.close()
    return f"{root.get_span_context().trace_id:032x}"


async def with_aio_pika(url: str, seen: dict[str, Any]) -> str:
    import aio_pika

    connection = await aio_pika.connect(url)
    channel = threadline.rabbitmq.instrument(await connection.channel())
    queue = await channel.declare_queue(f"q-{uuid.uuid4().hex[:8]}", exclusive=True)
    with tl.request.scope(REQUEST), trace.get_tracer("app").start_as_current_span("r") as root:
        for n in range(3):
            message = aio_pika.Message(b"", message_id=str(n))
            await channel.default_exchange.publish(message, routing_key=queue.name)
    async with queue.iterator() as queue_iterator:
        async for message in threadline.rabbitmq.consume(queue_iterator):
            await message.ack()
            body(message.message_id, seen)
            if len(seen) == 3:
                break
    await connection.close()
    return f"{root.get_span_context().trace_id:032x}"


def main() -> None:
    client = sys.argv[1]
    set_up(client)
    seen: dict[str, Any] = {}
    if client == "aiokafka":
        trace_id = asyncio.run(with_aiokafka(os.environ["THREADLINE_TEST_KAFKA"], seen))
    elif client == "confluent":
        trace_id = with_confluent(os.environ["THREADLINE_TEST_KAFKA"], seen)
    else:
        trace_id = asyncio.run(with_aio_pika(os.environ["THREADLINE_TEST_RABBITMQ"], seen))
    trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    print(json.dumps({"trace_id": trace_id, "seen": seen}))


if __name__ == "__main__":
    main()
