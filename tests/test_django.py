"""threadline.django: a small Django project (tests/django_project) under real ASGI servers.

Async and ``def`` views, ``sync_to_async``/``async_to_sync`` in them, sync
and async middleware around them, Django's 500 handling and its
``got_request_exception`` signal, route templates on the SERVER span, and
keep-alive connections; the HTTP contract too. WSGI: the middleware does nothing.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from collections.abc import Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import threadline.asgi as tla
import threadline.django as tld
from tests.asgi_servers import AsgiServe
from tests.django_project import Calls, configure, views
from tests.django_project import settings as project
from tests.helpers import Spans
from tests.http_contract import TRACE_ID, TRACEPARENT, ServerContract, access_lines, send
from threadline import live

configure()

from django.conf import settings  # noqa: E402 - configured first

BAGGAGE = "request.tenant=acme;tl"
PLACES_SYNC = {"sync middleware", "async middleware", "view", "async_to_sync", "other thread"}
PLACES_ASYNC = {"sync middleware", "async middleware", "view", "sync_to_async", "other thread"}


@pytest.fixture
def middleware() -> Iterator[list[str]]:
    """settings.MIDDLEWARE for the apps a test makes (Django reads it when an app is made)."""
    chosen = list(project.SYNC_BELOW)
    settings.MIDDLEWARE = chosen
    yield chosen
    settings.MIDDLEWARE = project.SYNC_BELOW


def header(scope: Any, name: str) -> str | None:
    key = name.lower().encode()
    for field, value in scope["headers"]:
        if field == key:
            return bytes(value).decode("latin-1")
    return None


async def get(base: str, calls: Calls, *requests: tuple[str, str, dict[str, str | bytes]]) -> Any:
    """`send` *requests* on one connection; the answers once the application returned."""
    answers = await send(base, *requests)
    await calls.idle.wait()
    return answers


class TestDjangoUnderUvicorn(ServerContract):
    """The HTTP contract, for Django's probe views behind `asgi_application`."""

    logger_name = "threadline.asgi"
    route = "items/<item_id>"

    @pytest.fixture(autouse=True)
    def _serve(self, asgi_serve: AsgiServe, middleware: list[str]) -> None:
        self.serve = asgi_serve

    server = "uvicorn"

    async def start(self, **options: Any) -> str:
        self.calls = Calls(tld.asgi_application(**options))
        return await self.serve(self.calls, self.server)

    async def get(
        self, path: str, headers: dict[str, str | bytes] | None = None, **options: Any
    ) -> Any:
        (answer,) = await get(await self.start(**options), self.calls, ("GET", path, headers or {}))
        return answer

    def header_of(self, request: Any, name: str) -> str | None:
        return header(request, name)


class TestDjangoUnderHypercorn(TestDjangoUnderUvicorn):
    server = "hypercorn"


ORDERS = {"sync-below": project.SYNC_BELOW, "async-below": project.ASYNC_BELOW}


@pytest.fixture(params=list(ORDERS))
async def served(request: Any, asgi_serve: AsgiServe, middleware: list[str]) -> tuple[str, Calls]:
    """The project under uvicorn, threadline's middleware run sync or async (what is below it)."""
    middleware[:] = ORDERS[request.param]
    calls = Calls(tld.asgi_application())
    return await asgi_serve(calls, "uvicorn"), calls


@pytest.fixture
def base(served: tuple[str, Calls]) -> str:
    return served[0]


