"""threadline.asgi beyond the HTTP contract: clean starts, background tasks, streams, errors,
sync routes, Server-Timing, placement, and FastAPI's own telemetry. Real uvicorn and hypercorn."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
import pytest
from fastapi import BackgroundTasks, FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

import threadline as tl
import threadline.asgi as tla
from tests.asgi_servers import SERVERS, AsgiServe
from tests.helpers import Spans
from tests.http_contract import (
    TRACE_ID,
    TRACEPARENT,
    _read_response,
    access_lines,
    probe,
    send,
    server_span,
)
from tests.http_contract import Response as Answer
from threadline._core.context import attach, get_current, span_key
from threadline.asgi._reader import READER

LEAKY = contextvars.ContextVar("leaky", default=None)


def server_spans(spans: Spans) -> list[Any]:
    return [s for s in spans.finished() if s.kind == SpanKind.SERVER]


def ancestors(spans: Spans, span: Any) -> list[int]:
    """The span ids above *span*, nearest first (an instrumentation may put its own between)."""
    by_id = {s.context.span_id: s for s in spans.finished()}
    found = []
    while span.parent is not None:
        found.append(span.parent.span_id)
        span = by_id.get(span.parent.span_id)
        if span is None:
            break
    return found


# ---------------------------------------------------------------------- every request starts clean


async def pipelined(base: str, *paths: str) -> list[Answer]:
    """GET *paths* written at once on one HTTP/1.1 connection (pipelined); the answers in order."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"".join(f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode() for p in paths)
        )
        await writer.drain()
        return [await _read_response(reader) for _ in paths]
    finally:
        writer.close()
        await writer.wait_closed()


LARGE = 1_000_000


