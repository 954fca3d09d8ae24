"""aiohttp throughput: threadline's middleware against bare aiohttp and OpenTelemetry contrib.

Each variant is a server process of its own on a free loopback port, pinned to
one core; the load (wrk when installed, else a Python client) runs on the
other. Variants are measured round by round in shuffled order, side by side.
Budgets (DESIGN.md): context only >= 0.95x bare; a span per request >= 0.6x
bare and >= 2x opentelemetry-instrumentation-aiohttp-server.

Run:  .venv/bin/python benchmarks/aiohttp_bench.py          (full; wants wrk)
      .venv/bin/python benchmarks/aiohttp_bench.py --quick  (smoke: checks it runs)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VARIANTS = {
    "bare": "bare aiohttp",
    "noop": "bare aiohttp with an empty middleware (for reference)",
    "context": "threadline middleware, no tracing SDK (context only)",
    "span": "threadline middleware, a span per request",
    "contrib": "opentelemetry-instrumentation-aiohttp-server, a span per request",
}


def serve(variant: str, port_file: str) -> None:
    """Run one variant's server until killed (in its own process)."""
    import logging

    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        os.sched_setaffinity(0, {0})
    middlewares = []
    if variant in ("span", "contrib"):
        from _tracing import discard_spans

        discard_spans()
    if variant in ("context", "span"):
        import threadline.aiohttp

        middlewares.append(threadline.aiohttp.middleware())
    if variant == "noop":
        from aiohttp import web

        @web.middleware
        async def empty(request: web.Request, handler: Any) -> web.StreamResponse:
            return await handler(request)

        middlewares.append(empty)
    if variant == "contrib":
        from opentelemetry.instrumentation.aiohttp_server import (
            AioHttpServerInstrumentor,
        )

        AioHttpServerInstrumentor().instrument()  # adds its middleware to applications made after

    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application(middlewares=middlewares)
        app.router.add_get("/hello/{name}", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        Path(port_file).write_text(str(runner.addresses[0][1]))  # noqa: ASYNC240 - once, at start
        await asyncio.Event().wait()

    asyncio.run(main())


def start_servers() -> tuple[dict[str, str], list[subprocess.Popen[bytes]]]:
    urls, processes = {}, []
    folder = tempfile.mkdtemp()
    for variant in VARIANTS:
        port_file = os.path.join(folder, variant)
        processes.append(
            subprocess.Popen(
                [sys.executable, __file__, "--serve", variant, "--port-file", port_file]
            )
        )
        deadline = time.monotonic() + 30
        while not os.path.exists(port_file) or not Path(port_file).read_text():
            if time.monotonic() > deadline:
                raise RuntimeError(f"server {variant} did not start")
            time.sleep(0.05)
        urls[variant] = f"http://127.0.0.1:{Path(port_file).read_text()}/hello/world"
    return urls, processes


def load_with_wrk(url: str, seconds: float) -> float:
    command = ["wrk", "-t1", "-c32", f"-d{max(1, round(seconds))}s", url]
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        command = ["taskset", "-c", "1", *command]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"no throughput in wrk's output: {out}")
    return float(match[1])


def load_with_python(url: str, seconds: float) -> float:
    import aiohttp

    async def run() -> float:
        done = 0
        deadline = time.monotonic() + seconds
        async with aiohttp.ClientSession() as session:

            async def worker() -> None:
                nonlocal done
                while time.monotonic() < deadline:
                    async with session.get(url) as response:
                        await response.read()
                        if response.status != 200:
                            raise RuntimeError(f"{url} answered {response.status}")
                    done += 1

            start = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(8)))
            return done / (time.monotonic() - start)

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, to check it runs")
    parser.add_argument("--serve", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port_file)
        return 0
    rounds, seconds = (1, 0.5) if args.quick else (6, 3.0)
    load = load_with_wrk if shutil.which("wrk") and not args.quick else load_with_python
    urls, processes = start_servers()
    try:
        for url in urls.values():  # warm up
            load(url, 0.3 if args.quick else 1.0)
        results: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        order = list(VARIANTS)
        for _ in range(rounds):
            random.shuffle(order)
            for variant in order:
                results[variant].append(load(urls[variant], seconds))
    finally:
        for process in processes:
            process.kill()
            process.wait()
    medians = {variant: statistics.median(values) for variant, values in results.items()}
    print(
        f"load: {'wrk -t1 -c32' if load is load_with_wrk else 'Python aiohttp client, 8 at a time'}"
    )
    print("| variant | requests/s | ratio to bare | ratio to contrib |")
    print("|---|---:|---:|---:|")
    for variant, label in VARIANTS.items():
        print(
            f"| {label} | {medians[variant]:.0f} | {medians[variant] / medians['bare']:.2f}x "
            f"| {medians[variant] / medians['contrib']:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
