"""Micro-benchmarks with pyperf: threadline's hot paths beside what Python or OpenTelemetry does.

Pairs, each threadline's operation against its baseline: a store read against
``ContextVar.get``; a store scope against a ``ContextVar`` set and reset;
``tl.snapshot()`` against ``contextvars.copy_context()``; ``tl.inject`` and
``tl.extract`` against OpenTelemetry's own (TraceContext + W3C baggage, the
same recording span and one baggage entry; extract also with three, the
budget's case), each both as a cache hit (the
same context or carrier text again: a request's later hand-offs) and as a
miss (a new request scope, or new text, each time: its first); thread-pool and spawn
process-pool submit+result, a store set, against bare ``concurrent.futures``;
threadline's ASGI middleware (context only, its access line with the ids) driven
in-process with the asgi benchmark's incoming fields, against an ASGI middleware
that writes a plain access line: the cost per request without a server's noise.

Each round runs every benchmark, in shuffled order, as a short pyperf run of
its own (``micro_bench.py --worker-bench NAME``: a few worker processes, a few
values each); the round's figure is that run's median. Ratios are taken round
by round. The pools' budgets are judged by threads_bench.py and
processes_bench.py (one worker shared by all variants); these pairs have none.

Run:  .venv/bin/python benchmarks/micro_bench.py          (full: about 2-3 minutes on 2 cores)
      .venv/bin/python benchmarks/micro_bench.py --quick  (smoke: one short round)
      ... --json PATH                                     (the results, for run.py)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import contextvars
import functools
import multiprocessing
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _report import TIME, Result, ratio, write_results

import threadline as tl

TimeFunc = Callable[[int], float]
"""pyperf's time function: seconds taken by *loops* iterations."""
INNER = 10
"""Calls per iteration of `calls`, unrolled: the loop's own cost spread over ten."""
VALUE = "r1"


def job() -> int:
    return 1


def calls(op: Callable[[], object]) -> TimeFunc:
    """Time *op* called `INNER` times per loop iteration."""

    def time_func(loops: int) -> float:
        start = time.perf_counter()
        for _ in range(loops):
            op()
            op()
            op()
            op()
            op()
            op()
            op()
            op()
            op()
            op()
        return time.perf_counter() - start

    return time_func


def in_scope(stack: contextlib.ExitStack) -> None:
    """Keep a request scope current until *stack* closes."""
    stack.enter_context(tl.request.scope(request_id=VALUE))


def traced(stack: contextlib.ExitStack) -> None:
    """Keep a recording span (SDK, spans exported nowhere) current until *stack* closes."""
    from _tracing import discard_spans
    from opentelemetry import trace

    discard_spans()
    span = trace.get_tracer("bench").start_span("request")
    stack.enter_context(trace.use_span(span, end_on_exit=True))


def var_get(stack: contextlib.ExitStack) -> TimeFunc:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("bench")
    stack.callback(var.reset, var.set(VALUE))
    return calls(var.get)


def store_get(stack: contextlib.ExitStack) -> TimeFunc:
    in_scope(stack)
    return calls(tl.request.get)


def var_set_reset(stack: contextlib.ExitStack) -> TimeFunc:
    var: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("bench")
    value = {"request_id": VALUE}

    def time_func(loops: int) -> float:
        start = time.perf_counter()
        for _ in range(loops):
            var.reset(var.set(value))
        return time.perf_counter() - start

    return time_func


def store_scope(stack: contextlib.ExitStack) -> TimeFunc:
    scope = tl.request.scope

    def time_func(loops: int) -> float:
        start = time.perf_counter()
        for _ in range(loops):
            with scope(request_id=VALUE):
                pass
        return time.perf_counter() - start

    return time_func


def copy_context(stack: contextlib.ExitStack) -> TimeFunc:
    in_scope(stack)
    return calls(contextvars.copy_context)


def snapshot(stack: contextlib.ExitStack) -> TimeFunc:
    in_scope(stack)
    return calls(tl.snapshot)


