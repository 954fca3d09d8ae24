"""FastAPI under uvicorn: threadline.asgi against an empty middleware, its peers and contrib.

The user's workload (DESIGN.md, "Budgets"): every request carries a fresh
``traceparent``, a 3-member ``baggage`` and an ``X-Request-ID`` (a uuid4, so
asgi-correlation-id keeps it too), made per request by a wrk Lua script;
threadline's access line is on with the ids in the log format (uvicorn runs
with ``access_log=False``, its ``--no-access-log``); spans go through the
pipeline `threadline.tracing.configure()` sets up, with a batch processor
exporting to nowhere. Each variant is one uvicorn server (one worker,
uvloop and httptools, as ``uvicorn[standard]`` deploys it) in a process of
its own on a free loopback port, the whole process pinned to core 0; wrk
(``-t1 -c32 --latency``) runs on core 1. Variants are measured round by round
in shuffled order, side by side; ratios are taken round by round, of requests
per second and of requests per CPU-second of the server process (what the
middleware costs, whatever else the machine runs: on a loaded machine a server
waits for its core, and requests per second measure the wait too). Log lines
go to ``os.devnull`` through a `logging.FileHandler`, formatted.

Every app is a FastAPI app with one route, ``GET /hello/{name}`` answering
``ok``; FastAPI's own telemetry (0.165: a SERVER span and operation spans as
soon as a tracer provider is set) is off in every variant but the one that
measures it, so each span row measures its middleware's span alone.

Run:  .venv/bin/python benchmarks/asgi_bench.py          (full; wants wrk)
      .venv/bin/python benchmarks/asgi_bench.py --quick  (smoke: checks it runs)
"""

from __future__ import annotations

import argparse
import contextvars
import functools
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _report import RATE, Result, rate_table, write_results
from aiohttp_bench import (
    BAGGAGE,
    CONNECTIONS,
    LOGS_ENV,
    LUA,
    THREADLINE_FORMAT,
    WARM_UP,
    Load,
    _cpu_notes,
    _cpu_seconds,
    _latency_notes,
    _listening,
    _wait_until,
    discarding_pipeline,
    fresh_server,
    per_cpu_second,
)

__all__ = ["BAGGAGE", "LUA", "THREADLINE_FORMAT"]  # the workload, shared with aiohttp_bench

BENCHMARK = "asgi"


@dataclass(frozen=True)
class Variant:
    """One server set-up: its label and what its ratios are taken against."""

    label: str
    reference: str | None = None
    target: str | None = None
    also: tuple[tuple[str, str], ...] = ()


VARIANTS = {
    "empty": Variant("FastAPI, an empty ASGI middleware"),
    "empty-log": Variant(
        "FastAPI, an ASGI middleware writing an access line (no ids)", reference="empty"
    ),
    "context": Variant(
        "threadline.asgi, context only, access line on",
        reference="empty",
        target=">= 0.95x",
        # the aiohttp rows' reading: against a middleware that writes an access line too
        also=(("empty-log", ">= 0.95x"),),
    ),
    "context-quiet": Variant("threadline.asgi, context only, access line off", reference="empty"),
    "correlation": Variant(
        "asgi-correlation-id, uvicorn's access line with its id", reference="empty"
    ),
    "contextvars": Variant(
        "a plain contextvars middleware + logging.Filter (request id), its access line",
        reference="empty",
    ),
    "sdkspan": Variant("an SDK-span ASGI middleware (start_span + attach)", reference="empty"),
    "span": Variant(
        "threadline.asgi, a span per request, access line on",
        reference="sdkspan",
        target=">= 0.95x",
        also=(("contrib", ">= 2x"), ("contrib-lean", ">= 2x")),
    ),
    "contrib": Variant(
        "contrib FastAPIInstrumentor (defaults), uvicorn's access line with trace ids",
        reference="sdkspan",
    ),
    "contrib-lean": Variant(
        "contrib FastAPIInstrumentor, no send/receive spans, uvicorn's access line with trace ids",
        reference="sdkspan",
    ),
    "fastapi": Variant(
        "FastAPI's own telemetry (SERVER span + operation spans), no access line",
        reference="sdkspan",
    ),
}
"""The variants; docs/performance.md says what each one is."""

