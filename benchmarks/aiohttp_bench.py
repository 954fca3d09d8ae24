"""aiohttp throughput and latency: threadline against bare aiohttp, its peers and contrib.

The user's workload (DESIGN.md, "Budgets"): every request carries a fresh
``traceparent``, a 3-member ``baggage`` and an ``X-Request-ID`` (a uuid4), made
per request by a wrk Lua script (`LUA`); every variant writes an access line
per request with the ids it has, and the root logger is at INFO with a
formatter that prints them (to ``os.devnull``, or to NAME.log in the folder
`LOGS_ENV` names); spans go through `threadline.tracing.configure()`'s
pipeline with a batch processor exporting to nowhere (threadline's, the
SDK-span middleware's and contrib's alike; ddtrace through its own writer to a
loopback sink answering as an agent would).

Each variant is a server process of its own on a free loopback port, the whole
process pinned to core 0; wrk (``-t1 -c32 --latency``) runs on core 1, or a
Python client where wrk is missing. Variants are measured round by round in
shuffled order, side by side; ratios are taken round by round, of requests per
second and of requests per CPU-second of the server process. Two handlers:

- ``ok``: answers at once, so the figures are the per-request overhead;
- ``work``: awaits a 1 ms sleep and logs two lines with the ids, a request
  that does something.

The rows with spans exported to a real Collector are ``export_bench.py``'s.

Run:  .venv/bin/python benchmarks/aiohttp_bench.py          (full; wants wrk)
      .venv/bin/python benchmarks/aiohttp_bench.py --quick  (smoke: checks it runs)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _report import RATE, Result, rate_table, write_results

ROOT = Path(__file__).resolve().parent.parent
BENCHMARK = "aiohttp"

BAGGAGE = "request.user_id=u-4711;tl,tenant=acme,region=eu-west-1"
"""The incoming baggage: 3 members, the first a threadline caller's user id (as it sends it)."""

LUA = f"""\
math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1e6))
local hex = "0123456789abcdef"
local function id(n)
  local t = {{}}
  for i = 1, n do
    local r = math.random(1, 16)
    t[i] = hex:sub(r, r)
  end
  return table.concat(t)
end
request = function()
  wrk.headers["traceparent"] = "00-" .. id(32) .. "-" .. id(16) .. "-01"
  wrk.headers["baggage"] = "{BAGGAGE}"
  wrk.headers["X-Request-ID"] =
    id(8) .. "-" .. id(4) .. "-4" .. id(3) .. "-a" .. id(3) .. "-" .. id(12)
  return wrk.format(nil, nil)
end
"""
"""A fresh trace id, parent span id and request id per request, seeded per run of wrk
(LuaJIT's own seed is fixed): no cache is hit by repetition."""

LOGS_ENV = "THREADLINE_BENCH_LOGS"
"""A folder: each server writes its log lines to NAME.log there instead of os.devnull."""

THREADLINE_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s user_id=%(user_id)s "
    "trace_id=%(trace_id)s span_id=%(span_id)s %(message)s"
)
"""threadline's rows: the four fields `threadline.logging.install()` puts on every record."""

PLAIN_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s trace_id=%(trace_id)s %(message)s"
)
"""The bare rows: the ids a handler passes by hand (``extra=``), ``-`` on other records."""

ACCESS_FORMAT = '%a %t "%r" %s %b %Tf request_id=%{X-Request-ID}i traceparent=%{traceparent}i'
"""aiohttp's own access line where a variant keeps it: the incoming ids, read from the headers."""


@dataclass(frozen=True)
class Variant:
    """One server set-up: its label, handler, and what its ratios are taken against."""

    label: str
    handler: str = "ok"
    reference: str | None = None
    target: str | None = None
    also: tuple[tuple[str, str], ...] = ()


