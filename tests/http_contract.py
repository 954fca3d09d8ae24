"""One contract, every HTTP adapter: what a user relies on from a threadline server or client.

Real servers and clients on loopback. An adapter enrols with a subclass that
says how to start its server, or how to make its call; every promise below
then holds it, the same way it holds the others:

- `ServerContract`: subclasses give `start` (serve the probe app, see its
  docstring), `header_of` (read one header of the framework's request, for the
  user-id extractors) and `logger_name`;
- `ClientContract`: subclasses give `call` (one call through the adapter's
  client, every host name resolved to loopback).

The tests talk to servers over raw HTTP/1.1 (`send`), so a server adapter is
held to what goes over the wire, and a client adapter calls `echo_app`, a
plain aiohttp server that reports the headers it got.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import threadline as tl
from tests.helpers import Serve, Spans, free_port
from threadline import diagnostics
from threadline.logging import ContextFilter

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
BAGGAGE = "request.user_id=%22u-7%22;tl=json,request.tenant=acme;tl"
STORE_VALUE = {"user_id": "u-7", "tenant": "acme"}
ROUTE = "/items/{item_id}"
# a signed URL's query (S3's V2, GCS, Azure SAS), and what the span shows of it
SIGNED_QUERY = "a=1&AWSAccessKeyId=AKIA&Signature=SECRETSIG&flag&sig=S2&X-Goog-Signature=G&x=sig"
REDACTED_QUERY = (
    "a=1&AWSAccessKeyId=REDACTED&Signature=REDACTED&flag&sig=REDACTED"
    "&X-Goog-Signature=REDACTED&x=sig"
)


def probe() -> dict[str, Any]:
    """What a handler sees: its `tl.request` value (without ``start_time``) and its trace."""
    value = dict(tl.request.get() or {})
    has_start_time = isinstance(value.pop("start_time", None), float)
    span_context = trace.get_current_span().get_span_context()
    return {
        "request": value,
        "has_start_time": has_start_time,
        "trace_id": f"{span_context.trace_id:032x}",
        "span_id": f"{span_context.span_id:016x}",
    }


class Response:
    """One response read off the wire: status, headers (names in lower case), body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


async def send(base: str, *requests: tuple[str, str, dict[str, str | bytes]]) -> list[Response]:
    """Send *requests* (method, path, headers) one after another on one HTTP/1.1 connection."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        answers = []
        for method, path, headers in requests:
            lines = [f"{method} {path} HTTP/1.1".encode(), f"Host: {host}:{port}".encode()]
            for name, value in headers.items():
                lines.append(
                    name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
                )
            writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
            await writer.drain()
            answers.append(await _read_response(reader))
        return answers
    finally:
        writer.close()
        await writer.wait_closed()


async def _read_response(reader: asyncio.StreamReader) -> Response:
    status = int((await reader.readline()).split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while size := int((await reader.readline()).strip(), 16):
            body += await reader.readexactly(size + 2)
            body = body[:-2]
        await reader.readline()
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Response(status, headers, body)


@contextmanager
def access_lines(logger_name: str) -> Iterator[list[logging.LogRecord]]:
    """The records the adapter's logger writes in the block, INFO and up, ids added."""
    records: list[logging.LogRecord] = []
    collector = logging.Handler()
    collector.emit = records.append  # type: ignore[method-assign]
    collector.addFilter(ContextFilter())
    logger = logging.getLogger(logger_name)
    logger.addHandler(collector)
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(collector)


def server_span(spans: Spans) -> Any:
    (span,) = [s for s in spans.finished() if s.kind == SpanKind.SERVER]
    return span


