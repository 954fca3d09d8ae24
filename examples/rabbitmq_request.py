"""Messages of two requests through RabbitMQ, each body in its own request (docs/rabbitmq.md).

Run it with a RabbitMQ node::

    RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/ python examples/rabbitmq_request.py

Two requests publish two messages each, interleaved, through an instrumented
channel; one consumer loop (``threadline.rabbitmq.consume``) handles all four.
Each body logs with its request's id and trace id; after the loop the
consumer's own context is back. It exits 1 if any body saw another's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import aio_pika
from opentelemetry import trace

import threadline as tl
import threadline.logging
import threadline.rabbitmq
import threadline.tracing

URL = os.environ.get("RABBITMQ_URL", "")
logger = logging.getLogger("orders")


async def main() -> bool:
    connection = await aio_pika.connect(URL)
    channel = threadline.rabbitmq.instrument(await connection.channel())
    queue = await channel.declare_queue(exclusive=True)  # a fresh, server-named queue
    tracer = trace.get_tracer("orders")
    sent = {}
    for request_id in ("r1", "r2"):
        with tl.request.scope(request_id=request_id), tracer.start_as_current_span("request"):
            sent[request_id] = f"{trace.get_current_span().get_span_context().trace_id:032x}"
            for n in (1, 2):
                message = aio_pika.Message(f"{request_id}/{n}".encode())
                await channel.default_exchange.publish(message, routing_key=queue.name)
    right = 0
    async with queue.iterator() as queue_iterator:
        async for message in threadline.rabbitmq.consume(queue_iterator):
            async with message.process():
                logger.info("handled %s", message.body.decode())  # with the request's ids
                request_id = (tl.request.get() or {}).get("request_id")
                right += message.body.decode().startswith(f"{request_id}/")
                right += (
                    f"{trace.get_current_span().get_span_context().trace_id:032x}"
                    == sent[str(request_id)]
                )
            if right == 8:
                break
    back = tl.request.get() is None
    await connection.close()
    print(f"each message ran in its own request's context: {right == 8 and back}")
    return right == 8 and back


if __name__ == "__main__":
    if not URL:
        print("set RABBITMQ_URL, e.g. amqp://guest:guest@127.0.0.1:5672/", file=sys.stderr)
        sys.exit(2)
    threadline.tracing.configure(service_name="orders")
    threadline.logging.install()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s request=%(request_id)s trace=%(trace_id)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    sys.exit(0 if asyncio.run(main()) else 1)
