"""``threadline demo``: one request across HTTP, threads, processes and children, as one trace.

A gateway and a backend (aiohttp, free loopback ports) serve two requests. The
backend works in a thread pool and a process pool and starts a Python child
and a shell child. Spans go to the embedded default (OTLP JSON lines in a
file) or, with ``--otlp URL``, to a Collector; log lines of every process go
to one JSON lines file. At the end each trace is printed as a tree with the
log lines that carry its trace id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

LOG_FILE_ENV = "THREADLINE_DEMO_LOG_FILE"
SHELL_CHILD = (
    'trace_id=$(printf %s "$TRACEPARENT" | cut -d- -f2); '
    "request_id=$(printf %s \"$BAGGAGE\" | tr , '\\n' "
    "| sed -n 's/^request\\.request_id=\\([^;]*\\).*/\\1/p'); "
    'printf \'{"service":"shell-child","message":"shell child saw the request","request_id":"%s",'
    '"trace_id":"%s"}\\n\' "$request_id" "$trace_id" >> "$THREADLINE_DEMO_LOG_FILE"'
)
PYTHON_CHILD = (
    "import logging, os\n"
    "from opentelemetry import trace\n"
    "from threadline.logging import JSONFormatter\n"
    f"handler = logging.FileHandler(os.environ['{LOG_FILE_ENV}'])\n"
    "handler.setFormatter(JSONFormatter())\n"
    "logging.getLogger().addHandler(handler)\n"
    "with trace.get_tracer('child').start_as_current_span('resize image'):\n"
    "    logging.getLogger('python-child').warning('python child resized the image')\n"
)


def set_up_logging() -> None:
    """JSON lines, from every process, into one file (the pool's initializer too)."""
    from threadline.logging import JSONFormatter, install  # noqa: PLC0415

    install()
    handler = logging.FileHandler(os.environ[LOG_FILE_ENV])
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def checksum(order: int) -> int:
    """Runs in a worker process."""
    logging.getLogger("backend.worker").info(
        "worker %d computed the checksum of order %d", os.getpid(), order
    )
    return order * 31 % 97


def read_stock(order: int) -> int:
    """Runs in a pool thread."""
    logging.getLogger("backend.thread").info("thread read the stock of order %d", order)
    return 3


async def _serve(app: Any) -> tuple[Any, str]:
    from aiohttp import web  # noqa: PLC0415

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def _scenario(requests: int) -> list[str]:
    import aiohttp  # noqa: PLC0415
    from aiohttp import web  # noqa: PLC0415

    import threadline as tl  # noqa: PLC0415
    import threadline.aiohttp as tla  # noqa: PLC0415
    from threadline import subprocess as tl_subprocess  # noqa: PLC0415

    threads = tl.ThreadPoolExecutor(max_workers=2)
    processes = tl.ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=set_up_logging,
    )

    async def stock(request: web.Request) -> web.Response:
        order = int(request.match_info["order"])
        logging.getLogger("backend").info("backend checking order %d", order)
        count = await tl.run_in_executor(threads, read_stock, order)
        total = await asyncio.wrap_future(processes.submit(checksum, order))
        child_env = {**os.environ, "OTEL_SERVICE_NAME": "demo-python-child"}
        await asyncio.to_thread(
            tl.bind(tl_subprocess.run),
            [sys.executable, "-c", PYTHON_CHILD],
            env=child_env,
            check=True,
        )
        await asyncio.to_thread(tl.bind(tl_subprocess.run), ["sh", "-c", SHELL_CHILD], check=True)
        return web.json_response({"order": order, "stock": count, "checksum": total})

    async def orders(request: web.Request) -> web.Response:
        logging.getLogger("gateway").info("gateway got %s", request.path)
        url = f"{request.app['backend']}/stock/{request.match_info['order']}"
        async with request.app["client"].get(url) as response:
            body = await response.json()
        return web.json_response(body)

    backend = web.Application(middlewares=[tla.middleware()])
    backend.router.add_get("/stock/{order}", stock)
    gateway = web.Application(middlewares=[tla.middleware(trust_incoming=False)])
    gateway.router.add_get("/orders/{order}", orders)
    gateway["client"] = aiohttp.ClientSession(trace_configs=[tla.trace_config()])
    backend_runner, gateway["backend"] = await _serve(backend)
    gateway_runner, gateway_url = await _serve(gateway)
    request_ids = []
    try:
        async with aiohttp.ClientSession() as client:
            for order in range(1, requests + 1):
                async with client.get(f"{gateway_url}/orders/{order}") as response:
                    response.raise_for_status()
                    request_ids.append(response.headers["X-Request-ID"])
    finally:
        await gateway["client"].close()
        await gateway_runner.cleanup()
        await backend_runner.cleanup()
        threads.shutdown()
        processes.shutdown()
    return request_ids


