"""Soak, ASGI: FastAPI -> httpx -> FastAPI, a thread hop on each side, hostile requests mixed in.

Two real uvicorn servers on free loopback ports, each in its own thread and
event loop: a gateway (FastAPI with its own telemetry on, so threadline
continues FastAPI's SERVER span; a ``user_id`` extractor; a
``tl.ThreadPoolExecutor`` hop; an ``httpx.AsyncClient`` under
`threadline.httpx.instrument`) and a backend (FastAPI's tracing off, so the
SERVER span is threadline's; a ``run_in_threadpool`` hop). Half the requests
are hostile: a bad ``traceparent`` (two of them, an all-zero or upper-case
trace id, too long), bad ``baggage`` (the aiohttp soak's list) or a bad
``X-Request-ID``. Spans go to an SDK provider's in-memory exporter.

The soak checks that each request's request id, user id, store values and
trace id are the same at the gateway handler, its thread, the backend
handler, its thread and on each of their log lines and access lines (and are
the ones sent, where those were valid), and that its SERVER, CLIENT and
thread spans are all there, in one trace of its own, under the right parents::

    python benchmarks/soak.py --stack asgi --requests 2000 --in-flight 200
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from typing import Any

import aiohttp
import httpx
import uvicorn
from fastapi import FastAPI
from multidict import CIMultiDict
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from soak import HOSTILE_BAGGAGE
from starlette.concurrency import run_in_threadpool

import threadline as tl
import threadline.asgi
import threadline.httpx
from threadline import diagnostics
from threadline.logging import ContextFilter

# the gateway's connections to the backend: httpx's keep-alive default (20); httpcore scans every
# connection of its pool (a socket poll each) on each request, so a larger pool only costs CPU
POOL = 20
HOPS = ("gateway", "gateway thread", "backend", "backend thread")
FIELDS = ("request_id", "user_id", "tenant", "order", "trace_id")
LOG_FORMAT = "|".join(f"%({field})s" for field in FIELDS) + "|%(message)s"
ACCESS_FORMAT = "%(request_id)s|%(user_id)s|%(tenant)s|-|%(trace_id)s|%(message)s"
# {trace}, {span}: the request's valid ids; each is dropped by the W3C rules (and by threadline)
HOSTILE_TRACEPARENTS = [
    ["00-{trace}-{span}-01", "00-{other}-{span}-01"],  # two traceparent lines
    ["00-00000000000000000000000000000000-{span}-01"],  # an all-zero trace id
    ["00-{upper}-{span}-01"],  # upper-case hex
    ["00-{trace}-{span}-01-" + "x" * 600],  # past the 512-character limit
]
HOSTILE_REQUEST_IDS = ["x" * 129, "has spaces", "semi;colon", "caf\u00e9", ""]
soak_store = tl.ContextStore("soak")


def seen_here(hop: str) -> dict[str, Any]:
    """What this hop sees of the request (and one log line saying so)."""
    logging.getLogger("soak.app").info(hop)
    value = tl.request.get() or {}
    order = (soak_store.get() or {}).get("order")
    return {
        "request_id": value.get("request_id"),
        "user_id": value.get("user_id"),
        "tenant": value.get("tenant"),
        "order": order,
        "trace_id": f"{trace.get_current_span().get_span_context().trace_id:032x}",
    }


def user_of(scope: dict[str, Any]) -> str | None:
    """The gateway's authentication: the ``X-User`` header is the only user id."""
    for name, value in scope["headers"]:
        if name == b"x-user":
            return bytes(value).decode("ascii", "replace")
    return None


def make_gateway(backend: str, threads: tl.ThreadPoolExecutor) -> FastAPI:
    clients: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
        client = threadline.httpx.instrument(httpx.AsyncClient(limits=limits, timeout=60))
        async with client:
            clients["backend"] = client
            yield

    app = FastAPI(lifespan=lifespan)  # its own telemetry on: a tracer provider is set

    @app.get("/r/{i}")
    async def gateway(i: int) -> dict[str, Any]:
        with soak_store.scope(order=i):
            here = seen_here("gateway")
            thread = await asyncio.wrap_future(threads.submit(seen_here, "gateway thread"))
            response = await clients["backend"].get(f"{backend}/r/{i}")
            return {"gateway": here, "gateway thread": thread, **response.json()}

    return threadline.asgi.setup(app, user_id=user_of)


def make_backend() -> FastAPI:
    app = FastAPI(telemetry={"tracing": False})  # the SERVER span is threadline's

    @app.get("/r/{i}")
    async def backend(i: int) -> dict[str, Any]:
        here = seen_here("backend")
        return {
            "backend": here,
            "backend thread": await run_in_threadpool(seen_here, "backend thread"),
        }

    return threadline.asgi.setup(app)


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve *app* with uvicorn in a thread of its own (its own event loop); yield its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # a free port
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[sock]),))
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