class TestEveryPlace:
    @pytest.mark.parametrize(("kind", "places"), [("sync", PLACES_SYNC), ("async", PLACES_ASYNC)])
    async def test_each_place_sees_the_request(
        self, base: str, spans: Spans, kind: str, places: set[str]
    ) -> None:
        """Middleware of both kinds, the view, its sync_to_async/async_to_sync and a thread."""
        headers: dict[str, str | bytes] = {
            "X-Request-ID": "r-1",
            "traceparent": TRACEPARENT,
            "baggage": BAGGAGE,
        }
        with access_lines("tests.django") as lines:
            (answer,) = await send(base, ("GET", f"/places/{kind}/5", headers))
        assert (200, "r-1") == (answer.status, answer.headers["x-request-id"])
        expected = {"request_id": "r-1", "tenant": "acme", "trace_id": TRACE_ID, "leaky": None}
        assert dict.fromkeys(places, expected) == answer.json()
        (line,) = lines
        assert ("r-1", TRACE_ID) == (line.request_id, line.trace_id)  # type: ignore[attr-defined]

    async def test_every_request_starts_clean(self, base: str) -> None:
        """On one keep-alive connection, after a view that leaked a value and a context."""
        full: dict[str, str | bytes] = {"traceparent": TRACEPARENT, "baggage": BAGGAGE}
        answers = await send(
            base,
            ("GET", "/places/sync/1", {**full, "X-Request-ID": "a"}),
            ("GET", "/leak", {**full, "X-Request-ID": "b"}),
            ("GET", "/places/async/2", {"X-Request-ID": "c"}),
            ("GET", "/places/sync/3", {"X-Request-ID": "d"}),
        )
        assert [200] * 4 == [a.status for a in answers]
        assert ["a", "b", "c", "d"] == [a.headers["x-request-id"] for a in answers]
        for answer, request_id in ((answers[2], "c"), (answers[3], "d")):
            for place, saw in answer.json().items():
                assert (request_id, None, None) == (saw["request_id"], saw["tenant"], saw["leaky"])
                assert TRACE_ID != saw["trace_id"], place
        assert answers[2].json()["view"]["trace_id"] != answers[3].json()["view"]["trace_id"]


class TestRoutes:
    @pytest.mark.parametrize(
        ("path", "route"),
        [
            ("/places/sync/5", "places/sync/<int:item_id>"),
            ("/places/async/5", "places/async/<int:item_id>"),
            ("/api/v1/orders/9", "api/v1/orders/<int:item_id>"),
        ],
    )
    async def test_the_route_names_the_server_span(
        self, base: str, spans: Spans, path: str, route: str
    ) -> None:
        """``{method} {route}`` with http.route, Django's template as OpenTelemetry's writes it."""
        with access_lines("threadline.asgi") as records:
            await send(base, ("GET", path, {}))
        (span,) = [s for s in spans.finished() if s.kind == SpanKind.SERVER]
        assert ("GET " + route, route) == (span.name, span.attributes["http.route"])
        assert [route] == [r.route for r in records]  # type: ignore[attr-defined]

    async def test_no_match_no_route(self, base: str, spans: Spans) -> None:
        """A URL Django matched to nothing: its 404, a span named by the method alone."""
        (answer,) = await send(base, ("GET", "/nowhere", {}))
        (span,) = [s for s in spans.finished() if s.kind == SpanKind.SERVER]
        assert (404, "GET", None) == (answer.status, span.name, span.attributes.get("http.route"))


