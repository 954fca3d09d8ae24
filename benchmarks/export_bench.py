"""aiohttp with every span exported over OTLP to a real Collector, at equal CPU, no span dropped.

Each variant is an aiohttp server in a process of its own on a free loopback
port, loaded with wrk (``-t1 -c32``) under the user's workload: every request
carries a fresh ``traceparent``, a 3-member ``baggage`` and an
``X-Request-ID`` (aiohttp_bench.py's wrk Lua script), and writes an access line
with its ids (to ``os.devnull``, formatted). Its spans go over OTLP/HTTP
(protobuf) to one real OpenTelemetry Collector (scripts/build-collector,
started as the tests start it: ``tests/collector.py``), whose file exporter
is where spans are counted.

**Equal CPU.** Every variant's whole process tree (the server, its threads,
threadline's export process) is pinned to core 0: the server pins itself
before it starts a thread or a process, and each child inherits it (checked
each round: a thread found on another core fails the run). wrk, the
Collector and this process (counting the spans) run on core 1, the same for
every variant. The figure judged is
**requests per CPU-second of the whole tree** (user + system time of the
server and every process below it, from ``/proc``), counted until every span
of the round was handed to the Collector (a flush ends each round).

**No span dropped.** After each round the server's spans ended are counted
against the spans the Collector received. A round that lost any is run
again, paced (wrk's Lua ``delay``) at 80% of the rate it reached, then 64%,
... until none is lost; that paced run is the round's sample, and the drops
at full load are reported beside it. So every variant is judged at the
highest rate tried at which it drops nothing, and ratios are taken round by
round. Requests per second at full load (drops and all) are reported as rows
of their own; the export process on a spare core (the old figure: only the
server pinned) is one more row, named as such.

Run:  .venv/bin/python benchmarks/export_bench.py          (full; wants wrk and the Collector)
      .venv/bin/python benchmarks/export_bench.py --quick  (smoke: checks it runs)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _report import RATE, Result, rate_table, write_results
from aiohttp_bench import (
    CONNECTIONS,
    LUA,
    THREADLINE_FORMAT,
    Load,
    _cpu_of,
    _latency_notes,
    _wait_until,
)
from asgi_bench import load as load_with_wrk

ROOT = Path(__file__).resolve().parent.parent
BENCHMARK = "export"
CORE, OTHER_CORE = 0, 1
_PINNED = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1
"""Whether processes can be pinned to a core here (Linux, 2 cores or more)."""

TUNED = {
    "max_queue_size": 65536,
    "max_export_batch_size": 2048,
    "schedule_delay_millis": 2000,
}
"""contrib's batch processor, tuned: the best of the settings tried (docs/performance.md)."""
TUNED_GZIP = False
"""gzip on the tuned exporter: tried, and on loopback it costs more CPU than it saves."""


@dataclass(frozen=True)
class Variant:
    """One server set-up: its label and what its ratios are taken against."""

    label: str
    reference: str | None = None
    target: str | None = None
    also: tuple[tuple[str, str], ...] = ()
    spare_core: bool = False
    """Only the server process pinned: its export process may run on the other core."""


VARIANTS = {
    "bare": Variant("bare aiohttp, aiohttp's access line"),
    "span": Variant(
        "threadline, OTLP from its export process",
        reference="contrib",
        target=">= 2x",
        also=(("tuned", ">= 2x"), ("bare", ">= 0.6x")),
    ),
    "inline": Variant(
        "threadline, OTLP exported in-process",
        reference="contrib",
        target=">= 2x",
        also=(("tuned", ">= 2x"),),
    ),
    "contrib": Variant(
        "contrib aiohttp-server, BatchSpanProcessor + OTLP exporter (defaults)", reference="bare"
    ),
    "tuned": Variant(
        "contrib aiohttp-server, BatchSpanProcessor + OTLP exporter tuned", reference="contrib"
    ),
    "spare": Variant(
        "threadline, OTLP from its export process on the spare core (only the server pinned)",
        reference="contrib",
        spare_core=True,
    ),
}
"""The variants; docs/performance.md says what each one is."""

