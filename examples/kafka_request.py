"""An aiohttp request publishes to Kafka; a consumer process logs with its id (docs/kafka.md).

Run it with a Kafka broker::

    KAFKA_BOOTSTRAP=127.0.0.1:9092 python examples/kafka_request.py
    threadline view kafka-traces.jsonl --logs kafka-logs.jsonl

It starts a consumer, a separate process (this file, ``consume TOPIC``), that
reads a fresh topic with ``threadline.kafka.consume`` (aiokafka), serves
``POST /orders/{order}`` on loopback with ``threadline.aiohttp.middleware()``
and calls it twice; the handler publishes an event through an instrumented
producer. Both processes write their spans (OTLP JSON lines) to
THREADLINE_TRACES_FILE (default ``kafka-traces.jsonl``) and their log lines
(JSON) to KAFKA_EXAMPLE_LOGS (default ``kafka-logs.jsonl``). The program then
checks that each request is one trace (the web's SERVER and PRODUCER spans,
the consumer's CONSUMER span) and that the consumer's lines carry the
request's id and trace id, prints that, and exits 1 if not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry.sdk.trace import TracerProvider

import threadline as tl
import threadline.aiohttp as tla
import threadline.kafka
import threadline.logging
import threadline.tracing
from threadline.export import read_spans

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "") or (sys.argv[1] if len(sys.argv) == 2 else "")
TRACES = Path(os.environ.get("THREADLINE_TRACES_FILE", "kafka-traces.jsonl")).resolve()
LOGS = Path(os.environ.get("KAFKA_EXAMPLE_LOGS", "kafka-logs.jsonl")).resolve()
os.environ.update(THREADLINE_TRACES_FILE=str(TRACES), KAFKA_EXAMPLE_LOGS=str(LOGS))
REQUESTS = 2
logger = logging.getLogger("orders")


def set_up(service: str) -> TracerProvider | None:
    """What each process does first: tracing and ids on every log record."""
    provider = threadline.tracing.configure(service_name=service)  # OTEL_*; a file by default
    threadline.logging.install()  # request_id, user_id, trace_id, span_id on every record
    handler = logging.FileHandler(LOGS)  # both processes append, one line per record
    handler.setFormatter(threadline.logging.JSONFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return provider


async def consume(bootstrap: str, topic: str) -> None:
    """The consumer process: each event's body runs in the context of the request that sent it."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=topic, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        shipped = 0
        async for record in threadline.kafka.consume(consumer):
            user = (tl.request.get() or {}).get("user_id")
            logger.info(
                "shipping order %s for %s in pid %d", record.value.decode(), user, os.getpid()
            )
            shipped += 1
            if shipped == REQUESTS:
                break
    finally:
        await consumer.stop()


async def serve(bootstrap: str, topic: str) -> list[str]:
    """Serve POST /orders/{order}, call it twice; return the request ids."""
    producer = threadline.kafka.instrument(AIOKafkaProducer(bootstrap_servers=bootstrap))
    await producer.start()

    async def create_order(request: web.Request) -> web.Response:
        order = request.match_info["order"]
        with tl.request.merge(user_id=f"user-{order}"):
            logger.info("order %s received", order)
            await producer.send_and_wait(topic, order.encode())  # the context goes along
        return web.json_response({"order": order}, status=202)

    web_app = web.Application(middlewares=[tla.middleware()])
    web_app.router.add_post("/orders/{order}", create_order)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)  # a free port
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    request_ids = []
    try:
        async with aiohttp.ClientSession() as client:
            for order in range(1, REQUESTS + 1):
                async with client.post(f"{url}/orders/{order}") as response:
                    request_ids.append(response.headers["X-Request-ID"])
                    print(f"request {request_ids[-1]}: order {order} published", flush=True)
    finally:
        await runner.cleanup()
        await producer.stop()
    return request_ids


def check(request_ids: list[str]) -> bool:
    """Each request: one trace, web and consumer spans in it, the consumer's lines with its ids."""
    spans = read_spans(TRACES)
    lines = [json.loads(line) for line in LOGS.read_text().splitlines() if line]
    trace_of = {
        line["request_id"]: line["trace_id"] for line in lines if "received" in line["message"]
    }
    shipped = [line for line in lines if line["message"].startswith("shipping")]
    services: dict[str, set[str]] = defaultdict(set)
    for span in spans:
        services[span.trace_id].add(f"{span.service}:{span.name.split()[0]}")
    expected = {"orders-web:POST", "orders-web:send", "orders-consumer:process"}
    one_trace = all(expected <= services[trace_of[rid]] for rid in request_ids)
    ids_in_consumer = len(shipped) == len(request_ids) and all(
        trace_of[line["request_id"]] == line["trace_id"] for line in shipped
    )
    print(
        f"{len(request_ids)} requests, {len({trace_of[r] for r in request_ids})} traces: "
        + (
            "each request's web and consumer spans are one trace, and the consumer's lines "
            "carry its request id and trace id"
            if one_trace and ids_in_consumer
            else "MIXED"
        )
    )
    print(f"see them: threadline view {TRACES.name} --logs {LOGS.name}")
    return one_trace and ids_in_consumer


def main() -> int:
    if not BOOTSTRAP:
        print("set KAFKA_BOOTSTRAP (or pass it), e.g. 127.0.0.1:9092", file=sys.stderr)
        return 2
    for path in (TRACES, LOGS):
        path.unlink(missing_ok=True)
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    provider = set_up("orders-web")
    command = [sys.executable, __file__, "consume", BOOTSTRAP, topic]
    consumer = subprocess.Popen(command)
    try:
        request_ids = asyncio.run(serve(BOOTSTRAP, topic))
        consumer.wait(60)  # it stops after the events, exporting its spans on the way out
    finally:
        if consumer.poll() is None:
            consumer.terminate()
            consumer.wait(10)
    if provider is not None:
        provider.force_flush()
    return 0 if consumer.returncode == 0 and check(request_ids) else 1


if __name__ == "__main__" and sys.argv[1:2] == ["consume"]:
    set_up("orders-consumer")
    asyncio.run(consume(sys.argv[2], sys.argv[3]))
elif __name__ == "__main__":
    sys.exit(main())