def run_demo(*, otlp: str | None = None, requests: int = 2, out: Any = None) -> int:
    """Run the scenario, then print each trace as a tree with its log lines; return 0."""
    out = out or sys.stdout
    workdir = Path(tempfile.mkdtemp(prefix="threadline-demo-"))
    os.environ[LOG_FILE_ENV] = str(workdir / "logs.jsonl")
    os.environ.setdefault("OTEL_SERVICE_NAME", "threadline-demo")
    if otlp:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp
        os.environ.setdefault("OTEL_TRACES_EXPORTER", "otlp")
    else:
        os.environ.setdefault("OTEL_TRACES_EXPORTER", "file")
        os.environ["THREADLINE_TRACES_FILE"] = str(workdir / "traces.jsonl")
    from threadline.tracing import configure, shutdown  # noqa: PLC0415

    provider = configure()
    set_up_logging()
    request_ids = asyncio.run(_scenario(requests))
    if provider is not None:
        shutdown(provider, 10.0)
    logs = _read_logs(Path(os.environ[LOG_FILE_ENV]))
    if otlp:
        print(f"spans of {len(request_ids)} requests sent to {otlp}", file=out)
        _print_logs(logs, out)
        return 0
    from threadline.export import read_spans  # noqa: PLC0415

    print_traces(read_spans(workdir / "traces.jsonl"), logs, out)
    print(f"\nspans: {workdir / 'traces.jsonl'}\nlogs:  {workdir / 'logs.jsonl'}", file=out)
    return 0


def _read_logs(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def print_traces(spans: list[Any], logs: list[dict[str, Any]], out: Any) -> None:
    """Print each trace as a tree (service, span, duration), then its log lines."""
    by_trace: dict[str, list[Any]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    for trace_id, members in sorted(
        by_trace.items(), key=lambda item: min(s.start_ns for s in item[1])
    ):
        print(f"\ntrace {trace_id} ({len(members)} spans)", file=out)
        ids = {span.span_id for span in members}
        children: dict[str | None, list[Any]] = defaultdict(list)
        for span in members:
            children[span.parent_id if span.parent_id in ids else None].append(span)
        _print_tree(children, None, "", out)
        lines = [log for log in logs if log.get("trace_id") == trace_id]
        for log in lines:
            service = log.get("service") or log.get("logger", "")
            print(
                f"  log  {service:<22} request={log.get('request_id')}  {log.get('message')}",
                file=out,
            )


def _print_tree(
    children: dict[str | None, list[Any]], parent: str | None, indent: str, out: Any
) -> None:
    for span in sorted(children.get(parent, []), key=lambda s: s.start_ns):
        print(f"  {indent}{span.service:<20} {span.name:<32} {span.duration_ms:8.1f} ms", file=out)
        _print_tree(children, span.span_id, indent + "  ", out)


def _print_logs(logs: list[dict[str, Any]], out: Any) -> None:
    for log in logs:
        print(
            f"  log  request={log.get('request_id')} trace={log.get('trace_id')}  "
            f"{log.get('message')}",
            file=out,
        )