OTHER_MEMBERS = {"tenant": "acme", "region": "eu-west-1"}
"""Two plain baggage entries beside the request id: the budget's 3-member baggage (DESIGN.md)."""


def with_other_members(stack: contextlib.ExitStack) -> None:
    """Keep `OTHER_MEMBERS` in the current OpenTelemetry baggage until *stack* closes."""
    from opentelemetry import baggage, context

    current = context.get_current()
    for key, value in OTHER_MEMBERS.items():
        current = baggage.set_baggage(key, value, current)
    stack.callback(context.detach, context.attach(current))


def otel_propagation(
    stack: contextlib.ExitStack, members: int = 1
) -> tuple[Callable[..., object], ...]:
    """OpenTelemetry's inject and extract, a span and *members* baggage entries current."""
    from opentelemetry import baggage, context, propagate
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )
    traced(stack)
    stack.callback(context.detach, context.attach(baggage.set_baggage("request_id", VALUE)))
    if members == 3:
        with_other_members(stack)
    return propagate.inject, propagate.extract


def tl_propagation(
    stack: contextlib.ExitStack, members: int = 1
) -> tuple[Callable[..., object], ...]:
    """threadline's inject and extract, a span and a request scope current (and two plain
    baggage entries beside it for *members* 3)."""
    traced(stack)
    if members == 3:
        with_other_members(stack)
    in_scope(stack)
    return tl.inject, tl.extract


def extracting(inject: Callable[..., object], extract: Callable[..., object]) -> TimeFunc:
    """Time *extract* of what *inject* wrote."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return calls(functools.partial(extract, carrier))


def fresh_contexts(loops: int) -> list[Any]:
    """*loops* contexts, each a new span (a new trace) and a request scope with a new request id."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    from threadline._core.context import get_current

    made = []
    for number in range(loops):
        span = NonRecordingSpan(
            SpanContext(
                random.getrandbits(128) | 1, random.getrandbits(64) | 1, False, TraceFlags(1)
            )
        )
        with (
            trace.use_span(span),
            tl.request.scope(request_id=f"r{number}-{time.perf_counter_ns()}"),
        ):
            made.append(get_current())
    return made


def inject_misses(stack: contextlib.ExitStack) -> TimeFunc:
    """`tl.inject` of a context never injected before: what a request's first hand-off pays."""
    traced(stack)
    inject = tl.inject

    def time_func(loops: int) -> float:
        contexts = fresh_contexts(loops)  # made before the clock starts
        start = time.perf_counter()
        for context in contexts:
            inject({}, context)
        return time.perf_counter() - start

    return time_func


def extract_misses(stack: contextlib.ExitStack, members: int = 1) -> TimeFunc:
    """`tl.extract` of carrier text never seen before (a new trace and request each time)."""
    traced(stack)
    if members == 3:
        with_other_members(stack)
    extract = tl.extract

    def time_func(loops: int) -> float:
        carriers = []
        for context in fresh_contexts(loops):
            carrier: dict[str, str] = {}
            tl.inject(carrier, context)
            carriers.append(carrier)
        start = time.perf_counter()
        for carrier in carriers:
            extract(carrier)
        return time.perf_counter() - start

    return time_func


def round_trips(stack: contextlib.ExitStack, pool: concurrent.futures.Executor) -> TimeFunc:
    """Time submit+result of a trivial job on *pool* (one worker, up before timing)."""
    in_scope(stack)
    submit = stack.enter_context(pool).submit
    submit(job).result()
    return calls(lambda: submit(job).result())


SERVER_ATTRIBUTES = {
    "threadline.boundary": "http.server",
    "http.request.method": "GET",
    "url.path": "/hello/world",
    "url.scheme": "http",
    "request.id": "0123456789abcdef0123456789abcdef",
    "network.protocol.version": "1.1",
    "http.route": "/hello/{name}",
    "server.address": "127.0.0.1",
    "server.port": 8080,
    "client.address": "127.0.0.1",
    "user_agent.original": "wrk",
}
"""What threadline's SERVER span of ``GET /hello/world`` has at its start."""


