"""aiohttp: the server middleware and the client TraceConfig, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict
from opentelemetry import trace
from opentelemetry.trace import SpanKind

import threadline as tl
import threadline.aiohttp as tla
from tests.helpers import LoopbackResolver, Serve, Spans
from threadline import diagnostics
from threadline.logging import ContextFilter

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


async def echo(request: web.Request) -> web.Response:
    """Reports what the handler sees: its store value and its trace."""
    sc = trace.get_current_span().get_span_context()
    value = tl.request.get()
    return web.json_response(
        {
            "request": {k: v for k, v in (value or {}).items() if k != "start_time"},
            "has_start_time": "start_time" in (value or {}),
            "trace_id": f"{sc.trace_id:032x}",
            "span_id": f"{sc.span_id:016x}",
            "headers": {k.lower(): v for k, v in request.headers.items()},
        }
    )


async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("handler failed")


async def missing(request: web.Request) -> web.Response:
    raise web.HTTPNotFound(text="no such thing")


async def stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"streamed")
    return response


def make_app(**options: Any) -> web.Application:
    app = web.Application(middlewares=[tla.middleware(**options)])
    app.router.add_get("/users/{id}", echo)
    app.router.add_route("*", "/any", echo)
    app.router.add_get("/boom", boom)
    app.router.add_get("/missing", missing)
    return app


def relay_app(downstream: str) -> web.Application:
    """A threadline service whose handler calls *downstream* and returns what it saw."""

    async def relay(request: web.Request) -> web.Response:
        async with (
            aiohttp.ClientSession(trace_configs=[tla.trace_config()]) as session,
            session.get(downstream) as response,
        ):
            return web.json_response(await response.json())

    app = web.Application(middlewares=[tla.middleware()])
    app.router.add_get("/relay", relay)
    return app


async def get(
    url: str, headers: Any = None, method: str = "GET"
) -> tuple[aiohttp.ClientResponse, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers) as response,
    ):
        body = (
            await response.json()
            if response.content_type == "application/json"
            else await response.text()
        )
        return response, body


def server_span(spans: Spans) -> Any:
    (span,) = [s for s in spans.finished() if s.kind == SpanKind.SERVER]
    return span


class TestServer:
    async def test_continues_the_incoming_trace(self, serve: Serve, spans: Spans) -> None:
        """The SERVER span is a child of the incoming parent; the handler runs under it."""
        base = await serve(make_app())
        response, body = await get(f"{base}/users/7", {"traceparent": TRACEPARENT})
        span = server_span(spans)
        assert 200 == response.status
        assert (TRACE_ID, f"{span.context.span_id:016x}") == (body["trace_id"], body["span_id"])
        assert int(PARENT_ID, 16) == span.parent.span_id
        assert "GET /users/{id}" == span.name
        attributes = span.attributes
        assert {
            "http.request.method": "GET",
            "http.route": "/users/{id}",
            "url.path": "/users/7",
            "url.scheme": "http",
            "http.response.status_code": 200,
            "server.address": "127.0.0.1",
            "client.address": "127.0.0.1",
            "network.protocol.version": "1.1",
        }.items() <= dict(attributes).items()

    async def test_request_scope_and_header(self, serve: Serve, spans: Spans) -> None:
        """The handler runs in a request scope; the same id is on the span and in the response."""
        base = await serve(make_app())
        response, body = await get(f"{base}/users/1")
        request_id = response.headers[tla.REQUEST_ID_HEADER]
        assert 32 == len(request_id)
        assert {"request_id": request_id} == body["request"]
        assert body["has_start_time"]
        assert request_id == server_span(spans).attributes["request.id"]

    @pytest.mark.parametrize(
        "given", ["abc-123", "7f3e0b2a-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "a.b:c=d+e/f@g"]
    )
    async def test_reuses_a_well_formed_request_id(self, serve: Serve, given: str) -> None:
        """A well-formed X-Request-ID is kept, in the scope and the response."""
        base = await serve(make_app())
        response, body = await get(f"{base}/users/1", {"X-Request-ID": given})
        assert given == response.headers["X-Request-ID"] == body["request"]["request_id"]

    @pytest.mark.parametrize(
        "given", ["has space", "x" * 129, 'quote"d', "new\\nline", "semi;colon"]
    )
    async def test_replaces_a_malformed_request_id(self, serve: Serve, given: str) -> None:
        """A malformed X-Request-ID is replaced by a fresh one and counted."""
        base = await serve(make_app())
        response, _ = await get(f"{base}/users/1", {"X-Request-ID": given})
        assert given != response.headers["X-Request-ID"]
        assert 1 == diagnostics.drop_counts()["request_id.invalid"]

    async def test_request_id_can_be_refused(self, serve: Serve) -> None:
        """accept_request_id=False always makes a new id."""
        base = await serve(make_app(accept_request_id=False))
        response, _ = await get(f"{base}/users/1", {"X-Request-ID": "mine"})
        assert "mine" != response.headers["X-Request-ID"]

    async def test_id_on_http_errors(self, serve: Serve, spans: Spans) -> None:
        """An HTTPException from the handler, and an unmatched route, carry the id too."""
        base = await serve(make_app())
        raised, _ = await get(f"{base}/missing", {"X-Request-ID": "nf-1"})
        unrouted, _ = await get(f"{base}/nowhere", {"X-Request-ID": "nf-2"})
        assert (404, "nf-1") == (raised.status, raised.headers["X-Request-ID"])
        assert (404, "nf-2") == (unrouted.status, unrouted.headers["X-Request-ID"])
        names = sorted(s.name for s in spans.finished())
        assert ["GET", "GET /missing"] == names  # no route, no route in the name
        for span in spans.finished():
            assert trace.StatusCode.UNSET == span.status.status_code  # 4xx is no server error

    async def test_unhandled_exception(
        self, serve: Serve, spans: Spans, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An unhandled exception: a 500 with the id, the error on the span, the id in the log."""
        base = await serve(make_app())
        with caplog.at_level(logging.INFO, logger="threadline.aiohttp"):
            response, _ = await get(f"{base}/boom", {"X-Request-ID": "err-1"})
        assert (500, "err-1") == (response.status, response.headers["X-Request-ID"])
        span = server_span(spans)
        assert trace.StatusCode.ERROR == span.status.status_code
        assert "RuntimeError" == span.attributes["error.type"]
        assert 500 == span.attributes["http.response.status_code"]
        assert "exception" == span.events[0].name
        (failure,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "unhandled exception in GET /boom" == failure.getMessage()
        assert "handler failed" in (failure.exc_text or "")

    async def test_access_log_line(self, serve: Serve) -> None:
        """Each request ends with a log line with its duration, made inside its scope and span."""
        records: list[logging.LogRecord] = []
        collector = logging.Handler()
        collector.emit = records.append  # type: ignore[method-assign]
        collector.addFilter(ContextFilter())
        access = logging.getLogger("threadline.aiohttp")
        access.addHandler(collector)
        access.setLevel(logging.INFO)
        try:
            base = await serve(make_app())
            started = time.monotonic()
            await get(f"{base}/users/3", {"X-Request-ID": "log-1", "traceparent": TRACEPARENT})
            elapsed_ms = (time.monotonic() - started) * 1000
        finally:
            access.removeHandler(collector)
        (record,) = records
        shown = re.fullmatch(r"GET /users/3 200 (\d+\.\d)ms", record.getMessage())
        assert shown is not None, record.getMessage()
        assert (200, "/users/{id}") == (record.http_status, record.route)  # type: ignore[attr-defined]
        duration_ms = record.duration_ms  # type: ignore[attr-defined]
        assert 0 <= duration_ms <= elapsed_ms  # the server's part of the request the test timed
        assert float(shown[1]) == pytest.approx(duration_ms, abs=0.051)  # the line shows the field
        assert ("log-1", TRACE_ID) == (record.request_id, record.trace_id)  # type: ignore[attr-defined]

    async def test_user_id_extractor(self, serve: Serve, spans: Spans) -> None:
        """The user id comes from a pluggable (possibly async) extractor, onto scope and span."""

        async def from_header(request: web.Request) -> str | None:
            await asyncio.sleep(0)
            return request.headers.get("X-User")

        base = await serve(make_app(user_id=from_header))
        _, body = await get(f"{base}/users/1", {"X-User": "u-9"})
        assert "u-9" == body["request"]["user_id"]
        assert "u-9" == server_span(spans).attributes["enduser.id"]

    async def test_no_user_is_not_replaced_by_a_claimed_one(self, serve: Serve) -> None:
        """With an extractor that finds nobody, a user_id sent in the baggage is not taken."""
        base = await serve(make_app(user_id=lambda request: None))
        _, body = await get(
            f"{base}/users/1",
            {"traceparent": TRACEPARENT, "baggage": "request.user_id=%22admin%22;tl=json"},
        )
        assert "user_id" not in body["request"]

    async def test_the_value_before_the_user_id_stays_as_it_was(self, serve: Serve) -> None:
        """A store value read while the extractor runs is immutable: the user id is a new one."""
        seen: list[Any] = []

        def remember(request: web.Request) -> str:
            seen.append(tl.request.get())
            return "u-1"

        base = await serve(make_app(user_id=remember))
        _, body = await get(f"{base}/users/1")
        assert "u-1" == body["request"]["user_id"]
        assert "user_id" not in seen[0]

    async def test_unknown_method(self, serve: Serve, spans: Spans) -> None:
        """A method outside the known set is _OTHER, and the span is named HTTP."""
        base = await serve(make_app())
        await get(f"{base}/any", method="PROPFIND")
        span = server_span(spans)
        assert ("HTTP /any", "_OTHER", "PROPFIND") == (
            span.name,
            span.attributes["http.request.method"],
            span.attributes["http.request.method_original"],
        )

    async def test_concurrent_requests_keep_their_ids(self, serve: Serve) -> None:
        """Many requests at once: each handler sees its own id and trace."""
        base = await serve(make_app())
        async with aiohttp.ClientSession() as session:

            async def one(i: int) -> bool:
                parent = f"00-{i + 1:032x}-{i + 1:016x}-01"
                headers = {"X-Request-ID": f"c-{i}", "traceparent": parent}
                async with session.get(f"{base}/users/{i}", headers=headers) as response:
                    body = await response.json()
                return (body["request"]["request_id"], body["trace_id"]) == (
                    f"c-{i}",
                    f"{i + 1:032x}",
                )

            assert all(await asyncio.gather(*(one(i) for i in range(100))))

    async def test_setup_covers_streamed_responses(self, serve: Serve) -> None:
        """With setup(app), a response the handler prepares itself carries the id too."""
        app = web.Application()
        app.router.add_get("/stream", stream)
        tla.setup(app)
        base = await serve(app)
        response, body = await get(f"{base}/stream", {"X-Request-ID": "st-1"})
        assert ("streamed", "st-1") == (body, response.headers["X-Request-ID"])

    async def test_setup_twice_is_a_clear_error(self, serve: Serve, spans: Spans) -> None:
        """A second setup(app) raises; the app keeps one middleware, one span a request."""
        app = web.Application()
        app.router.add_get("/stream", stream)
        tla.setup(app)
        with pytest.raises(RuntimeError, match=r"setup\(app\) was called for this app already"):
            tla.setup(app, spans=False)
        assert 1 == len(app.middlewares)
        base = await serve(app)
        response, _ = await get(f"{base}/stream", {"X-Request-ID": "tw-1"})
        assert "tw-1" == response.headers["X-Request-ID"]
        assert 1 == len([s for s in spans.finished() if s.kind == trace.SpanKind.SERVER])

    async def test_setup_checks_its_options(self) -> None:
        """setup(app, trust_incoming="no") is a TypeError naming it; the app is untouched."""
        app = web.Application()
        with pytest.raises(TypeError, match=r"^trust_incoming takes True or False"):
            tla.setup(app, trust_incoming="no")
        assert 0 == len(app.middlewares)

    def test_middleware_checks_every_flag(self) -> None:
        """middleware(remember_request_id="yes") is a TypeError naming it."""
        with pytest.raises(TypeError, match=r"^remember_request_id takes True or False"):
            tla.middleware(remember_request_id="yes")  # type: ignore[arg-type]


class TestTrustBoundary:
    async def test_public_edge_starts_a_new_trace(self, serve: Serve, spans: Spans) -> None:
        """trust_incoming=False: new trace, incoming parent kept as a link, baggage dropped."""
        base = await serve(make_app(trust_incoming=False))
        _, body = await get(
            f"{base}/users/1",
            {"traceparent": TRACEPARENT, "baggage": "request.user_id=666;tl=json,plain=1"},
        )
        span = server_span(spans)
        assert TRACE_ID != body["trace_id"]
        assert span.parent is None
        assert [int(TRACE_ID, 16)] == [link.context.trace_id for link in span.links]
        assert "user_id" not in body["request"]


class TestConformance:
    """W3C Trace Context and Baggage rules, through real HTTP headers."""

    @pytest.mark.parametrize(
        ("headers", "reason"),
        [
            ({"traceparent": TRACEPARENT.upper()}, "traceparent.invalid"),
            ({"traceparent": f"ff-{TRACE_ID}-{PARENT_ID}-01"}, "traceparent.invalid"),
            ({"traceparent": f"00-{'0' * 32}-{PARENT_ID}-01"}, "traceparent.invalid"),
            ({"traceparent": TRACEPARENT + "-extra"}, "traceparent.invalid"),
            ({"traceparent": "00-" + "a" * 600}, "traceparent.too_large"),
        ],
    )
    async def test_invalid_traceparent_restarts_the_trace(
        self, serve: Serve, spans: Spans, headers: dict[str, str], reason: str
    ) -> None:
        """An invalid traceparent is ignored (a new trace starts), counted, and never a failure."""
        base = await serve(make_app())
        response, body = await get(f"{base}/users/1", headers)
        assert 200 == response.status
        assert TRACE_ID != body["trace_id"]
        assert server_span(spans).parent is None
        assert 1 == diagnostics.drop_counts()[reason]

    async def test_duplicate_traceparent_headers(self, serve: Serve, spans: Spans) -> None:
        """Two traceparent header lines are invalid together."""
        base = await serve(make_app())
        headers = CIMultiDict([("traceparent", TRACEPARENT), ("traceparent", TRACEPARENT)])
        _, body = await get(f"{base}/users/1", headers)
        assert TRACE_ID != body["trace_id"]
        assert 1 == diagnostics.drop_counts()["traceparent.duplicate"]

    async def test_tracestate_lines_combine_and_bad_ones_drop(
        self, serve: Serve, spans: Spans
    ) -> None:
        """Several tracestate lines are one list; a bad or oversized one drops only tracestate."""
        base = await serve(make_app())
        combined = CIMultiDict(
            [("traceparent", TRACEPARENT), ("tracestate", "a=1"), ("tracestate", "b=2")]
        )
        await get(f"{base}/users/1", combined)
        assert [("a", "1"), ("b", "2")] == list(server_span(spans).parent.trace_state.items())
        spans_before = len(spans.finished())
        # aiohttp refuses one line over 8190 bytes; two lines together pass it, but not ours
        first, second = (",".join(f"{k}{i}=" + "v" * 255 for i in range(16)) for k in "ab")
        big = CIMultiDict(
            [("traceparent", TRACEPARENT), ("tracestate", first), ("tracestate", second)]
        )
        _, body = await get(f"{base}/users/1", big)
        assert TRACE_ID == body["trace_id"]
        assert len(spans.finished()) == spans_before + 1
        assert 1 == diagnostics.drop_counts()["tracestate.too_large"]

    @pytest.mark.parametrize(
        ("incoming", "outgoing_flags", "tracestate_in", "tracestate_out"),
        [
            # a later version is read by the rules for future versions, sent on as version 00
            (f"cc-{TRACE_ID}-{PARENT_ID}-01-what-the-future-will-be-like", "01", "", None),
            # the random-trace-id flag is kept when the trace continues; unknown flags are not
            (f"00-{TRACE_ID}-{PARENT_ID}-03", "03", "", None),
            (f"00-{TRACE_ID}-{PARENT_ID}-02", "02", "", None),
            (f"00-{TRACE_ID}-{PARENT_ID}-ff", "03", "", None),
            # today's key grammar, and a duplicated key inherited with its first member
            (TRACEPARENT, "01", "foo@=1,foo@@bar=2,1a=3,foo@=4", "foo@=1,foo@@bar=2,1a=3"),
        ],
    )
    async def test_the_hop_continues_the_trace(
        self,
        serve: Serve,
        incoming: str,
        outgoing_flags: str,
        tracestate_in: str,
        tracestate_out: str | None,
    ) -> None:
        """What a service sends on: version 00, the same trace, the flags and tracestate kept."""
        downstream = await serve(make_app())
        base = await serve(relay_app(f"{downstream}/users/1"))
        headers = {"traceparent": incoming}
        if tracestate_in:
            headers["tracestate"] = tracestate_in
        _, body = await get(f"{base}/relay", headers)
        sent = body["headers"]
        version, trace_id, parent_id, flags = sent["traceparent"].split("-")
        assert ("00", TRACE_ID, outgoing_flags) == (version, trace_id, flags)
        assert PARENT_ID != parent_id  # the relay's own span is the parent downstream
        assert tracestate_out == sent.get("tracestate")
        assert {} == diagnostics.drop_counts()

    async def test_baggage_rules(self, serve: Serve) -> None:
        """Stores come in typed; invalid or oversized baggage drops whole, the trace stays."""
        base = await serve(make_app())
        _, good = await get(
            f"{base}/users/1",
            {
                "baggage": "request.user_id=42;tl=json,request.tenant=a%20b;tl",
                "X-Request-ID": "b-1",
            },
        )
        assert {"request_id": "b-1", "user_id": 42, "tenant": "a b"} == good["request"]
        half = "k=" + "v" * 4200
        for bad in (["request.user_id=%zz;tl"], [half, half]):
            headers = CIMultiDict([("traceparent", TRACEPARENT), *(("baggage", b) for b in bad)])
            _, body = await get(f"{base}/users/1", headers)
            assert TRACE_ID == body["trace_id"]
            assert "user_id" not in body["request"]
        assert {"baggage.invalid": 1, "baggage.too_large": 1} == diagnostics.drop_counts()


class TestClient:
    async def test_each_call_has_its_own_client_span(
        self, serve: Serve, spans: Spans, tracer: trace.Tracer
    ) -> None:
        """Outgoing calls carry the caller's trace, each under a CLIENT span of its own."""
        base = await serve(make_app())
        async with aiohttp.ClientSession(trace_configs=[tla.trace_config()]) as session:
            with tracer.start_as_current_span("caller") as caller:
                bodies = []
                for _ in range(2):
                    async with session.get(f"{base}/users/1") as response:
                        bodies.append(await response.json())
        clients = [s for s in spans.finished() if s.kind == SpanKind.CLIENT]
        servers = [s for s in spans.finished() if s.kind == SpanKind.SERVER]
        assert 2 == len(clients) == len(servers)
        assert {caller.get_span_context().span_id} == {c.parent.span_id for c in clients}
        assert {c.context.span_id for c in clients} == {s.parent.span_id for s in servers}
        assert {f"{caller.get_span_context().trace_id:032x}"} == {b["trace_id"] for b in bodies}
        assert ("GET", 200) == (clients[0].name, clients[0].attributes["http.response.status_code"])
        assert {"http.client"} == {c.attributes["threadline.boundary"] for c in clients}
        assert {"http.server"} == {s.attributes["threadline.boundary"] for s in servers}

    async def test_uses_the_callers_context_not_the_sessions(self, serve: Serve) -> None:
        """A session made in one scope sends the context of whoever makes the call."""
        base = await serve(make_app())
        with tl.request.scope(request_id="creator"):
            session = aiohttp.ClientSession(trace_configs=[tla.trace_config()])
        try:

            async def call(request_id: str) -> str:
                with tl.request.scope(request_id=request_id):
                    async with session.get(f"{base}/users/1") as response:
                        return str((await response.json())["request"]["request_id"])

            assert ["a", "b"] == list(await asyncio.gather(call("a"), call("b")))
        finally:
            await session.close()

    async def test_baggage_only_to_allowed_hosts(self, serve: Serve) -> None:
        """Loopback and listed hosts get baggage and X-Request-ID; others only the trace."""
        base = await serve(make_app())
        port = base.rsplit(":", 1)[1]
        connector = aiohttp.TCPConnector(resolver=LoopbackResolver())
        config = tla.trace_config(baggage_hosts=["*.internal", "partner.example"])
        seen = {}
        async with aiohttp.ClientSession(connector=connector, trace_configs=[config]) as session:
            with (
                trace.get_tracer("t").start_as_current_span("c"),
                tl.request.scope(request_id="r-1", user_id=7),
            ):
                for host in (
                    "127.0.0.1",
                    "localhost",
                    "api.internal",
                    "partner.example",
                    "thirdparty.example",
                ):
                    async with session.get(f"http://{host}:{port}/users/1") as response:
                        seen[host] = (await response.json())["headers"]
        for host in ("127.0.0.1", "localhost", "api.internal", "partner.example"):
            assert "request.user_id=7;tl=json" in seen[host]["baggage"], host
            assert "r-1" == seen[host]["x-request-id"]
        third = seen["thirdparty.example"]
        assert "baggage" not in third
        assert "x-request-id" not in third
        assert "traceparent" in third

    async def test_request_id_can_be_kept_back(self, serve: Serve) -> None:
        """send_request_id=False sends baggage to a trusted host, but never X-Request-ID."""
        base = await serve(make_app())
        config = tla.trace_config(send_request_id=False)
        async with aiohttp.ClientSession(trace_configs=[config]) as session:
            with tl.request.scope(request_id="r-1"):
                async with session.get(f"{base}/users/1") as response:
                    seen = (await response.json())["headers"]
        assert "request.request_id=r-1;tl" == seen["baggage"]
        assert "x-request-id" not in seen

    async def test_bad_store_value_never_fails_the_request(
        self, serve: Serve, store: tl.ContextStore
    ) -> None:
        """A value that cannot be sent drops the baggage, counted; the request goes out."""
        base = await serve(make_app())
        async with aiohttp.ClientSession(trace_configs=[tla.trace_config()]) as session:
            with store.scope(conn=object()):
                async with session.get(f"{base}/users/1") as response:
                    assert 200 == response.status
        assert 1 == diagnostics.drop_counts()["baggage.outbound_invalid"]

    async def test_connection_error_span(self, spans: Spans, tracer: trace.Tracer) -> None:
        """A request that fails to connect ends its CLIENT span with the error."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        async with aiohttp.ClientSession(trace_configs=[tla.trace_config()]) as session:
            with (
                tracer.start_as_current_span("caller"),
                pytest.raises(aiohttp.ClientConnectionError),
            ):
                await session.get(f"http://127.0.0.1:{port}/")
        (client,) = [s for s in spans.finished() if s.kind == SpanKind.CLIENT]
        assert trace.StatusCode.ERROR == client.status.status_code
        assert "error.type" in client.attributes


class TestUserIdExtractor:
    async def test_failing_extractor_is_a_500_with_the_id(self, serve: Serve, spans: Spans) -> None:
        """An extractor that raises fails the request like a handler would: 500, id, error span."""

        def broken(request: web.Request) -> str:
            raise LookupError("no session store")

        base = await serve(make_app(user_id=broken))
        response, _ = await get(f"{base}/users/1", {"X-Request-ID": "ux-1"})
        assert (500, "ux-1") == (response.status, response.headers["X-Request-ID"])
        assert "LookupError" == server_span(spans).attributes["error.type"]

    async def test_extractor_runs_in_the_request_context(self, serve: Serve) -> None:
        """The extractor sees the request id already (its log lines carry it)."""
        seen: list[object] = []

        def remember(request: web.Request) -> str:
            seen.append((tl.request.get() or {}).get("request_id"))
            return "u-1"

        base = await serve(make_app(user_id=remember))
        await get(f"{base}/users/1", {"X-Request-ID": "ux-2"})
        assert ["ux-2"] == seen


DEEP_BAGGAGE = "request.x=" + "%5B" * 1300 + "%5D" * 1300 + ";tl=json"


def redirect_to(location: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(location)

    return redirect


class TestHostileInput:
    @pytest.mark.parametrize(
        "member",
        [
            DEEP_BAGGAGE,
            "request.x=%7B%22%22:1%7D;tl=json",  # {"":1}
            "request.x=1e400;tl=json",
            "request.x=%5B-1e999%5D;tl=json",
        ],
    )
    async def test_bad_baggage_answers_normally(self, serve: Serve, member: str) -> None:
        """Baggage the decoder refuses is dropped: the handler answers 200 with its request id."""
        base = await serve(make_app())
        response, body = await get(
            f"{base}/users/1", {"traceparent": TRACEPARENT, "baggage": member}
        )
        assert (200, TRACE_ID) == (response.status, body["trace_id"])
        assert response.headers["X-Request-ID"] == body["request"]["request_id"]
        assert 1 == diagnostics.drop_counts()["baggage.invalid"]

    async def test_no_forged_log_lines(self, serve: Serve) -> None:
        """CR/LF in the path and in a baggage user id reach the plain-text log escaped."""
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.addFilter(ContextFilter())
        handler.setFormatter(logging.Formatter("%(message)s user=%(user_id)s"))
        access = logging.getLogger("threadline.aiohttp")
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        base = await serve(make_app())
        response, _ = await get(
            f"{base}/users/1%0D%0AFORGED-LINE%0Bx%7F",
            {"baggage": "request.user_id=evil%0D%0Ainjected%1B%5B31m%C2%85;tl"},
        )
        assert 200 == response.status
        (line,) = stream.getvalue().splitlines()
        assert line.startswith("GET /users/1\\r\\nFORGED-LINE\\x0bx\\x7f 200 ")
        assert line.endswith(" user=evil\\r\\ninjected\\x1b[31m\\x85")

    async def test_header_bytes_that_are_not_utf8(
        self, serve: Serve, spans: Spans, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Header bytes that are not UTF-8 become valid text on the span, as OTLP needs."""
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        base = await serve(make_app())
        host, port = base.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"GET /users/1 HTTP/1.1\r\nHost: h\xc3\x28:1\r\n"
            b"User-Agent: agent\xff\xfe\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        status = await reader.readline()
        writer.close()
        await writer.wait_closed()
        span = server_span(spans)
        assert b"200" in status
        encode_spans([span])  # logs an error for each string that is not UTF-8
        assert [] == [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert ("agent\ufffd\ufffd", "h\ufffd(") == (
            span.attributes["user_agent.original"],
            span.attributes["server.address"],
        )

    async def test_redirect_to_a_third_party_strips_baggage(self, serve: Serve) -> None:
        """A trusted host's 302 to a host off the allow-list sends it the trace only."""
        third = await serve(make_app())
        third_port = third.rsplit(":", 1)[1]
        app = make_app()
        app.router.add_get("/away", redirect_to(f"http://thirdparty.example:{third_port}/any"))
        app.router.add_get("/inside", redirect_to(f"http://api.internal:{third_port}/any"))
        trusted = await serve(app)
        connector = aiohttp.TCPConnector(resolver=LoopbackResolver())
        config = tla.trace_config(baggage_hosts=["api.internal"])
        seen = {}
        async with aiohttp.ClientSession(connector=connector, trace_configs=[config]) as session:
            with (
                trace.get_tracer("t").start_as_current_span("c"),
                tl.request.scope(request_id="r-1", user_id=7),
            ):
                for path in ("/away", "/inside"):
                    async with session.get(f"{trusted}{path}") as response:
                        seen[path] = (await response.json())["headers"]
        away = seen["/away"]
        assert ("traceparent" in away, "baggage" in away, "x-request-id" in away) == (
            True,
            False,
            False,
        )
        assert "request.user_id=7;tl=json" in seen["/inside"]["baggage"]
        assert "r-1" == seen["/inside"]["x-request-id"]


# Requests aiohttp's own HTTP parser answers before any middleware (docs/reliability.md).
PARSER_REFUSES = {
    "an X-Request-ID of 10 KB": b"X-Request-ID: " + b"a" * 10240 + b"\r\n",
    "a NUL in X-Request-ID": b"X-Request-ID: a\x00b\r\n",
    "a bare CR in X-Request-ID": b"X-Request-ID: a\rb\r\n",
    "a folded X-Request-ID": b"X-Request-ID: a\r\n b\r\n",
    "Content-Length and Transfer-Encoding": (
        b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"
    ),
}


async def _raw_request(url: str, fields: bytes) -> tuple[int, CIMultiDict[str]]:
    """Send ``POST /any`` with the raw header *fields*; return the status and the headers."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"POST /any HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fields)
        writer.write(b"\r\n0\r\n\r\n" if b"chunked" in fields else b"Content-Length: 0\r\n\r\n")
        await writer.drain()
        head = (await reader.read()).split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    finally:
        writer.close()
    headers: CIMultiDict[str] = CIMultiDict()
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers.add(name, value.strip())
    return int(head[0].split()[1]), headers


class TestWhatAiohttpRefusesFirst:
    """What aiohttp's own parser refuses never reaches a middleware: threadline cannot answer it."""

    @pytest.mark.parametrize("fields", PARSER_REFUSES.values(), ids=PARSER_REFUSES.keys())
    async def test_answered_400_by_aiohttp_without_a_request_id(
        self, serve: Serve, spans: Spans, fields: bytes
    ) -> None:
        """aiohttp answers 400 itself: no handler, no X-Request-ID, no span."""
        reached: list[str] = []

        async def handler(request: web.Request) -> web.Response:
            reached.append(request.path)
            return web.Response(text="ok")

        app = web.Application()
        tla.setup(app)
        app.router.add_route("*", "/any", handler)
        url = await serve(app)
        logging.getLogger("aiohttp.server").disabled = True  # its "Error handling request"
        try:
            status, headers = await _raw_request(url, fields)
        finally:
            logging.getLogger("aiohttp.server").disabled = False
        assert (400, None, [], []) == (
            status,
            headers.get("X-Request-ID"),
            reached,
            spans.finished(),
        )

    async def test_a_long_request_id_within_aiohttp_s_limit_gets_a_new_one(
        self, serve: Serve
    ) -> None:
        """An 8000-character X-Request-ID passes aiohttp's parser: it runs, with a new id."""
        url = await serve(make_app())
        status, headers = await _raw_request(url, b"X-Request-ID: " + b"a" * 8000 + b"\r\n")
        assert 200 == status
        assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-ID"])