VARIANTS = {
    "bare": Variant("bare aiohttp, its access line"),
    "noop": Variant("an empty middleware, a plain access line", reference="bare"),
    "contextvars": Variant(
        "a plain contextvars middleware + logging.Filter (request id), its access line",
        reference="noop",
    ),
    "context": Variant(
        "threadline, context only, access line on", reference="noop", target=">= 0.95x"
    ),
    "live-off": Variant(
        "threadline, context only, the live view's module loaded but not served",
        reference="context",
        target=">= 0.97x",
    ),
    "live-on": Variant(
        "threadline, context only, the live view served (nobody watching)",
        reference="context",
        target=">= 0.95x",
    ),
    "live-watched": Variant(
        "threadline, context only, the live view served and watched (polled every second)",
        reference="context",
    ),
    "live-ab": Variant(
        "threadline, context only, the live view not served "
        "(A/B: alternate half-second phases of one load, one server process)"
    ),
    "live-ab-on": Variant(
        "threadline, context only, the live view served, nobody watching "
        "(A/B: the same load and server process, the other phases)",
        reference="live-ab",
        target=">= 0.95x",
    ),
    "live-span-ab": Variant(
        "threadline, a span per request, the live view not served "
        "(A/B: alternate half-second phases of one load, one server process)"
    ),
    "live-span-ab-on": Variant(
        "threadline, a span per request, the live view served, nobody watching "
        "(A/B: the same load and server process, the other phases)",
        reference="live-span-ab",
        target=">= 0.95x",
    ),
    "sdkspan": Variant(
        "an SDK-span middleware (start_span + attach), a plain access line", reference="bare"
    ),
    "span": Variant(
        "threadline, a span per request, access line on",
        reference="sdkspan",
        target=">= 0.95x",
        also=(("contrib", ">= 2x"), ("bare", ">= 0.6x")),
    ),
    "contrib": Variant(
        "contrib aiohttp-server, a span per request, aiohttp's access line", reference="bare"
    ),
    "ddtrace": Variant(
        "ddtrace trace_app, a span per request, its log injection, aiohttp's access line",
        reference="bare",
    ),
    "bare-work": Variant("bare aiohttp, work handler, ids given by hand", handler="work"),
    "contextvars-work": Variant(
        "a plain contextvars middleware + logging.Filter (request id), work handler",
        handler="work",
        reference="bare-work",
    ),
    "context-work": Variant(
        "threadline, context only, work handler", handler="work", reference="bare-work"
    ),
    "span-work": Variant(
        "threadline, a span per request, work handler",
        handler="work",
        reference="contrib-work",
    ),
    "contrib-work": Variant(
        "contrib aiohttp-server + LoggingInstrumentor (trace ids), work handler",
        handler="work",
        reference="bare-work",
    ),
    "ddtrace-work": Variant(
        "ddtrace trace_app + its log injection, work handler",
        handler="work",
        reference="bare-work",
    ),
}
"""The variants; docs/performance.md says what each one is."""

_THREADLINE = ("context", "span", "live")
"""The kinds (a variant's name up to its first ``-``) that run threadline's middleware."""


# --------------------------------------------------------------------------- the servers


def serve(name: str, port_file: str, agent: str | None) -> None:
    """Run one variant's server until SIGTERM (in its own process)."""
    variant = VARIANTS[name]
    kind = name.partition("-")[0]
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})  # first: every thread the process starts inherits it
    if kind == "ddtrace":
        _set_up_ddtrace(agent)
    _set_up_tracing("span" if name.startswith("live-span") else kind)
    middlewares = _middlewares(kind)
    if kind == "live":
        from threadline import live

        if name != "live-off" and name not in AB_PAIRS:
            Path(f"{port_file}.view").write_text(live.serve().url)  # (what a poller reads)
    access_log = _set_up_logging(name, kind, variant.handler)
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)

    from aiohttp import web

    route = _handler(variant.handler, kind)
    counted = [0]  # an A/B variant: requests answered, for its phases
    if name in AB_PAIRS:
        handle = route

        async def route(request: web.Request) -> web.Response:
            counted[0] += 1
            response: web.Response = await handle(request)
            return response

    async def main() -> None:
        if name in AB_PAIRS:
            _alternate_live(port_file, counted)
        app = web.Application(middlewares=middlewares)
        app.router.add_get("/hello/{name}", route)
        if kind == "ddtrace":
            from ddtrace.contrib.aiohttp import trace_app

            trace_app(app, service="bench")
        await serve_until_sigterm(app, port_file, **access_log)

    asyncio.run(main())