class ServerContract:
    """The promises of a server adapter; subclasses say how to serve the probe app."""

    logger_name: ClassVar[str]
    """The adapter's logger: the access line and the unhandled-exception line go there."""
    route: ClassVar[str] = ROUTE
    """The template of the probe's ``/items/{item_id}`` route, as the framework writes it."""

    async def start(self, **options: Any) -> str:
        """Serve the probe app behind the adapter made with *options*; return its base URL.

        Its routes: ``/items/{item_id}`` (every method) answers `probe` as JSON
        with 200; ``/status/{code}`` answers that status, empty; ``/fail``
        raises ``RuntimeError("handler failed")``.
        """
        raise NotImplementedError

    def header_of(self, request: Any, name: str) -> str | None:
        """The value of the header *name* of the framework's *request* (for user-id extractors)."""
        raise NotImplementedError

    async def get(
        self, path: str, headers: dict[str, str | bytes] | None = None, **options: Any
    ) -> Response:
        (answer,) = await send(await self.start(**options), ("GET", path, headers or {}))
        return answer

    # ------------------------------------------------------------------ context

    async def test_continues_the_incoming_trace_and_baggage(self, spans: Spans) -> None:
        """The handler runs in the incoming trace, under the SERVER span, with the stores."""
        answer = await self.get("/items/7", {"traceparent": TRACEPARENT, "baggage": BAGGAGE})
        body, span = answer.json(), server_span(spans)
        assert (TRACE_ID, f"{span.context.span_id:016x}") == (body["trace_id"], body["span_id"])
        assert int(PARENT_ID, 16) == span.parent.span_id
        assert STORE_VALUE.items() <= body["request"].items()
        assert body["has_start_time"]

    async def test_distrusted_starts_a_new_trace_with_a_link(self, spans: Spans) -> None:
        """trust_incoming=False: a new trace, the incoming one as a link, no incoming baggage."""
        answer = await self.get(
            "/items/7", {"traceparent": TRACEPARENT, "baggage": BAGGAGE}, trust_incoming=False
        )
        body, span = answer.json(), server_span(spans)
        assert TRACE_ID != body["trace_id"]
        assert span.parent is None
        assert [(int(TRACE_ID, 16), int(PARENT_ID, 16))] == [
            (link.context.trace_id, link.context.span_id) for link in span.links
        ]
        assert {"request_id"} == set(body["request"])

    async def test_invalid_fields_never_fail_the_request(self, spans: Spans) -> None:
        """A malformed traceparent and baggage are dropped and counted; the handler answers."""
        answer = await self.get(
            "/items/7", {"traceparent": TRACEPARENT.upper(), "baggage": "request.x=%zz;tl"}
        )
        assert 200 == answer.status
        assert server_span(spans).parent is None
        assert {"traceparent.invalid": 1, "baggage.invalid": 1} == diagnostics.drop_counts()

    async def test_fields_that_are_not_ascii_are_dropped(self, spans: Spans) -> None:
        """Header bytes outside ASCII make the field invalid, whatever the server decodes."""
        answer = await self.get("/items/7", {"traceparent": TRACEPARENT.encode()[:-2] + b"\xff1"})
        assert 200 == answer.status
        assert server_span(spans).parent is None
        assert 1 == diagnostics.drop_counts()["traceparent.invalid"]

    async def test_nothing_is_left_behind(self, spans: Spans) -> None:
        """The next request on the same connection starts clean; the server's task too."""
        base = await self.start()
        first, second = await send(
            base,
            (
                "GET",
                "/items/1",
                {"traceparent": TRACEPARENT, "baggage": BAGGAGE, "X-Request-ID": "r-1"},
            ),
            ("GET", "/items/2", {}),
        )
        assert (TRACE_ID, "r-1") == (
            first.json()["trace_id"],
            first.json()["request"]["request_id"],
        )
        clean = second.json()
        assert TRACE_ID != clean["trace_id"]
        assert {"request_id": second.headers["x-request-id"]} == clean["request"]
        parents = [s.parent.span_id if s.parent else None for s in spans.finished()]
        assert [int(PARENT_ID, 16), None] == parents
        assert tl.request.get() is None
        assert not trace.get_current_span().get_span_context().is_valid

    # ------------------------------------------------------------------ request id

    async def test_a_well_formed_request_id_is_kept(self, spans: Spans) -> None:
        """A well-formed X-Request-ID is the request's: in the scope, on the span, echoed."""
        answer = await self.get("/items/7", {"X-Request-ID": "a.b:c=d+e/f@g-1"})
        assert (
            "a.b:c=d+e/f@g-1"
            == answer.headers["x-request-id"]
            == answer.json()["request"]["request_id"]
        )
        assert "a.b:c=d+e/f@g-1" == server_span(spans).attributes["request.id"]

    async def test_a_request_id_is_made(self) -> None:
        """Without one, a fresh id (32 hex digits) is made, in the scope and echoed."""
        answer = await self.get("/items/7")
        made = answer.headers["x-request-id"]
        assert re.fullmatch("[0-9a-f]{32}", made)
        assert made == answer.json()["request"]["request_id"]

    @pytest.mark.parametrize("given", ["has space", "-", "...", "::"])
    async def test_a_malformed_request_id_is_replaced(self, given: str) -> None:
        """A malformed id is replaced by a fresh one and counted; so is one with no letter or
        digit (``-`` is the logs' placeholder for "no request")."""
        answer = await self.get("/items/7", {"X-Request-ID": given})
        made = answer.headers["x-request-id"]
        assert re.fullmatch("[0-9a-f]{32}", made)
        assert made == answer.json()["request"]["request_id"]
        assert 1 == diagnostics.drop_counts()["request_id.invalid"]

    async def test_the_placeholder_in_the_baggage_is_replaced(self) -> None:
        """The baggage's request id is held to the same rule as the header's."""
        answer = await self.get("/items/7", {"baggage": "request.request_id=-;tl"})
        assert re.fullmatch("[0-9a-f]{32}", answer.headers["x-request-id"])
        assert 1 == diagnostics.drop_counts()["request_id.invalid"]

    async def test_the_id_from_the_baggage_when_no_header(self) -> None:
        """With no header, the request id that came in the trusted baggage is the request's."""
        answer = await self.get("/items/7", {"baggage": "request.request_id=from-baggage;tl"})
        assert "from-baggage" == answer.headers["x-request-id"]

    async def test_request_ids_can_be_refused(self) -> None:
        """accept_request_id=False always makes a new id."""
        answer = await self.get("/items/7", {"X-Request-ID": "mine"}, accept_request_id=False)
        assert "mine" != answer.headers["x-request-id"]

    @pytest.mark.parametrize("path", ["/fail", "/status/503", "/status/404", "/nowhere"])
    async def test_every_response_has_the_id(self, path: str) -> None:
        """Errors too: an unhandled exception, an error status, an unmatched route."""
        answer = await self.get(path, {"X-Request-ID": "err-1"})
        assert "err-1" == answer.headers["x-request-id"]

    # ------------------------------------------------------------------ user id

    @pytest.mark.parametrize("kind", ["sync", "async"])
    async def test_user_id_extractor(self, spans: Spans, kind: str) -> None:
        """The extractor's answer (sync or async) is user_id in the scope and enduser.id."""
        answer = await self.get(
            "/items/7", {"X-User": "u-9", "baggage": BAGGAGE}, user_id=self.user_from_header(kind)
        )
        assert "u-9" == answer.json()["request"]["user_id"]
        assert "u-9" == server_span(spans).attributes["enduser.id"]

    async def test_no_user_is_never_a_claimed_one(self) -> None:
        """An extractor that finds nobody: the user_id that came in the baggage is dropped too."""
        answer = await self.get(
            "/items/7", {"baggage": BAGGAGE}, user_id=self.user_from_header("sync")
        )
        assert {"tenant": "acme"}.items() <= answer.json()["request"].items()
        assert "user_id" not in answer.json()["request"]

    async def test_the_extractors_error_is_the_requests(self, spans: Spans) -> None:
        """An extractor that raises fails the request as a handler would: 500, with the id."""

        def broken(request: Any) -> str:
            raise LookupError("no session store")

        answer = await self.get("/items/7", {"X-Request-ID": "ux-1"}, user_id=broken)
        assert (500, "ux-1") == (answer.status, answer.headers["x-request-id"])
        assert "LookupError" == server_span(spans).attributes["error.type"]

    def user_from_header(self, kind: str) -> Callable[[Any], Any]:
        def sync(request: Any) -> str | None:
            return self.header_of(request, "X-User")

        async def later(request: Any) -> str | None:
            await asyncio.sleep(0)
            return self.header_of(request, "X-User")

        return sync if kind == "sync" else later

    # ------------------------------------------------------------------ span

    async def test_span_name_and_attributes(self, spans: Spans) -> None:
        """The SERVER span is "{method} {route}" with the HTTP semantic conventions."""
        await self.get("/items/7?q=1", {"User-Agent": "contract"})
        span = server_span(spans)
        assert "GET " + self.route == span.name
        assert {
            "threadline.boundary": "http.server",
            "http.request.method": "GET",
            "http.route": self.route,
            "url.path": "/items/7",
            "url.query": "q=1",
            "url.scheme": "http",
            "http.response.status_code": 200,
            "server.address": "127.0.0.1",
            "client.address": "127.0.0.1",
            "user_agent.original": "contract",
            "network.protocol.version": "1.1",
        }.items() <= dict(span.attributes).items()
        assert isinstance(span.attributes["server.port"], int)

    async def test_signature_values_never_reach_the_span(self, spans: Spans) -> None:
        """url.query keeps its bytes but the values of the signature keys the semantic
        conventions name (AWSAccessKeyId, Signature, sig, X-Goog-Signature): REDACTED."""
        await self.get(f"/items/7?{SIGNED_QUERY}")
        assert REDACTED_QUERY == server_span(spans).attributes["url.query"]

    async def test_an_unknown_method_is_other(self, spans: Spans) -> None:
        """An unknown method is _OTHER, with the original; the span is "HTTP {route}"."""
        (answer,) = await send(await self.start(), ("PROPFIND", "/items/7", {}))
        assert 200 == answer.status
        span = server_span(spans)
        assert ("HTTP " + self.route, "_OTHER", "PROPFIND") == (
            span.name,
            span.attributes["http.request.method"],
            span.attributes["http.request.method_original"],
        )

    @pytest.mark.parametrize(
        ("code", "failed"), [(503, True), (500, True), (404, False), (204, False)]
    )
    async def test_5xx_is_the_servers_error(self, spans: Spans, code: int, failed: bool) -> None:
        """5xx fails the span, with error.type; 4xx is the client's error, not the server's."""
        await self.get(f"/status/{code}")
        span = server_span(spans)
        assert code == span.attributes["http.response.status_code"]
        assert (StatusCode.ERROR if failed else StatusCode.UNSET) == span.status.status_code
        assert (str(code) if failed else None) == span.attributes.get("error.type")

    async def test_an_unhandled_exception(self, spans: Spans) -> None:
        """A 500 with the id, the exception on the span, one escaped line in the adapter's log."""
        with access_lines(self.logger_name) as records:
            answer = await self.get("/fail", {"X-Request-ID": "boom-1"})
        assert (500, "boom-1") == (answer.status, answer.headers["x-request-id"])
        span = server_span(spans)
        assert (StatusCode.ERROR, "RuntimeError") == (
            span.status.status_code,
            span.attributes["error.type"],
        )
        assert "exception" == span.events[0].name
        (failure,) = [r for r in records if r.levelno == logging.ERROR]
        assert ("unhandled exception in GET /fail", "boom-1") == (
            failure.getMessage(),
            failure.request_id,
        )  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ Server-Timing

    @pytest.mark.parametrize(("trust", "sent"), [(True, True), (False, False)])
    async def test_server_timing(self, spans: Spans, trust: bool, sent: bool) -> None:
        """server_timing=True: the SERVER span's traceparent in Server-Timing, trusted callers only.

        Trace Context Level 3's response context; errors too.
        """
        for path in ("/items/1", "/fail"):
            answer = await self.get(
                path, {"traceparent": TRACEPARENT}, server_timing=True, trust_incoming=trust
            )
            span = [s for s in spans.finished() if s.kind == SpanKind.SERVER][-1]
            ids = f"{span.context.trace_id:032x}-{span.context.span_id:016x}"
            timing = f'traceparent;desc="00-{ids}-{span.context.trace_flags:02x}"'
            assert (timing if sent else None) == answer.headers.get("server-timing"), path

    async def test_no_server_timing_by_default(self) -> None:
        """Without the option, no Server-Timing header."""
        answer = await self.get("/items/1", {"traceparent": TRACEPARENT})
        assert "server-timing" not in answer.headers

    # ------------------------------------------------------------------ access line

    async def test_the_access_line(self) -> None:
        """One line per request at its end, in its scope and trace, with status, route, duration."""
        with access_lines(self.logger_name) as records:
            await self.get("/items/3", {"X-Request-ID": "log-1", "traceparent": TRACEPARENT})
        (record,) = records
        assert re.fullmatch(r"GET /items/3 200 \d+\.\dms", record.getMessage()), record.getMessage()
        assert (200, self.route) == (record.http_status, record.route)  # type: ignore[attr-defined]
        assert ("log-1", TRACE_ID) == (record.request_id, record.trace_id)  # type: ignore[attr-defined]
        assert record.duration_ms >= 0  # type: ignore[attr-defined]

    async def test_the_access_line_is_escaped(self) -> None:
        """Control characters from the path and a baggage user id never reach the log raw."""
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.addFilter(ContextFilter())
        handler.setFormatter(logging.Formatter("%(message)s user=%(user_id)s"))
        logger = logging.getLogger(self.logger_name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            await self.get(
                "/items/1%0D%0AFORGED%0Bx%7F",
                {"baggage": "request.user_id=evil%0D%0Ainjected%1B%5B31m;tl"},
            )
        finally:
            logger.removeHandler(handler)
        (line,) = stream.getvalue().splitlines()
        assert line.startswith("GET /items/1\\r\\nFORGED\\x0bx\\x7f 200 "), line
        assert line.endswith(" user=evil\\r\\ninjected\\x1b[31m"), line

    async def test_the_access_line_can_be_off(self) -> None:
        """access_log=False writes none."""
        with access_lines(self.logger_name) as records:
            await self.get("/items/3", access_log=False)
        assert [] == records

    async def test_options_are_checked_when_made(self) -> None:
        """A wrong option is an error naming it, when the adapter is made."""
        with pytest.raises(TypeError, match="trust_incoming"):
            await self.start(trust_incoming="no")
        with pytest.raises(TypeError, match="user_id"):
            await self.start(user_id="X-User")

    async def test_spans_can_be_off(self, spans: Spans) -> None:
        """spans=False makes no span; the handler still runs in the incoming trace."""
        answer = await self.get("/items/3", {"traceparent": TRACEPARENT}, spans=False)
        assert [] == spans.finished()
        assert TRACE_ID == answer.json()["trace_id"]


# ---------------------------------------------------------------------- client


async def _echo(request: web.Request) -> web.Response:
    """Reports the headers that reached the server."""
    return web.json_response({"headers": {k.lower(): v for k, v in request.headers.items()}})


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound(request.query["to"])


async def _status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]))


