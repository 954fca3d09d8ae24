"""threadline.requests beyond the HTTP contract: redirects by hop, streams, errors, instrumenting.

requests is sync: each call runs in a thread with the caller's context
(asyncio.to_thread copies it), against a plain aiohttp server that records
each hop (tests/loopback_clients.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import threadline as tl
import threadline.requests as tlr
from tests.helpers import Serve, Spans, hook_calls, marked_line
from tests.loopback_clients import SEEN, Hop, hops_app, loopback_session


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with loopback_session() as made:
        yield tlr.instrument(made, baggage_hosts=["api.internal"])


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


async def call(session: requests.Session, method: str, url: str, **kwargs: Any) -> Any:
    """One call in a thread, with the caller's context; a 30 s limit unless given."""
    kwargs.setdefault("timeout", 30)
    return await asyncio.to_thread(session.request, method, url, **kwargs)


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
        session: requests.Session,
        hops: tuple[str, list[Hop]],
        tracer: trace.Tracer,
        case: tuple[str, str, list[tuple[bool, bool]]],
    ) -> None:
        """Trusted -> third party: nothing trusted goes on; third party -> trusted: it comes."""
        first, then, expected = case
        port, seen = hops
        target = f"http://{then}:{port}/echo"
        with tracer.start_as_current_span("caller"), tl.request.scope(request_id="r-1", user_id=7):
            answer = await call(session, "GET", f"http://{first}:{port}/redirect?to={target}")
        assert 200 == answer.status_code
        assert [first, then] == [hop["host"] for hop in seen]
        assert expected == [carried(hop) for hop in seen]
        assert 1 == len({hop["headers"]["traceparent"] for hop in seen})

    @pytest.mark.parametrize(
        ("host", "trusted"), [("127.0.0.1", True), ("thirdparty.example", False)]
    )
    async def test_a_relative_redirect_stays_with_its_host(
        self, session: requests.Session, hops: tuple[str, list[Hop]], host: str, trusted: bool
    ) -> None:
        """A Location without a host goes to the same host, decided as the first hop was."""
        port, seen = hops
        with tl.request.scope(request_id="r-1"):
            await call(session, "GET", f"http://{host}:{port}/redirect?to=/echo")
        assert ["/redirect", "/echo"] == [hop["path"] for hop in seen]
        assert [(trusted, trusted)] * 2 == [carried(hop) for hop in seen]

    async def test_303_turns_the_post_into_a_get(
        self,
        session: requests.Session,
        hops: tuple[str, list[Hop]],
        spans: Spans,
        tracer: trace.Tracer,
    ) -> None:
        """The GET after a 303 carries the context afresh; the call is one span, "POST"."""
        port, seen = hops
        with tracer.start_as_current_span("caller"), tl.request.scope(request_id="r-1"):
            answer = await call(
                session, "POST", f"http://127.0.0.1:{port}/redirect?to=/echo&code=303", data=b"x"
            )
        assert "GET" == answer.json()["method"]
        assert ["POST", "GET"] == [hop["method"] for hop in seen]
        assert "r-1" == seen[1]["headers"]["x-request-id"]
        (span,) = clients(spans)
        assert ("POST", 200) == (span.name, span.attributes["http.response.status_code"])
        assert f"{span.context.span_id:016x}" == seen[1]["headers"]["traceparent"].split("-")[2]

    async def test_too_many_redirects_fail_the_span(
        self,
        session: requests.Session,
        hops: tuple[str, list[Hop]],
        spans: Spans,
        tracer: trace.Tracer,
    ) -> None:
        """Past max_redirects the call raises; its one span ends with error.type."""
        port, seen = hops
        session.max_redirects = 2
        with tracer.start_as_current_span("caller"), pytest.raises(requests.TooManyRedirects):
            await call(session, "GET", f"http://127.0.0.1:{port}/loop")
        (span,) = clients(spans)
        assert (StatusCode.ERROR, "TooManyRedirects") == (
            span.status.status_code,
            span.attributes["error.type"],
        )
        assert 1 == len({hop["headers"]["traceparent"] for hop in seen})

    async def test_a_redirect_not_followed_carries_nothing_stale(
        self,
        session: requests.Session,
        hops: tuple[str, list[Hop]],
        spans: Spans,
        tracer: trace.Tracer,
    ) -> None:
        """allow_redirects=False: response.next, sent by hand to a third party, has no baggage."""
        port, seen = hops
        target = f"http://thirdparty.example:{port}/echo"
        with tracer.start_as_current_span("caller"), tl.request.scope(request_id="r-1"):
            answer = await call(
                session,
                "GET",
                f"http://127.0.0.1:{port}/redirect?to={target}",
                allow_redirects=False,
            )
            assert 302 == answer.status_code
            await asyncio.to_thread(session.send, answer.next, timeout=30)
        assert [(True, True), (False, False)] == [carried(hop) for hop in seen]
        first, second = clients(spans)
        assert 302 == first.attributes["http.response.status_code"]
        assert f"{second.context.span_id:016x}" == seen[1]["headers"]["traceparent"].split("-")[2]


