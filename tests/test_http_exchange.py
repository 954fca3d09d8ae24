"""The exchange core without a framework: ServerExchange, ClientExchange and the conventions.

What the aiohttp adapter cannot show: header values as bytes (as ASGI gives
them), a route known only after the span started, other error policies, and
the rules of the semantic conventions one by one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import threadline as tl
from tests.helpers import Spans
from threadline import diagnostics
from threadline._core.context import get_current
from threadline._http.client import ClientExchange
from threadline._http.options import ClientOptions, ServerOptions
from threadline._http.semconv import (
    ServerFields,
    method_attributes,
    redacted_query,
    server_address,
    server_attributes,
    server_span_name,
    text,
    without_credentials,
)
from threadline._http.server import ServerExchange

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
FIELDS = ServerFields("http", b"", b"h:8080", "127.0.0.1", b"agent\xff", "1.1")


class Request:
    """A request as a framework without one would give it: header values as bytes."""

    def __init__(self, headers: dict[str, list[bytes]], route: str | None = "/r/{x}") -> None:
        self.headers = headers
        self.route = route


class BytesReader:
    """An ASGI-like `ServerReader`: header values are bytes."""

    def headers(self, request: Request) -> Any:
        def get_all(name: str, default: Sequence[str]) -> Sequence[str | bytes]:
            return request.headers.get(name, default)

        return get_all

    def method(self, request: Request) -> str:
        return "GET"

    def path(self, request: Request) -> str:
        return "/r/1"

    def route(self, request: Request) -> str | None:
        return request.route

    def fields(self, request: Request) -> ServerFields:
        return FIELDS

    def location(self, request: Request) -> str:
        return "here:1"


def exchange(headers: dict[str, list[bytes]], route: str | None = "/r/{x}", **options: Any) -> Any:
    return ServerExchange(ServerOptions(**options), BytesReader(), Request(headers, route))


def only_span(spans: Spans) -> Any:
    (span,) = spans.finished()
    return span


class TestServerExchange:
    def test_header_values_as_bytes(self, spans: Spans) -> None:
        """traceparent, baggage and X-Request-ID given as bytes are read as their text."""
        headers = {
            "traceparent": [TRACEPARENT.encode()],
            "baggage": [b"request.tenant=acme;tl"],
            "x-request-id": [b"r-1"],
        }
        with exchange(headers) as served:
            value = tl.request.get()
            served.finish(200)
        assert value is not None
        assert ("r-1", "acme") == (value["request_id"], value["tenant"])
        assert TRACE_ID == f"{only_span(spans).context.trace_id:032x}"
        assert ("agent\ufffd", "h", 8080) == tuple(
            only_span(spans).attributes[name]
            for name in ("user_agent.original", "server.address", "server.port")
        )

    @pytest.mark.parametrize(
        ("name", "value", "reason"),
        [
            ("baggage", b"request.tenant=acm\xe9;tl", "baggage.invalid"),
            ("traceparent", TRACEPARENT.encode()[:-1] + b"\x81", "traceparent.invalid"),
            ("x-request-id", b"r\xc3\xa9", "request_id.invalid"),
        ],
    )
    def test_bytes_that_are_not_ascii(
        self, spans: Spans, name: str, value: bytes, reason: str
    ) -> None:
        """A field with bytes outside ASCII is dropped whole and counted, never half-read."""
        with exchange({name: [value]}) as served:
            seen = dict(tl.request.get() or {})
            served.finish(200)
        assert "tenant" not in seen
        assert 32 == len(seen["request_id"])
        assert {reason: 1} == diagnostics.drop_counts()

    def test_the_route_set_later(self, spans: Spans, caplog: pytest.LogCaptureFixture) -> None:
        """A route known only after the span started renames it; the access line has it."""
        with caplog.at_level(logging.INFO, "threadline.http"), exchange({}, route=None) as served:
            assert served.route is None
            served.set_route("/items/{item_id}")
            served.finish(200)
        span = only_span(spans)
        assert ("GET /items/{item_id}", "/items/{item_id}") == (
            span.name,
            span.attributes["http.route"],
        )
        (record,) = caplog.records
        assert "/items/{item_id}" == record.route  # type: ignore[attr-defined]

    def test_a_record_factory_that_sets_the_lines_fields(
        self, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A record factory that sets route, status or duration leaves the access line whole."""
        made = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = made(*args, **kwargs)
            record.__dict__.update(route="?", http_status=0, duration_ms=-1.0)
            return record

        monkeypatch.setattr(logging, "_logRecordFactory", factory)
        with caplog.at_level(logging.INFO, "threadline.http"), exchange({}) as served:
            served.finish(200)
        (record,) = caplog.records
        assert ("/r/{x}", 200) == (record.route, record.http_status)  # type: ignore[attr-defined]
        assert record.duration_ms >= 0  # type: ignore[attr-defined]

    def test_another_error_policy(self, spans: Spans) -> None:
        """The options say what status is an error (here every 4xx too)."""
        with exchange({}, is_error=lambda status: status >= 400) as served:
            served.finish(404)
        span = only_span(spans)
        assert (StatusCode.ERROR, "404") == (span.status.status_code, span.attributes["error.type"])

    def test_an_exception_that_leaves_unreported(
        self, spans: Spans, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An exception that leaves the block unreported is a 500, logged, on the span."""
        with pytest.raises(KeyError), exchange({}):
            raise KeyError("lost")
        span = only_span(spans)
        assert (500, "KeyError") == (
            span.attributes["http.response.status_code"],
            span.attributes["error.type"],
        )
        assert ["unhandled exception in GET /r/1"] == [
            r.getMessage() for r in caplog.records if r.levelno == logging.ERROR
        ]

    def test_the_unhandled_exception_line_is_escaped(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The method and path from the request reach the unhandled-exception line escaped."""

        class Forged(BytesReader):
            def method(self, request: Request) -> str:
                return "GET\x1b[2J"

            def path(self, request: Request) -> str:
                return "/r/1\r\nFORGED\u2028"

        served = ServerExchange(ServerOptions(), Forged(), Request({}))
        with pytest.raises(ValueError, match="boom"), served:
            raise ValueError("boom")
        (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert "unhandled exception in GET\\x1b[2J /r/1\\r\\nFORGED\\u2028" == line

    def test_a_cancelled_request_has_no_status(
        self, spans: Spans, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The client went away: the span records it, no status, the access line shows '-'."""
        with (
            caplog.at_level(logging.INFO, "threadline.http"),
            pytest.raises(asyncio.CancelledError),
            exchange({}),
        ):
            raise asyncio.CancelledError
        span = only_span(spans)
        assert "http.response.status_code" not in span.attributes
        assert "CancelledError" == span.attributes["error.type"]
        (record,) = caplog.records
        assert record.getMessage().startswith("GET /r/1 - ")

    def test_the_context_is_put_back(self) -> None:
        """After the exchange, user id and all, the context is the one from before."""
        before = get_current()
        with exchange({}, user_id=lambda request: "u-1") as served:
            assert served.identify() is None  # a synchronous extractor is done at once
            assert "u-1" == tl.request.get()["user_id"]  # type: ignore[index]
            served.finish(200)
        assert before is get_current()

    def test_response_headers(self) -> None:
        """Every response gets the request id, unless the application set one."""
        fresh: dict[str, str] = {}
        own = {"X-Request-ID": "the application's"}
        failed: dict[str, str] = {}
        for headers in (fresh, own):
            with exchange({"x-request-id": [b"r-9"]}) as served:
                served.finish(200, headers)
        with exchange({"x-request-id": [b"r-9"]}) as served:
            served.fail(RuntimeError("boom"), failed)
        assert (("X-Request-ID", "r-9"),) == served.response_headers()
        assert [{"X-Request-ID": "r-9"}, {"X-Request-ID": "the application's"}] == [fresh, own]
        assert {"X-Request-ID": "r-9"} == failed


class TestClientExchange:
    def test_a_redirect_is_decided_again(self, tracer: trace.Tracer) -> None:
        """A redirect strips baggage and the id, and gives them again only to an allowed host."""
        options = ClientOptions(baggage_hosts=["*.internal"])
        with tracer.start_as_current_span("caller"), tl.request.scope(request_id="r-1"):
            call = ClientExchange(options, "GET", "http://a.internal/", "a.internal", 80)
        headers: dict[str, str] = {}
        call.write_headers(headers)
        assert {"traceparent", "baggage", "X-Request-ID"} == set(headers)
        for url, expected in [
            ("http://third.example/", {"traceparent"}),
            ("http://[::1]:8080/", {"traceparent", "baggage", "X-Request-ID"}),
            (None, {"traceparent"}),
            ("http://b.internal/", {"traceparent", "baggage", "X-Request-ID"}),
        ]:
            call.redirect(headers, url)
            assert expected == set(headers), url
        call.finish(200)

    def test_calls_from_one_context_each_carry_their_own_span(
        self, spans: Spans, tracer: trace.Tracer
    ) -> None:
        """Calls made in one context: each sends its own CLIENT span as parent, the same baggage."""
        options = ClientOptions()
        sent: list[dict[str, str]] = []
        with tracer.start_as_current_span("caller"), tl.request.scope(request_id="r-1"):
            for _ in range(3):
                call = ClientExchange(options, "GET", "http://127.0.0.1/", "127.0.0.1", 80)
                headers: dict[str, str] = {}
                call.write_headers(headers)
                call.finish(200)
                sent.append(headers)
            with tl.request.merge(user_id="u-2"):
                call = ClientExchange(options, "GET", "http://127.0.0.1/", "127.0.0.1", 80)
                headers = {}
                call.write_headers(headers)
                call.finish(200)
        calls = [s for s in spans.finished() if s.kind == SpanKind.CLIENT]
        assert [f"{s.context.span_id:016x}" for s in calls] == [
            h["traceparent"].split("-")[2] for h in [*sent, headers]
        ]
        assert 1 == len({h["baggage"] for h in sent})
        assert "request.user_id=u-2;tl" in headers["baggage"].split(",")

    def test_the_calls_tracestate_is_its_spans(self, spans: Spans) -> None:
        """Under a remote parent with a tracestate, the call's span (and its header) keep it."""
        parent = tl.extract(
            {
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "tracestate": "vendor=a1,other=b2",
            }
        )
        with parent:
            call = ClientExchange(ClientOptions(), "GET", "http://h/", "h", 80)
        headers: dict[str, str] = {}
        call.write_headers(headers)
        call.finish(200)
        (client,) = [s for s in spans.finished() if s.kind == SpanKind.CLIENT]
        assert "vendor=a1,other=b2" == headers["tracestate"]
        assert f"{client.context.span_id:016x}" == headers["traceparent"].split("-")[2]
        assert client.context.trace_state.to_header() == headers["tracestate"]

    @pytest.mark.parametrize(("state", "sent"), [([("mine", "1")], "mine=1"), ([], None)])
    def test_a_tracestate_the_sampler_chose(
        self,
        spans: Spans,
        monkeypatch: pytest.MonkeyPatch,
        state: list[tuple[str, str]],
        sent: str | None,
    ) -> None:
        """A sampler that gives the call's span a tracestate of its own: that one goes, or none."""
        from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
        from opentelemetry.trace import TraceState

        from threadline._telemetry.spans import tracer as threadline_tracer

        class Chooses(Sampler):
            def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
                return SamplingResult(Decision.RECORD_AND_SAMPLE, None, TraceState(state))

            def get_description(self) -> str:
                return "chooses"

        monkeypatch.setattr(threadline_tracer(), "sampler", Chooses())
        parent = tl.extract(
            {
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "tracestate": "vendor=a1",
            }
        )
        with parent:
            call = ClientExchange(ClientOptions(), "GET", "http://h/", "h", 80)
        headers: dict[str, str] = {}
        call.write_headers(headers)
        call.finish(200)
        assert sent == headers.get("tracestate")
        assert call.context is not None

    def test_another_error_policy(self, spans: Spans, tracer: trace.Tracer) -> None:
        """The options say what status is an error of a call (here only 5xx)."""
        options = ClientOptions(is_error=lambda status: status >= 500)
        with tracer.start_as_current_span("caller"):
            ClientExchange(options, "GET", "http://h/", "h", 80).finish(404)
        (client,) = [s for s in spans.finished() if s.kind == SpanKind.CLIENT]
        assert StatusCode.UNSET == client.status.status_code

    def test_another_instrumentations_span_is_the_calls(
        self, spans: Spans, tracer: trace.Tracer
    ) -> None:
        """A CLIENT span of another instrumentation, current here, stands for the call."""
        with tracer.start_as_current_span("theirs", kind=SpanKind.CLIENT) as theirs:
            call = ClientExchange(ClientOptions(), "GET", "http://h/", "h", 80)
            headers: dict[str, str] = {}
            call.write_headers(headers)
            call.finish(200)
        assert call.span is None
        assert f"{theirs.get_span_context().span_id:016x}" == headers["traceparent"].split("-")[2]
        assert ["theirs"] == [s.name for s in spans.finished()]


class TestSemanticConventions:
    @pytest.mark.parametrize(
        ("method", "name", "attributes"),
        [
            ("GET", "GET", {"http.request.method": "GET"}),
            ("QUERY", "QUERY", {"http.request.method": "QUERY"}),
            (
                "get",
                "HTTP",
                {"http.request.method": "_OTHER", "http.request.method_original": "get"},
            ),
            (
                "PROP\udcff",
                "HTTP",
                {"http.request.method": "_OTHER", "http.request.method_original": "PROP\ufffd"},
            ),
        ],
    )
    def test_methods(self, method: str, name: str, attributes: dict[str, str]) -> None:
        """Known methods as they are (case matters); others _OTHER, the original kept as UTF-8."""
        assert (name, attributes) == method_attributes(method)

    @pytest.mark.parametrize(
        ("route", "name"), [("/a/{b}", "GET /a/{b}"), (None, "GET"), ("", "GET")]
    )
    def test_server_span_name(self, route: str | None, name: str) -> None:
        """ "{method} {route}", or the method alone when no route matched."""
        assert name == server_span_name("GET", route)

    @pytest.mark.parametrize(
        ("host", "split"),
        [
            ("example.com", ("example.com", None)),
            ("example.com:8080", ("example.com", 8080)),
            ("[::1]:8443", ("::1", 8443)),
            ("[2001:db8::1]", ("2001:db8::1", None)),
            ("h:port", ("h:port", None)),
            (None, ("", None)),
        ],
    )
    def test_server_address(self, host: str | None, split: tuple[str, int | None]) -> None:
        """The Host header split into name (IPv6 without brackets) and port."""
        assert split == server_address(host)

    @given(st.lists(st.one_of(st.text(max_size=20), st.binary(max_size=20)), max_size=80))
    def test_the_address_of_each_host(self, hosts: list[str | bytes]) -> None:
        """Each request's span has its own Host header's name and port, however many hosts came."""
        for host in [*hosts, *hosts]:  # each seen twice: the second may be remembered
            fields = FIELDS._replace(host=host)
            attributes = server_attributes("GET", None, "/", fields, "r-1")[1]
            name, port = server_address(text(host)) if host else ("", None)
            expected = {"server.address": name} if name else {}
            if port is not None:
                expected["server.port"] = port
            seen = {
                key: attributes[key]
                for key in ("server.address", "server.port")
                if key in attributes
            }
            assert expected == seen

    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            ("http://u:p@h.example:81/x?y=@z", "http://h.example:81/x?y=@z"),
            ("https://token@h/", "https://h/"),
            ("http://h/p@q", "http://h/p@q"),
            ("http://h", "http://h"),
            ("not a url", "not a url"),
            ("http://h/p?sig=1&b=2#f?sig=3", "http://h/p?sig=REDACTED&b=2#f?sig=3"),
            ("http://h/p#f?sig=3", "http://h/p#f?sig=3"),
            ("/p?Signature=a=b&sig=", "/p?Signature=REDACTED&sig="),
        ],
    )
    def test_without_credentials(self, url: str, shown: str) -> None:
        """url.full never holds the user and password, nor a signature in the query (never in
        the fragment); an @ in the path or query stays."""
        assert shown == without_credentials(url)

    @pytest.mark.parametrize(
        ("query", "shown"),
        [
            ("sig=S&x=1", "sig=REDACTED&x=1"),
            (
                "X-Goog-Signature=G&AWSAccessKeyId=A",
                "X-Goog-Signature=REDACTED&AWSAccessKeyId=REDACTED",
            ),
            ("xsig=1&sig&Signatures=2&a=sig=3", "xsig=1&sig&Signatures=2&a=sig=3"),
            ("q=%20a&&sig=1", "q=%20a&&sig=REDACTED"),
        ],
    )
    def test_redacted_query(self, query: str, shown: str) -> None:
        """Only the values of the four keys the semantic conventions name; the rest as it was."""
        assert shown == redacted_query(query)

    @given(st.lists(st.sampled_from(["sig", "Signature", "a", "sig=", "=", "&", "S", "%"])))
    def test_only_those_values_change(self, pieces: list[str]) -> None:
        """Part for part, byte for byte: only a value of one of the four keys becomes REDACTED."""
        query = "".join(pieces)
        for given_part, shown in zip(
            query.split("&"), redacted_query(query).split("&"), strict=True
        ):
            key, _, value = given_part.partition("=")
            if shown != given_part:
                assert (f"{key}=REDACTED", True) == (shown, bool(value))
                assert key in {"AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"}

    def test_text(self) -> None:
        """Bytes and escaped strings become valid UTF-8 text."""
        assert ("a\ufffd", "b\ufffd", "c") == (text(b"a\xff"), text("b\udcff"), text("c"))