def sdk_span(stack: contextlib.ExitStack) -> TimeFunc:
    """The floor of any server span: the SDK's own, with the same attributes, no threadline code."""
    from _tracing import discard_spans
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace import SpanKind

    discard_spans()
    tracer, parent = trace.get_tracer("bench"), Context()

    def one() -> None:
        span = tracer.start_span(
            "GET /hello/{name}", parent, SpanKind.SERVER, attributes=SERVER_ATTRIBUTES
        )
        span.set_attribute("http.response.status_code", 200)
        span.end()

    return calls(one)


def server_span(stack: contextlib.ExitStack) -> TimeFunc:
    """threadline's SERVER span as its middleware makes it, from the request's fields."""
    from _tracing import discard_spans
    from opentelemetry.context import Context

    from threadline._http.semconv import ServerFields, server_error, set_status
    from threadline._http.server import start_server_span

    discard_spans()
    parent = Context()
    fields = ServerFields(
        scheme="http",
        query="",
        host="127.0.0.1:8080",
        client_address="127.0.0.1",
        user_agent="wrk",
        protocol_version="1.1",
    )

    def one() -> None:
        span = start_server_span(
            "GET",
            "/hello/{name}",
            "/hello/world",
            fields,
            request_id=SERVER_ATTRIBUTES["request.id"],
            parent=parent,
            link=None,
        )
        set_status(span, 200, server_error)
        span.end()

    return calls(one)


ACCESS_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s user_id=%(user_id)s "
    "trace_id=%(trace_id)s span_id=%(span_id)s %(message)s"
)
"""The asgi benchmark's format for threadline's access line: the ids printed."""


def _asgi_requests() -> Callable[[Any], Callable[[], None]]:
    """A driver of an ASGI middleware, in-process, with the asgi benchmark's workload.

    Each request brings a fresh ``traceparent``, a 3-member ``baggage`` and a uuid4
    ``X-Request-ID`` (from a pool of 4096 made up front); the app answers ``ok`` at
    once, and the server's ``receive`` and ``send`` do nothing: what is timed is the
    middleware's own cost per request, without a server's noise.
    """
    import uuid

    made = random.Random(0)
    pool = []
    for _ in range(4096):
        trace_id, parent_id = made.getrandbits(128), made.getrandbits(64)
        request_id = str(uuid.UUID(int=made.getrandbits(128), version=4))
        pool.append(
            [
                (b"host", b"127.0.0.1:8000"),
                (b"user-agent", b"wrk"),
                (b"traceparent", f"00-{trace_id:032x}-{parent_id:016x}-01".encode()),
                (b"baggage", b"request.user_id=u-4711;tl,tenant=acme,region=eu-west-1"),
                (b"x-request-id", request_id.encode()),
            ]
        )
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain")],
    }
    body = {"type": "http.response.body", "body": b"ok"}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start)
        await send(body)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    def driver(middleware: Callable[[Any], Any]) -> Callable[[], None]:
        wrapped = middleware(app)
        served = [0]

        def one() -> None:
            served[0] = index = (served[0] + 1) & 4095
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": "/hello/world",
                "root_path": "",
                "query_string": b"",
                "headers": pool[index],
                "server": ("127.0.0.1", 8000),
                "client": ("127.0.0.1", 5000),
            }
            coroutine = wrapped(scope, receive, send)
            try:
                coroutine.send(None)
            except StopIteration:
                return
            raise RuntimeError("the middleware waited: nothing here should")

        return one

    return driver


