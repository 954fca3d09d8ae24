"""Two services, two processes, one trace per request: the application behind `threadline demo`.

A client sends orders to the gateway; the gateway asks the backend over HTTP;
the backend works in a thread pool and a process pool and starts a Python
child and a shell child. Each order is one request id and one trace across
all of them (docs/exporting.md).

    python examples/demo_services.py [--requests N]    # start both services, send N orders
    python examples/demo_services.py backend            # one service on a free port,
    python examples/demo_services.py gateway --backend URL   # until SIGTERM or Ctrl-C

Each service is a process of its own, named by its ``OTEL_SERVICE_NAME``
(demo-gateway, demo-backend). Spans go where the ``OTEL_*`` settings say
(`threadline.tracing.configure`); every process logs JSON lines to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager

import aiohttp
from aiohttp import web

import threadline as tl
import threadline.aiohttp as tla
import threadline.subprocess as tl_subprocess
from threadline.logging import JSONFormatter, install
from threadline.tracing import configure

# An unmodified Python child: threadline's bootstrap gives it the request's context.
PYTHON_CHILD = """\
import logging
from opentelemetry import trace
from threadline.logging import JSONFormatter
handler = logging.StreamHandler()
handler.setFormatter(JSONFormatter())
logging.getLogger().addHandler(handler)
with trace.get_tracer("child").start_as_current_span("resize image"):
    logging.getLogger("python-child").warning("python child resized the image")
"""
# A shell child reads the context from its environment (TRACEPARENT, BAGGAGE).
SHELL_CHILD = r"""
trace_id=$(printf %s "$TRACEPARENT" | cut -d- -f2)
request_id=$(printf %s "$BAGGAGE" | tr , '\n' | sed -n 's/^request\.request_id=\([^;]*\).*/\1/p')
line='{"logger":"shell-child","message":"shell child saw the request"'
printf '%s,"request_id":"%s","trace_id":"%s"}\n' "$line" "$request_id" "$trace_id" >&2
"""

BACKEND_URL = web.AppKey("backend_url", str)
CLIENT = web.AppKey("client", aiohttp.ClientSession)
THREADS = web.AppKey("threads", tl.ThreadPoolExecutor)
PROCESSES = web.AppKey("processes", tl.ProcessPoolExecutor)


def set_up_logging() -> None:
    """JSON lines with the request's ids on stderr (each pool worker runs it too)."""
    install()
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


# The backend


def read_stock(order: int) -> int:
    """Runs in a pool thread."""
    logging.getLogger("backend.thread").info("thread read the stock of order %d", order)
    return 3


def checksum(order: int) -> int:
    """Runs in a worker process."""
    logging.getLogger("backend.worker").info(
        "worker %d computed the checksum of order %d", os.getpid(), order
    )
    return order * 31 % 97


async def stock(request: web.Request) -> web.Response:
    order = int(request.match_info["order"])
    logging.getLogger("backend").info("backend checking order %d", order)
    count = await tl.run_in_executor(request.app[THREADS], read_stock, order)
    total = await asyncio.wrap_future(request.app[PROCESSES].submit(checksum, order))
    python_env = {**os.environ, "OTEL_SERVICE_NAME": "demo-python-child"}
    python = [sys.executable, "-c", PYTHON_CHILD]
    await asyncio.to_thread(tl.bind(tl_subprocess.run), python, env=python_env, check=True)
    await asyncio.to_thread(tl.bind(tl_subprocess.run), ["sh", "-c", SHELL_CHILD], check=True)
    return web.json_response({"order": order, "stock": count, "checksum": total})


async def pools(app: web.Application) -> AsyncIterator[None]:
    app[THREADS] = tl.ThreadPoolExecutor(max_workers=2)
    app[PROCESSES] = tl.ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=set_up_logging
    )
    yield
    app[THREADS].shutdown()
    app[PROCESSES].shutdown()


def backend() -> web.Application:
    app = web.Application(middlewares=[tla.middleware()])
    app.router.add_get("/stock/{order}", stock)
    app.cleanup_ctx.append(pools)
    return app


# The gateway


async def orders(request: web.Request) -> web.Response:
    logging.getLogger("gateway").info("gateway got %s", request.path)
    url = f"{request.app[BACKEND_URL]}/stock/{request.match_info['order']}"
    async with request.app[CLIENT].get(url) as response:
        return web.json_response(await response.json(), status=response.status)


async def client_session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(trace_configs=[tla.trace_config()]) as client:
        app[CLIENT] = client
        yield


def gateway(backend_url: str) -> web.Application:
    app = web.Application(middlewares=[tla.middleware(trust_incoming=False)])  # the public edge
    app.router.add_get("/orders/{order}", orders)
    app[BACKEND_URL] = backend_url
    app.cleanup_ctx.append(client_session)
    return app


async def serve(app: web.Application) -> None:
    """Serve *app* on a free loopback port, print its URL, stop on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, access_log=None)  # threadline's middleware logs each request
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


# The client


@contextmanager
def service(name: str, *args: str) -> Iterator[str]:
    """Run service *name* (this program) as a process named demo-NAME; yield its URL."""
    env = {**os.environ, "OTEL_SERVICE_NAME": f"demo-{name}"}
    command = [sys.executable, __file__, name, *args]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as process:
        url = process.stdout.readline().strip() if process.stdout else ""
        if not url:
            raise RuntimeError(f"the {name} did not start (its error is above)")
        try:
            yield url
        finally:
            process.terminate()  # a clean stop: the service exports its last spans
            if process.wait() != 0:
                raise RuntimeError(f"the {name} failed (its error is above)")


async def send_orders(gateway_url: str, count: int) -> None:
    async with aiohttp.ClientSession(raise_for_status=True) as client:
        for order in range(1, count + 1):
            async with client.get(f"{gateway_url}/orders/{order}") as response:
                request_id = response.headers[tla.REQUEST_ID_HEADER]
                print(f"order {order}: {await response.json()} request {request_id}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("service", nargs="?", choices=["gateway", "backend"])
    parser.add_argument("--backend", metavar="URL", help="the gateway's backend")
    parser.add_argument("--requests", type=int, default=2, metavar="N", help="orders to send")
    args = parser.parse_args()
    if args.service is None:
        with ExitStack() as services:  # stopped in reverse: the gateway first
            backend_url = services.enter_context(service("backend"))
            gateway_url = services.enter_context(service("gateway", "--backend", backend_url))
            asyncio.run(send_orders(gateway_url, args.requests))
        return 0
    if args.service == "gateway" and not args.backend:
        parser.error("the gateway needs --backend URL")
    set_up_logging()
    configure(service_name=f"demo-{args.service}")
    asyncio.run(serve(backend() if args.service == "backend" else gateway(args.backend)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
