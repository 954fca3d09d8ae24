"""threadline.httpx beyond the HTTP contract: redirects hop by hop, streams, errors, instrumenting.

Every test runs with httpx.Client (called in a thread with the caller's
context) and httpx.AsyncClient, against a plain aiohttp server that records
each hop (tests/loopback_clients.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import threadline as tl
import threadline.httpx as tlx
from tests.helpers import Serve, Spans, hook_calls, marked_line
from tests.loopback_clients import SEEN, Hop, async_loopback_transport, hops_app, loopback_transport


class Calls:
    """Calls through one instrumented client of *kind*; a sync one in a thread, context copied."""

    def __init__(self, kind: str, client_options: dict[str, Any], options: dict[str, Any]) -> None:
        self.kind = kind
        settings = {"follow_redirects": True, **client_options}
        if kind == "sync":
            self.client: Any = httpx.Client(transport=loopback_transport(), **settings)
        else:
            self.client = httpx.AsyncClient(transport=async_loopback_transport(), **settings)
        tlx.instrument(self.client, **options)

    async def run(self, sync: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call *sync* (a sync client's method) in a thread, or await the async twin."""
        if self.kind == "sync":
            return await asyncio.to_thread(sync, *args, **kwargs)
        return await sync(*args, **kwargs)

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return await self.run(self.client.request, method, url, **kwargs)  # type: ignore[no-any-return]

    async def close(self) -> None:
        if self.kind == "sync":
            self.client.close()
        else:
            await self.client.aclose()


Make = Callable[..., Calls]