def _access_log(name: str, fmt: str) -> None:
    """Lines of the logger *name* at INFO, formatted by *fmt*, to os.devnull (a FileHandler)."""
    import logging
    import os

    handler = logging.FileHandler(os.devnull)
    handler.setFormatter(logging.Formatter(fmt))
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def asgi_line(stack: contextlib.ExitStack) -> TimeFunc:
    """A pure ASGI middleware writing one plain access line (no ids): the floor of one."""
    import logging

    _access_log("bench.access", "%(asctime)s %(levelname)s %(name)s %(message)s")
    log = logging.getLogger("bench.access")

    def middleware(app: Any) -> Any:
        async def logged(scope: Any, receive: Any, send: Any) -> None:
            started = time.perf_counter()
            status = [0]

            async def sending(message: Any) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                took = (time.perf_counter() - started) * 1e3
                log.info("%s %s %d %.1fms", scope["method"], scope["path"], status[0], took)

        return logged

    return calls(_asgi_requests()(middleware))


def asgi_context(stack: contextlib.ExitStack) -> TimeFunc:
    """threadline.asgi.Middleware, context only, its access line with the ids (install())."""
    import threadline.asgi
    import threadline.logging

    _access_log("threadline.asgi", ACCESS_FORMAT)
    threadline.logging.install()
    stack.callback(threadline.logging.uninstall)
    return calls(_asgi_requests()(lambda app: threadline.asgi.Middleware(app, spans=False)))


BATCH = 512
"""Spans per export: the SDK batch processor's default batch size."""


def _server_spans() -> list[Any]:
    """`BATCH` finished SDK spans like threadline's SERVER span of one request."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    kept = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("bench")
    for _ in range(BATCH):
        span = tracer.start_span("GET /hello/{name}", kind=SpanKind.SERVER)
        span.set_attributes({**SERVER_ATTRIBUTES, "http.response.status_code": 200})
        span.end()
    return list(kept.get_finished_spans())


def otlp_encode(stack: contextlib.ExitStack) -> TimeFunc:
    """What the OTLP exporters do to each span in the exporting process: encode and serialize."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    batch = _server_spans()

    def time_func(loops: int) -> float:
        start = time.perf_counter()
        for _ in range(loops):
            encode_spans(batch).SerializePartialToString()
        return time.perf_counter() - start

    return time_func


def flatten_pickle(stack: contextlib.ExitStack) -> TimeFunc:
    """What the export process leaves in the application: each span flattened and pickled."""
    import pickle

    from threadline._telemetry.span_wire import flatten

    batch = _server_spans()

    def time_func(loops: int) -> float:
        start = time.perf_counter()
        for _ in range(loops):
            pickle.dumps(("spans", flatten(batch)), protocol=pickle.HIGHEST_PROTOCOL)
        return time.perf_counter() - start

    return time_func


def spawn() -> multiprocessing.context.SpawnContext:
    return multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class Bench:
    """One variant: what it measures, the variant it is compared with, how it is set up."""

    label: str
    reference: str | None
    make: Callable[[contextlib.ExitStack], TimeFunc]
    """Set up in the pyperf worker (undone when the stack closes); returns the timed loop."""
    inner: int = INNER