CPU = " (per CPU-second of the process tree, no span dropped)"
"""The label suffix of the judged rows."""
FULL = " (requests/s at full load)"
"""The label suffix of the rows of requests per second of the clock at full load."""


# --------------------------------------------------------------------------- the servers


def serve(name: str, port_file: str, endpoint: str, count_file: str) -> None:
    """Run one variant's server until SIGTERM (in its own process)."""
    variant = VARIANTS[name]
    import logging

    # Imported on any core (the servers start side by side): importing starts no thread.
    import opentelemetry.exporter.otlp.proto.http.trace_exporter
    import opentelemetry.instrumentation.aiohttp_server
    import opentelemetry.instrumentation.logging
    import opentelemetry.sdk.trace.export  # noqa: F401 - imported early, as the others
    from aiohttp import web

    import threadline.aiohttp
    import threadline.logging
    import threadline.tracing

    if _PINNED and not variant.spare_core:
        os.sched_setaffinity(0, {CORE})  # before any thread or child: each inherits it
    ended = _set_up_tracing(name, endpoint)
    if _PINNED and variant.spare_core:  # this thread only: the export process goes free
        os.sched_setaffinity(0, {CORE})
    access = _set_up_logging(name)
    middlewares: list[Any] = []
    if name in ("span", "inline", "spare"):
        import threadline.aiohttp

        middlewares = [threadline.aiohttp.middleware()]
    elif name in ("contrib", "tuned"):
        from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

        AioHttpServerInstrumentor().instrument()  # its middleware, in applications made after

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    flushes: list[Any] = []

    def flush() -> None:
        flushes.append(asyncio.ensure_future(_flush(ended, count_file, len(flushes) + 1)))

    async def main() -> None:
        app = web.Application(middlewares=middlewares)
        app.router.add_get("/hello/{name}", ok)
        runner = web.AppRunner(app, access_log=access)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        Path(port_file).write_text(str(runner.addresses[0][1]))  # noqa: ASYNC240 - once, at start
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, flush)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())
    logging.shutdown()


async def _flush(counts: list[int], count_file: str, number: int) -> None:
    """Once no request is in flight, export what is queued; write how many spans ended.

    Asked by SIGUSR1, not by a request: a request would make a span of its own,
    ended after the count. The requests wrk left in flight end first, so
    that their spans are all counted in this round or all in the next.
    """
    from opentelemetry import trace

    while counts[1] != counts[0]:  # noqa: ASYNC110 - spans started, not yet ended
        await asyncio.sleep(0.01)
    flushing = getattr(trace.get_tracer_provider(), "force_flush", None)
    if flushing is not None:
        flushing(60_000)
    Path(f"{count_file}.new").write_text(f"{number} {counts[0]}\n")  # noqa: ASYNC240 - idle
    os.replace(f"{count_file}.new", count_file)  # whole, for the reader


