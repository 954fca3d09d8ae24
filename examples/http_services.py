"""Two aiohttp services, gateway -> backend: one request, one id, one trace (docs/aiohttp.md).

A client calls the gateway; the gateway calls the backend over HTTP; the
backend works in a thread pool and a process pool. Every log line of both
services shows the same request id and trace id. The program checks that and
exits 1 if not.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import sys
from collections import defaultdict

import aiohttp
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import threadline as tl
import threadline.aiohttp as tla
from threadline.logging import install

FORMAT = "%(service)-8s %(processName)-16s request=%(request_id)s trace=%(trace_id).8s… %(message)s"


class ServiceFilter(logging.Filter):
    """Names the service a line comes from: the logger's first part."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = record.name.split(".")[0]
        return True


def set_up_logging() -> None:
    install()
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(ServiceFilter())
    handler.setFormatter(logging.Formatter(FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def checksum(order: int) -> int:
    """Runs in a worker process."""
    logging.getLogger("backend.worker").info("checksum for order %d in pid %d", order, os.getpid())
    return order * 31 % 97


def read_stock(order: int) -> int:
    """Runs in a pool thread."""
    logging.getLogger("backend.thread").info("stock for order %d", order)
    return 3


async def backend_order(request: web.Request) -> web.Response:
    order = int(request.match_info["order"])
    log = logging.getLogger("backend")
    log.info("backend got order %d", order)
    stock = await tl.run_in_executor(request.app["threads"], read_stock, order)
    total = await asyncio.wrap_future(request.app["processes"].submit(checksum, order))
    return web.json_response({"order": order, "stock": stock, "checksum": total})


async def gateway_order(request: web.Request) -> web.Response:
    log = logging.getLogger("gateway")
    log.info("gateway got %s", request.path)
    async with request.app["client"].get(
        f"{request.app['backend']}/orders/{request.match_info['order']}"
    ) as r:
        body = await r.json()
    log.info("gateway answering for order %s", body["order"])
    return web.json_response(body)


async def start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)  # a free port
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


class Seen(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.by_request: dict[str, set[str]] = defaultdict(set)
        self.services: dict[str, set[str]] = defaultdict(set)

    def emit(self, record: logging.LogRecord) -> None:
        self.by_request[record.request_id].add(record.trace_id)  # type: ignore[attr-defined]
        self.services[record.request_id].add(record.name.split(".")[0])  # type: ignore[attr-defined]


async def main() -> int:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    set_up_logging()
    seen = Seen()
    logging.getLogger().addHandler(seen)

    backend = web.Application(middlewares=[tla.middleware()])
    backend.router.add_get("/orders/{order}", backend_order)
    backend["threads"] = tl.ThreadPoolExecutor(max_workers=2)
    backend["processes"] = tl.ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=set_up_logging
    )
    gateway = web.Application(middlewares=[tla.middleware(trust_incoming=False)])  # the public edge
    gateway.router.add_get("/orders/{order}", gateway_order)
    gateway["client"] = aiohttp.ClientSession(trace_configs=[tla.trace_config()])

    backend_runner, gateway["backend"] = await start(backend)
    gateway_runner, gateway_url = await start(gateway)
    try:
        async with aiohttp.ClientSession() as client:
            for order in (1, 2):
                async with client.get(f"{gateway_url}/orders/{order}") as response:
                    print(
                        f"client: order {order} -> {await response.json()} "
                        f"X-Request-ID={response.headers['X-Request-ID']}",
                        flush=True,
                    )
    finally:
        await gateway["client"].close()
        await gateway_runner.cleanup()
        await backend_runner.cleanup()
        backend["threads"].shutdown()
        backend["processes"].shutdown()

    requests = {rid: ids for rid, ids in seen.by_request.items() if rid != "-"}
    consistent = len(requests) == 2 and all(len(ids) == 1 for ids in requests.values())
    both = all({"gateway", "backend"} <= seen.services[rid] for rid in requests)
    traces = {span.context.trace_id for span in exporter.get_finished_spans()}
    print(
        f"{len(requests)} requests, {len(traces)} traces; every line of both services "
        + ("carries its request's one id and one trace id" if consistent and both else "MIXED")
    )
    return 0 if consistent and both else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
