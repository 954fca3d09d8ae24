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
process pinned to core 0 (the export rows: its main thread, so an export
process may use the other core); wrk (``-t1 -c32 --latency``) runs on core 1,
or a Python client where wrk is missing. Variants are measured round by round
in shuffled order, side by side; ratios are taken round by round, of requests
per second and of requests per CPU-second of the server process. Three
handlers:

- ``ok``: answers at once, so the figures are the per-request overhead;
- ``work``: awaits a 1 ms sleep and logs two lines with the ids, a request
  that does something;
- ``otlp``: ``ok`` with every span exported over OTLP/HTTP (protobuf) to a real
  OpenTelemetry Collector on loopback (one per variant, counting the spans it
  receives, so drops are measured rather than assumed).

Run:  .venv/bin/python benchmarks/aiohttp_bench.py          (full; wants wrk)
      .venv/bin/python benchmarks/aiohttp_bench.py --quick  (smoke: checks it runs)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _report import RATE, Result, ratio, write_results

ROOT = Path(__file__).resolve().parent.parent
BENCHMARK = "aiohttp"

BAGGAGE = "request.user_id=u-4711;tl,tenant=acme,region=eu-west-1"
"""The incoming baggage: 3 members, the first a threadline caller's user id (as it sends it)."""

LUA = f"""\
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
"""A fresh trace id, parent span id and request id per request: no cache is hit by repetition."""

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
    "span-otlp": Variant(
        "threadline, a span per request, OTLP to a Collector from its export process",
        handler="otlp",
        reference="contrib-otlp",
        target=">= 2x",
        also=(("bare", ">= 0.6x"),),
    ),
    "span-otlpinline": Variant(
        "threadline, a span per request, OTLP to a Collector, exported in-process",
        handler="otlp",
        reference="contrib-otlp",
    ),
    "contrib-otlp": Variant(
        "contrib aiohttp-server, a span per request, OTLP to a Collector",
        handler="otlp",
        reference="bare",
    ),
}
"""The variants; docs/performance.md says what each one is."""

_THREADLINE = ("context", "span", "live")
"""The kinds (a variant's name up to its first ``-``) that run threadline's middleware."""


# --------------------------------------------------------------------------- the servers


def serve(name: str, port_file: str, endpoint: str | None, count_file: str | None) -> None:
    """Run one variant's server until SIGTERM (in its own process)."""
    variant = VARIANTS[name]
    kind = name.partition("-")[0]
    pinned = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1
    if pinned and variant.handler != "otlp":
        os.sched_setaffinity(0, {0})  # first: every thread the process starts inherits it
    if kind == "ddtrace":
        _set_up_ddtrace(endpoint)
    ended = _set_up_tracing(name, variant.handler, endpoint)
    if pinned and variant.handler == "otlp":
        # This thread only, after tracing's threads started: an export process they
        # start may run on the other core, as it would beside a busy server.
        os.sched_setaffinity(0, {0})
    middlewares = _middlewares(kind)
    if kind == "live":
        from threadline import live

        if name == "live-on":
            live.serve()
    access_log = _set_up_logging(name, kind, variant.handler)
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)

    from aiohttp import web

    route = _handler(variant.handler, kind, ended)

    async def main() -> None:
        app = web.Application(middlewares=middlewares)
        app.router.add_get("/hello/{name}", route)
        if variant.handler == "otlp":
            app.router.add_get("/_flush", _handler("flush", kind, ended))
        if kind == "ddtrace":
            from ddtrace.contrib.aiohttp import trace_app

            trace_app(app, service="bench")
        runner = web.AppRunner(app, **access_log)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        Path(port_file).write_text(str(runner.addresses[0][1]))  # noqa: ASYNC240 - once, at start
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())
    _flush_and_count(ended, count_file)


def _handler(handler: str, kind: str, ended: list[int]) -> Any:
    """The variant's route handler (``ok``, ``work``, ``otlp``) or the export rows' ``flush``."""
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

    async def flush(request: web.Request) -> web.Response:
        """Export what is queued; answer how many spans ended so far (between load steps)."""
        from opentelemetry import trace

        trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
        return web.Response(text=str(ended[0]))

    handlers = {"ok": ok, "otlp": ok, "work": work_by_hand if kind == "bare" else work}
    return {**handlers, "flush": flush}[handler]


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
        raise RuntimeError("the ddtrace variants need --endpoint, the agent sink's URL")
    os.environ.update(
        DD_TRACE_AGENT_URL=agent_url,
        DD_LOGS_INJECTION="true",
        DD_SERVICE="bench",
        # no sidecar process: it would be counted with the server's children
        DD_CRASHTRACKING_ENABLED="false",
    )
    import ddtrace

    ddtrace.patch(aiohttp=True, logging=True)