class TestStreams:
    async def test_the_span_ends_when_the_response_is_closed(
        self,
        session: requests.Session,
        hops: tuple[str, list[Hop]],
        spans: Spans,
        tracer: trace.Tracer,
    ) -> None:
        """stream=True: no span ended while the body is open; one, with the status, after."""
        port, _ = hops

        def stream() -> tuple[int, bytes]:
            with session.get(f"http://127.0.0.1:{port}/stream", stream=True, timeout=30) as answer:
                ended = len(clients(spans))
                return ended, answer.raw.read()

        with tracer.start_as_current_span("caller"):
            ended, body = await asyncio.to_thread(stream)
        assert (0, b"one two three") == (ended, body)
        (span,) = clients(spans)
        assert 200 == span.attributes["http.response.status_code"]

    async def test_reading_to_the_end_ends_it(
        self,
        session: requests.Session,
        hops: tuple[str, list[Hop]],
        spans: Spans,
        tracer: trace.Tracer,
    ) -> None:
        """A streamed response read to its end (never closed by hand) ends the span."""
        port, _ = hops
        with tracer.start_as_current_span("caller"):
            answer = await call(session, "GET", f"http://127.0.0.1:{port}/stream", stream=True)
            assert [] == clients(spans)
            assert "one two three" == await asyncio.to_thread(lambda: answer.text)
        assert 1 == len(clients(spans))

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_a_body_cut_short_fails_the_span(
        self,
        session: requests.Session,
        hops: tuple[str, list[Hop]],
        spans: Spans,
        tracer: trace.Tracer,
        streamed: bool,
    ) -> None:
        """A body that never comes whole fails the span with error.type, streamed or read."""
        port, _ = hops

        def fetch() -> None:
            answer = session.get(f"http://127.0.0.1:{port}/broken", stream=streamed, timeout=30)
            _ = answer.content

        with tracer.start_as_current_span("caller"), pytest.raises(requests.RequestException):
            await asyncio.to_thread(fetch)
        (span,) = clients(spans)
        assert (StatusCode.ERROR, "ChunkedEncodingError") == (
            span.status.status_code,
            span.attributes["error.type"],
        )


class TestErrors:
    async def test_a_timeout_fails_the_span(
        self,
        session: requests.Session,
        hops: tuple[str, list[Hop]],
        spans: Spans,
        tracer: trace.Tracer,
    ) -> None:
        """A read timeout ends the call's span with error.type ReadTimeout."""
        port, _ = hops
        with tracer.start_as_current_span("caller"), pytest.raises(requests.ReadTimeout):
            await call(session, "GET", f"http://127.0.0.1:{port}/slow", timeout=0.05)
        (span,) = clients(spans)
        assert "ReadTimeout" == span.attributes["error.type"]


class TestInstrumenting:
    async def test_twice_is_a_no_op(
        self,
        session: requests.Session,
        hops: tuple[str, list[Hop]],
        spans: Spans,
        tracer: trace.Tracer,
    ) -> None:
        """A second instrument() returns the session unchanged: one span, the first options."""
        port, seen = hops
        send = session.send
        assert session is tlr.instrument(session, baggage_hosts=["thirdparty.example"])
        assert send is session.send
        with tracer.start_as_current_span("caller"), tl.request.scope(request_id="r-1"):
            await call(session, "GET", f"http://thirdparty.example:{port}/echo")
        assert [(False, False)] == [carried(hop) for hop in seen]
        assert 1 == len(clients(spans))

    async def test_an_uninstrumented_session_is_untouched(
        self,
        session: requests.Session,
        hops: tuple[str, list[Hop]],
        spans: Spans,
        tracer: trace.Tracer,
    ) -> None:
        """Instrumenting one session leaves the others (and the class) as they were."""
        port, seen = hops
        with loopback_session() as other:
            with tracer.start_as_current_span("caller"), tl.request.scope(request_id="r-1"):
                await call(other, "GET", f"http://127.0.0.1:{port}/echo")
            assert "send" not in vars(other)
        assert {"traceparent", "baggage", "x-request-id"}.isdisjoint(seen[0]["headers"])
        assert [] == clients(spans)

    async def test_a_thread_pool_caller(
        self,
        session: requests.Session,
        hops: tuple[str, list[Hop]],
        spans: Spans,
        tracer: trace.Tracer,
    ) -> None:
        """A call made in a pool job carries the context of the code that submitted it."""
        port, seen = hops
        with tl.ThreadPoolExecutor(max_workers=2, job_spans=False) as pool:
            with tracer.start_as_current_span("caller") as caller:
                futures = []
                for request_id in ("a", "b", "c"):
                    with tl.request.scope(request_id=request_id):
                        url = f"http://127.0.0.1:{port}/echo"
                        futures.append(pool.submit(session.get, url, timeout=30))
                for future in futures:
                    await asyncio.wrap_future(future)
        assert ["a", "b", "c"] == sorted(hop["headers"]["x-request-id"] for hop in seen)
        assert {caller.get_span_context().span_id} == {s.parent.span_id for s in clients(spans)}

    async def test_a_call_is_an_http_client_resource(
        self, session: requests.Session, hops: tuple[str, list[Hop]]
    ) -> None:
        """Lifecycle hooks see each call as an http.client resource made at the caller's line."""
        port, _ = hops

        def get() -> None:
            session.get(f"http://127.0.0.1:{port}/echo", timeout=30)  # mark:requests-get

        with hook_calls() as seen, tl.request.scope(request_id="h1"):
            await asyncio.to_thread(get)
        (made,) = [r for event, r in seen if event == "init" and r.type == "http.client"]
        assert "h1" == made.request_id
        assert marked_line(__file__, "mark:requests-get") == made.location
        assert ["init", "destroy"] == [event for event, resource in seen if resource is made]

    def test_only_sessions(self) -> None:
        """Anything else is a TypeError naming what was given."""
        with pytest.raises(TypeError, match=r"requests\.Session, got dict"):
            tlr.instrument({})  # type: ignore[arg-type]
