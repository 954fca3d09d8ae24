"""structlog lines with request, user, trace and span ids, in threads and worker processes.

docs/logging.md#structlog. Each line is one JSON object; every line of the
request has its request id and trace id, the pool's and the worker's too.
The user id came from outside with a line break in it: it is escaped.
"""

from __future__ import annotations

import multiprocessing
import sys

import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import threadline as tl
import threadline.structlog

# At import, so that spawned workers, which import this module, log alike.
structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        threadline.structlog.add_context,
        structlog.processors.JSONRenderer(),
    ],
    logger_factory=structlog.PrintLoggerFactory(sys.stdout),
)
log = structlog.get_logger()


def ship(order: int) -> int:
    log.info("shipping", order=order)
    return order


if __name__ == "__main__":
    trace.set_tracer_provider(TracerProvider())
    log.info("starting up")  # outside any request: placeholders
    with (
        trace.get_tracer("example").start_as_current_span("POST /orders"),
        tl.request.scope(request_id="r1", user_id="alice\nFORGED"),
    ):
        log.info("taking order", order=7)
        with tl.ThreadPoolExecutor(max_workers=1) as threads:
            threads.submit(log.info, "checking stock", order=7).result()
        context = multiprocessing.get_context("spawn")
        with tl.ProcessPoolExecutor(max_workers=1, mp_context=context) as processes:
            processes.submit(ship, 7).result()
        log.info("done", order=7, request_id="r1-override")  # the caller's value wins