_SPANS = ("sdkspan", "span", "contrib", "contrib-lean", "fastapi")


# --------------------------------------------------------------------------- the servers


def serve(name: str, port_file: str) -> None:
    """Run one variant's uvicorn server until SIGTERM (in its own process)."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})  # first: every thread the process starts inherits it
    import uvicorn

    if name in _SPANS:
        discarding_pipeline()
    access_log = _set_up_logging(name)
    app = _app(name)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_config=None,
        log_level="info" if access_log else "warning",  # uvicorn sets its access logger's level
        access_log=access_log,
    )
    server = uvicorn.Server(config)
    Path(port_file).write_text(str(sock.getsockname()[1]))
    server.run(sockets=[sock])


def _set_up_logging(name: str) -> bool:
    """Lines to os.devnull with each library's ids in the format; return uvicorn's access_log."""
    import logging

    folder = os.environ.get(LOGS_ENV)  # the smoke test reads the lines
    handler = logging.FileHandler(Path(folder, f"{name}.log") if folder else os.devnull)
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    if name == "empty-log":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logging.getLogger("bench.access").setLevel(logging.INFO)
        return False
    if name in ("context", "span"):
        import threadline.logging

        threadline.logging.install()
        handler.setFormatter(logging.Formatter(THREADLINE_FORMAT))
        logging.getLogger("threadline.asgi").setLevel(logging.INFO)
        return False
    if name == "contextvars":
        current = _REQUEST_ID

        class RequestIdFilter(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                record.request_id = current.get("-")
                return True

        handler.addFilter(RequestIdFilter())
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s %(message)s"
            )
        )
        logging.getLogger("bench.access").setLevel(logging.INFO)
        return False
    if name == "correlation":
        from asgi_correlation_id import CorrelationIdFilter

        handler.addFilter(CorrelationIdFilter())
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s")
        )
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
        return True
    if name.startswith("contrib"):
        from opentelemetry.instrumentation.logging import LoggingInstrumentor

        LoggingInstrumentor().instrument(set_logging_format=False, inject_trace_context=True)
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s trace_id=%(otelTraceID)s "
                "span_id=%(otelSpanID)s %(message)s"
            )
        )
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
        return True
    return False


def _app(name: str) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    if name == "fastapi":
        app = FastAPI()
    else:
        app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})

    @app.get("/hello/{name}")
    async def hello(name: str) -> PlainTextResponse:
        return PlainTextResponse("ok")

    if name == "empty":
        app.add_middleware(_Empty)
    elif name == "empty-log":
        app.add_middleware(_AccessLine)
    elif name in ("context", "context-quiet", "span"):
        import threadline.asgi

        return threadline.asgi.setup(app, access_log=name != "context-quiet")
    elif name == "contextvars":
        app.add_middleware(_RequestContext)
    elif name == "correlation":
        from asgi_correlation_id import CorrelationIdMiddleware

        app.add_middleware(CorrelationIdMiddleware)
    elif name == "sdkspan":
        app.add_middleware(_SpanOnly)
    elif name.startswith("contrib"):
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        lean = {"exclude_spans": ["receive", "send"]} if name == "contrib-lean" else {}
        FastAPIInstrumentor.instrument_app(app, **lean)
    return app


class _Empty:
    """A pure ASGI middleware that does nothing: the floor of any middleware."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class _AccessLine:
    """A pure ASGI middleware writing one access line, as threadline's says it: the floor of one."""

    def __init__(self, app: Any) -> None:
        import logging

        self.app = app
        self.log = logging.getLogger("bench.access")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        import time

        started = time.perf_counter()
        status = [0]

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            took = (time.perf_counter() - started) * 1e3
            self.log.info("%s %s %d %.1fms", scope["method"], scope["path"], status[0], took)


_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("bench_request_id")
"""The contextvars peer's request id (set by its middleware, read by its `logging.Filter`)."""