def observe() -> tuple[InMemorySpanExporter, io.StringIO, io.StringIO]:
    """Spans in memory; the app's log lines and threadline's access lines, with their fields."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    streams = []
    for name, form in (("soak.app", LOG_FORMAT), ("threadline.asgi", ACCESS_FORMAT)):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.addFilter(ContextFilter(keys=["tenant"]))
        handler.addFilter(ContextFilter(store=soak_store, keys=["order"]))
        handler.setFormatter(logging.Formatter(form))
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        streams.append(stream)
    # drop warnings (threadline's, and OpenTelemetry's propagator's in FastAPI) are expected here
    logging.getLogger("threadline").setLevel(logging.ERROR)
    logging.getLogger("opentelemetry").setLevel(logging.ERROR)
    return exporter, streams[0], streams[1]


def request_for(i: int) -> tuple[CIMultiDict[str], dict[str, Any]]:
    """The headers of request *i* and what every hop must see of it (None: anything, alike)."""
    trace_id, span_id = f"{i + 1:032x}", f"{i + 1:016x}"
    expected: dict[str, Any] = {
        "request_id": f"soak-{i}",
        "user_id": f"u{i}",
        "tenant": f"t{i}",
        "order": i,
        "trace_id": trace_id,
        "parent": span_id,
    }
    traceparents = [f"00-{trace_id}-{span_id}-01"]
    baggage = f"request.tenant=t{i};tl"
    request_id = expected["request_id"]
    if i % 2:  # hostile: one field of three, in turn
        j = i // 2
        kind, pick = j % 3, j // 3
        if kind == 0:
            shapes = HOSTILE_TRACEPARENTS[pick % len(HOSTILE_TRACEPARENTS)]
            other, upper = f"{i + 1:032x}".replace("0", "f", 1), f"{0xABC000 + i:032X}"
            traceparents = [
                s.format(trace=trace_id, span=span_id, other=other, upper=upper) for s in shapes
            ]
            expected.update(trace_id=None, parent=None)
        elif kind == 1:
            baggage = HOSTILE_BAGGAGE[pick % len(HOSTILE_BAGGAGE)]
            expected.update(tenant=None)
        else:
            request_id = HOSTILE_REQUEST_IDS[pick % len(HOSTILE_REQUEST_IDS)]
            expected.update(request_id=None)
    headers: CIMultiDict[str] = CIMultiDict(
        [("X-Request-ID", request_id), ("X-User", f"u{i}"), ("baggage", baggage)]
    )
    for value in traceparents:
        headers.add("traceparent", value)
    return headers, expected


def check_answer(
    i: int, expected: dict[str, Any], status: int, header: str | None, body: Any
) -> list[str]:
    """What is wrong in one answer: each hop saw the same, and what was sent where it was valid."""
    if status != 200 or not isinstance(body, dict) or set(body) != set(HOPS):
        return [f"request {i}: status {status}, body {str(body)[:200]}"]
    first = body["gateway"]
    wrong = [
        f"request {i}: {hop} saw {body[hop]}, gateway {first}" for hop in HOPS if body[hop] != first
    ]
    wrong.extend(
        f"request {i}: {field} {first[field]!r}, sent {expected[field]!r}"
        for field in FIELDS
        if expected[field] is not None and expected[field] != first[field]
    )
    if first["trace_id"] == "0" * 32:
        wrong.append(f"request {i}: no trace")
    if expected["request_id"] is None and first["request_id"] in (None, f"soak-{i}"):
        wrong.append(f"request {i}: no new request id for a bad one")
    if header != first["request_id"]:
        wrong.append(f"request {i}: X-Request-ID {header!r}, handler {first['request_id']!r}")
    return wrong


def check_lines(
    seen: dict[int, dict[str, Any]], app_lines: list[str], access: list[str]
) -> list[str]:
    """Each request's four log lines and two access lines carry what its hops saw."""
    wrong: list[str] = []
    by_request: dict[str, list[list[str]]] = {}
    for line in app_lines + access:
        fields = line.split("|", len(FIELDS))
        by_request.setdefault(fields[0], []).append(fields)
    for i, first in seen.items():
        lines = by_request.pop(str(first["request_id"]), [])
        messages = Counter("GET" if f[-1].startswith("GET ") else f[-1] for f in lines)
        if messages != Counter({**dict.fromkeys(HOPS, 1), "GET": 2}):
            wrong.append(f"request {i}: log lines {sorted(messages.elements())}")
        for fields in lines:
            want = [str(first[f]) if first[f] is not None else "-" for f in FIELDS]
            if fields[-1].startswith("GET"):  # an access line: outside the soak store's scope
                want[FIELDS.index("order")] = "-"
            if fields[:-1] != want:
                wrong.append(f"request {i}: log line {fields}, hops saw {want}")
    wrong.extend(f"log lines of no request: {key} x{len(v)}" for key, v in by_request.items())
    return wrong


