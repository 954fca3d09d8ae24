"""OTEL_PROPAGATORS honoured over HTTP: the configured formats, exactly, both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.b3 import B3MultiFormat
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import threadline as tl
import threadline.aiohttp as tla
from tests.helpers import Serve

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CLIENT = web.AppKey("client", aiohttp.ClientSession)


@pytest.fixture
def configured() -> Iterator[Callable[[TextMapPropagator], None]]:
    """Set the global propagator, as OTEL_PROPAGATORS would; put the old one back after."""
    before = propagate.get_global_textmap()
    yield propagate.set_global_textmap
    propagate.set_global_textmap(before)


async def back(request: web.Request) -> web.Response:
    sc = trace.get_current_span().get_span_context()
    return web.json_response(
        {
            "headers": sorted(k.lower() for k in request.headers if k.lower() != "host"),
            "trace_id": f"{sc.trace_id:032x}",
            "request": dict(tl.request.get() or {}),
        }
    )


async def two_services(serve: Serve) -> str:
    back_app = web.Application(middlewares=[tla.middleware(access_log=False)])
    back_app.router.add_get("/back", back)
    back_url = await serve(back_app)

    async def front(request: web.Request) -> web.Response:
        with tl.request.merge(tenant="acme"):
            async with request.app[CLIENT].get(f"{back_url}/back") as response:
                return web.json_response(await response.json())

    async def client(app: web.Application) -> AsyncIterator[None]:
        app[CLIENT] = aiohttp.ClientSession(trace_configs=[tla.trace_config()])
        yield
        await app[CLIENT].close()

    front_app = web.Application(middlewares=[tla.middleware(access_log=False)])
    front_app.router.add_get("/front", front)
    front_app.cleanup_ctx.append(client)
    return f"{await serve(front_app)}/front"


async def call(url: str, headers: dict[str, str]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        assert 200 == response.status
        body: dict[str, Any] = await response.json()
        return body


B3_IN = {"X-B3-TraceId": TRACE_ID, "X-B3-SpanId": "b7ad6b7169203331", "X-B3-Sampled": "1"}
W3C_IN = {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"}
B3_FIELDS = ["x-b3-sampled", "x-b3-spanid", "x-b3-traceid"]


class TestOverHTTP:
    async def test_b3_alone(self, serve: Serve, configured: Callable[..., None]) -> None:
        """b3multi: the trace comes and goes as b3 only; no traceparent, no baggage."""
        configured(CompositePropagator([B3MultiFormat()]))
        seen = await call(await two_services(serve), B3_IN)
        assert TRACE_ID == seen["trace_id"]
        headers = [h for h in seen["headers"] if h.startswith(("x-b3", "trace", "bagg"))]
        assert B3_FIELDS == headers
        assert "tenant" not in seen["request"]

    async def test_tracecontext_alone(self, serve: Serve, configured: Callable[..., None]) -> None:
        """tracecontext: traceparent goes, baggage (and so the stores) does not."""
        configured(CompositePropagator([TraceContextTextMapPropagator()]))
        seen = await call(await two_services(serve), W3C_IN)
        assert TRACE_ID == seen["trace_id"]
        assert "baggage" not in seen["headers"]
        assert "traceparent" in seen["headers"]
        assert "tenant" not in seen["request"]

    async def test_w3c_and_b3(self, serve: Serve, configured: Callable[..., None]) -> None:
        """tracecontext,baggage,b3multi: all of them go, the stores inside the baggage."""
        configured(
            CompositePropagator(
                [TraceContextTextMapPropagator(), W3CBaggagePropagator(), B3MultiFormat()]
            )
        )
        seen = await call(await two_services(serve), B3_IN)
        assert TRACE_ID == seen["trace_id"]
        for field in ["baggage", "traceparent", *B3_FIELDS]:
            assert field in seen["headers"]
        assert "acme" == seen["request"]["tenant"]

    async def test_nothing_configured_is_threadlines_carrier(self, serve: Serve) -> None:
        """By default the W3C fields go, with the stores, and b3 is not read."""
        seen = await call(await two_services(serve), {**W3C_IN})
        assert TRACE_ID == seen["trace_id"]
        assert "acme" == seen["request"]["tenant"]
        assert not [h for h in seen["headers"] if h.startswith("x-b3")]