BENCHES = {
    "var-get": Bench("ContextVar.get()", None, var_get),
    "store-get": Bench("tl.request.get() in a scope", "var-get", store_get),
    "var-set": Bench("ContextVar set+reset", None, var_set_reset, inner=1),
    "scope": Bench("tl.request.scope(request_id=...) enter+exit", "var-set", store_scope, 1),
    "copy-context": Bench("contextvars.copy_context(), a scope current", None, copy_context),
    "snapshot": Bench("tl.snapshot(), a scope current", "copy-context", snapshot),
    "otel-inject": Bench(
        "opentelemetry.propagate.inject (a span, 1 baggage entry)",
        None,
        lambda stack: calls(functools.partial(otel_propagation(stack)[0], {})),
    ),
    "inject": Bench(
        "tl.inject(carrier) (a span, a request scope), cache hit: the same context again",
        "otel-inject",
        lambda stack: calls(functools.partial(tl_propagation(stack)[0], {})),
    ),
    "inject-miss": Bench(
        "tl.inject(carrier) (a span, a request scope), cache miss: a new scope each time",
        "otel-inject",
        inject_misses,
        inner=1,
    ),
    "otel-extract": Bench(
        "opentelemetry.propagate.extract (a span, 1 baggage entry)",
        None,
        lambda stack: extracting(*otel_propagation(stack)),
    ),
    "extract": Bench(
        "tl.extract(carrier) (a span, a request scope), cache hit: the same text again",
        "otel-extract",
        lambda stack: extracting(*tl_propagation(stack)),
    ),
    "extract-miss": Bench(
        "tl.extract(carrier) (a span, a request scope), cache miss: new text each time",
        "otel-extract",
        extract_misses,
        inner=1,
    ),
    "otel-extract-3": Bench(
        "opentelemetry.propagate.extract (a span, 3 baggage entries)",
        None,
        lambda stack: extracting(*otel_propagation(stack, 3)),
    ),
    "extract-miss-3": Bench(
        "tl.extract(carrier) (a span, a request scope and 2 other baggage entries: 3 members), "
        "cache miss: new text each time",
        "otel-extract-3",
        functools.partial(extract_misses, members=3),
        inner=1,
    ),
    "bare-threads": Bench(
        "bare ThreadPoolExecutor submit+result",
        None,
        lambda stack: round_trips(stack, concurrent.futures.ThreadPoolExecutor(1)),
    ),
    "threads": Bench(
        "tl.ThreadPoolExecutor submit+result, a store set (context only)",
        "bare-threads",
        lambda stack: round_trips(stack, tl.ThreadPoolExecutor(1)),
    ),
    "bare-processes": Bench(
        "bare ProcessPoolExecutor (spawn) submit+result",
        None,
        lambda stack: round_trips(stack, concurrent.futures.ProcessPoolExecutor(1, spawn())),
    ),
    "processes": Bench(
        "tl.ProcessPoolExecutor (spawn) submit+result, a store set (context only)",
        "bare-processes",
        lambda stack: round_trips(stack, tl.ProcessPoolExecutor(1, spawn())),
    ),
}
BENCHES |= {
    "sdk-span": Bench("SDK span start+end, 12 attributes (floor of a server span)", None, sdk_span),
    "server-span": Bench(
        "threadline's SERVER span start+end (same attributes)", "sdk-span", server_span
    ),
    "otlp-encode": Bench(
        "OTLP encode + serialize, per span (the SDK's encoder)", None, otlp_encode, inner=BATCH
    ),
    "flatten": Bench(
        "flatten + pickle, per span (what the export process leaves in the application)",
        "otlp-encode",
        flatten_pickle,
        inner=BATCH,
    ),
    "asgi-line": Bench(
        "an ASGI middleware writing a plain access line, per request (in-process)",
        None,
        asgi_line,
    ),
    "asgi-context": Bench(
        "threadline.asgi.Middleware, context only, access line with ids (in-process)",
        "asgi-line",
        asgi_context,
    ),
}
FULL = ["--processes", "2", "--values", "3", "--warmups", "1", "--min-time", "0.05"]
"""pyperf's settings for one round's run of one benchmark (loops calibrated in round 1)."""
QUICK = ["--processes", "1", "--values", "1", "--warmups", "1", "--min-time", "0.002"]


def worker(name: str) -> None:
    """Be pyperf's program for the benchmark *name*: its main process, or one of its workers."""
    import pyperf

    def forward(cmd: list[str], args: argparse.Namespace) -> None:
        cmd.extend(["--worker-bench", args.worker_bench])

    runner = pyperf.Runner(add_cmdline_args=forward)
    runner.argparser.add_argument("--worker-bench", choices=list(BENCHES), required=True)
    bench = BENCHES[name]
    with contextlib.ExitStack() as stack:
        set_up = functools.cache(functools.partial(bench.make, stack))

        def timed(loops: int) -> float:
            return set_up()(loops)  # set up on first use: in pyperf's workers only

        runner.bench_time_func(name, timed, inner_loops=bench.inner)


