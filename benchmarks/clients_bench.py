"""aiohttp, httpx and requests calls, a CLIENT span each: threadline's against contrib's.

A raw asyncio HTTP/1.1 server (keep-alive, a fixed ``ok`` answer, no parsing
beyond the end of the headers) runs in a process of its own pinned to core 1;
the benchmark process, pinned to core 0, calls it with an
`aiohttp.ClientSession`, an `httpx.AsyncClient` and a `requests.Session` over
one kept-alive connection each. Per client: the bare client (the absolute
cost), threadline's instrumentation (``threadline.aiohttp.trace_config()``
in the session's ``trace_configs``; ``instrument``), and OpenTelemetry's
(``opentelemetry.instrumentation.aiohttp_client.create_trace_config()`` the
same way; ``HTTPXClientInstrumentor.instrument_client``;
``RequestsInstrumentor``, which patches every session, instrumented for its
own batches only). Each call is made in the caller's context as a user has it:
a recording span current and a `threadline.request` scope with a request id
and a user id, so threadline sends ``traceparent``, ``baggage`` and
``X-Request-ID`` to the loopback server; spans go through the pipeline
`threadline.tracing.configure()` sets up, with a batch processor exporting to
nowhere (its thread on core 0 too). Rounds: each variant makes a batch of
calls, in shuffled order; the figures are calls per second of each batch, from
`time.perf_counter`, and calls per CPU-second of the client process (all its
threads, from `time.process_time`: what the instrumentation costs the caller,
whatever the scheduler does with the round trip on a loaded machine); the
CLIENT spans each batch ended are counted.

Run:  .venv/bin/python benchmarks/clients_bench.py          (full)
      .venv/bin/python benchmarks/clients_bench.py --quick  (smoke: checks it runs)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _report import RATE, Result, rate_table, write_results
from aiohttp_bench import _listening, _wait_until

BENCHMARK = "clients"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


@dataclass(frozen=True)
class Variant:
    """One client set-up: its label and what its ratios are taken against."""

    label: str
    reference: str | None = None
    target: str | None = None
    also: tuple[tuple[str, str], ...] = ()


VARIANTS = {
    "aiohttp-bare": Variant("aiohttp.ClientSession, bare"),
    "aiohttp-threadline": Variant(
        "aiohttp.ClientSession, threadline.aiohttp.trace_config, a span per call",
        reference="aiohttp-contrib",
        target=">= 1.5x",
    ),
    "aiohttp-contrib": Variant(
        "aiohttp.ClientSession, contrib aiohttp_client.create_trace_config, a span per call",
        reference="aiohttp-bare",
    ),
    "httpx-bare": Variant("httpx.AsyncClient, bare"),
    "httpx-threadline": Variant(
        "httpx.AsyncClient, threadline.httpx.instrument, a span per call",
        reference="httpx-contrib",
        target=">= 1.5x",
    ),
    "httpx-contrib": Variant(
        "httpx.AsyncClient, contrib HTTPXClientInstrumentor, a span per call",
        reference="httpx-bare",
    ),
    "requests-bare": Variant("requests.Session, bare"),
    "requests-threadline": Variant(
        "requests.Session, threadline.requests.instrument, a span per call",
        reference="requests-contrib",
        target=">= 1.5x",
    ),
    "requests-contrib": Variant(
        "requests.Session, contrib RequestsInstrumentor, a span per call",
        reference="requests-bare",
    ),
}
"""The variants; docs/performance.md says what each one is."""


# --------------------------------------------------------------------------- the server


class _Answer(asyncio.Protocol):
    """Answer ``ok`` to each request on the connection (GET, no body), pipelined or not."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            self.buffer = self.buffer[end + 4 :]
            self.transport.write(ANSWER)


def serve(port_file: str) -> None:
    """Serve until SIGTERM, pinned to core 1 (in its own process)."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Answer, "127.0.0.1", 0)
        Path(port_file).write_text(str(server.sockets[0].getsockname()[1]))  # noqa: ASYNC240
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        server.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- the clients


def _counting() -> Any:
    """A span processor counting the CLIENT spans ended (in ``.count``)."""
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.trace import SpanKind

    class Ended(SpanProcessor):
        count = 0

        def on_end(self, span: Any) -> None:
            if span.kind is SpanKind.CLIENT:
                self.count += 1

    return Ended()


def _pipeline() -> Any:
    """`threadline.tracing.configure()`'s pipeline, its spans dropped by a batch processor."""
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
    ended = _counting()
    provider.add_span_processor(ended)
    return ended


Batch = Callable[[int], Awaitable[None]]
"""Make so many calls, one after the other."""


