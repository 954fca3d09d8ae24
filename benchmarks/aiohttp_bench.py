"""aiohttp throughput and latency: threadline against bare aiohttp and OpenTelemetry contrib.

Each variant is a server process of its own on a free loopback port, pinned to
one core; wrk (``-t1 -c32 --latency``) runs on the other, or a Python client
where wrk is missing. Variants are measured round by round in shuffled order,
side by side; ratios are taken round by round. Three handlers:

- ``ok``: answers at once, so the figures are the per-request overhead;
- ``work``: awaits a 1 ms sleep and logs two lines (to a file, at INFO), a
  request that does something;
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
        target=">= 0.95x",
    ),
    "live-watched": Variant(
        "threadline, context only, the live view served and watched (polled every second)",
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


# --------------------------------------------------------------------------- the servers


def serve(name: str, port_file: str, endpoint: str | None, count_file: str | None) -> None:
    """Run one variant's server until SIGTERM (in its own process)."""
    import logging

    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
    variant = VARIANTS[name]
    kind = name.partition("-")[0]
    ended = _set_up_tracing(name, variant.handler, endpoint)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        # This thread only, after tracing's threads started: an export process they
        # start may run on the other core, as it would beside a busy server.
        os.sched_setaffinity(0, {0})
    middlewares = _middlewares(kind)
    if kind == "live":
        from threadline import live

        if name != "live-off":
            Path(f"{port_file}.view").write_text(live.serve().url)  # (what a poller reads)
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

    async def flush(request: web.Request) -> web.Response:
        """Export what is queued; answer how many spans ended so far (between load steps)."""
        from opentelemetry import trace

        trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
        return web.Response(text=str(ended[0]))

    async def main() -> None:
        app = web.Application(middlewares=middlewares)
        app.router.add_get("/hello/{name}", work if variant.handler == "work" else ok)
        if variant.handler == "otlp":
            app.router.add_get("/_flush", flush)
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
    _flush_and_count(ended, count_file)


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
        from _tracing import discard_spans

        discard_spans()
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
    binary = collector_binary() if any(VARIANTS[n].handler == "otlp" for n in names) else None
    if binary is None:
        names = [n for n in names if VARIANTS[n].handler != "otlp"]
    collectors = {n: Collector(binary, folder, n) for n in names if binary and "otlp" in n}
    servers, urls = {}, {}
    watched = threading.Event()
    try:
        for name in names:
            servers[name], urls[name] = _start_server(name, folder, collectors.get(name))
            _watch(name, folder, watched)
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
        rates = {  # at the rate of full load when nothing was dropped there (see the notes)
            name: sustained(urls[name], collectors[name])
            for name in names
            if name in collectors and use_wrk and _dropped(folder, name, servers, collectors)
        }
    finally:
        watched.set()
        for server in servers.values():
            server.send_signal(signal.SIGTERM)
        for server in servers.values():
            server.wait(60)
    received = {name: collector.stop() for name, collector in collectors.items()}
    results = []
    for name in names:
        variant = VARIANTS[name]
        notes = _latency_notes(loads[name])
        notes.update(_cpu_notes(loads[name]))
        if name in received:
            ended = int(Path(folder, f"{name}.count").read_text())
            notes["spans ended / received by the Collector"] = f"{ended} / {received[name]}"
            notes["dropped at full load"] = str(ended - received[name])
        if name in rates:
            notes["sustained with no span dropped"] = rates[name]
        elif name in received and ended == received[name]:
            notes["sustained with no span dropped"] = f"{variant_rate(loads[name]):,.0f} spans/s"
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
    name: str, folder: str, collector: Collector | None
) -> tuple[subprocess.Popen[bytes], str]:
    port_file = Path(folder, name)
    command = [sys.executable, __file__, "--serve", name, "--port-file", str(port_file)]
    if collector is not None:
        count_file = str(Path(folder, f"{name}.count"))
        command += ["--endpoint", collector.endpoint, "--count-file", count_file]
    process = subprocess.Popen(command)
    _wait_until(lambda: port_file.exists() and port_file.read_text(), f"server {name}")
    return process, f"http://127.0.0.1:{port_file.read_text()}/hello/world"


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
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port_file, args.endpoint, args.count_file)
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