class _RequestContext:
    """The minimum a user hand-writes: the request id in a ContextVar, an access line with it.

    The incoming ``X-Request-ID`` (or a new uuid4) is set for the request and
    sent back; a `logging.Filter` puts it on every record.
    """

    def __init__(self, app: Any) -> None:
        import logging

        self.app = app
        self.log = logging.getLogger("bench.access")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        import time
        import uuid

        request_id = ""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                request_id = value.decode("latin-1")
                break
        request_id = request_id or str(uuid.uuid4())
        header = (b"x-request-id", request_id.encode("latin-1"))
        token = _REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = [0]

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            took = (time.perf_counter() - started) * 1e3
            self.log.info("%s %s %d %.1fms", scope["method"], scope["path"], status[0], took)
            _REQUEST_ID.reset(token)


class _SpanOnly:
    """The cheapest SDK-span middleware: start_span + attach, the status from send, end.

    The attributes are constants (those of threadline's span of this request);
    nothing is read from the request, no incoming context is extracted.
    """

    def __init__(self, app: Any) -> None:
        from opentelemetry import trace

        self.app = app
        self.tracer = trace.get_tracer("bench")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from micro_bench import SERVER_ATTRIBUTES
        from opentelemetry import context, trace
        from opentelemetry.trace import SpanKind

        span = self.tracer.start_span(
            "GET /hello/{name}", kind=SpanKind.SERVER, attributes=SERVER_ATTRIBUTES
        )
        token = context.attach(trace.set_span_in_context(span))

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                span.set_attribute("http.response.status_code", message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            context.detach(token)
            span.end()


# --------------------------------------------------------------------------- the load


_WRK_LATENCY = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_SCALE = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def load(url: str, seconds: float, script: str) -> Load:
    """Load *url* with wrk for *seconds*, each request's headers made by the Lua *script*."""
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", "--latency", f"-d{max(1, round(seconds))}s"]
    command += ["-s", script, url]
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


def _start_server(name: str, folder: str) -> tuple[subprocess.Popen[bytes], str]:
    port_file = Path(folder, name)
    command = [sys.executable, __file__, "--serve", name, "--port-file", str(port_file)]
    process = subprocess.Popen(command)
    _wait_until(lambda: port_file.exists() and port_file.read_text(), f"server {name}")
    port = int(port_file.read_text())
    _wait_until(lambda: _listening(port), f"server {name}")
    return process, f"http://127.0.0.1:{port}/hello/world"


def measure(names: list[str], rounds: int, seconds: float) -> list[Result]:
    """Load the variants round by round in shuffled order, each round a fresh server process
    (as `aiohttp_bench.measure` does, and why)."""
    folder = tempfile.mkdtemp()
    script = Path(folder, "headers.lua")
    script.write_text(LUA)
    loads: dict[str, list[Load]] = {name: [] for name in names}
    order = list(names)
    try:
        for _ in range(rounds):
            random.shuffle(order)
            for name in order:
                start = functools.partial(_start_server, name, folder)
                with fresh_server(name, folder, start) as (server, url):
                    load(url, WARM_UP, str(script))
                    before = _cpu_seconds(server.pid)
                    done = load(url, seconds, str(script))
                    after = _cpu_seconds(server.pid)
                done.cpu = {key: after[key] - before.get(key, 0.0) for key in after}
                loads[name].append(done)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results = []
    for name in names:  # per second of the clock, then per CPU-second of the server
        variant = VARIANTS[name]
        notes = _latency_notes(loads[name])
        notes.update(_cpu_notes(loads[name]))
        timeouts = sum(one.timeouts for one in loads[name])
        if timeouts:
            notes["no answer within 2 s (wrk's timeouts)"] = str(timeouts)
        results.append(_result(variant, [one.rate for one in loads[name]], notes))
    results += [_result(VARIANTS[name], per_cpu_second(loads[name]), {}, CPU) for name in names]
    return results


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
    if not shutil.which("wrk"):
        print("asgi_bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    rounds, seconds = (1, 1.0) if args.quick else (args.rounds, args.seconds)
    results = measure(args.only or list(VARIANTS), rounds, seconds)
    if args.json:
        write_results(args.json, results)
    print(f"load: wrk -t1 -c{CONNECTIONS}, traceparent + baggage (3) + X-Request-ID per request")
    print(rate_table(results, "requests/s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