def _set_up_tracing(name: str, endpoint: str) -> list[int]:
    """Set the variant's pipeline up; return a list counting the spans ended and started."""
    ended = [0, 0]
    if name == "bare":
        return ended
    from opentelemetry import trace
    from opentelemetry.sdk.trace import SpanProcessor

    class CountEnded(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            ended[1] += 1

        def on_end(self, span: Any) -> None:
            ended[0] += 1

    if name in ("span", "inline", "spare"):
        os.environ.update(
            THREADLINE_EXPORT_PROCESS="0" if name == "inline" else "1",
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{endpoint}/v1/traces",
            OTEL_SERVICE_NAME=_service(name),
        )
        import threadline.tracing

        provider = threadline.tracing.configure()
        if provider is None:
            raise RuntimeError("threadline.tracing.configure() set nothing up")
    else:
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        tuned = name == "tuned"
        settings = json.loads(os.environ.get("THREADLINE_BENCH_TUNED", "null")) or TUNED
        gzip = settings.pop("gzip", TUNED_GZIP)
        compression = Compression.Gzip if tuned and gzip else Compression.NoCompression
        exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", compression=compression)
        provider = TracerProvider(resource=Resource.create({"service.name": _service(name)}))
        provider.add_span_processor(BatchSpanProcessor(exporter, **(settings if tuned else {})))
        trace.set_tracer_provider(provider)
    provider.add_span_processor(CountEnded())
    return ended


def _service(name: str) -> str:
    """The service name of *name*'s spans: each variant's spans are counted by it."""
    return f"bench-{name}"


def _set_up_logging(name: str) -> Any:
    """An access line per request with each library's ids, to os.devnull; aiohttp's logger."""
    import logging

    handler = logging.FileHandler(os.environ.get("THREADLINE_BENCH_ACCESS", os.devnull))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    if name in ("span", "inline", "spare"):
        import threadline.logging

        threadline.logging.install()
        handler.setFormatter(logging.Formatter(THREADLINE_FORMAT))
        logging.getLogger("threadline.aiohttp").setLevel(logging.INFO)
        return None
    access = logging.getLogger("aiohttp.access")
    access.setLevel(logging.INFO)
    if name == "bare":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        return access
    from opentelemetry.instrumentation.logging import LoggingInstrumentor

    LoggingInstrumentor().instrument(set_logging_format=False, inject_trace_context=True)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s trace_id=%(otelTraceID)s "
            "span_id=%(otelSpanID)s %(message)s"
        )
    )
    return access


# --------------------------------------------------------------------------- the process tree


def tree(pid: int) -> list[int]:
    """*pid* and every process below it, as /proc has them now."""
    found, at = [pid], 0
    while at < len(found):
        for task in Path(f"/proc/{found[at]}/task").glob("*"):
            with contextlib.suppress(OSError):
                found += [int(child) for child in (task / "children").read_text().split()]
        at += 1
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by *pid* and every process below it."""
    return sum(_cpu_of(each) for each in tree(pid))


def cores_used(pid: int) -> set[int]:
    """The cores any thread of *pid*'s tree may run on."""
    cores: set[int] = set()
    for each in tree(pid):
        for task in Path(f"/proc/{each}/task").glob("*"):
            with contextlib.suppress(OSError):
                cores |= os.sched_getaffinity(int(task.name))
    return cores


# --------------------------------------------------------------------------- the Collector


_SERVICE = re.compile(rb'"key":"service\.name","value":\{"stringValue":"([^"]*)"')


class Spans:
    """The spans a Collector's file exporter wrote, counted by service as the file grows."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0
        self.counts: collections.Counter[str] = collections.Counter()

    def received(self, service: str) -> int:
        """How many spans of *service* the file holds so far (whole lines only)."""
        if self.path.exists():
            with open(self.path, "rb") as lines:
                lines.seek(self.offset)
                data = lines.read()
            whole = data.rfind(b"\n") + 1
            for resource in data[:whole].split(b'{"resource":')[1:]:
                named = _SERVICE.search(resource)
                name = named[1].decode() if named else ""
                self.counts[name] += resource.count(b'"spanId":')  # parents: "parentSpanId"
            self.offset += whole
        return self.counts[service]

    def settled(self, service: str, expected: int) -> int:
        """`received`, once it is *expected*, or has stopped growing for a second.

        The Collector batches for 200 ms and its file exporter flushes every 200 ms.
        """
        now, since = self.received(service), time.monotonic()
        while now < expected and time.monotonic() - since < 1.0:
            time.sleep(0.05)
            last, now = now, self.received(service)
            if now != last:
                since = time.monotonic()
        return now


def collector_binary() -> str | None:
    """The Collector that scripts/build-collector built (and cached), if it can be had."""
    given = os.environ.get("THREADLINE_COLLECTOR")
    if given:
        return given
    built = subprocess.run(
        [str(ROOT / "scripts" / "build-collector")], capture_output=True, text=True, check=False
    )
    return built.stdout.strip() if built.returncode == 0 else None


def collector(folder: Path) -> Any:
    """The real Collector as the tests start it (tests/collector.py), on free ports, not started."""
    sys.path.insert(0, str(ROOT))
    from tests.collector import Collector
    from tests.helpers import free_port

    return Collector(free_port(), free_port(), folder / "collector-traces.jsonl")


def start(running: Any, binary: str, folder: Path) -> None:
    """Start the Collector *running*, on core 1 (beside wrk)."""
    running.start(Path(binary), folder / "collector.log")
    if _PINNED and running.process is not None:
        for task in Path(f"/proc/{running.process.pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task.name), {OTHER_CORE})


# --------------------------------------------------------------------------- the run


@dataclass
class Round:
    """One variant's figures in one round."""

    full: Load
    full_cpu: float
    dropped: int
    judged: Load
    judged_cpu: float
    paced: float | None = None
    """The rate the judged run was paced at (None: full load, nothing dropped)."""
    cores: set[int] = field(default_factory=set)
    still_lost: int = 0
    """Spans lost in the slowest paced run (0 unless every step lost some)."""
    counted: tuple[int, int] = (0, 0)
    """Spans ended in the server and received by the Collector, at full load."""


