"""httpx (sync and async) and requests calls beside OpenTelemetry's client instrumentations.

Run as ``python tests/clients_beside_contrib.py MODE`` (or under
``opentelemetry-instrument``): ``alone`` (threadline only), ``contrib``
(OpenTelemetry's httpx and requests instrumentors switched on by hand),
``launcher`` (nothing here: ``opentelemetry-instrument`` did it).

Each client makes three calls, each under its own caller span, in a request
scope with a user id and a plain OpenTelemetry baggage entry: to a trusted
host, to a third party, and to a trusted host that redirects to the third
party. A plain HTTP server (the standard library's) records every hop; the
program prints one JSON object: the hops and the spans.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import threadline as tl
import threadline.httpx as tlx
import threadline.requests as tlr
from tests.loopback_clients import (
    async_loopback_transport,
    loopback_session,
    loopback_transport,
)

MODE = sys.argv[1]
HOPS: list[dict[str, Any]] = []


class Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        HOPS.append(
            {
                "host": self.headers["Host"].rsplit(":", 1)[0],
                "path": urlsplit(self.path).path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
        )
        target = parse_qs(urlsplit(self.path).query).get("to")
        self.send_response(302 if target else 200)
        if target:
            self.send_header("Location", target[0])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def set_up() -> InMemorySpanExporter:
    if MODE != "launcher":
        trace.set_tracer_provider(TracerProvider())
    exporter = InMemorySpanExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    if MODE == "contrib":  # what opentelemetry-instrument does, by hand
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        HTTPXClientInstrumentor().instrument()
        RequestsInstrumentor().instrument()
    return exporter


def urls(port: int) -> dict[str, str]:
    third = f"http://thirdparty.example:{port}/echo"
    return {
        "trusted": f"http://127.0.0.1:{port}/echo",
        "third": third,
        "redirect": f"http://127.0.0.1:{port}/redirect?to={third}",
    }


def scoped(client: str, which: str) -> Any:
    """The caller's context: its own span (one trace per call), a request scope, plain baggage."""
    tracer = trace.get_tracer("app")
    token = context.attach(baggage.set_baggage("plain", "1"))
    span = tracer.start_as_current_span(f"{client} {which}")
    scope = tl.request.scope(request_id=f"{client}-{which}", user_id=7)
    return token, span, scope


def sync_calls(port: int) -> None:
    with (
        httpx.Client(transport=loopback_transport(), follow_redirects=True) as client,
        loopback_session() as session,
    ):
        tlx.instrument(client)
        tlr.instrument(session)
        for name, get in (("httpx", client.get), ("requests", session.get)):
            for which, url in urls(port).items():
                token, span, scope = scoped(name, which)
                with span, scope:
                    get(url, headers={"X-Call": f"{name}/{which}"})
                context.detach(token)


async def async_calls(port: int) -> None:
    transport = async_loopback_transport()
    async with httpx.AsyncClient(transport=transport, follow_redirects=True) as client:
        tlx.instrument(client)
        for which, url in urls(port).items():
            token, span, scope = scoped("httpx-async", which)
            with span, scope:
                await client.get(url, headers={"X-Call": f"httpx-async/{which}"})
            context.detach(token)


def main() -> dict[str, Any]:
    exporter = set_up()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        sync_calls(port)
        asyncio.run(async_calls(port))
    finally:
        server.shutdown()
    spans = [
        {
            "name": span.name,
            "kind": span.kind.name,
            "trace_id": f"{span.context.trace_id:032x}",
            "span_id": f"{span.context.span_id:016x}",
            "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
            "scope": span.instrumentation_scope.name if span.instrumentation_scope else "",
        }
        for span in exporter.get_finished_spans()
    ]
    return {"hops": HOPS, "spans": spans}


if __name__ == "__main__":
    print(json.dumps(main()))
