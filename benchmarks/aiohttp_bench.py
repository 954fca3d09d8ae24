"""aiohttp throughput and latency: threadline against bare aiohttp and OpenTelemetry contrib.

Each variant is a server process of its own on a free loopback port, pinned to
one core; wrk (``-t1 -c32 --latency``) runs on the other, or a Python client
where wrk is missing. Variants are measured round by round in shuffled order,
side by side; ratios are taken round by round. Two handlers:

- ``ok``: answers at once, so the figures are the per-request overhead;
- ``work``: awaits a 1 ms sleep and logs two lines (to a file, at INFO), a
  request that does something.

The rows with spans exported to a real Collector are ``export_bench.py``'s.

Run:  .venv/bin/python benchmarks/aiohttp_bench.py          (full; wants wrk)
      .venv/bin/python benchmarks/aiohttp_bench.py --quick  (smoke: checks it runs)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _report import RATE, Result, ratio, write_results

ROOT = Path(__file__).resolve().parent.parent
BENCHMARK = "aiohttp"


@dataclass(frozen=True)
class Variant:
    """One server set-up: its label, handler, and what its ratios are taken against."""

    label: str
    handler: str = "ok"
    reference: str | None = None
    target: str | None = None
    also: tuple[tuple[str, str], ...] = ()


VARIANTS = {
    "bare": Variant("bare aiohttp"),
    "noop": Variant("an empty middleware", reference="bare"),
    "floor": Variant("a minimal context middleware", reference="noop"),
    "context": Variant("threadline, context only", reference="noop", target=">= 0.95x"),
    "live-off": Variant(
        "threadline, context only, the live view's module loaded but not served",
        reference="context",
        target=">= 0.97x",
    ),
    "live-on": Variant(
        "threadline, context only, the live view served (nobody watching)",
        reference="context",
    ),
    "sdkspan": Variant("a minimal span middleware", reference="bare"),
    "span": Variant(
        "threadline, a span per request",
        reference="contrib",
        target=">= 2x",
        also=(("bare", ">= 0.6x"),),
    ),
    "contrib": Variant("contrib aiohttp-server, a span per request", reference="bare"),
    "bare-work": Variant("bare aiohttp, work handler", handler="work"),
    "context-work": Variant(
        "threadline, context only, work handler", handler="work", reference="bare-work"
    ),
    "span-work": Variant(
        "threadline, a span per request, work handler",
        handler="work",
        reference="contrib-work",
    ),
    "contrib-work": Variant(
        "contrib aiohttp-server + logging, work handler", handler="work", reference="bare-work"
    ),
}
"""The variants; docs/performance.md says what each one is."""


# --------------------------------------------------------------------------- the servers


def serve(name: str, port_file: str) -> None:
    """Run one variant's server until SIGTERM (in its own process)."""
    import logging

    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
    variant = VARIANTS[name]
    kind = name.partition("-")[0]
    _set_up_tracing(kind)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    middlewares = _middlewares(kind)
    if kind == "live":
        from threadline import live

        if name == "live-on":
            live.serve()
    if variant.handler == "work":
        _set_up_logging(kind)

    from aiohttp import web

    log = logging.getLogger("bench.handler")

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def work(request: web.Request) -> web.Response:
        await asyncio.sleep(0.001)
        log.info("looking up %s", request.match_info["name"])
        log.info("answering %s", request.match_info["name"])
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application(middlewares=middlewares)
        app.router.add_get("/hello/{name}", work if variant.handler == "work" else ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        Path(port_file).write_text(str(runner.addresses[0][1]))  # noqa: ASYNC240 - once, at start
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


def _set_up_tracing(kind: str) -> None:
    """Set the variant's tracer provider (spans exported to nowhere), if it makes spans."""
    if kind in ("span", "contrib", "sdkspan"):
        from _tracing import discard_spans

        discard_spans()


def _middlewares(kind: str) -> list[Any]:
    from aiohttp import web

    if kind in ("context", "span", "live"):
        import threadline.aiohttp

        return [threadline.aiohttp.middleware()]
    if kind == "noop":

        @web.middleware
        async def empty(request: web.Request, handler: Any) -> web.StreamResponse:
            return await handler(request)

        return [empty]
    if kind == "floor":
        import contextvars

        current: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("request")
        ids = random.Random()

        @web.middleware
        async def minimal(request: web.Request, handler: Any) -> web.StreamResponse:
            request_id = request.headers.get("X-Request-ID") or ids.randbytes(16).hex()
            token = current.set({"request_id": request_id})
            try:
                response: web.StreamResponse = await handler(request)
                response.headers.setdefault("X-Request-ID", request_id)
                return response
            finally:
                current.reset(token)

        return [minimal]
    if kind == "sdkspan":
        from micro_bench import SERVER_ATTRIBUTES
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        tracer = trace.get_tracer("bench")

        @web.middleware
        async def span_only(request: web.Request, handler: Any) -> web.StreamResponse:
            span = tracer.start_span(
                "GET /hello/{name}", kind=SpanKind.SERVER, attributes=SERVER_ATTRIBUTES
            )
            try:
                response: web.StreamResponse = await handler(request)
                span.set_attribute("http.response.status_code", response.status)
                return response
            finally:
                span.end()

        return [span_only]
    if kind == "contrib":
        from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

        AioHttpServerInstrumentor().instrument()  # adds its middleware to applications made after
    return []


def _set_up_logging(kind: str) -> None:
    """INFO lines to a file; each library puts its ids on them as its users would ask it to."""
    import logging

    handler = logging.FileHandler(os.devnull)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("threadline.aiohttp").setLevel(logging.WARNING)  # no access line
    if kind in ("context", "span"):
        import threadline.logging

        threadline.logging.install()
    elif kind == "contrib":
        from opentelemetry.instrumentation.logging import LoggingInstrumentor

        LoggingInstrumentor().instrument(set_logging_format=False)


# --------------------------------------------------------------------------- the load


@dataclass
class Load:
    """One round's figures for one variant."""

    rate: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int = 0
    cpu: dict[str, float] | None = None
    """CPU seconds each process (``server``, ``export``) used in the round."""
    timeouts: int = 0
    """Requests wrk gave up on (no answer within its 2 s)."""


_WRK_LATENCY = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_SCALE = {"us": 1e-3, "ms": 1.0, "s": 1e3}


CONNECTIONS = 32


def load_with_wrk(url: str, seconds: float, pause_ms: float | None = None) -> Load:
    """Load *url* for *seconds*; with *pause_ms* each connection pauses so long between requests."""
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", "--latency", f"-d{max(1, round(seconds))}s", url]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if pause_ms is not None:
            script.write(f"function delay() return {pause_ms:.3f} end\n")
            script.flush()
            command[1:1] = ["-s", script.name]
        if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
            command = ["taskset", "-c", "1", *command]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rate is None or "Non-2xx" in out:
        raise RuntimeError(f"wrk did not get its answers: {out}")
    latency = {p: float(v) * _SCALE[unit] for p, v, unit in _WRK_LATENCY.findall(out)}
    done = re.search(r"(\d+) requests in", out)
    return Load(float(rate[1]), latency.get("50"), latency.get("99"), int(done[1]) if done else 0)


def load_with_python(url: str, seconds: float) -> Load:
    import aiohttp

    async def run() -> Load:
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
            return Load(done / (time.monotonic() - start), requests=done)

    return asyncio.run(run())


# --------------------------------------------------------------------------- the run


def measure(names: list[str], rounds: int, seconds: float, use_wrk: bool) -> list[Result]:
    """Start every server, load them round by round in shuffled order, stop them."""
    load = load_with_wrk if use_wrk else load_with_python
    folder = tempfile.mkdtemp()
    servers, urls = {}, {}
    try:
        for name in names:
            servers[name], urls[name] = _start_server(name, folder)
        for name in names:  # warm up
            load(urls[name], 1.0 if rounds > 1 else 0.3)
        loads: dict[str, list[Load]] = {name: [] for name in names}
        order = list(names)
        for _ in range(rounds):
            random.shuffle(order)
            for name in order:
                before = _cpu_seconds(servers[name].pid)
                done = load(urls[name], seconds)
                after = _cpu_seconds(servers[name].pid)
                done.cpu = {key: after[key] - before.get(key, 0.0) for key in after}
                loads[name].append(done)
    finally:
        for server in servers.values():
            server.send_signal(signal.SIGTERM)
        for server in servers.values():
            server.wait(60)
    results = []
    for name in names:
        variant = VARIANTS[name]
        notes = _latency_notes(loads[name])
        notes.update(_cpu_notes(loads[name]))
        results.append(
            Result(
                BENCHMARK,
                variant.label,
                [one.rate for one in loads[name]],
                unit=RATE,
                reference=VARIANTS[variant.reference].label if variant.reference else None,
                target=variant.target,
                also={VARIANTS[other].label: bound for other, bound in variant.also},
                notes=notes,
            )
        )
    shutil.rmtree(folder, ignore_errors=True)
    return results


def _cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds used so far by the server process and by its export process, if any."""
    used = {"server": _cpu_of(pid)}
    children = []  # the server's only children are export processes, started by any thread
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            children += (task / "children").read_text().split()
    if children:
        used["export process"] = sum(_cpu_of(int(child)) for child in children)
    return used


def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _cpu_notes(loads: list[Load]) -> dict[str, str]:
    notes = {}
    for one in loads:
        if one.cpu and "export process" in one.cpu:
            one.cpu["server + export process"] = one.cpu["server"] + one.cpu["export process"]
    for key in ("server", "export process", "server + export process"):
        per_request = [
            one.cpu[key] / one.requests
            for one in loads
            if one.cpu and key in one.cpu and one.requests
        ]
        if per_request:
            notes[f"{key} CPU per request"] = f"{statistics.median(per_request) * 1e6:.0f} µs"
    return notes


def _start_server(name: str, folder: str) -> tuple[subprocess.Popen[bytes], str]:
    port_file = Path(folder, name)
    command = [sys.executable, __file__, "--serve", name, "--port-file", str(port_file)]
    process = subprocess.Popen(command)
    _wait_until(lambda: port_file.exists() and port_file.read_text(), f"server {name}")
    return process, f"http://127.0.0.1:{port_file.read_text()}/hello/world"


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait_until(ready: Any, what: str) -> None:
    deadline = time.monotonic() + 30
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


def _latency_notes(loads: list[Load]) -> dict[str, str]:
    p50s = [one.p50_ms for one in loads if one.p50_ms is not None]
    p99s = [one.p99_ms for one in loads if one.p99_ms is not None]
    if not p50s or not p99s:
        return {}
    return {"p50": f"{statistics.median(p50s):.2f} ms", "p99": f"{statistics.median(p99s):.2f} ms"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, to check it runs")
    parser.add_argument("--json", help="write the results to this file (for run.py)")
    parser.add_argument("--only", action="append", choices=list(VARIANTS), help="these variants")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--serve", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port_file)
        return 0
    rounds, seconds = (1, 1.0) if args.quick else (args.rounds, args.seconds)
    use_wrk = bool(shutil.which("wrk"))
    results = measure(args.only or list(VARIANTS), rounds, seconds, use_wrk)
    if args.json:
        write_results(args.json, results)
    by_label = {result.variant: result for result in results}
    print(f"load: {'wrk -t1 -c32' if use_wrk else 'Python aiohttp client, 8 at a time'}")
    print("| variant | requests/s | ratio | to | notes |")
    print("|---|---:|---:|---|---|")
    for result in results:
        reference = by_label.get(result.reference or "")
        shown = f"{ratio(result, reference):.2f}x" if reference else ""
        notes = ", ".join(f"{key} {value}" for key, value in result.notes.items())
        print(
            f"| {result.variant} | {result.median:.0f} | {shown} "
            f"| {result.reference or ''} | {notes} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
