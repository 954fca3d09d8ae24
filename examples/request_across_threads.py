"""One request's context across asyncio tasks and a thread pool, in every log line.

Three requests run at once. Each opens a span and a `tl.request` scope, fans
out to asyncio tasks and to a thread pool, and logs along the way. Every log
line shows its request id and trace id; the program checks that each
request's lines share one of each, and exits 1 if not.

Run: ./scripts/demo   (or: python examples/request_across_threads.py)
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import defaultdict

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import threadline as tl
from threadline.logging import install
from threadline.tracing import StoreSpanProcessor

log = logging.getLogger("shop")
tracer = trace.get_tracer("shop")
pool = tl.ThreadPoolExecutor(max_workers=2, thread_name_prefix="pool")


class Seen(logging.Handler):
    """Remembers which (request id, trace id) pairs each request id's lines had."""

    def __init__(self) -> None:
        super().__init__()
        self.by_request: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += 1
        self.by_request[record.request_id].add((record.request_id, record.trace_id))  # type: ignore[attr-defined]


def price_order(order: int) -> float:
    """Blocking work, run in the thread pool."""
    time.sleep(0.01)
    log.info("priced order %d", order)
    return order * 9.5


async def load_user(user_id: int) -> str:
    await asyncio.sleep(0.01)
    log.info("loaded user %d", user_id)
    return f"user-{user_id}"


async def handle(request_id: str, user_id: int) -> float:
    with (
        tracer.start_as_current_span("GET /orders"),
        tl.request.scope(request_id=request_id, user_id=user_id),
    ):
        log.info("request started")
        name, total = await asyncio.gather(
            load_user(user_id),
            tl.run_in_executor(pool, price_order, user_id),
        )
        totals = await asyncio.gather(*(tl.run_in_executor(pool, price_order, n) for n in range(2)))
        log.info("request done for %s: %.1f", name, total + sum(totals))
        return total


async def main() -> int:
    provider = TracerProvider()
    provider.add_span_processor(StoreSpanProcessor())
    trace.set_tracer_provider(provider)
    install()  # every log record gets request_id, user_id, trace_id, span_id
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(threadName)-14s request=%(request_id)s trace=%(trace_id).8s… %(message)s",
    )
    seen = Seen()
    logging.getLogger().addHandler(seen)
    await asyncio.gather(*(handle(f"req-{i}", 100 + i) for i in range(3)))
    pool.shutdown()
    consistent = all(len(pairs) == 1 for pairs in seen.by_request.values())
    print(
        f"\n{len(seen.by_request)} requests, {seen.lines} log lines: "
        + (
            "each request's lines share one request id and one trace id"
            if consistent
            else f"MIXED CONTEXT: {dict(seen.by_request)}"
        )
    )
    return 0 if consistent and len(seen.by_request) == 3 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