def _set_up_tracing(name: str, handler: str, endpoint: str | None) -> list[int]:
    """Set the variant's tracer provider; return a one-item list counting the spans ended."""
    ended = [0]
    kind = name.partition("-")[0]
    if kind not in ("span", "contrib", "sdkspan"):
        return ended
    from opentelemetry import trace
    from opentelemetry.sdk.trace import SpanProcessor

    class CountEnded(SpanProcessor):
        def on_end(self, span: Any) -> None:
            ended[0] += 1

    if handler != "otlp":
        discarding_pipeline()
    elif kind == "span":
        os.environ.update(
            THREADLINE_EXPORT_PROCESS="0" if "inline" in name else "1",
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{endpoint}/v1/traces",
            OTEL_SERVICE_NAME="bench",
        )
        import threadline.tracing

        threadline.tracing.configure()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"))
        )
        trace.set_tracer_provider(provider)
    trace.get_tracer_provider().add_span_processor(CountEnded())  # type: ignore[attr-defined]
    return ended


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
    if handler_kind == "otlp":  # the export rows: as they were, no line
        logging.getLogger().setLevel(logging.WARNING)
        return {"access_log": None}
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


def _flush_and_count(ended: list[int], count_file: str | None) -> None:
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        flush()
    if count_file:
        Path(count_file).write_text(str(ended[0]))


# --------------------------------------------------------------------------- the Collectors


_COLLECTOR_CONFIG = """\
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
processors:
  batch:
    timeout: 200ms
    send_batch_size: 512
exporters:
  debug:
    verbosity: basic
    sampling_initial: 1
    sampling_thereafter: 1000
service:
  telemetry:
    metrics:
      level: basic
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {metrics_port}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug]
"""
_ACCEPTED = re.compile(r"^otelcol_receiver_accepted_spans\{[^}]*\} (\d+)", re.MULTILINE)


def collector_binary() -> str | None:
    """The Collector that scripts/build-collector built (and cached), if it can be had."""
    given = os.environ.get("THREADLINE_COLLECTOR")
    if given:
        return given
    built = subprocess.run(
        [str(ROOT / "scripts" / "build-collector")], capture_output=True, text=True, check=False
    )
    return built.stdout.strip() if built.returncode == 0 else None


class Collector:
    """A real Collector on a free loopback port whose debug exporter logs each batch's size."""

    def __init__(self, binary: str, folder: str, name: str) -> None:
        self.port, self.metrics_port = _free_port(), _free_port()
        self.log = Path(folder, f"collector-{name}.log")
        config = Path(folder, f"collector-{name}.yaml")
        config.write_text(_COLLECTOR_CONFIG.format(port=self.port, metrics_port=self.metrics_port))
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [binary, "--config", str(config)], stdout=out, stderr=subprocess.STDOUT
            )
        _wait_until(lambda: _listening(self.port), f"the Collector for {name}")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def received(self) -> int:
        """How many spans its receiver accepted so far (its own count, on its metrics port)."""
        import urllib.request

        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as answer:
            return sum(int(count) for count in _ACCEPTED.findall(answer.read().decode()))

    def settled(self) -> int:
        """`received`, once it has stopped growing."""
        last, now = -1, self.received()
        while now != last:
            time.sleep(0.6)
            last, now = now, self.received()
        return now

    def stop(self) -> int:
        """Stop it and return how many spans it received."""
        received = self.settled()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        return received


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
    """Load *url* for *seconds* with the workload's headers (`LUA`).

    With *pause_ms* each connection pauses so long between requests.
    """
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", "--latency", f"-d{max(1, round(seconds))}s"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(LUA)
        if pause_ms is not None:
            script.write(f"function delay() return {pause_ms:.3f} end\n")
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
    """Start every server, load them round by round in shuffled order, stop them."""
    load = load_with_wrk if use_wrk else load_with_python
    folder = tempfile.mkdtemp()
    binary = collector_binary() if any(VARIANTS[n].handler == "otlp" for n in names) else None
    if binary is None:
        names = [n for n in names if VARIANTS[n].handler != "otlp"]
    collectors = {n: Collector(binary, folder, n) for n in names if binary and "otlp" in n}
    servers, urls = {}, {}
    agents = {name: _start_sink(folder, name) for name in names if name.startswith("ddtrace")}
    sent = dict.fromkeys(names, 0)  # requests answered, warm-up included
    try:
        for name in names:
            agent = agents[name][1] if name in agents else None
            servers[name], urls[name] = _start_server(name, folder, collectors.get(name), agent)
        for name in names if rounds > 1 else ():  # warm up (a smoke run has no figures to keep)
            sent[name] += load(urls[name], 1.0).requests
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
                sent[name] += done.requests
        rates = {  # at the rate of full load when nothing was dropped there (see the notes)
            name: sustained(urls[name], collectors[name])
            for name in names
            if name in collectors and use_wrk and _dropped(folder, name, servers, collectors)
        }
    finally:
        for server in servers.values():
            server.send_signal(signal.SIGTERM)
        for server in servers.values():
            server.wait(60)
        for process, _ in agents.values():  # after the servers: their last traces are in
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    received = {name: collector.stop() for name, collector in collectors.items()}
    results = [
        _result(
            VARIANTS[name],
            [one.rate for one in loads[name]],
            _notes(name, loads[name], received, rates, folder),
        )
        for name in names
    ]
    for result, name in zip(results, names, strict=True):
        if name in agents:  # wrk leaves out the requests in flight when it stops
            traces = Path(folder, f"{name}.agent.traces").read_text()
            result.notes[AGENT_NOTE] = f"{traces} / {sent[name]}"
    # per CPU-second of the server: what the middleware costs, whatever else the machine runs
    # (not the export rows: their export process works for them too)
    results += [
        _result(VARIANTS[name], per_cpu_second(loads[name]), {}, CPU)
        for name in names
        if VARIANTS[name].handler != "otlp"
    ]
    shutil.rmtree(folder, ignore_errors=True)
    return results