@pytest.fixture(params=["sync", "async"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Make]:
    made: list[Calls] = []

    def factory(client_options: dict[str, Any] | None = None, **options: Any) -> Calls:
        calls = Calls(request.param, client_options or {}, options)
        made.append(calls)
        return calls

    yield factory
    for calls in made:
        await calls.close()


@pytest.fixture
async def hops(serve: Serve) -> tuple[str, list[Hop]]:
    """The recording server's port, and the hops it got."""
    app = hops_app()
    base = await serve(app)
    return base.rsplit(":", 1)[1], app[SEEN]


def clients(spans: Spans) -> list[ReadableSpan]:
    return [s for s in spans.finished() if s.kind == SpanKind.CLIENT]


def carried(hop: Hop) -> tuple[bool, bool]:
    """Whether *hop* got baggage and X-Request-ID."""
    return "baggage" in hop["headers"], "x-request-id" in hop["headers"]


class TestRedirects:
    @pytest.mark.parametrize(
        "case",
        [
            ("127.0.0.1", "thirdparty.example", [(True, True), (False, False)]),
            ("thirdparty.example", "api.internal", [(False, False), (True, True)]),
        ],
    )
    async def test_each_hop_is_decided_by_its_host(
        self,
        make: Make,
        hops: tuple[str, list[Hop]],
        tracer: trace.Tracer,
        case: tuple[str, str, list[tuple[bool, bool]]],
    ) -> None:
        """Trusted -> third party: nothing trusted goes on; third party -> trusted: it comes."""
        first, then, expected = case
        port, seen = hops
        calls = make(baggage_hosts=["api.internal"])
        target = f"http://{then}:{port}/echo"
        with tracer.start_as_current_span("caller"), tl.request.scope(request_id="r-1", user_id=7):
            answer = await calls.request("GET", f"http://{first}:{port}/redirect?to={target}")
        assert 200 == answer.status_code
        assert [first, then] == [hop["host"] for hop in seen]
        assert expected == [carried(hop) for hop in seen]
        assert 1 == len({hop["headers"]["traceparent"] for hop in seen})

    @pytest.mark.parametrize(
        ("host", "trusted"), [("127.0.0.1", True), ("thirdparty.example", False)]
    )
    async def test_a_relative_redirect_stays_with_its_host(
        self, make: Make, hops: tuple[str, list[Hop]], host: str, trusted: bool
    ) -> None:
        """A Location without a host goes to the same host, decided as the first hop was."""
        port, seen = hops
        with tl.request.scope(request_id="r-1"):
            await make().request("GET", f"http://{host}:{port}/redirect?to=/echo")
        assert ["/redirect", "/echo"] == [hop["path"] for hop in seen]
        assert [(trusted, trusted)] * 2 == [carried(hop) for hop in seen]

    async def test_303_turns_the_post_into_a_get(
        self, make: Make, hops: tuple[str, list[Hop]], spans: Spans, tracer: trace.Tracer
    ) -> None:
        """The GET after a 303 carries the context afresh; the call is one span, "POST"."""
        port, seen = hops
        with tracer.start_as_current_span("caller"), tl.request.scope(request_id="r-1"):
            answer = await make().request(
                "POST", f"http://127.0.0.1:{port}/redirect?to=/echo&code=303", content=b"x" * 10
            )
        assert "GET" == answer.json()["method"]
        assert ["POST", "GET"] == [hop["method"] for hop in seen]
        assert "r-1" == seen[1]["headers"]["x-request-id"]
        (span,) = clients(spans)
        assert ("POST", 200) == (span.name, span.attributes["http.response.status_code"])
        assert f"{span.context.span_id:016x}" == seen[1]["headers"]["traceparent"].split("-")[2]

    async def test_too_many_redirects_fail_the_span(
        self, make: Make, hops: tuple[str, list[Hop]], spans: Spans, tracer: trace.Tracer
    ) -> None:
        """Past max_redirects the call raises; its one span ends with error.type."""
        port, seen = hops
        calls = make({"max_redirects": 2})
        with tracer.start_as_current_span("caller"), pytest.raises(httpx.TooManyRedirects):
            await calls.request("GET", f"http://127.0.0.1:{port}/loop")
        (span,) = clients(spans)
        assert (StatusCode.ERROR, "TooManyRedirects") == (
            span.status.status_code,
            span.attributes["error.type"],
        )
        assert 3 == len(seen)

    async def test_a_redirect_not_followed_carries_nothing_stale(
        self, make: Make, hops: tuple[str, list[Hop]], spans: Spans, tracer: trace.Tracer
    ) -> None:
        """follow_redirects=False: next_request, sent by hand to a third party, has no baggage."""
        port, seen = hops
        calls = make({"follow_redirects": False})
        target = f"http://thirdparty.example:{port}/echo"
        with tracer.start_as_current_span("caller"), tl.request.scope(request_id="r-1"):
            answer = await calls.request("GET", f"http://127.0.0.1:{port}/redirect?to={target}")
            assert 302 == answer.status_code
            assert answer.next_request is not None
            await calls.run(calls.client.send, answer.next_request)
        assert [(True, True), (False, False)] == [carried(hop) for hop in seen]
        first, second = clients(spans)
        assert 302 == first.attributes["http.response.status_code"]
        assert f"{second.context.span_id:016x}" == seen[1]["headers"]["traceparent"].split("-")[2]


class TestStreams:
    async def test_the_span_ends_when_the_response_is_closed(
        self, make: Make, hops: tuple[str, list[Hop]], spans: Spans, tracer: trace.Tracer
    ) -> None:
        """client.stream(): no span ended while the body is open; one, with the status, after."""
        port, _ = hops
        calls = make()
        url = f"http://127.0.0.1:{port}/stream"
        with tracer.start_as_current_span("caller"):
            if calls.kind == "sync":

                def stream() -> tuple[int, bytes]:
                    with calls.client.stream("GET", url) as response:
                        ended = len(clients(spans))
                        return ended, response.read()

                ended, body = await asyncio.to_thread(stream)
            else:
                async with calls.client.stream("GET", url) as response:
                    ended = len(clients(spans))
                    body = await response.aread()
        assert (0, b"one two three") == (ended, body)
        (span,) = clients(spans)
        assert 200 == span.attributes["http.response.status_code"]

    async def test_reading_to_the_end_ends_it(
        self, make: Make, hops: tuple[str, list[Hop]], spans: Spans, tracer: trace.Tracer
    ) -> None:
        """A streamed response read to its end (never closed by hand) ends the span."""
        port, _ = hops
        calls = make()
        request = calls.client.build_request("GET", f"http://127.0.0.1:{port}/stream")
        with tracer.start_as_current_span("caller"):
            response = await calls.run(calls.client.send, request, stream=True)
            assert [] == clients(spans)
            if calls.kind == "sync":
                await asyncio.to_thread(lambda: list(response.iter_bytes()))
            else:
                _ = [chunk async for chunk in response.aiter_bytes()]
        assert 1 == len(clients(spans))

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_a_body_cut_short_fails_the_span(
        self,
        make: Make,
        hops: tuple[str, list[Hop]],
        spans: Spans,
        tracer: trace.Tracer,
        streamed: bool,
    ) -> None:
        """A body that never comes whole fails the span with error.type, streamed or read."""
        port, _ = hops
        calls = make()
        request = calls.client.build_request("GET", f"http://127.0.0.1:{port}/broken")

        async def fetch() -> None:
            response = await calls.run(calls.client.send, request, stream=streamed)
            if calls.kind == "sync":
                await asyncio.to_thread(response.read)
            else:
                await response.aread()

        with tracer.start_as_current_span("caller"), pytest.raises(httpx.RemoteProtocolError):
            await fetch()
        (span,) = clients(spans)
        assert (StatusCode.ERROR, "RemoteProtocolError") == (
            span.status.status_code,
            span.attributes["error.type"],
        )


class TestErrors:
    async def test_a_timeout_fails_the_span(
        self, make: Make, hops: tuple[str, list[Hop]], spans: Spans, tracer: trace.Tracer
    ) -> None:
        """A read timeout ends the call's span with error.type ReadTimeout."""
        port, _ = hops
        with tracer.start_as_current_span("caller"), pytest.raises(httpx.ReadTimeout):
            await make().request("GET", f"http://127.0.0.1:{port}/slow", timeout=0.05)
        (span,) = clients(spans)
        assert "ReadTimeout" == span.attributes["error.type"]


class TestInstrumenting:
    async def test_twice_is_a_no_op(
        self, make: Make, hops: tuple[str, list[Hop]], spans: Spans, tracer: trace.Tracer
    ) -> None:
        """A second instrument() returns the client unchanged: one span, the first options."""
        port, seen = hops
        calls = make()
        send = calls.client.send
        assert calls.client is tlx.instrument(calls.client, baggage_hosts=["thirdparty.example"])
        assert send is calls.client.send
        with tracer.start_as_current_span("caller"), tl.request.scope(request_id="r-1"):
            await calls.request("GET", f"http://thirdparty.example:{port}/echo")
        assert [(False, False)] == [carried(hop) for hop in seen]
        assert 1 == len(clients(spans))

    async def test_an_uninstrumented_client_is_untouched(
        self, make: Make, hops: tuple[str, list[Hop]], spans: Spans, tracer: trace.Tracer
    ) -> None:
        """Instrumenting one client leaves the others (and the class) as they were."""
        port, seen = hops
        make()
        with httpx.Client(transport=loopback_transport()) as other:
            with tracer.start_as_current_span("caller"), tl.request.scope(request_id="r-1"):
                await asyncio.to_thread(other.get, f"http://127.0.0.1:{port}/echo")
            assert "send" not in vars(other)
        assert {"traceparent", "baggage", "x-request-id"}.isdisjoint(seen[0]["headers"])
        assert [] == clients(spans)

    async def test_every_mount_is_covered(self, hops: tuple[str, list[Hop]]) -> None:
        """A transport mounted for one host carries the context as the default one does."""
        port, seen = hops
        mounts = {"http://api.internal": async_loopback_transport()}
        async with httpx.AsyncClient(mounts=mounts) as client:
            tlx.instrument(client, baggage_hosts=["api.internal"])
            with tl.request.scope(request_id="r-1"):
                await client.get(f"http://api.internal:{port}/echo")
        assert "r-1" == seen[0]["headers"]["x-request-id"]

    async def test_a_thread_pool_caller(
        self, hops: tuple[str, list[Hop]], spans: Spans, tracer: trace.Tracer
    ) -> None:
        """A call made in a pool job carries the context of the code that submitted it."""
        port, seen = hops
        with (
            httpx.Client(transport=loopback_transport()) as client,
            tl.ThreadPoolExecutor(max_workers=2, job_spans=False) as pool,
        ):
            tlx.instrument(client)
            with tracer.start_as_current_span("caller") as caller:
                futures = []
                for request_id in ("a", "b", "c"):
                    with tl.request.scope(request_id=request_id):
                        futures.append(pool.submit(client.get, f"http://127.0.0.1:{port}/echo"))
                for future in futures:
                    await asyncio.wrap_future(future)
        assert ["a", "b", "c"] == sorted(hop["headers"]["x-request-id"] for hop in seen)
        assert {caller.get_span_context().span_id} == {s.parent.span_id for s in clients(spans)}

    async def test_a_call_is_an_http_client_resource(self, hops: tuple[str, list[Hop]]) -> None:
        """Lifecycle hooks see each call as an http.client resource made at the caller's line."""
        port, _ = hops
        async with httpx.AsyncClient(transport=async_loopback_transport()) as client:
            tlx.instrument(client)
            with hook_calls() as seen, tl.request.scope(request_id="h1"):
                await client.get(f"http://127.0.0.1:{port}/echo")  # mark:httpx-get
        (made,) = [r for event, r in seen if event == "init" and r.type == "http.client"]
        assert "h1" == made.request_id
        assert marked_line(__file__, "mark:httpx-get") == made.location
        assert ["init", "destroy"] == [event for event, resource in seen if resource is made]

    async def test_beside_opentelemetrys_per_client_instrumentation(
        self, hops: tuple[str, list[Hop]], spans: Spans, tracer: trace.Tracer
    ) -> None:
        """instrument_client: its CLIENT span only; baggage still only where threadline allows."""
        from opentelemetry import baggage, context
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        port, seen = hops
        async with httpx.AsyncClient(transport=async_loopback_transport()) as client:
            HTTPXClientInstrumentor.instrument_client(client)
            tlx.instrument(client)
            token = context.attach(baggage.set_baggage("plain", "1"))
            try:
                with tracer.start_as_current_span("caller"), tl.request.scope(request_id="r-1"):
                    for host in ("127.0.0.1", "thirdparty.example"):
                        await client.get(f"http://{host}:{port}/echo")
            finally:
                context.detach(token)
        trusted, third = (hop["headers"] for hop in seen)
        assert "plain=1,request.request_id=r-1;tl" == trusted["baggage"]
        assert ("baggage" in third, "x-request-id" in third) == (False, False)
        calls = clients(spans)
        assert ["opentelemetry.instrumentation.httpx"] * 2 == [
            s.instrumentation_scope.name for s in calls if s.instrumentation_scope
        ]
        assert [f"{s.context.span_id:016x}" for s in calls] == [
            hop["headers"]["traceparent"].split("-")[2] for hop in seen
        ]

    def test_only_httpx_clients(self) -> None:
        """Anything else is a TypeError naming what was given."""
        with pytest.raises(TypeError, match=r"httpx\.Client or httpx\.AsyncClient, got dict"):
            tlx.instrument({})  # type: ignore[type-var]