PACED_STEPS = 4
"""A round that loses spans is run again at 80%, 64%, 51%, 41% of its rate, until none is lost."""


class Server:
    """One variant's server process, its URLs and its span counts."""

    def __init__(self, name: str, folder: Path, endpoint: str) -> None:
        self.port_file = folder / name
        self.count_file, self.flushes = folder / f"{name}.ended", 0
        command = [sys.executable, __file__, "--serve", name, "--port-file", str(self.port_file)]
        command += ["--endpoint", endpoint, "--count-file", str(self.count_file)]
        self.process = subprocess.Popen(command)
        self.name = name
        self.counts = (0, 0)
        """Spans it ended and the Collector received from it, when it last was idle."""

    def started(self) -> None:
        """Wait until it listens."""
        port_file = self.port_file
        _wait_until(lambda: port_file.exists() and port_file.read_text(), f"server {self.name}")
        self.url = f"http://127.0.0.1:{port_file.read_text()}/hello/world"

    def ended(self) -> int:
        """Flush the server's spans to the Collector; how many spans it ended so far."""
        self.flushes += 1
        self.process.send_signal(signal.SIGUSR1)
        told = f"{self.flushes} "

        def written() -> bool:
            return self.count_file.exists() and self.count_file.read_text().startswith(told)

        _wait_until(written, f"the flush of {self.name}")
        return int(self.count_file.read_text().split()[1])

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


def one_round(server: Server, spans: Spans, seconds: float, script: Path, folder: Path) -> Round:
    """Full load; then, if spans were lost, paced runs until none is."""
    full, cpu, ended, received = _run(server, spans, seconds, str(script))
    dropped = max(ended - received, 0)
    cores = cores_used(server.process.pid)
    if _PINNED and not VARIANTS[server.name].spare_core and cores != {CORE}:
        raise RuntimeError(f"{server.name}: a thread of its tree may run on cores {cores}")
    judged, judged_cpu, lost, paced = full, cpu, dropped, None
    for step in range(1, PACED_STEPS + 1) if lost else ():
        paced = full.rate * 0.8**step
        pause = folder / f"paced-{server.name}.lua"
        pause.write_text(f"{LUA}\nfunction delay() return {CONNECTIONS * 1000 / paced:.3f} end\n")
        judged, judged_cpu, paced_ended, paced_received = _run(server, spans, seconds, str(pause))
        lost = max(paced_ended - paced_received, 0)
        if not lost:
            break
    return Round(full, cpu, dropped, judged, judged_cpu, paced, cores, lost, (ended, received))


def _run(server: Server, spans: Spans, seconds: float, script: str) -> tuple[Load, float, int, int]:
    """One wrk run: its load, the tree's CPU until its spans were flushed, spans ended, received."""
    ended, received = server.counts
    before = tree_cpu(server.process.pid)
    done = load_with_wrk(server.url, seconds, script)
    now_ended = server.ended()  # every span of the run handed to the Collector
    cpu = tree_cpu(server.process.pid) - before
    server.counts = (now_ended, spans.settled(_service(server.name), received + now_ended - ended))
    return done, cpu, now_ended - ended, server.counts[1] - received