async def send_bodies(base: str, *requests: tuple[str, dict[str, str]]) -> list[Answer]:
    """POST a large body to each path, one after another on one connection."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        answers = []
        for path, headers in requests:
            head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
            head += [f"{name}: {value}" for name, value in headers.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + b"x" * LARGE)
            await writer.drain()
            answers.append(await _read_response(reader))
        return answers
    finally:
        writer.close()
        await writer.wait_closed()


class Before:
    """An outer ASGI middleware (the server's side, or another instrumentation): what it sees."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[Any, bool, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            span_valid = trace.get_current_span().get_span_context().is_valid
            self.seen.append((tl.request.get(), span_valid, LEAKY.get()))
        await self.app(scope, receive, send)


async def _leaves_everything(request: Request) -> Response:
    """Reports what it found, then leaves a value, an attached context and a span behind."""
    await request.body()  # a large one makes uvicorn pause reading, and resume in receive
    found = {**probe(), "leaky": LEAKY.get()}
    LEAKY.set("from an earlier request")
    span = trace.get_tracer("tests").start_span("left open")
    with tl.request.merge(tenant="left-behind"):
        attach({**get_current(), span_key(): span})  # never detached  # type: ignore[arg-type]
    return JSONResponse(found)


def leaking_app() -> Starlette:
    return Starlette(routes=[Route("/leak/{n}", _leaves_everything, methods=["GET", "POST"])])


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("arrival", ["pipelined", "keep-alive", "large-bodies"])
async def test_every_request_starts_clean(
    asgi_serve: AsgiServe, spans: Spans, server: str, arrival: str
) -> None:
    """No value, span or request id of an earlier request on the connection: before, or in, the app.

    Each handler sets a contextvar, attaches a context with a store value and a
    span and never detaches. uvicorn starts a pipelined request from inside the
    previous one's last ``send``, and reads on from inside ``receive`` after a
    large body paused it (CPython issue 140947); no ``--reset-contextvars``.
    """
    before = Before(tla.Middleware(leaking_app()))
    base = await asgi_serve(before, server)
    paths = ["/leak/1", "/leak/2", "/leak/3"]
    if arrival == "pipelined":
        answers = await pipelined(base, *paths)
    elif arrival == "large-bodies":
        large = {"Content-Length": str(LARGE), "Content-Type": "text/plain"}
        answers = await send_bodies(base, *[(p, large) for p in paths])
    else:
        answers = await send(base, *[("GET", p, {}) for p in paths])
    bodies = [answer.json() for answer in answers]
    assert [{"request_id": a.headers["x-request-id"]} for a in answers] == [
        b["request"] for b in bodies
    ]
    assert [None, None, None] == [b["leaky"] for b in bodies]
    assert 3 == len({b["trace_id"] for b in bodies})
    assert all(parent is None for parent in [s.parent for s in server_spans(spans)])
    assert [(None, False, None)] * 3 == before.seen


# ---------------------------------------------------------------------- background tasks


def background_app(done: asyncio.Event, **options: Any) -> FastAPI:
    app = FastAPI(telemetry={"tracing": False})
    app.add_middleware(tla.Middleware, **options)

    async def later(note: str) -> None:
        await asyncio.sleep(0)
        logging.getLogger("tests.background").info("background %s", note)
        with trace.get_tracer("tests").start_as_current_span("send email"):
            pass
        done.set()

    @app.get("/orders/{order}")
    async def order(order: str, tasks: BackgroundTasks) -> dict[str, Any]:
        tasks.add_task(later, order)
        return probe()

    return app


@pytest.mark.parametrize("mode", ["child", "new_trace"])
async def test_background_tasks_run_in_the_request(
    asgi_serve: AsgiServe, spans: Spans, mode: str
) -> None:
    """Their logs carry the request id; their span is the request's child, or a linked new trace.

    The SERVER span and the access line end with the response, before the task runs.
    """
    done = asyncio.Event()
    base = await asgi_serve(background_app(done, background_tasks=mode))
    with access_lines("tests.background") as records:
        (answer,) = await send(base, ("GET", "/orders/7", {"traceparent": TRACEPARENT}))
        await asyncio.wait_for(done.wait(), 10)
    (record,) = records
    server = server_span(spans)
    email = spans.named("send email")
    assert answer.headers["x-request-id"] == record.request_id  # type: ignore[attr-defined]
    assert server.end_time <= email.start_time
    if mode == "child":
        assert server.context.span_id in ancestors(spans, email)
        assert TRACE_ID == record.trace_id  # type: ignore[attr-defined]
    else:
        background = spans.named("background")
        assert background.parent is None
        assert TRACE_ID != f"{background.context.trace_id:032x}"
        assert [server.context.span_id] == [link.context.span_id for link in background.links]
        assert background.context.span_id in ancestors(spans, email)
        assert server.context.span_id not in ancestors(spans, email)
        assert f"{background.context.trace_id:032x}" == record.trace_id  # type: ignore[attr-defined]


async def test_background_tasks_option_is_checked() -> None:
    with pytest.raises(ValueError, match="background_tasks"):
        tla.Middleware(leaking_app(), background_tasks="later")


# ---------------------------------------------------------------------- streams


@pytest.mark.parametrize("media_type", ["text/plain", "text/event-stream"])
@pytest.mark.parametrize("server", SERVERS)
async def test_a_stream_keeps_the_request_until_its_last_chunk(
    asgi_serve: AsgiServe, spans: Spans, media_type: str, server: str
) -> None:
    """Every chunk is made in the request's scope and span; the span ends after the body."""
    made: list[tuple[str, bool]] = []

    async def chunks() -> AsyncIterator[str]:
        for n in range(3):
            await asyncio.sleep(0)
            made.append((tl.request.get()["request_id"], trace.get_current_span().is_recording()))
            yield f"data: {n}\n\n"

    async def stream(request: Request) -> Response:
        return StreamingResponse(chunks(), media_type=media_type)

    app = tla.Middleware(Starlette(routes=[Route("/stream", stream)]))
    (answer,) = await send(await asgi_serve(app, server), ("GET", "/stream", {}))
    assert b"data: 0\n\ndata: 1\n\ndata: 2\n\n" == answer.body
    assert [(answer.headers["x-request-id"], True)] * 3 == made
    assert 200 == server_span(spans).attributes["http.response.status_code"]


# ---------------------------------------------------------------------- errors


class RefusedError(Exception):
    pass


def failing_app(placement: str) -> FastAPI:
    app = FastAPI(telemetry={"tracing": False})
    log = logging.getLogger("tests.handlers")

    @app.exception_handler(RefusedError)
    async def refused(request: Request, exc: RefusedError) -> Response:
        log.warning("refused")
        return PlainTextResponse("refused", status_code=503)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> Response:
        log.error("failed", exc_info=exc)
        return PlainTextResponse("sorry", status_code=500)

    @app.get("/refuse")
    async def refuse() -> None:
        raise RefusedError

    @app.get("/fail")
    async def fail() -> None:
        raise RuntimeError("handler failed")

    if placement == "setup":
        tla.setup(app)
    else:
        app.add_middleware(tla.Middleware)
    return app


@pytest.mark.parametrize("placement", ["setup", "add_middleware"])
async def test_a_route_that_raises(asgi_serve: AsgiServe, spans: Spans, placement: str) -> None:
    """500 with the id; every line about it (handlers', threadline's, the server's) has the ids."""
    base = await asgi_serve(failing_app(placement))
    with (
        access_lines("tests.handlers") as handlers,
        access_lines("threadline.asgi") as ours,
        access_lines("uvicorn.error") as servers,
    ):
        (answer,) = await send(
            base, ("GET", "/fail", {"traceparent": TRACEPARENT, "X-Request-ID": "e-1"})
        )
    span = server_span(spans)
    assert (500, StatusCode.ERROR, "RuntimeError") == (
        answer.status,
        span.status.status_code,
        span.attributes["error.type"],
    )
    lines = [r for r in [*handlers, *ours, *servers] if r.levelno >= logging.ERROR]
    assert {"failed", "unhandled exception in GET /fail", "Exception in ASGI application\n"} <= {
        r.getMessage() for r in lines
    }
    assert {("e-1", TRACE_ID)} == {(r.request_id, r.trace_id) for r in lines}  # type: ignore[attr-defined]
    assert b"sorry" == answer.body  # your 500 handler's answer
    # setup puts threadline outside Starlette's error middleware, which answers with your
    # handler: the id goes on that 500 too (added inside it, the handler answers outside)
    assert ("e-1" if placement == "setup" else None) == answer.headers.get("x-request-id")


async def test_an_exception_handlers_lines_have_the_ids(asgi_serve: AsgiServe) -> None:
    """An exception handler's answer and its log line are the request's."""
    base = await asgi_serve(failing_app("add_middleware"))
    with access_lines("tests.handlers") as records:
        (answer,) = await send(base, ("GET", "/refuse", {"X-Request-ID": "no-1"}))
    assert (503, "no-1") == (answer.status, answer.headers["x-request-id"])
    assert ["no-1"] == [r.request_id for r in records]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- sync code


def sync_app() -> FastAPI:
    app = FastAPI(telemetry={"tracing": False})
    app.add_middleware(tla.Middleware)

    @app.get("/def")
    def in_starlettes_pool() -> dict[str, Any]:
        return probe()

    @app.get("/run_in_threadpool")
    async def threadpool() -> dict[str, Any]:
        return await run_in_threadpool(probe)

    @app.get("/to_thread")
    async def to_thread() -> dict[str, Any]:
        return await anyio.to_thread.run_sync(probe)

    return app


@pytest.mark.parametrize("path", ["/def", "/run_in_threadpool", "/to_thread"])
async def test_sync_code_sees_the_request(asgi_serve: AsgiServe, spans: Spans, path: str) -> None:
    """def routes, run_in_threadpool and anyio.to_thread see the stores and trace (anyio copies)."""
    (answer,) = await send(await asgi_serve(sync_app()), ("GET", path, {"X-Request-ID": "s-1"}))
    body, span = answer.json(), server_span(spans)
    assert "s-1" == body["request"]["request_id"]
    assert f"{span.context.span_id:016x}" == body["span_id"]


# ---------------------------------------------------------------------- placement


async def test_setup_twice_adds_it_once(asgi_serve: AsgiServe, spans: Spans) -> None:
    """A second setup, or the middleware added as well, makes no second span or header."""
    app = Starlette(routes=[Route("/items/{n}", lambda r: JSONResponse(probe()))])
    app.add_middleware(tla.Middleware)
    assert app is tla.setup(app)
    assert app is tla.setup(app)
    (answer,) = await send(await asgi_serve(app), ("GET", "/items/1", {}))
    assert 1 == len(server_spans(spans))
    assert answer.headers["x-request-id"] == answer.json()["request"]["request_id"]


async def test_other_scopes_pass_through() -> None:
    """Lifespan (and WebSocket) scopes reach the app as they came, with the same callables."""
    calls: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append((scope, receive, send))

    async def receive() -> dict[str, Any]:
        return {}

    async def send_(message: Any) -> None:
        pass

    for kind in ("lifespan", "websocket"):
        scope = {"type": kind}
        await tla.Middleware(app)(scope, receive, send_)
        assert (scope, receive, send_) == calls[-1]
        assert {"type": kind} == scope


def test_options_are_checked_when_made() -> None:
    with pytest.raises(TypeError, match="server_timing"):
        tla.Middleware(leaking_app(), server_timing="yes")


@pytest.mark.parametrize("app", [None, "app", 42])
def test_an_app_that_is_no_asgi_app_is_refused_when_made(app: Any) -> None:
    """An ASGI app is callable: anything else is a TypeError naming it, never a first-request
    failure."""
    with pytest.raises(TypeError, match=r"^app takes an ASGI application"):
        tla.Middleware(app)
    with pytest.raises(TypeError, match=r"^app takes an ASGI application"):
        tla.setup(app)


def test_set_route_and_set_exception_check_their_argument() -> None:
    """A route is a str, an error an exception; anything else is named, in a request or not."""
    with pytest.raises(TypeError, match=r"^route takes"):
        tla.set_route({}, 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^error takes"):
        tla.set_exception({}, "x")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- FastAPI's own telemetry


def native_app(placement: str) -> Any:
    app = FastAPI()  # its telemetry is on: a tracer provider is set

    @app.get("/items/{n}")
    async def items(n: int) -> dict[str, Any]:
        logging.getLogger("tests.native").info("handling")
        return probe()

    if placement == "add_middleware":
        app.add_middleware(tla.Middleware)
        return app
    if placement == "setup":
        return tla.setup(app)
    return tla.Middleware(app)  # wrapped from outside


@pytest.mark.parametrize("placement", ["add_middleware", "setup", "outside"])
async def test_fastapis_own_span_is_continued(
    asgi_serve: AsgiServe, spans: Spans, placement: str
) -> None:
    """One SERVER span, FastAPI's, with request.id; the handler has the id and that span."""
    base = await asgi_serve(native_app(placement))
    with access_lines("tests.native") as records:
        (answer,) = await send(base, ("GET", "/items/3", {"traceparent": TRACEPARENT}))
    (span,) = server_spans(spans)
    body = answer.json()
    assert "fastapi" == span.instrumentation_scope.name
    assert (TRACE_ID, f"{span.context.span_id:016x}") == (body["trace_id"], body["span_id"])
    request_id = answer.headers["x-request-id"]
    assert request_id == body["request"]["request_id"] == span.attributes["request.id"]
    assert [request_id] == [r.request_id for r in records]  # type: ignore[attr-defined]


@pytest.mark.parametrize("placement", ["add_middleware", "setup", "outside"])
async def test_two_traceparents_begin_a_new_trace_beside_fastapi(
    asgi_serve: AsgiServe,
    spans: Spans,
    threadline_warnings: pytest.LogCaptureFixture,
    monkeypatch: Any,
    placement: str,
) -> None:
    """FastAPI's propagator continues the first of two traceparents, which W3C Trace Context (and
    threadline) drops: the handler runs in a new trace, under threadline's SERVER span linked to
    FastAPI's, and a warning says so once (the W3C harness's test_traceparent_duplicated)."""
    from threadline._http import server

    monkeypatch.setattr(server, "_warned_about_dropped", False)
    base = await asgi_serve(native_app(placement))
    other = f"00-{'1' * 32}-{'2' * 16}-01"
    # two header lines: the value's bytes end the first and begin the second
    twice = f"{TRACEPARENT}\r\ntraceparent: {other}".encode()
    *_, answer = await send(base, *[("GET", "/items/3", {"traceparent": twice})] * 2)
    body = answer.json()
    by_scope: dict[str, list[Any]] = {}
    for span in server_spans(spans):
        by_scope.setdefault(span.instrumentation_scope.name, []).append(span)
    ours, fastapis = by_scope["threadline"][-1], by_scope["fastapi"][-1]
    assert int(TRACE_ID, 16) == fastapis.context.trace_id  # what FastAPI continued
    assert None is ours.parent  # a new trace, which the handler is in
    assert (f"{ours.context.trace_id:032x}", f"{ours.context.span_id:016x}") == (
        body["trace_id"],
        body["span_id"],
    )
    assert [fastapis.context] == [link.context for link in ours.links]
    assert answer.headers["x-request-id"] == body["request"]["request_id"]
    (warning,) = [r for r in threadline_warnings.records if "dropped as invalid" in r.getMessage()]
    assert "made by fastapi" in warning.getMessage()


# ---------------------------------------------------------------------- OpenTelemetry's own


def contrib_app(arrangement: str) -> Any:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.starlette import StarletteInstrumentor

    async def items(request: Request) -> Response:
        logging.getLogger("tests.contrib").info("handling")
        return JSONResponse(probe())

    def starlette() -> Starlette:
        return Starlette(routes=[Route("/items/{n}", items)])

    if arrangement == "asgi-setup":  # threadline after OpenTelemetry's middleware
        return tla.setup(OpenTelemetryMiddleware(starlette()))
    if arrangement == "asgi-outside":  # threadline before it
        return tla.Middleware(OpenTelemetryMiddleware(starlette()))
    if arrangement == "starlette-add_middleware":
        app = starlette()
        StarletteInstrumentor.instrument_app(app)
        app.add_middleware(tla.Middleware)
        return app
    fastapi = FastAPI()
    fastapi.add_api_route("/items/{n}", items)
    if arrangement == "fastapi-instrumented-first":
        FastAPIInstrumentor.instrument_app(fastapi)
        tla.setup(fastapi)
    else:  # fastapi-setup-first
        tla.setup(fastapi)
        FastAPIInstrumentor.instrument_app(fastapi)
    return fastapi


@pytest.mark.parametrize(
    "arrangement",
    [
        "asgi-setup",
        "asgi-outside",
        "starlette-add_middleware",
        "fastapi-instrumented-first",
        "fastapi-setup-first",
    ],
)
@pytest.mark.parametrize("server", SERVERS)
async def test_beside_opentelemetrys_middleware(
    asgi_serve: AsgiServe, spans: Spans, arrangement: str, server: str
) -> None:
    """One SERVER span per request, OpenTelemetry's, continued: the request id on it and in the
    handler, whose span it is; the ids on every log line; each request its own trace."""
    base = await asgi_serve(contrib_app(arrangement), server)
    with access_lines("tests.contrib") as records, access_lines("threadline.asgi") as ours:
        answers = await send(
            base,
            ("GET", "/items/1", {"traceparent": TRACEPARENT, "X-Request-ID": "c-1"}),
            ("GET", "/items/2", {"X-Request-ID": "c-2"}),
        )
    servers = server_spans(spans)
    assert 2 == len(servers)
    assert {"opentelemetry.instrumentation"} == {
        s.instrumentation_scope.name.rsplit(".", 1)[0] for s in servers
    }
    by_id = {s.attributes["request.id"]: s for s in servers}
    assert int(TRACE_ID, 16) == by_id["c-1"].context.trace_id
    assert by_id["c-2"].parent is None
    for answer in answers:
        body, request_id = answer.json(), answer.headers["x-request-id"]
        span = by_id[request_id]
        assert request_id == body["request"]["request_id"]
        assert f"{span.context.span_id:016x}" == body["span_id"]
    expected = [("c-1", TRACE_ID), ("c-2", f"{by_id['c-2'].context.trace_id:032x}")]
    for lines in (records, ours):  # the handler's, and threadline's access lines
        assert expected == [(r.request_id, r.trace_id) for r in lines]  # type: ignore[attr-defined]


@pytest.mark.parametrize("arrangement", ["asgi-setup", "asgi-outside", "fastapi-setup-first"])
async def test_two_traceparents_begin_a_new_trace_beside_opentelemetry(
    asgi_serve: AsgiServe, spans: Spans, arrangement: str
) -> None:
    """OpenTelemetry's middleware continues the first of two traceparents, before threadline or
    after it: the handler runs in a new trace, under threadline's SERVER span linked to it."""
    base = await asgi_serve(contrib_app(arrangement))
    twice = f"{TRACEPARENT}\r\ntraceparent: 00-{'1' * 32}-{'2' * 16}-01".encode()
    (answer,) = await send(base, ("GET", "/items/1", {"traceparent": twice}))
    body = answer.json()
    servers = server_spans(spans)
    (ours,) = [s for s in servers if s.instrumentation_scope.name == "threadline"]
    (theirs,) = [s for s in servers if s is not ours]
    assert int(TRACE_ID, 16) == theirs.context.trace_id  # what OpenTelemetry continued
    assert None is ours.parent
    assert (f"{ours.context.trace_id:032x}", f"{ours.context.span_id:016x}") == (
        body["trace_id"],
        body["span_id"],
    )
    assert [theirs.context] == [link.context for link in ours.links]
    assert answer.headers["x-request-id"] == ours.attributes["request.id"]


async def test_a_plain_asgi_app_names_its_route(asgi_serve: AsgiServe, spans: Spans) -> None:
    """An app threadline cannot read the route of (Django's) names it with set_route."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        tla.set_route(scope, "/orders/<int:order>")
        body = JSONResponse(probe()).body
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    tla.set_route({}, "/outside")  # outside a request: nothing
    with access_lines("threadline.asgi") as records:
        (answer,) = await send(await asgi_serve(tla.Middleware(app)), ("GET", "/orders/7", {}))
    span = server_span(spans)
    assert ("GET /orders/<int:order>", "/orders/<int:order>") == (
        span.name,
        span.attributes["http.route"],
    )
    assert answer.headers["x-request-id"] == answer.json()["request"]["request_id"]
    assert ["/orders/<int:order>"] == [r.route for r in records]  # type: ignore[attr-defined]


async def test_a_send_that_waits_can_be_cancelled() -> None:
    """A send the server suspends runs on in the arrival context; cancelling it cancels it there.

    (The server here is a pair of ASGI callables: a real one cancels on disconnect, when it will.)
    """
    suspended, seen = asyncio.Event(), []
    token = LEAKY.set("the server's own")

    async def server_send(message: Any) -> None:
        if message["type"] == "http.response.body":
            suspended.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                seen.append((LEAKY.get(), tl.request.get()))
                raise

    async def server_receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        LEAKY.set("the app's")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    try:
        task = asyncio.create_task(tla.Middleware(app)(scope, server_receive, server_send))
        await suspended.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        LEAKY.reset(token)
    assert [("the server's own", None)] == seen


async def test_a_distrusting_edge_is_told_when_fastapi_continues_the_caller(
    asgi_serve: AsgiServe, threadline_warnings: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    """FastAPI's own span continues the caller's trace whatever threadline's options: a warning."""
    from threadline._http import server

    monkeypatch.setattr(server, "_warned_about_trust", False)
    app = FastAPI()
    app.add_api_route("/items/{n}", lambda n: probe())
    base = await asgi_serve(tla.Middleware(app, trust_incoming=False))
    await send(base, *[("GET", "/items/1", {"traceparent": TRACEPARENT})] * 2)
    (warning,) = [r for r in threadline_warnings.records if "trust_incoming" in r.getMessage()]
    assert "made by fastapi" in warning.getMessage()
    assert "telemetry={'tracing': False}" in warning.getMessage()


async def test_a_mounted_routes_template(asgi_serve: AsgiServe, spans: Spans) -> None:
    """Under a Mount, the route is the mount's path and the template inside it."""
    from starlette.routing import Mount

    async def items(request: Request) -> Response:
        return JSONResponse(probe())

    app = Starlette(routes=[Mount("/v1", routes=[Route("/items/{n}", items)])])
    app.add_middleware(tla.Middleware)
    await send(await asgi_serve(app), ("GET", "/v1/items/3", {}))
    assert "GET /v1/items/{n}" == server_span(spans).name


@pytest.mark.parametrize("arrangement", ["asgi-setup", "fastapi-instrumented-first"])
async def test_pipelined_requests_beside_opentelemetry_are_each_a_trace(
    asgi_serve: AsgiServe, spans: Spans, arrangement: str
) -> None:
    """OpenTelemetry's middleware calls the server's send under its span: setup guards it, so a
    pipelined next request is not made an INTERNAL child of this one (CPython issue 140947)."""
    base = await asgi_serve(contrib_app(arrangement))
    answers = await pipelined(base, "/items/1", "/items/2", "/items/3")
    servers = server_spans(spans)
    assert 3 == len(servers) == len({s.context.trace_id for s in spans.finished()})
    assert [None, None, None] == [s.parent for s in servers]
    assert all(s.instrumentation_scope.name.startswith("opentelemetry.") for s in servers)
    assert {a.headers["x-request-id"] for a in answers} == {
        s.attributes["request.id"] for s in servers
    }


async def test_a_request_leaves_no_garbage_cycle(asgi_serve: AsgiServe) -> None:
    """The scope does not keep the request's exchange after it: no cycle left for the GC."""
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    await send(await asgi_serve(tla.Middleware(app)), ("GET", "/", {}))
    (scope,) = seen
    assert not [key for key in scope if key.startswith("threadline")]


HEADER_NAMES = [b"traceparent", b"tracestate", b"baggage", b"x-request-id", b"host", b"user-agent"]


@given(
    headers=st.lists(st.tuples(st.sampled_from(HEADER_NAMES), st.binary(max_size=300)), max_size=8),
    client=st.one_of(st.none(), st.tuples(st.text(max_size=20), st.integers(0, 65535))),
    server=st.one_of(
        st.none(), st.tuples(st.text(max_size=20), st.one_of(st.none(), st.integers(0, 65535)))
    ),
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_whatever_the_headers_the_request_is_served(
    headers: list[tuple[bytes, bytes]], client: Any, server: Any
) -> None:
    """Any header bytes (and any client and server the scope names): the app runs, the answer
    has one well-formed request id, nothing raises."""
    sent: list[Any] = []
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(tl.request.get()["request_id"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def server_send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": headers,
        "query_string": b"",
        "client": client,
        "server": server,
    }
    asyncio.run(tla.Middleware(app, access_log=False)(scope, receive, server_send))
    ids = [value for name, value in sent[0]["headers"] if name == b"x-request-id"]
    assert [seen[0].encode()] == ids
    assert re.fullmatch(rb"[A-Za-z0-9._:+/=@-]{1,128}", ids[0])


class TestReader:
    def test_every_header_asked_for(self) -> None:
        """Each header asked for has all its values, whether threadline reads it or another does."""
        scope = {
            "headers": [
                (b"traceparent", b"a"),
                (bytearray(b"x-b3-traceid"), b"b"),
                (b"baggage", b"c"),
                (b"host", b"h"),
                (bytearray(b"baggage"), b"d"),
            ]
        }
        get_all = READER.headers(scope)
        found = {
            name: get_all(name, ())
            for name in ("traceparent", "baggage", "x-b3-traceid", "tracestate", "x-other")
        }
        assert {
            "traceparent": [b"a"],
            "baggage": [b"c", b"d"],
            "x-b3-traceid": [b"b"],
            "tracestate": (),
            "x-other": (),
        } == found
