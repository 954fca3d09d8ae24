"""An aiohttp request enqueues a Celery task; its worker logs with the request id (docs/celery.md).

Run it with a Redis broker (any Celery broker URL)::

    CELERY_BROKER_URL=redis://localhost:6379/0 python examples/celery_request.py
    threadline view celery-traces.jsonl --logs celery-logs.jsonl

It starts a Celery worker, a separate process (``celery -A celery_request
worker``: this file is its app module), serves ``POST /orders/{order}`` on
loopback and calls it twice. The handler enqueues a task; the worker runs it
in a prefork child. Both processes write their spans (OTLP JSON lines) to
THREADLINE_TRACES_FILE (default ``celery-traces.jsonl``) and their log lines
(JSON) to CELERY_EXAMPLE_LOGS (default ``celery-logs.jsonl``). The program
then checks that each request is one trace (the web's SERVER and PRODUCER
spans, the worker's CONSUMER span) and that the worker's lines carry the
request's id and trace id, prints that, and exits 1 if not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from celery import Celery
from opentelemetry.sdk.trace import TracerProvider

import threadline as tl
import threadline.aiohttp as tla
import threadline.celery
import threadline.logging
import threadline.tracing
from threadline.export import read_spans

HERE = Path(__file__).resolve().parent
BROKER = os.environ.get("CELERY_BROKER_URL", "")
TRACES = Path(os.environ.get("THREADLINE_TRACES_FILE", "celery-traces.jsonl")).resolve()
LOGS = Path(os.environ.get("CELERY_EXAMPLE_LOGS", "celery-logs.jsonl")).resolve()
# the worker (started from another directory) writes to the same files
os.environ.update(THREADLINE_TRACES_FILE=str(TRACES), CELERY_EXAMPLE_LOGS=str(LOGS))

app = Celery("celery_request", broker=BROKER, backend=BROKER)
app.conf.worker_hijack_root_logger = False
logger = logging.getLogger("orders")


def set_up(service: str) -> TracerProvider | None:
    """What each process does first: tracing, ids on log records, the app wired."""
    provider = threadline.tracing.configure(service_name=service)  # OTEL_*; a file by default
    threadline.logging.install()  # request_id, user_id, trace_id, span_id on every record
    handler = logging.FileHandler(LOGS)  # both processes append, one line per record
    handler.setFormatter(threadline.logging.JSONFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    threadline.celery.setup(app)
    return provider


@app.task(name="orders.send_receipt")
def send_receipt(order: int) -> str:
    """Runs in the worker, in the request's context."""
    request: Mapping[str, Any] = tl.request.get() or {}
    logger.info("sending the receipt for order %d in pid %d", order, os.getpid())
    return f"receipt {order} for {request.get('user_id')}"


async def create_order(request: web.Request) -> web.Response:
    order = int(request.match_info["order"])
    with tl.request.merge(user_id=f"user-{order}"):
        logger.info("order %d received", order)
        task = send_receipt.delay(order)  # the request's stores and trace go with the message
    return web.json_response({"order": order, "task": task.id}, status=202)


def start_worker() -> subprocess.Popen[bytes]:
    """``celery -A celery_request worker``: a separate process, prefork, with this environment."""
    command = [sys.executable, "-m", "celery", "-A", "celery_request", "worker"]
    command += ["--pool", "prefork", "--concurrency", "1", "--loglevel", "WARNING"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(command, cwd=HERE, env=env)


async def serve_two_requests() -> dict[str, str]:
    """Call the endpoint twice; wait for the tasks; return request id -> task result."""
    web_app = web.Application(middlewares=[tla.middleware()])
    web_app.router.add_post("/orders/{order}", create_order)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)  # a free port
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    results: dict[str, str] = {}
    try:
        async with aiohttp.ClientSession() as client:
            for order in (1, 2):
                async with client.post(f"{url}/orders/{order}") as response:
                    body = await response.json()
                    request_id = response.headers["X-Request-ID"]
                task = send_receipt.AsyncResult(body["task"])
                results[request_id] = await asyncio.to_thread(task.get, timeout=60)
                print(f"request {request_id}: {results[request_id]}", flush=True)
    finally:
        await runner.cleanup()
    return results


def check(results: dict[str, str]) -> bool:
    """Each request: one trace, web and worker spans in it, the worker's lines with its ids."""
    spans = read_spans(TRACES)
    lines = [json.loads(line) for line in LOGS.read_text().splitlines() if line]
    trace_of = {
        line["request_id"]: line["trace_id"] for line in lines if line["logger"] == "orders"
    }
    worker_lines = [line for line in lines if "receipt" in line["message"]]
    services: dict[str, set[str]] = defaultdict(set)
    for span in spans:
        services[span.trace_id].add(f"{span.service}:{span.name.split()[0]}")
    expected = {"orders-web:POST", "orders-web:send", "orders-worker:process"}
    one_trace = all(expected <= services[trace_of[rid]] for rid in results)
    ids_in_worker = len(worker_lines) == len(results) and all(
        trace_of[line["request_id"]] == line["trace_id"] for line in worker_lines
    )
    print(
        f"{len(results)} requests, {len({trace_of[r] for r in results})} traces: "
        + (
            "each request's web and worker spans are one trace, and the worker's lines "
            "carry its request id and trace id"
            if one_trace and ids_in_worker
            else "MIXED"
        )
    )
    print(f"see them: threadline view {TRACES.name} --logs {LOGS.name}")
    return one_trace and ids_in_worker


def main() -> int:
    if not BROKER:
        print("set CELERY_BROKER_URL, e.g. redis://localhost:6379/0", file=sys.stderr)
        return 2
    for path in (TRACES, LOGS):
        path.unlink(missing_ok=True)
    provider = set_up("orders-web")
    worker = start_worker()
    try:
        results = asyncio.run(serve_two_requests())
    finally:
        worker.terminate()  # a warm shutdown: the worker exports its spans on the way out
        worker.wait(60)
    if provider is not None:
        provider.force_flush()
    return 0 if check(results) else 1


if __name__ == "__main__":
    sys.exit(main())
else:  # imported by `celery -A celery_request worker`
    set_up("orders-worker")