AB_PHASE = 0.5
"""live-ab: seconds of each phase (the view served, or not) while one load runs."""
AB_SETTLE = 0.05
"""live-ab: seconds after each switch left out of both states (the view's thread starting,
the first request's look for the loop, what the other state left to collect)."""


def _alternate_live(port_file: str, counted: list[int]) -> None:
    """live-ab: serve the live view and close it in turn, for AB_PHASE seconds each, until exit.

    Each pair of phases is in random order; after each phase one line goes to
    PORT_FILE.phases: its state, wall-clock start and end, requests begun and
    process CPU seconds (all threads), taken from AB_SETTLE seconds after the
    switch, so serving and closing the view and what follows at once are
    counted in neither state.
    """
    from threadline import live

    out = Path(f"{port_file}.phases").open("a")  # noqa: SIM115 - open until the server exits

    async def alternate() -> None:
        while True:
            for state in random.sample(AB_STATES, 2):
                served = live.serve() if state == "on" else None
                await asyncio.sleep(AB_SETTLE)
                began, requests, cpu = time.time(), counted[0], time.process_time()
                await asyncio.sleep(AB_PHASE)
                line = (
                    f"{state} {began} {time.time()} {counted[0] - requests} "
                    f"{time.process_time() - cpu}\n"
                )
                out.write(line)  # (a line a phase: small enough to write from the loop)
                out.flush()
                if served is not None:
                    served.close()

    _keep.add(asyncio.get_running_loop().create_task(alternate()))


_keep: set[Any] = set()
"""Tasks that run until the server exits (held: the loop keeps only weak references)."""


def _ab_loads(port_file: Path, began: float, ended: float) -> dict[str, Load]:
    """live-ab's two states over the phases wholly inside [*began*, *ended*], each summed."""
    totals = {state: [0.0, 0, 0.0] for state in AB_STATES}  # seconds, requests, CPU seconds
    # (the server may be writing the last line: only whole lines are read)
    for line in Path(f"{port_file}.phases").read_text().split("\n")[:-1]:
        state, start, end, requests, cpu = line.split()
        if began <= float(start) and float(end) <= ended:
            total = totals[state]
            total[0] += float(end) - float(start)
            total[1] += int(requests)
            total[2] += float(cpu)
    if not all(total[1] for total in totals.values()):
        raise RuntimeError(f"live-ab: no whole phase of each state in the load ({totals})")
    return {
        state: Load(requests / seconds, requests=int(requests), cpu={"server": cpu})
        for state, (seconds, requests, cpu) in totals.items()
    }


async def serve_until_sigterm(app: Any, port_file: str, **runner_options: Any) -> None:
    """Serve *app* on a free loopback port, written to *port_file*, until SIGTERM."""
    from aiohttp import web

    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    Path(port_file).write_text(str(runner.addresses[0][1]))  # noqa: ASYNC240 - once, at start
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


def _handler(handler: str, kind: str) -> Any:
    """The variant's route handler (``ok`` or ``work``)."""
    from aiohttp import web

    log = logging.getLogger("bench.handler")

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def work(request: web.Request) -> web.Response:
        await asyncio.sleep(0.001)
        log.info("looking up %s", request.match_info["name"])
        log.info("answering %s", request.match_info["name"])
        return web.Response(text="ok")

    async def work_by_hand(request: web.Request) -> web.Response:
        """`work`, the ids read from the headers and given to each line by hand."""
        await asyncio.sleep(0.001)
        traceparent = request.headers.get("traceparent", "")
        ids = {
            "request_id": request.headers.get("X-Request-ID", "-"),
            "trace_id": traceparent[3:35] or "-",
        }
        log.info("looking up %s", request.match_info["name"], extra=ids)
        log.info("answering %s", request.match_info["name"], extra=ids)
        return web.Response(text="ok")

    return {"ok": ok, "work": work_by_hand if kind == "bare" else work}[handler]


