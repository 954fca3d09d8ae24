"""loguru records with request, user, trace and span ids, through an enqueued sink.

docs/logging.md#loguru. The sink runs on loguru's own thread and receives the
workers' records too (a multiprocessing sink); each JSON line has the ids of
the call that made it, under record.extra.
"""

from __future__ import annotations

import multiprocessing
import sys

from loguru import logger

# loguru formats with str.format ("{}"), not logging's "%s": PLE1205 reads it as logging.
# ruff: noqa: PLE1205
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import threadline as tl
import threadline.loguru

log = logger  # a worker's is the parent's, handed over by set_logger


def set_logger(given: object) -> None:
    global log  # noqa: PLW0603 - the worker's logger, set once
    log = given  # type: ignore[assignment]


def ship(order: int) -> int:
    log.info("shipping {}", order)
    return order


if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    logger.remove()
    logger.add(sys.stdout, serialize=True, enqueue=True, context=context)
    log = threadline.loguru.patch(logger)
    trace.set_tracer_provider(TracerProvider())
    log.info("starting up")  # outside any request: placeholders
    with (
        trace.get_tracer("example").start_as_current_span("POST /orders"),
        tl.request.scope(request_id="r1", user_id="alice\nFORGED"),
    ):
        log.info("taking order {}", 7)
        with tl.ThreadPoolExecutor(max_workers=1) as threads:
            threads.submit(log.info, "checking stock {}", 7).result()
        with tl.ProcessPoolExecutor(
            max_workers=1, mp_context=context, initializer=set_logger, initargs=(log,)
        ) as processes:
            processes.submit(ship, 7).result()
    logger.complete()  # the enqueued sink has written everything