def check_spans(
    seen: dict[int, dict[str, Any]], expected: dict[int, dict[str, Any]], spans: Any
) -> list[str]:
    """Each request has a trace of its own, whole; no span is in no request's trace."""
    by_trace: dict[int, list[Any]] = {}
    for span in spans:
        by_trace.setdefault(span.context.trace_id, []).append(span)
    traces = Counter(int(first["trace_id"], 16) for first in seen.values())
    wrong = [f"trace {t:032x} has {n} requests" for t, n in traces.items() if n != 1]
    refused: set[int] = set()  # the traces that a gateway's SERVER span did not continue
    for i, first in seen.items():
        in_trace = by_trace.get(int(first["trace_id"], 16), [])
        wrong.extend(f"request {i}: {w}" for w in check_trace(in_trace, expected[i]["parent"]))
        for span in in_trace:
            if span.kind == SpanKind.SERVER:
                refused.update(link.context.trace_id for link in span.links)
    known = set(traces) | refused
    strays = sum(len(v) for t, v in by_trace.items() if t not in known)
    if strays:
        wrong.append(f"{strays} spans in no request's trace")
    return wrong


def check_trace(in_trace: list[Any], parent: str | None) -> list[str]:
    """Two SERVER spans, one CLIENT, one thread job; each under the right parent.

    *parent*: the span id the gateway's SERVER span continues, None for a new trace.
    """
    servers = [s for s in in_trace if s.kind == SpanKind.SERVER]
    clients = [s for s in in_trace if s.kind == SpanKind.CLIENT]
    jobs = [s for s in in_trace if (s.attributes or {}).get("threadline.boundary") == "thread"]
    if (len(servers), len(clients), len(jobs)) != (2, 1, 1):
        return [f"{len(servers)} SERVER, {len(clients)} CLIENT, {len(jobs)} thread spans"]
    (client,) = clients
    under_client = client.context.span_id
    backend = [s for s in servers if s.parent is not None and s.parent.span_id == under_client]
    gateway = [s for s in servers if s not in backend]
    if len(backend) != 1 or len(gateway) != 1:
        return ["no backend SERVER span under the CLIENT span"]
    by_id = {span.context.span_id: span for span in in_trace}
    wrong = [
        f"the {name} span is not under the gateway's SERVER span"
        for name, span in (("CLIENT", client), ("thread", jobs[0]))
        if gateway[0].context.span_id not in ancestors(span, by_id)
    ]
    came = gateway[0].parent
    got = f"{came.span_id:016x}" if came is not None and came.is_remote else None
    if got != parent or (parent is None and came is not None):
        wrong.append(f"the gateway's SERVER span's parent is {got}, sent {parent}")
    return wrong


def ancestors(span: Any, by_id: dict[int, Any]) -> list[int]:
    """The span ids above *span* in its trace, nearest first."""
    found = []
    while span is not None and span.parent is not None:
        found.append(span.parent.span_id)
        span = by_id.get(span.parent.span_id)
    return found


Answer = tuple[int, "str | None", Any]  # status, X-Request-ID, body


async def load(
    gateway: str, requests: int, in_flight: int, seconds: float
) -> tuple[dict[int, Answer], dict[int, dict[str, Any]], float]:
    """Send the requests, *in_flight* at a time; their answers, what each must see, the time."""
    answers: dict[int, Answer] = {}
    expected: dict[int, dict[str, Any]] = {}
    limit = asyncio.Semaphore(in_flight)

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        headers, expected[i] = request_for(i)
        async with limit, session.get(f"{gateway}/r/{i}", headers=headers) as response:
            json_body = response.content_type == "application/json"
            body = await response.json() if json_body else await response.text()
            answers[i] = (response.status, response.headers.get("X-Request-ID"), body)

    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.wait_for(asyncio.gather(*(one(session, i) for i in range(requests))), seconds)
    return answers, expected, time.monotonic() - started


async def soak(requests: int, in_flight: int, seconds: float) -> dict[str, Any]:
    exporter, app_stream, access_stream = observe()
    with ExitStack() as stack:
        threads = stack.enter_context(tl.ThreadPoolExecutor(8))
        backend = stack.enter_context(serving(make_backend()))
        gateway = stack.enter_context(serving(make_gateway(backend, threads)))
        answers, expected, elapsed = await load(gateway, requests, in_flight, seconds)
    wrong: list[str] = []
    seen: dict[int, dict[str, Any]] = {}
    for i, (status, header, body) in sorted(answers.items()):
        problems = check_answer(i, expected[i], status, header, body)
        wrong.extend(problems)
        if not problems:
            seen[i] = body["gateway"]
    app_lines = app_stream.getvalue().splitlines()
    access = access_stream.getvalue().splitlines()
    spans = exporter.get_finished_spans()
    if len(seen) == requests:  # else what is wrong is said already
        wrong.extend(check_lines(seen, app_lines, access))
        wrong.extend(check_spans(seen, expected, spans))
    return {
        "stack": "asgi: FastAPI -> httpx -> FastAPI under uvicorn, a thread hop each",
        "requests": len(answers),
        "hostile": requests // 2,
        "in_flight": in_flight,
        "seconds": round(elapsed, 2),
        "log_lines": len(app_lines),
        "access_lines": len(access),
        "spans": len(spans),
        "drops": diagnostics.drop_counts(),
        "wrong": wrong,
    }