class TestErrors:
    @pytest.mark.parametrize("kind", ["sync", "async"])
    async def test_a_view_that_raises(
        self, served: tuple[str, Calls], spans: Spans, kind: str
    ) -> None:
        """Django's 500 with the id; its lines and the signal's with the ids; the span ERROR."""
        with access_lines("tests.django") as ours, access_lines("django.request") as django:
            with access_lines("threadline.asgi") as threadline:
                headers: dict[str, str | bytes] = {
                    "X-Request-ID": "boom-1",
                    "traceparent": TRACEPARENT,
                }
                (answer,) = await get(*served, ("GET", f"/boom/{kind}", headers))
        assert (500, "boom-1") == (answer.status, answer.headers["x-request-id"])
        span = next(s for s in spans.finished() if s.kind == SpanKind.SERVER)
        assert (StatusCode.ERROR, "RuntimeError", f"GET boom/{kind}") == (
            span.status.status_code,
            span.attributes["error.type"],
            span.name,
        )
        assert ["exception"] == [e.name for e in span.events]
        lines = [*ours, *django, *threadline]
        assert {
            "about to fail",
            f"signal: /boom/{kind} failed",
            f"Internal Server Error: /boom/{kind}",
            f"unhandled exception in GET /boom/{kind}",
        } <= {r.getMessage() for r in lines}
        for record in lines:
            assert ("boom-1", TRACE_ID) == (record.request_id, record.trace_id)  # type: ignore[attr-defined]
        (failure,) = [r for r in threadline if r.levelno == logging.ERROR]
        assert failure.exc_info is not None
        assert f"{kind} view failed" == str(failure.exc_info[1])

    async def test_debug_propagate_exceptions(
        self, served: tuple[str, Calls], spans: Spans, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The exception goes on to threadline's ASGI middleware: its 500, one failure, not two."""
        monkeypatch.setattr(settings, "DEBUG_PROPAGATE_EXCEPTIONS", True)
        with access_lines("threadline.asgi") as threadline:
            (answer,) = await get(*served, ("GET", "/boom/async", {"X-Request-ID": "boom-2"}))
        assert (500, "boom-2") == (answer.status, answer.headers["x-request-id"])
        span = next(s for s in spans.finished() if s.kind == SpanKind.SERVER)
        assert "RuntimeError" == span.attributes["error.type"]
        assert ["exception"] == [e.name for e in span.events]
        assert 1 == len([r for r in threadline if r.levelno == logging.ERROR])


class TestBesideOtherMiddleware:
    async def test_a_detach_in_another_context_breaks_nothing(
        self, asgi_serve: AsgiServe, middleware: list[str], caplog: pytest.LogCaptureFixture
    ) -> None:
        """asgiref issue 534: attach in process_request, detach in process_response.

        OpenTelemetry's detach fails there (its own error line); threadline's
        context holds in every place, and the next request on the connection is clean.
        """
        middleware[:] = project.REATTACHING
        base = await asgi_serve(tld.asgi_application(), "uvicorn")
        answers = await send(
            base,
            ("GET", "/places/sync/1", {"X-Request-ID": "a", "baggage": BAGGAGE}),
            ("GET", "/places/async/2", {"X-Request-ID": "b"}),
        )
        assert [200, 200] == [a.status for a in answers]
        for answer, request_id, tenant in ((answers[0], "a", "acme"), (answers[1], "b", None)):
            assert answer.headers["x-request-id"] == request_id
            for saw in answer.json().values():
                assert (request_id, tenant) == (saw["request_id"], saw["tenant"])
        assert not [r for r in caplog.records if r.name.startswith("threadline")]


class TestBesideOpenTelemetrysAsgiMiddleware:
    async def test_its_server_span_is_continued(
        self, asgi_serve: AsgiServe, middleware: list[str], spans: Spans
    ) -> None:
        """OpenTelemetry's ASGI middleware around: its SERVER span, the request's id on it."""
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        calls = Calls(tla.setup(OpenTelemetryMiddleware(tld.asgi_application())))
        base = await asgi_serve(calls, "uvicorn")  # its span ends when the application returns
        (answer,) = await get(base, calls, ("GET", "/places/async/3", {"X-Request-ID": "o-1"}))
        (span,) = [s for s in spans.finished() if s.kind == SpanKind.SERVER]
        assert ("opentelemetry.instrumentation.asgi", "o-1") == (
            span.instrumentation_scope.name,
            span.attributes["request.id"],
        )
        for saw in answer.json().values():
            assert ("o-1", f"{span.context.trace_id:032x}") == (saw["request_id"], saw["trace_id"])


class TestWSGI:
    def test_the_middleware_does_nothing_under_wsgi(
        self, middleware: list[str], spans: Spans
    ) -> None:
        """Served by Django's WSGI handler: the views answer, threadline makes no span."""
        from django.core.wsgi import get_wsgi_application

        application = get_wsgi_application()
        statuses = []
        for path in ("/places/sync/4", "/boom/sync"):
            environ: dict[str, Any] = {"PATH_INFO": path, "wsgi.errors": io.StringIO()}
            setup_testing_defaults(environ)
            environ["HTTP_HOST"] = "127.0.0.1"
            body = b"".join(application(environ, lambda status, headers: statuses.append(status)))
            assert body
        assert ["200 OK", "500 Internal Server Error"] == statuses
        assert [] == spans.finished()


async def test_the_live_view_shows_the_route_and_view_once_resolved(
    served: tuple[str, Calls],
) -> None:
    """While the view runs, the live view names the route Django matched and the view's line."""
    base, calls = served
    views.ENTERED.clear()
    views.GATE.clear()
    with live.serve():
        call = asyncio.create_task(send(base, ("GET", "/waits/7", {})))
        try:
            assert await asyncio.to_thread(views.ENTERED.wait, 30)
            (shown,) = live.snapshot()["requests"]  # type: ignore[misc]
        finally:
            views.GATE.set()
        (answer,) = await call
        await calls.idle.wait()
    code = views.waits.__code__
    assert 200 == answer.status
    assert ("GET waits/<int:item_id>", f"{code.co_filename}:{code.co_firstlineno}") == (
        shown["name"],
        shown["location"],
    )


def test_importing_threadline_imports_no_django() -> None:
    """threadline.django is imported only by name; threadline itself never imports Django."""
    import subprocess

    code = "import threadline, threadline.asgi, sys; print('django' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "False" == result.stdout.strip()
