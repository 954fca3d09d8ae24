"""RabbitMQ publish + consume with and without threadline, on a real node, with aio-pika.

Four variants, each a process of its own with a connection, a channel
(publisher confirms, aio-pika's default) and an exclusive queue of its own, all
on one RabbitMQ node: bare aio-pika; threadline's context only
(``threadline.rabbitmq.instrument`` on the channel and ``consume`` over the
queue iterator, the stores in a request scope per publish, no tracing SDK);
threadline with spans (the SDK, a batch processor exporting nowhere: a
PRODUCER and a CONSUMER span per message, each publish inside a request's
span); opentelemetry-instrumentation-aio-pika with the same SDK and request
span. The consumer loop runs as users write it (``async for`` over the queue
iterator in a task of its own, each message acknowledged) and hands each
message's arrival to the publisher through a queue.

Two modes (see _mq.py): a round trip (publish one, confirmed, then wait for the
consumer to have it), one at a time; and a burst (publish N concurrently, all
confirmed, then consume the N). Rounds interleave every variant and mode in
shuffled order; medians and quartiles are reported.
Target (DESIGN.md): context only costs at most 5% of bare aio-pika;
threadline's spans cost no more than OpenTelemetry's instrumentation.

Run:  .venv/bin/python benchmarks/rabbitmq_bench.py          (full; starts rabbitmq-server)
      .venv/bin/python benchmarks/rabbitmq_bench.py --quick  (smoke: checks it runs)
      ... --url amqp://guest:guest@HOST:PORT/                 (an existing node)
      ... --json PATH                                         (the results, for run.py)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import _mq

CLIENTS = {"aio-pika": "opentelemetry-instrumentation-aio-pika"}
KEYS = [f"aio-pika/{kind}" for kind in _mq.KINDS]
CARRIED = ("context", "span")


async def drive_aio_pika(kind: str, url: str) -> None:
    """One variant: a channel that publishes, and a consumer loop in a task of its own."""
    import aio_pika

    _mq.set_up_tracing(kind)
    if kind == "contrib":
        from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor

        AioPikaInstrumentor().instrument()
    connection = await aio_pika.connect(url)
    channel: Any = await connection.channel()
    if kind in CARRIED:
        import threadline as tl
        import threadline.rabbitmq

        threadline.rabbitmq.instrument(channel)
    queue = await channel.declare_queue(f"bench-{kind}-{uuid.uuid4().hex[:8]}", exclusive=True)
    arrived: asyncio.Queue[object] = asyncio.Queue()
    scope = _mq.request_scope(kind)

    async def consume() -> None:
        async with queue.iterator() as queue_iterator:
            messages = queue_iterator
            if kind in CARRIED:
                messages = threadline.rabbitmq.consume(queue_iterator)
            async for message in messages:
                await message.ack()
                arrived.put_nowait(tl.request.get() if kind in CARRIED else None)

    def publish(request_id: str) -> Any:
        with scope(request_id=request_id) if scope else contextlib.nullcontext():
            # a task copies the context it is made in: the publish runs in the request's
            return asyncio.ensure_future(
                channel.default_exchange.publish(aio_pika.Message(b""), routing_key=queue.name)
            )

    consumer_task = asyncio.create_task(consume())
    await publish("req-check")
    first = await asyncio.wait_for(arrived.get(), 60)
    if kind in CARRIED and first != {"request_id": "req-check"}:
        raise RuntimeError(f"the {kind} consumer saw {first!r}")

    async def trip(count: int) -> None:
        for n in range(count):
            with scope(request_id=f"req-{n}") if scope else contextlib.nullcontext():
                await channel.default_exchange.publish(
                    aio_pika.Message(b""), routing_key=queue.name
                )
            await arrived.get()

    async def burst(count: int) -> None:
        await asyncio.gather(*(publish(f"req-{n}") for n in range(count)))
        for _ in range(count):
            await arrived.get()

    try:
        await _mq.serve_async({"trip": trip, "burst": burst})
    finally:
        consumer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer_task
        await connection.close()


def drive(key: str, url: str) -> None:
    asyncio.run(drive_aio_pika(key.split("/")[1], url))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, to check it runs")
    parser.add_argument("--url", help="amqp://... of a RabbitMQ node (else one started)")
    parser.add_argument("--json", metavar="PATH", help="write the results here as JSON")
    parser.add_argument("--drive", choices=KEYS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        _mq.run_driver(drive)
        return 0
    rounds, trips, burst = (1, 5, 20) if args.quick else (25, 200, 1000)
    if args.url:
        samples = _mq.measure(__file__, KEYS, args.url, rounds=rounds, trips=trips, burst=burst)
    else:  # the tests' node, with its own epmd
        sys.path.insert(0, str(_mq.ROOT))
        from tests.rabbitmq_broker import rabbitmq_server

        with tempfile.TemporaryDirectory() as folder, rabbitmq_server(Path(folder)) as url:
            samples = _mq.measure(__file__, KEYS, url, rounds=rounds, trips=trips, burst=burst)
    print(f"{rounds} rounds of {trips} round trips and a burst of {burst} per variant; medians")
    _mq.report("rabbitmq", CLIENTS, samples, burst, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