def run_once(name: str, settings: list[str], output: Path) -> tuple[float, int]:
    """Run pyperf on *name*: the median seconds per operation, and the loops it used."""
    import pyperf

    command = [sys.executable, __file__, "--worker-bench", name, *settings]
    command += ["--quiet", "--copy-env", "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pyperf on {name} failed:\n{done.stdout}{done.stderr}")
    bench = pyperf.Benchmark.load(str(output))
    return bench.median(), bench.get_loops()


def measure(rounds: int, quick: bool) -> dict[str, list[float]]:
    """Every benchmark's median per round, rounds run in shuffled order."""
    samples: dict[str, list[float]] = {name: [] for name in BENCHES}
    loops: dict[str, int] = {}
    order = list(BENCHES)
    shuffle = random.Random(0).shuffle
    with tempfile.TemporaryDirectory() as folder:
        for number in range(rounds):
            shuffle(order)
            for name in order:
                settings = QUICK if quick else FULL
                if name in loops:  # calibrated once, so every round times the same work
                    settings = [*settings, "--loops", str(loops[name])]
                output = Path(folder, f"{name}-{number}.json")
                median, loops[name] = run_once(name, settings, output)
                samples[name].append(median)
    return samples


TARGETS = {"extract-miss-3": "<= 0.5x"}
"""The budget (DESIGN.md): a traceparent and a 3-member baggage; the 1-member rows inform."""
"""Budgets (DESIGN.md) on a ratio to the row's reference."""
SCOPE_OVER_BARE = 0.5e-6
"""The budget of `scope()` (DESIGN.md): at most this over a bare ContextVar set + reset."""


def results(samples: dict[str, list[float]]) -> list[Result]:
    """One Result per benchmark, its reference named by label; the budgets' rows judged."""
    made = [
        Result(
            "micro",
            bench.label,
            samples[name],
            TIME,
            reference=BENCHES[bench.reference].label if bench.reference else None,
            target=TARGETS.get(name),
        )
        for name, bench in BENCHES.items()
    ]
    if samples.get("scope") and samples.get("var-set"):
        over = [
            scope - bare for scope, bare in zip(samples["scope"], samples["var-set"], strict=False)
        ]
        made.append(
            Result(
                "micro",
                "tl.request.scope() enter+exit, over a bare ContextVar set+reset (each round)",
                over,
                TIME,
                limit=SCOPE_OVER_BARE,
            )
        )
    return made


def per_op(seconds: float) -> str:
    """*seconds* in ns below a microsecond, else in µs."""
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    return f"{seconds * 1e6:.2f} µs"


def report(measured: list[Result]) -> str:
    by_label = {result.variant: result for result in measured}
    rows = ["| variant | median per op | ratio to its reference |", "|---|---:|---:|"]
    for result in measured:
        base = by_label.get(result.reference or "")
        shown = f"{ratio(result, base):.2f}x" if base else "(reference)"
        rows.append(f"| {result.variant} | {per_op(result.median)} | {shown} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    # no abbreviations: pyperf's --worker, given to its workers, is not --worker-bench
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0], allow_abbrev=False
    )
    parser.add_argument("--quick", action="store_true", help="one short round, to check it runs")
    parser.add_argument("--rounds", type=int, help="rounds to run (default 8; 1 with --quick)")
    parser.add_argument("--json", metavar="PATH", help="write the results here as JSON")
    parser.add_argument("--worker-bench", choices=list(BENCHES), help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)
    if args.worker_bench:
        worker(args.worker_bench)
        return 0
    rounds = args.rounds or (1 if args.quick else 8)
    start = time.perf_counter()
    measured = results(measure(rounds, args.quick))
    if args.json:
        write_results(args.json, measured)
    print(report(measured))
    elapsed = time.perf_counter() - start
    print(f"\n{rounds} round(s) of {len(BENCHES)} pyperf runs in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
