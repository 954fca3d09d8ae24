"""Soak: hostile and valid requests together through HTTP, a thread pool and a process pool.

Every request crosses an aiohttp server (on a free loopback port), a
``tl.ThreadPoolExecutor`` and a ``tl.ProcessPoolExecutor``; half of them carry
hostile input (baggage too deep, out of range, with bad keys, at the W3C
limits, with CR/LF; paths with CR/LF). The soak checks that no request's
context, log line or span is wrong or lost, prints a summary, and exits 1 if
any was. Bounded in requests and in time::

    python benchmarks/soak.py --requests 2000 --in-flight 100 --seconds 300

``--stack asgi`` runs the ASGI soak instead (`soak_asgi`: FastAPI -> httpx ->
FastAPI under uvicorn, with a thread hop on each side).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

HOSTILE_BAGGAGE = [
    "request.x=" + "%5B" * 1300 + "%5D" * 1300 + ";tl=json",  # nested too deep
    "request.x=%7B%22%22:1%7D;tl=json",  # an empty key
    "request.x=1e400;tl=json",  # out of range
    "request.x=NaN;tl=json",
    "request.x=%22%5Cud800%22;tl=json",  # a lone surrogate
    ",".join(f"k{i}=v" for i in range(180)),  # at the member limit
    "k=" + "v" * 8000,  # one member near the size limit
    "request.user_id=evil%0D%0AFORGED%1B%5B31m;tl",  # CR/LF and an escape sequence
    "not a baggage header at all",
]
LOG_FORMAT = "%(request_id)s|%(user_id)s|%(message)s"


def in_worker() -> str:
    """The request id a thread or a worker process sees."""
    import threadline as tl

    value = tl.request.get()
    return str(value["request_id"]) if value else "-"


def make_app(threads: Any, processes: Any) -> Any:
    from aiohttp import web
    from opentelemetry import trace

    import threadline as tl
    import threadline.aiohttp as tla

    log = logging.getLogger("soak.app")

    async def handle(request: web.Request) -> web.Response:
        thread_seen = await asyncio.wrap_future(threads.submit(in_worker))
        process_seen = await asyncio.wrap_future(processes.submit(in_worker))
        value = tl.request.get() or {}
        log.info("handled")
        span_context = trace.get_current_span().get_span_context()
        return web.json_response(
            {
                "request_id": value.get("request_id"),
                "thread": thread_seen,
                "process": process_seen,
                "trace_id": f"{span_context.trace_id:032x}",
            }
        )

    app = web.Application(middlewares=[tla.middleware()])
    app.router.add_get(r"/{tail:[\s\S]*}", handle)  # paths with CR/LF in them too
    return app


def observe() -> tuple[Any, io.StringIO]:
    """Keep the spans in memory and the app's log lines, with the filter's fields, as text."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from threadline.logging import ContextFilter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    app_log = logging.getLogger("soak.app")
    app_log.addHandler(handler)
    app_log.setLevel(logging.INFO)
    app_log.propagate = False
    logging.getLogger("threadline").setLevel(logging.ERROR)  # drop warnings are expected here
    return exporter, stream


def check(sent: dict[str, str], lines: list[str], spans: Any) -> list[str]:
    """What is wrong or lost: one log line per request, and its three spans in its trace."""
    logged = Counter(line.split("|", 1)[0] for line in lines)
    wrong = [
        f"{request_id}: {logged[request_id]} log lines, expected 1"
        for request_id in sent
        if logged[request_id] != 1
    ]
    if len(lines) != len(sent):
        wrong.append(f"{len(lines)} log lines for {len(sent)} requests")
    by_trace: dict[str, Counter[str]] = {}
    for span in spans:
        boundary = str((span.attributes or {}).get("threadline.boundary"))
        by_trace.setdefault(f"{span.context.trace_id:032x}", Counter())[boundary] += 1
    expected = Counter({"http.server": 1, "thread": 1, "process": 1})
    wrong.extend(
        f"{request_id}: spans {dict(by_trace.get(trace_id, {}))}"
        for request_id, trace_id in sent.items()
        if by_trace.get(trace_id) != expected
    )
    return wrong


async def soak(requests: int, in_flight: int, seconds: float) -> dict[str, Any]:
    import aiohttp
    from aiohttp import web

    import threadline as tl
    from threadline import diagnostics

    exporter, stream = observe()

    context = multiprocessing.get_context("forkserver")
    wrong: list[str] = []
    sent: dict[str, str] = {}  # request id -> trace id
    with (
        tl.ThreadPoolExecutor(4) as threads,
        tl.ProcessPoolExecutor(2, mp_context=context) as processes,
    ):
        runner = web.AppRunner(make_app(threads, processes), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        limit = asyncio.Semaphore(in_flight)

        async def one(session: aiohttp.ClientSession, i: int) -> None:
            request_id = f"soak-{i}"
            trace_id = f"{i + 1:032x}"
            hostile = i % 2 == 1
            headers = {
                "X-Request-ID": request_id,
                "traceparent": f"00-{trace_id}-{i + 1:016x}-01",
                "baggage": HOSTILE_BAGGAGE[i % len(HOSTILE_BAGGAGE)]
                if hostile
                else f"request.user_id={i};tl=json",
            }
            path = f"/r/{i}%0D%0AFORGED" if hostile else f"/r/{i}"
            sent[request_id] = trace_id
            async with limit, session.get(base + path, headers=headers) as response:
                json_body = response.content_type == "application/json"
                body = await response.json() if json_body else {"body": await response.text()}
                seen = {
                    "status": response.status,
                    "header": response.headers.get("X-Request-ID"),
                    **body,
                }
            expected = {
                "status": 200,
                "header": request_id,
                "request_id": request_id,
                "thread": request_id,
                "process": request_id,
                "trace_id": trace_id,
            }
            if expected != seen:
                wrong.append(f"{request_id}: expected {expected}, got {seen}")

        started = time.monotonic()
        async with aiohttp.ClientSession(skip_auto_headers=["User-Agent"]) as session:
            await asyncio.wait_for(
                asyncio.gather(*(one(session, i) for i in range(requests))), seconds
            )
        elapsed = time.monotonic() - started
        await runner.cleanup()

    lines = stream.getvalue().splitlines()
    wrong.extend(check(sent, lines, exporter.get_finished_spans()))
    spans = len(exporter.get_finished_spans())
    return {
        "requests": len(sent),
        "hostile": len(sent) // 2,
        "seconds": round(elapsed, 2),
        "log_lines": len(lines),
        "spans": spans,
        "drops": diagnostics.drop_counts(),
        "wrong": wrong,
    }


def main(argv: list[str] | None = None, out: Callable[[str], object] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument(
        "--stack",
        choices=["aiohttp", "asgi"],
        default="aiohttp",
        help="aiohttp: this soak; asgi: FastAPI -> httpx -> FastAPI (soak_asgi.py)",
    )
    args = parser.parse_args(argv)
    run = soak
    if args.stack == "asgi":
        from soak_asgi import soak as run
    result = asyncio.run(run(args.requests, args.in_flight, args.seconds))
    wrong = result.pop("wrong")
    for key, value in result.items():
        out(f"{key}: {value}")
    out(f"wrong or lost: {len(wrong)}")
    for line in wrong[:20]:
        out(f"  {line}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