def discarding_pipeline() -> None:
    """`threadline.tracing.configure()`'s pipeline; a batch processor hands its spans to nowhere."""
    os.environ.update(OTEL_TRACES_EXPORTER="none", OTEL_SERVICE_NAME="bench")
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    import threadline.tracing

    class Discard(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = threadline.tracing.configure()
    if provider is None:
        raise RuntimeError("threadline.tracing.configure() set nothing up")
    provider.add_span_processor(BatchSpanProcessor(Discard()))


def _set_up_ddtrace(agent_url: str | None) -> None:
    """ddtrace as its docs set it up, its agent a loopback sink (`sink`) that answers 200."""
    if not agent_url:
        raise RuntimeError("the ddtrace variants need --agent, the agent sink's URL")
    os.environ.update(
        DD_TRACE_AGENT_URL=agent_url,
        DD_LOGS_INJECTION="true",
        DD_SERVICE="bench",
        # no sidecar process: it would be counted with the server's children
        DD_CRASHTRACKING_ENABLED="false",
    )
    import ddtrace

    ddtrace.patch(aiohttp=True, logging=True)


def _set_up_tracing(kind: str) -> None:
    """Set the variant's tracer provider (`discarding_pipeline`) if it makes OTel SDK spans."""
    if kind in ("span", "contrib", "sdkspan"):
        discarding_pipeline()


_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("bench_request_id")
"""The contextvars peer's request id (set by its middleware, read by its `logging.Filter`)."""


def _middlewares(kind: str) -> list[Any]:
    from aiohttp import web

    if kind in _THREADLINE:
        import threadline.aiohttp

        return [threadline.aiohttp.middleware()]
    if kind == "noop":

        @web.middleware
        async def empty(request: web.Request, handler: Any) -> web.StreamResponse:
            started, status = time.perf_counter(), 500
            try:
                response: web.StreamResponse = await handler(request)
                status = response.status
                return response
            finally:
                _plain_access_line(request, status, started)

        return [empty]
    if kind == "contextvars":
        return [_contextvars_middleware()]
    if kind == "sdkspan":
        from micro_bench import SERVER_ATTRIBUTES
        from opentelemetry import context, trace
        from opentelemetry.trace import SpanKind

        tracer = trace.get_tracer("bench")

        @web.middleware
        async def span_only(request: web.Request, handler: Any) -> web.StreamResponse:
            span = tracer.start_span(
                "GET /hello/{name}", kind=SpanKind.SERVER, attributes=SERVER_ATTRIBUTES
            )
            token = context.attach(trace.set_span_in_context(span))
            started, status = time.perf_counter(), 500
            try:
                response: web.StreamResponse = await handler(request)
                status = response.status
                span.set_attribute("http.response.status_code", status)
                return response
            finally:
                _plain_access_line(request, status, started)
                context.detach(token)
                span.end()

        return [span_only]
    if kind == "contrib":
        from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

        AioHttpServerInstrumentor().instrument()  # adds its middleware to applications made after
    return []


_ACCESS = logging.getLogger("bench.access")


def _plain_access_line(request: Any, status: int, started: float) -> None:
    """The access line as threadline's says it, the ids read from the headers (no context)."""
    traceparent = request.headers.get("traceparent", "")
    ids = {"request_id": request.headers.get("X-Request-ID", "-"), "trace_id": traceparent[3:35]}
    took = (time.perf_counter() - started) * 1e3
    _ACCESS.info("%s %s %d %.1fms", request.method, request.path, status, took, extra=ids)


def _contextvars_middleware() -> Any:
    """The minimum a user hand-writes: the request id in a ContextVar, an access line with it."""
    import uuid

    from aiohttp import web

    current = _REQUEST_ID
    access = _ACCESS

    @web.middleware
    async def request_context(request: web.Request, handler: Any) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-ID") or str(uuid.uuid4())
        token = current.set(request_id)
        started = time.perf_counter()
        status = 500
        try:
            response: web.StreamResponse = await handler(request)
            status = response.status
            response.headers["X-Request-ID"] = request_id
            return response
        finally:
            took = (time.perf_counter() - started) * 1e3
            access.info("%s %s %d %.1fms", request.method, request.path, status, took)
            current.reset(token)

    return request_context


def _set_up_logging(name: str, kind: str, handler_kind: str) -> dict[str, Any]:
    """Root at INFO, each variant's ids in its format; return the AppRunner's access-log options.

    The middlewares write their own access line, as threadline's does (aiohttp's
    is off, as docs/aiohttp.md says to turn it off beside threadline's): threadline and
    the contextvars peer with the request's ids, the empty and the SDK-span middleware
    with the ids read from the headers. Bare aiohttp, contrib and ddtrace, which write
    none, keep aiohttp's own, the incoming ids read from the headers by its format.
    """
    from aiohttp.log import access_logger

    folder = os.environ.get(LOGS_ENV)  # the smoke test reads the lines
    out = logging.FileHandler(Path(folder, f"{name}.log") if folder else os.devnull)
    logging.basicConfig(level=logging.INFO, handlers=[out], force=True)
    aiohttp_line = {"access_log": access_logger, "access_log_format": ACCESS_FORMAT}
    if kind in _THREADLINE:
        import threadline.logging

        threadline.logging.install()
        out.setFormatter(logging.Formatter(THREADLINE_FORMAT))
        return {"access_log": None}
    if kind == "contextvars":
        current = _REQUEST_ID

        class RequestIdFilter(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                record.request_id = current.get("-")
                return True

        out.addFilter(RequestIdFilter())
        out.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s %(message)s"
            )
        )
        return {"access_log": None}
    if kind == "contrib":
        from opentelemetry.instrumentation.logging import LoggingInstrumentor

        # inject_trace_context: without it (0.66b1) no id reaches a record
        LoggingInstrumentor().instrument(set_logging_format=False, inject_trace_context=True)
        out.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s trace_id=%(otelTraceID)s "
                "span_id=%(otelSpanID)s %(message)s"
            )
        )
        return aiohttp_line
    if kind == "ddtrace":
        out.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s dd.trace_id=%(dd.trace_id)s "
                "dd.span_id=%(dd.span_id)s %(message)s"
            )
        )
        return aiohttp_line
    out.setFormatter(logging.Formatter(PLAIN_FORMAT, defaults={"request_id": "-", "trace_id": "-"}))
    return aiohttp_line if kind == "bare" else {"access_log": None}  # theirs, in the middleware


