"""Kafka publish + consume with and without threadline, on a real broker: aiokafka, confluent-kafka.

For each client, four variants, each a process of its own with a producer and
a consumer on a topic of its own, all on one broker: the bare client;
threadline's context only (``threadline.kafka.instrument`` and ``consume``,
the stores in a request scope per publish, no tracing SDK); threadline with
spans (the SDK, a batch processor exporting nowhere: a PRODUCER and a CONSUMER
span per message, each publish inside a request's span); OpenTelemetry's
instrumentation of the client (opentelemetry-instrumentation-aiokafka,
-confluent-kafka) with the same SDK and request span. The consumer loop runs
as users write it (aiokafka: ``async for`` in a task of its own; confluent-kafka:
a ``for`` over ``poll`` in a thread of its own) and hands each message's
arrival to the publisher through a queue.

Two modes (see _mq.py): a round trip (publish one and wait for the broker's
acknowledgement, then for the consumer to have it), one at a time; and a burst
(publish N, all acknowledged, then consume the N). Rounds interleave every
variant and mode in shuffled order; medians and quartiles are reported.
Target (DESIGN.md): context only costs at most 5% of the bare client;
threadline's spans cost no more than OpenTelemetry's instrumentation.

Run:  .venv/bin/python benchmarks/kafka_bench.py          (full; starts a broker from
                                                           scripts/kafka-jars' jars)
      .venv/bin/python benchmarks/kafka_bench.py --quick  (smoke: checks it runs)
      ... --bootstrap HOST:PORT                             (an existing broker)
      ... --client aiokafka                                 (one client only)
      ... --json PATH                                       (the results, for run.py)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import queue
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import _mq

CLIENTS = {
    "aiokafka": "opentelemetry-instrumentation-aiokafka",
    "confluent-kafka": "opentelemetry-instrumentation-confluent-kafka",
}
KEYS = [f"{client}/{kind}" for client in CLIENTS for kind in _mq.KINDS]
CARRIED = ("context", "span")


async def drive_aiokafka(kind: str, bootstrap: str) -> None:
    """One aiokafka variant: a producer, and a consumer loop in a task of its own."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    _mq.set_up_tracing(kind)
    if kind == "contrib":
        from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor

        AIOKafkaInstrumentor().instrument()
    topic = f"bench-aiokafka-{kind}-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=topic, auto_offset_reset="earliest"
    )
    records: Any = consumer
    if kind in CARRIED:
        import threadline as tl
        import threadline.kafka

        threadline.kafka.instrument(producer)
        records = threadline.kafka.consume(consumer)
    arrived: asyncio.Queue[object] = asyncio.Queue()
    scope = _mq.request_scope(kind)

    async def consume() -> None:
        async for _ in records:
            arrived.put_nowait(tl.request.get() if kind in CARRIED else None)

    await producer.start()
    with scope(request_id="req-check") if scope else contextlib.nullcontext():
        await producer.send_and_wait(topic, b"")
    await consumer.start()
    consumer_task = asyncio.create_task(consume())
    first = await asyncio.wait_for(arrived.get(), 60)
    if kind in CARRIED and first != {"request_id": "req-check"}:
        raise RuntimeError(f"the {kind} consumer saw {first!r}")

    async def trip(count: int) -> None:
        for n in range(count):
            with scope(request_id=f"req-{n}") if scope else contextlib.nullcontext():
                await producer.send_and_wait(topic, b"")
            await arrived.get()

    async def burst(count: int) -> None:
        sent = []
        for n in range(count):
            with scope(request_id=f"req-{n}") if scope else contextlib.nullcontext():
                sent.append(await producer.send(topic, b""))
        await asyncio.gather(*sent)
        for _ in range(count):
            await arrived.get()

    try:
        await _mq.serve_async({"trip": trip, "burst": burst})
    finally:
        consumer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer_task
        await consumer.stop()
        await producer.stop()


def drive_confluent(kind: str, bootstrap: str) -> None:
    """One confluent-kafka variant: a producer, and a consumer loop in a thread of its own."""
    import confluent_kafka

    _mq.set_up_tracing(kind)
    if kind == "contrib":  # before the classes are used: it replaces them
        from opentelemetry.instrumentation.confluent_kafka import ConfluentKafkaInstrumentor

        ConfluentKafkaInstrumentor().instrument()
    topic = f"bench-confluent-{kind}-{uuid.uuid4().hex[:8]}"
    producer: Any = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    if kind in CARRIED:
        import threadline as tl
        import threadline.kafka

        producer = threadline.kafka.instrument(producer)
    scope = _mq.request_scope(kind)
    with scope(request_id="req-check") if scope else contextlib.nullcontext():
        producer.produce(topic, b"")
    producer.flush(30)
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": topic, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    arrived: queue.SimpleQueue[object] = queue.SimpleQueue()

    def consume() -> None:
        if kind in CARRIED:
            for message in threadline.kafka.consume(consumer, timeout=0.5):
                if message.error() is None:
                    arrived.put(tl.request.get())
        else:
            while True:
                message = consumer.poll(0.5)
                if message is not None and message.error() is None:
                    arrived.put(None)

    # daemon: the loop polls for ever; the process ends with os._exit below
    threading.Thread(target=consume, daemon=True).start()
    first = arrived.get(timeout=60)
    if kind in CARRIED and first != {"request_id": "req-check"}:
        raise RuntimeError(f"the {kind} consumer saw {first!r}")

    def trip(count: int) -> None:
        for n in range(count):
            with scope(request_id=f"req-{n}") if scope else contextlib.nullcontext():
                producer.produce(topic, b"")
            producer.flush(30)
            arrived.get()

    def burst(count: int) -> None:
        for n in range(count):
            with scope(request_id=f"req-{n}") if scope else contextlib.nullcontext():
                producer.produce(topic, b"")
        producer.flush(30)
        for _ in range(count):
            arrived.get()

    _mq.serve({"trip": trip, "burst": burst})
    sys.stdout.flush()
    os._exit(0)  # the consumer thread is inside a poll


def drive(key: str, bootstrap: str) -> None:
    client, kind = key.split("/")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # "topic not found" until it is made
    if client == "aiokafka":
        asyncio.run(drive_aiokafka(kind, bootstrap))
    else:
        drive_confluent(kind, bootstrap)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, to check it runs")
    parser.add_argument("--bootstrap", help="HOST:PORT of a Kafka broker (else one started)")
    parser.add_argument("--client", action="append", choices=list(CLIENTS), help="only these")
    parser.add_argument("--json", metavar="PATH", help="write the results here as JSON")
    parser.add_argument("--drive", choices=KEYS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        _mq.run_driver(drive)
        return 0
    keys = [key for key in KEYS if key.split("/")[0] in (args.client or CLIENTS)]
    rounds, trips, burst = (1, 5, 20) if args.quick else (25, 200, 1000)
    if args.bootstrap:
        samples = _mq.measure(
            __file__, keys, args.bootstrap, rounds=rounds, trips=trips, burst=burst
        )
    else:  # the tests' broker, from the cached jars
        sys.path.insert(0, str(_mq.ROOT))
        from tests.kafka_broker import kafka_broker

        with tempfile.TemporaryDirectory() as folder, kafka_broker(Path(folder)) as bootstrap:
            samples = _mq.measure(
                __file__, keys, bootstrap, rounds=rounds, trips=trips, burst=burst
            )
    print(f"{rounds} rounds of {trips} round trips and a burst of {burst} per variant; medians")
    _mq.report("kafka", CLIENTS, samples, burst, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