def echo_app() -> web.Application:
    """A plain aiohttp server (no threadline): ``/echo``, ``/redirect?to=``, ``/status/{code}``."""
    app = web.Application()
    app.router.add_get("/echo", _echo)
    app.router.add_get("/redirect", _redirect)
    app.router.add_get("/status/{code}", _status)
    return app


class ClientContract:
    """The promises of a client adapter; subclasses say how to make one call."""

    connection_error: ClassVar[type[BaseException]]
    """What the adapter's client raises when nothing listens."""

    async def call(self, url: str, **options: Any) -> tuple[int, dict[str, Any] | None]:
        """Make one GET through the adapter's client made with *options*, in the current context.

        Redirects are followed; every host name resolves to 127.0.0.1. Returns
        the final status and the JSON body, if any.
        """
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    async def _echo_server(self, serve: Serve) -> None:
        self.base = await serve(echo_app())
        self.port = self.base.rsplit(":", 1)[1]

    async def headers_at(self, host: str, **options: Any) -> dict[str, str]:
        """The headers a call to *host* (on the echo server's port) arrived with."""
        _, body = await self.call(f"http://{host}:{self.port}/echo", **options)
        assert body is not None
        return dict(body["headers"])

    async def test_the_trace_goes_to_every_host(self, tracer: trace.Tracer) -> None:
        """A third-party host gets traceparent, and neither baggage nor X-Request-ID."""
        with (
            tracer.start_as_current_span("caller") as caller,
            tl.request.scope(request_id="r-1", user_id=7),
        ):
            seen = await self.headers_at("thirdparty.example")
        assert f"{caller.get_span_context().trace_id:032x}" == seen["traceparent"].split("-")[1]
        assert ("baggage" in seen, "x-request-id" in seen) == (False, False)

    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "api.internal", "partner.example"])
    async def test_baggage_and_id_to_allowed_hosts(self, host: str) -> None:
        """Loopback and baggage_hosts (exact or *.domain) get the store values and the id."""
        with tl.request.scope(request_id="r-1", user_id=7):
            seen = await self.headers_at(host, baggage_hosts=["*.internal", "partner.example"])
        assert "request.user_id=7;tl=json" in seen["baggage"]
        assert "r-1" == seen["x-request-id"]

    async def test_the_id_can_be_kept_back(self) -> None:
        """send_request_id=False: baggage to an allowed host, never X-Request-ID."""
        with tl.request.scope(request_id="r-1"):
            seen = await self.headers_at("127.0.0.1", send_request_id=False)
        assert "request.request_id=r-1;tl" == seen["baggage"]
        assert "x-request-id" not in seen

    @pytest.mark.parametrize(
        ("to", "trusted"), [("thirdparty.example", False), ("api.internal", True)]
    )
    async def test_each_redirect_is_decided_again(
        self, tracer: trace.Tracer, to: str, trusted: bool
    ) -> None:
        """A trusted host's redirect to another host: decided again, by the host it goes to."""
        target = f"http://{to}:{self.port}/echo"
        with tracer.start_as_current_span("caller"), tl.request.scope(request_id="r-1", user_id=7):
            _, body = await self.call(
                f"http://127.0.0.1:{self.port}/redirect?to={target}", baggage_hosts=["api.internal"]
            )
        assert body is not None
        seen = body["headers"]
        assert "traceparent" in seen
        assert (trusted, trusted) == ("baggage" in seen, "x-request-id" in seen)

    async def test_each_call_has_its_own_client_span(
        self, spans: Spans, tracer: trace.Tracer
    ) -> None:
        """A CLIENT span "{method}" per call, the caller's child, the far side's parent."""
        with tracer.start_as_current_span("caller") as caller:
            first = await self.headers_at("127.0.0.1")
            second = await self.headers_at("127.0.0.1")
        clients = [s for s in spans.finished() if s.kind == SpanKind.CLIENT]
        assert 2 == len(clients)
        assert {caller.get_span_context().span_id} == {c.parent.span_id for c in clients}
        assert [f"{c.context.span_id:016x}" for c in clients] == [
            seen["traceparent"].split("-")[2] for seen in (first, second)
        ]
        assert {
            "threadline.boundary": "http.client",
            "http.request.method": "GET",
            "url.full": f"http://127.0.0.1:{self.port}/echo",
            "server.address": "127.0.0.1",
            "server.port": int(self.port),
            "http.response.status_code": 200,
        }.items() <= dict(clients[0].attributes).items()
        assert "GET" == clients[0].name

    async def test_credentials_never_reach_the_span(
        self, spans: Spans, tracer: trace.Tracer
    ) -> None:
        """url.full is the URL without its user and password."""
        with tracer.start_as_current_span("caller"):
            await self.call(f"http://user:secret@127.0.0.1:{self.port}/echo")
        (client,) = [s for s in spans.finished() if s.kind == SpanKind.CLIENT]
        assert f"http://127.0.0.1:{self.port}/echo" == client.attributes["url.full"]

    async def test_signature_values_never_reach_the_span(
        self, spans: Spans, tracer: trace.Tracer
    ) -> None:
        """url.full keeps its bytes but the values of the signature keys the semantic
        conventions name (AWSAccessKeyId, Signature, sig, X-Goog-Signature): REDACTED."""
        with tracer.start_as_current_span("caller"):
            await self.call(f"http://u:p@127.0.0.1:{self.port}/echo?{SIGNED_QUERY}#top")
        (client,) = [s for s in spans.finished() if s.kind == SpanKind.CLIENT]
        assert (
            f"http://127.0.0.1:{self.port}/echo?{REDACTED_QUERY}#top"
            == client.attributes["url.full"]
        )

    @pytest.mark.parametrize(("code", "failed"), [(404, True), (503, True), (204, False)])
    async def test_4xx_and_5xx_are_errors_of_a_call(
        self, spans: Spans, tracer: trace.Tracer, code: int, failed: bool
    ) -> None:
        """A 4xx or 5xx answer fails the CLIENT span with error.type."""
        with tracer.start_as_current_span("caller"):
            await self.call(f"{self.base}/status/{code}")
        (client,) = [s for s in spans.finished() if s.kind == SpanKind.CLIENT]
        assert (StatusCode.ERROR if failed else StatusCode.UNSET) == client.status.status_code
        assert (str(code) if failed else None) == client.attributes.get("error.type")

    async def test_a_connection_failure_fails_the_span(
        self, spans: Spans, tracer: trace.Tracer
    ) -> None:
        """A call that cannot connect ends its CLIENT span with the error."""
        with tracer.start_as_current_span("caller"), pytest.raises(self.connection_error):
            await self.call(f"http://127.0.0.1:{free_port()}/")
        (client,) = [s for s in spans.finished() if s.kind == SpanKind.CLIENT]
        assert StatusCode.ERROR == client.status.status_code
        assert "error.type" in client.attributes

    async def test_no_recording_span_no_client_span(self, spans: Spans) -> None:
        """Without a span to be the parent, no CLIENT span; the store values still go."""
        with tl.request.scope(request_id="r-1"):
            seen = await self.headers_at("127.0.0.1")
        assert [] == spans.finished()
        assert "traceparent" not in seen
        assert "r-1" == seen["x-request-id"]

    async def test_the_callers_context_not_the_clients(self) -> None:
        """Concurrent calls each carry the context of the task that makes them."""

        async def call(request_id: str) -> str:
            with tl.request.scope(request_id=request_id):
                return (await self.headers_at("127.0.0.1"))["x-request-id"]

        assert ["a", "b", "c"] == list(await asyncio.gather(call("a"), call("b"), call("c")))

    async def test_a_value_that_cannot_go_never_fails_the_call(
        self, store: tl.ContextStore
    ) -> None:
        """A store value that cannot be encoded drops the baggage, counted; the call goes."""
        with store.scope(conn=object()):
            status, _ = await self.call(f"{self.base}/echo")
        assert 200 == status
        assert 1 == diagnostics.drop_counts()["baggage.outbound_invalid"]

    async def test_options_are_checked_when_made(self) -> None:
        """A wrong option is an error naming it, before any call."""
        with pytest.raises(TypeError, match="baggage_hosts"):
            await self.call(f"{self.base}/echo", baggage_hosts="api.internal")
        with pytest.raises(ValueError, match="baggage_hosts"):
            await self.call(f"{self.base}/echo", baggage_hosts=["api.internal:8080"])
        with pytest.raises(TypeError, match="spans"):
            await self.call(f"{self.base}/echo", spans="yes")