def _notes(
    name: str, loads: list[Load], received: dict[str, int], rates: dict[str, str], folder: str
) -> dict[str, str]:
    """What a variant's row says beside its median: latency, CPU, timeouts, spans exported."""
    notes = _latency_notes(loads)
    notes.update(_cpu_notes(loads))
    if name in received:
        ended = int(Path(folder, f"{name}.count").read_text())
        notes["spans ended / received by the Collector"] = f"{ended} / {received[name]}"
        notes["dropped at full load"] = str(ended - received[name])
        if name in rates:
            notes["sustained with no span dropped"] = rates[name]
        elif ended == received[name]:
            notes["sustained with no span dropped"] = f"{variant_rate(loads):,.0f} spans/s"
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


def variant_rate(loads: list[Load]) -> float:
    """The median requests/s of *loads* (a span each: spans/s)."""
    return statistics.median(one.rate for one in loads)


def _dropped(
    folder: str,
    name: str,
    servers: dict[str, subprocess.Popen[bytes]],
    collectors: dict[str, Collector],
) -> bool:
    """Whether spans ended so far in *name*'s server are missing at its Collector."""
    flush = f"http://127.0.0.1:{Path(folder, name).read_text()}/_flush"
    return _ended(flush) > collectors[name].settled()


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


SUSTAINED_RATES = (1000, 2000, 4000, 6000, 8000, 12000, 16000, 24000)
"""The request rates tried, in order, until spans are dropped (a span per request)."""


def sustained(url: str, collector: Collector, seconds: float = 4.0) -> str:
    """The highest rate of `SUSTAINED_RATES` at which every span reached the Collector."""
    flush = url.replace("/hello/world", "/_flush")
    ended_before, received_before = _ended(flush), collector.settled()
    best = "none of the rates tried"
    for rate in SUSTAINED_RATES:
        done = load_with_wrk(url, seconds, pause_ms=CONNECTIONS * 1000 / rate)
        ended, received = _ended(flush), collector.settled()
        if ended - ended_before > received - received_before:
            break
        best = f"{done.rate:,.0f} spans/s (paced at {rate}/s)"
        ended_before, received_before = ended, received
    return best


def _ended(flush_url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(flush_url, timeout=60) as answer:  # noqa: S310 - loopback
        return int(answer.read())


def _start_server(
    name: str, folder: str, collector: Collector | None, agent: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port_file = Path(folder, name)
    command = [sys.executable, __file__, "--serve", name, "--port-file", str(port_file)]
    if collector is not None:
        count_file = str(Path(folder, f"{name}.count"))
        command += ["--endpoint", collector.endpoint, "--count-file", count_file]
    elif agent is not None:
        command += ["--endpoint", agent]
    process = subprocess.Popen(command)
    _wait_until(lambda: port_file.exists() and port_file.read_text(), f"server {name}")
    return process, f"http://127.0.0.1:{port_file.read_text()}/hello/world"


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
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--count-file", help=argparse.SUPPRESS)
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port_file, args.endpoint, args.count_file)
        return 0
    if args.sink:
        sink(args.port_file)
        return 0
    rounds, seconds = (1, 1.0) if args.quick else (args.rounds, args.seconds)
    use_wrk = bool(shutil.which("wrk"))
    results = measure(args.only or list(VARIANTS), rounds, seconds, use_wrk)
    if args.json:
        write_results(args.json, results)
    by_label = {result.variant: result for result in results}
    loader = f"wrk -t1 -c{CONNECTIONS}" if use_wrk else "Python aiohttp client, 8 at a time"
    print(f"load: {loader}, traceparent + baggage (3) + X-Request-ID per request")
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