def measure(names: list[str], rounds: int, seconds: float, binary: str) -> list[Result]:
    """Start the Collector and every server, load them round by round in shuffled order."""
    folder = Path(tempfile.mkdtemp())
    script = folder / "headers.lua"
    script.write_text(LUA)
    servers: dict[str, Server] = {}
    done: dict[str, list[Round]] = {name: [] for name in names}
    running = collector(folder)
    spans = Spans(running.traces_file)
    try:
        for name in names:  # while the Collector starts
            servers[name] = Server(name, folder, running.http_endpoint)
        start(running, binary, folder)
        if _PINNED:  # this process counts spans beside wrk and the Collector, off core 0
            os.sched_setaffinity(0, {OTHER_CORE})
        for server in servers.values():
            server.started()
            if rounds > 1:
                load_with_wrk(server.url, 1.0, str(script))  # warm up
                warmed = server.ended()
                server.counts = (warmed, spans.settled(_service(server.name), warmed))
        order = list(names)
        for _ in range(rounds):
            random.shuffle(order)
            for name in order:
                done[name].append(one_round(servers[name], spans, seconds, script, folder))
    finally:
        for server in servers.values():
            server.stop()
        running.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return [_result(n, done[n], CPU) for n in names] + [_result(n, done[n], FULL) for n in names]


def _result(name: str, rounds: list[Round], suffix: str) -> Result:
    variant = VARIANTS[name]
    if suffix == CPU:
        samples = [one.judged.requests / one.judged_cpu for one in rounds]
        notes = {
            "CPU per request (tree)": _micro([r.judged_cpu / r.judged.requests for r in rounds]),
            "spans lost at full load": str(sum(one.dropped for one in rounds)),
            "rounds paced": f"{sum(one.paced is not None for one in rounds)} of {len(rounds)}",
        }
        paced = [one.judged.rate for one in rounds if one.paced is not None]
        if paced:
            notes["paced rate (median)"] = f"{statistics.median(paced):,.0f}/s"
        still = sum(one.still_lost for one in rounds)
        if still:
            notes["spans lost even at 41% of the rate"] = str(still)
        notes["cores"] = ",".join(map(str, sorted(set().union(*(r.cores for r in rounds)))))
        reference, target = variant.reference, variant.target
        also = dict(variant.also)
    else:
        samples = [one.full.rate for one in rounds]
        notes = _latency_notes([one.full for one in rounds])
        notes["CPU per request (tree)"] = _micro([r.full_cpu / r.full.requests for r in rounds])
        notes["spans lost"] = str(sum(one.dropped for one in rounds))
        ended, received = (sum(one.counted[at] for one in rounds) for at in (0, 1))
        notes["spans ended / received by the Collector"] = f"{ended} / {received}"
        reference, target, also = variant.reference, None, {}
    return Result(
        BENCHMARK,
        variant.label + suffix,
        samples,
        unit=RATE,
        reference=VARIANTS[reference].label + suffix if reference else None,
        target=target,
        also={VARIANTS[other].label + suffix: bound for other, bound in also.items()},
        notes=notes,
    )


def _micro(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e6:.0f} µs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, to check it runs")
    parser.add_argument("--json", help="write the results to this file (for run.py)")
    parser.add_argument("--only", action="append", choices=list(VARIANTS), help="these variants")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--serve", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--count-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port_file, args.endpoint, args.count_file)
        return 0
    binary = collector_binary()
    if not shutil.which("wrk") or binary is None:
        print(
            "export_bench: wants wrk and the Collector (scripts/build-collector)", file=sys.stderr
        )
        if args.json:
            write_results(args.json, [])
        return 0 if args.quick else 2
    rounds, seconds = (1, 1.0) if args.quick else (args.rounds, args.seconds)
    results = measure(args.only or list(VARIANTS), rounds, seconds, binary)
    if args.json:
        write_results(args.json, results)
    print(f"load: wrk -t1 -c{CONNECTIONS}, traceparent + baggage (3) + X-Request-ID per request")
    print(rate_table(results, "median"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