def _batches(
    url: str,
) -> tuple[
    dict[str, Batch],
    dict[str, tuple[Callable[[], None], Callable[[], None]]],
    Callable[[], Awaitable[None]],
]:
    """Each variant's batch of calls, what runs before and after some, and what closes them."""
    import aiohttp
    import httpx
    import requests
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    import threadline.aiohttp
    import threadline.httpx
    import threadline.requests

    aiohttp_sessions = {
        "aiohttp-bare": aiohttp.ClientSession(),
        "aiohttp-threadline": aiohttp.ClientSession(
            trace_configs=[threadline.aiohttp.trace_config()]
        ),
        "aiohttp-contrib": aiohttp.ClientSession(trace_configs=[create_trace_config()]),
    }

    clients = {
        "httpx-bare": httpx.AsyncClient(),
        "httpx-threadline": threadline.httpx.instrument(httpx.AsyncClient()),
        "httpx-contrib": httpx.AsyncClient(),
    }
    HTTPXClientInstrumentor.instrument_client(clients["httpx-contrib"])
    sessions = {
        "requests-bare": requests.Session(),
        "requests-threadline": threadline.requests.instrument(requests.Session()),
        "requests-contrib": requests.Session(),
    }
    contrib = RequestsInstrumentor()

    def with_aiohttp(session: aiohttp.ClientSession) -> Batch:
        async def batch(calls: int) -> None:
            for _ in range(calls):
                async with session.get(url) as answer:
                    if await answer.read() != b"ok":
                        raise RuntimeError(f"{url} answered {answer.status}")

        return batch

    def with_httpx(client: httpx.AsyncClient) -> Batch:
        async def batch(calls: int) -> None:
            for _ in range(calls):
                answer = await client.get(url)
                if answer.content != b"ok":
                    raise RuntimeError(f"{url} answered {answer.status_code}")

        return batch

    def with_requests(session: requests.Session) -> Batch:
        async def batch(calls: int) -> None:
            for _ in range(calls):
                answer = session.get(url)
                if answer.content != b"ok":
                    raise RuntimeError(f"{url} answered {answer.status_code}")

        return batch

    batches = {name: with_aiohttp(session) for name, session in aiohttp_sessions.items()}
    batches.update({name: with_httpx(client) for name, client in clients.items()})
    batches.update({name: with_requests(session) for name, session in sessions.items()})
    # it patches every session: instrumented for its own batches only, outside the timing
    around = {"requests-contrib": (contrib.instrument, contrib.uninstrument)}

    async def close() -> None:
        for aiohttp_session in aiohttp_sessions.values():
            await aiohttp_session.close()
        for client in clients.values():
            await client.aclose()
        for session in sessions.values():
            session.close()

    return batches, around, close


# --------------------------------------------------------------------------- the run


async def _measure(
    names: list[str], url: str, rounds: int, calls: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """Per variant: calls per second of each batch, calls per CPU-second, CLIENT spans per call."""
    from opentelemetry import trace

    import threadline as tl

    ended = _pipeline()
    batches, around, close = _batches(url)
    nothing = (lambda: None, lambda: None)
    tracer = trace.get_tracer("bench")
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    spans: dict[str, list[float]] = {name: [] for name in names}
    order = list(names)
    try:
        with (
            tracer.start_as_current_span("caller"),
            tl.request.scope(request_id="5bd90104-3a58-4c24-a777-b2860e383f43", user_id="u-4711"),
        ):
            for name in names:  # warm up: connections made, caches filled
                before, after = around.get(name, nothing)
                before()
                await batches[name](max(10, calls // 10))
                after()
            for _ in range(rounds):
                random.shuffle(order)
                for name in order:
                    prepare, after = around.get(name, nothing)
                    prepare()
                    before = ended.count
                    used = time.process_time()
                    started = time.perf_counter()
                    await batches[name](calls)
                    took = time.perf_counter() - started
                    used = time.process_time() - used
                    after()
                    rates[name].append(calls / took)
                    cpu[name].append(calls / used)
                    spans[name].append((ended.count - before) / calls)
    finally:
        await close()
    return rates, cpu, spans


def measure(names: list[str], rounds: int, calls: int) -> list[Result]:
    """Start the server, measure every variant round by round, stop it."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})  # before the batch processor's thread starts
    folder = tempfile.mkdtemp()
    port_file = Path(folder, "port")
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--port-file", str(port_file)])
    try:
        _wait_until(lambda: port_file.exists() and port_file.read_text(), "the server")
        port = int(port_file.read_text())
        _wait_until(lambda: _listening(port), "the server")
        url = f"http://127.0.0.1:{port}/hello"
        rates, cpu, spans = asyncio.run(_measure(names, url, rounds, calls))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    return _results(names, rates, "wall") + _results(names, cpu, "CPU", spans)


def _results(
    names: list[str],
    rates: dict[str, list[float]],
    kind: str,
    spans: dict[str, list[float]] | None = None,
) -> list[Result]:
    """One result per variant: *rates* are calls per wall-second or per CPU-second (*kind*)."""
    suffix = " (per CPU-second of the client process)" if kind == "CPU" else ""
    results = []
    for name in names:
        variant = VARIANTS[name]
        per_call = 1 / statistics.median(rates[name])
        notes = {f"{kind} per call": f"{per_call * 1e6:.0f} µs"}
        bare = f"{name.partition('-')[0]}-bare"
        if bare in rates and name != bare:
            over = per_call - 1 / statistics.median(rates[bare])
            notes["over the bare client"] = f"{over * 1e6:+.0f} µs"
        if spans is not None:
            notes["CLIENT spans per call"] = f"{statistics.median(spans[name]):g}"
        reference = VARIANTS[variant.reference].label + suffix if variant.reference else None
        results.append(
            Result(
                BENCHMARK,
                variant.label + suffix,
                rates[name],
                unit=RATE,
                reference=reference,
                target=variant.target,
                notes=notes,
            )
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, to check it runs")
    parser.add_argument("--json", help="write the results to this file (for run.py)")
    parser.add_argument("--only", action="append", choices=list(VARIANTS), help="these variants")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=300, help="calls per batch")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.port_file)
        return 0
    rounds, calls = (2, 50) if args.quick else (args.rounds, args.calls)
    results = measure(args.only or list(VARIANTS), rounds, calls)
    if args.json:
        write_results(args.json, results)
    print(rate_table(results, "calls/s"))  # per second, then per CPU-second
    return 0


if __name__ == "__main__":
    sys.exit(main())