def sink(port_file: str) -> None:
    """A stand-in for the Datadog agent: read each request, answer 200 ``{}`` (until SIGTERM).

    At SIGTERM it writes how many traces it was sent (the ``X-Datadog-Trace-Count``
    of each payload) to *port_file* ``.traces``.
    """
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    traces = [0]
    lock = threading.Lock()

    class Agent(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            with lock:
                traces[0] += int(self.headers.get("X-Datadog-Trace-Count") or 0)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def do_GET(self) -> None:
            self._answer()

        def do_PUT(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # beside wrk, off the servers' core
    server = ThreadingHTTPServer(("127.0.0.1", 0), Agent)

    def stop(*_: object) -> None:
        with lock:
            Path(f"{port_file}.traces").write_text(str(traces[0]))
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait_until(ready: Any, what: str) -> Any:
    deadline = time.monotonic() + 30
    while not (found := ready()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)
    return found


def _watch(name: str, folder: str, done: threading.Event) -> None:
    """For live-watched: read its live view every second, from here, until *done*."""
    if name != "live-watched":
        return
    view = Path(folder, f"{name}.view")
    url = _wait_until(lambda: view.exists() and view.read_text(), "the live view")
    threading.Thread(target=_poll, args=(f"{url}/requests", done), daemon=True).start()


def _poll(url: str, done: threading.Event) -> None:
    while not done.wait(1.0):
        _read_view(url, done)


def _read_view(url: str, done: threading.Event) -> None:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - loopback
            answer.read()
    except OSError:
        if not done.is_set():  # (after it: the server is stopping)
            raise


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


def load_with_wrk(url: str, seconds: float) -> Load:
    """Load *url* for *seconds* with the workload's headers (`LUA`)."""
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", "--latency", f"-d{max(1, round(seconds))}s"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(LUA)
        script.flush()
        command += ["-s", script.name, url]
        if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
            command = ["taskset", "-c", "1", *command]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    # a timeout is an answer slower than wrk's 2 s (a loaded machine): counted, not fatal
    if rate is None or "Non-2xx" in out or (errors and sum(map(int, errors.groups()[:3]))):
        raise RuntimeError(f"wrk did not get its answers: {out}")
    latency = {p: float(v) * _SCALE[unit] for p, v, unit in _WRK_LATENCY.findall(out)}
    done = re.search(r"(\d+) requests in", out)
    return Load(
        float(rate[1]),
        latency.get("50"),
        latency.get("99"),
        int(done[1]) if done else 0,
        timeouts=int(errors[4]) if errors else 0,
    )


def _workload_headers() -> dict[str, str]:
    """What `LUA` sends, for the Python client."""
    import uuid

    trace_id, parent = random.randbytes(16).hex(), random.randbytes(8).hex()
    return {
        "traceparent": f"00-{trace_id}-{parent}-01",
        "baggage": BAGGAGE,
        "X-Request-ID": str(uuid.uuid4()),
    }


def load_with_python(url: str, seconds: float) -> Load:
    """Load *url* for *seconds* from 8 aiohttp clients at a time, with the workload's headers."""
    import aiohttp

    async def run() -> Load:
        done = 0
        deadline = time.monotonic() + seconds
        async with aiohttp.ClientSession() as session:

            async def worker() -> None:
                nonlocal done
                while time.monotonic() < deadline:
                    async with session.get(url, headers=_workload_headers()) as response:
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
    """Load the variants round by round in shuffled order, each round a fresh server process.

    A server process of the same code runs 10-15% faster or slower than another
    one (where its memory landed, its hash seed): kept for the whole run, that
    luck would be one variant's for every round. Started afresh each round (and
    warmed up), the luck is spread over the rounds, and the interval shows it.
    """
    load = load_with_wrk if use_wrk else load_with_python
    folder = tempfile.mkdtemp()
    agents = {name: _start_sink(folder, name) for name in names if name.startswith("ddtrace")}
    sent = dict.fromkeys(names, 0)  # requests answered, warm-up included
    for off, on in AB_PAIRS.items():  # both of a pair, measured in the first one's rounds
        if off in names or on in names:
            names = [name for name in names if name not in (off, on)]
            names += [off, on]
    loads: dict[str, list[Load]] = {name: [] for name in names}
    order = [name for name in names if name not in AB_PAIRS.values()]
    try:
        for _ in range(rounds):
            random.shuffle(order)
            for name in order:
                agent = agents[name][1] if name in agents else None
                start = functools.partial(_start_server, name, folder, agent)
                with fresh_server(name, folder, start) as (server, url):
                    if rounds > 1:  # warm up (a smoke run has no figures to keep)
                        sent[name] += load(url, WARM_UP).requests
                    if name in AB_PAIRS:  # the server alternates the view itself, in phases
                        began = time.time()
                        done = load(url, max(seconds, 8 * AB_PHASE))
                        phases = _ab_loads(Path(folder, name), began, time.time())
                        for state, variant in zip(AB_STATES, (name, AB_PAIRS[name]), strict=True):
                            phases[state].timeouts = done.timeouts  # (the load's, both states')
                            loads[variant].append(phases[state])
                        sent[name] += done.requests
                        continue
                    before = _cpu_seconds(server.pid)
                    done = load(url, seconds)
                    after = _cpu_seconds(server.pid)
                    done.cpu = {key: after[key] - before.get(key, 0.0) for key in after}
                    loads[name].append(done)
                    sent[name] += done.requests
    finally:
        for process, _ in agents.values():  # after the servers: their last traces are in
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    results = [
        _result(VARIANTS[name], [one.rate for one in loads[name]], _notes(loads[name]))
        for name in names
    ]
    for result, name in zip(results, names, strict=True):
        if name in agents:  # wrk leaves out the requests in flight when it stops
            traces = Path(folder, f"{name}.agent.traces").read_text()
            result.notes[AGENT_NOTE] = f"{traces} / {sent[name]}"
    # per CPU-second of the server: what the middleware costs, whatever else the machine runs
    results += [_result(VARIANTS[name], per_cpu_second(loads[name]), {}, CPU) for name in names]
    shutil.rmtree(folder, ignore_errors=True)
    return results


AB_STATES = ("off", "on")
"""An A/B variant's two states: its phases are counted under the pair's first variant, then
its second (`AB_PAIRS`)."""
AB_PAIRS = {"live-ab": "live-ab-on", "live-span-ab": "live-span-ab-on"}
"""The A/B variants: the view not served, and served, in phases of one server's load."""


def _notes(loads: list[Load]) -> dict[str, str]:
    """What a variant's row says beside its median: latency, CPU, timeouts."""
    notes = _latency_notes(loads)
    notes.update(_cpu_notes(loads))
    timeouts = sum(one.timeouts for one in loads)
    if timeouts:
        notes["no answer within 2 s (wrk's timeouts)"] = str(timeouts)
    return notes


def per_cpu_second(loads: list[Load]) -> list[float]:
    """Each round's requests per CPU-second of the server process.

    CPU time is counted in clock ticks: a round that used less than one (a server
    that waited for its core the whole round, on a loaded machine) counts one.
    """
    tick = 1 / os.sysconf("SC_CLK_TCK")
    return [one.requests / max(one.cpu["server"], tick) for one in loads if one.cpu]


AGENT_NOTE = "traces received by the agent stand-in / requests completed in wrk's count"
"""A ddtrace row's note: every trace reached the agent (wrk does not count those in flight)."""

CPU = " (per CPU-second of the server)"
"""What the label of a result in requests per CPU-second of the server process ends with."""


def _result(
    variant: Variant, samples: list[float], notes: dict[str, str], suffix: str = ""
) -> Result:
    return Result(
        BENCHMARK,
        variant.label + suffix,
        samples,
        unit=RATE,
        reference=VARIANTS[variant.reference].label + suffix if variant.reference else None,
        target=variant.target,
        also={VARIANTS[other].label + suffix: bound for other, bound in variant.also},
        notes=notes,
    )


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


def _start_server(
    name: str, folder: str, agent: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port_file = Path(folder, name)
    command = [sys.executable, __file__, "--serve", name, "--port-file", str(port_file)]
    if agent is not None:
        command += ["--agent", agent]
    process = subprocess.Popen(command)
    _wait_until(lambda: port_file.exists() and port_file.read_text(), f"server {name}")
    return process, f"http://127.0.0.1:{port_file.read_text()}/hello/world"


WARM_UP = 1.0
"""Seconds of load each fresh server gets before its round is measured."""


@contextlib.contextmanager
def fresh_server(
    name: str, folder: str, start: Callable[[], tuple[subprocess.Popen[bytes], str]]
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A server of *name* from *start* (and live-watched's poller), stopped after the block."""
    for stale in (name, f"{name}.view"):  # the last round's port and view files
        Path(folder, stale).unlink(missing_ok=True)
    server, url = start()
    watched = threading.Event()
    try:
        _watch(name, folder, watched)
        yield server, url
    finally:
        watched.set()
        server.send_signal(signal.SIGTERM)
        server.wait(60)


def _start_sink(folder: str, name: str = "agent") -> tuple[subprocess.Popen[bytes], str]:
    """A ddtrace variant's agent (`sink`), in a process of its own: it and its URL."""
    port_file = Path(folder, f"{name}.agent")
    process = subprocess.Popen([sys.executable, __file__, "--sink", "--port-file", str(port_file)])
    _wait_until(lambda: port_file.exists() and port_file.read_text(), "the agent sink")
    return process, f"http://127.0.0.1:{port_file.read_text()}"


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
    parser.add_argument("--agent", help=argparse.SUPPRESS)
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port_file, args.agent)
        return 0
    if args.sink:
        sink(args.port_file)
        return 0
    rounds, seconds = (1, 1.0) if args.quick else (args.rounds, args.seconds)
    use_wrk = bool(shutil.which("wrk"))
    results = measure(args.only or list(VARIANTS), rounds, seconds, use_wrk)
    if args.json:
        write_results(args.json, results)
    loader = f"wrk -t1 -c{CONNECTIONS}" if use_wrk else "Python aiohttp client, 8 at a time"
    print(f"load: {loader}, traceparent + baggage (3) + X-Request-ID per request")
    print(rate_table(results, "requests/s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
