"""The test project under uvicorn in a child process, beside OpenTelemetry; prints what it made.

``python -m tests.django_project.run MODE`` from the repository's root, with
``DJANGO_SETTINGS_MODULE=tests.django_project.settings``:

- ``own``: threadline's SERVER span alone;
- ``contrib``: OpenTelemetry's Django instrumentation, switched on by hand;
- ``launcher``: nothing instrumented here: ``opentelemetry-instrument`` did it;
- ``contrib-alone``: OpenTelemetry's Django instrumentation, threadline's spans off.

Requests a ``def`` view, an ``async`` view (each with a thread hop) and a
view that raises, one after another on one keep-alive connection; prints
one JSON object: the spans, the log lines and the answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.asgi_servers import serving
from tests.django_project import Calls, configure
from tests.http_contract import send
from threadline.logging import JSONFormatter, install

MODE = sys.argv[1] if len(sys.argv) > 1 else "own"
LINES: list[dict[str, Any]] = []
REQUESTS = [
    ("/places/sync/1", "req-sync"),
    ("/places/async/2", "req-async"),
    ("/boom/sync", "req-fail"),
]


class Collect(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        LINES.append(json.loads(JSONFormatter().format(record)))


async def main() -> dict[str, Any]:
    if MODE != "launcher":
        trace.set_tracer_provider(TracerProvider())
    exporter = InMemorySpanExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    install()
    logging.getLogger().addHandler(Collect())
    logging.getLogger().setLevel(logging.INFO)
    if MODE.startswith("contrib"):
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        DjangoInstrumentor().instrument()  # what opentelemetry-instrument does
    configure()
    import threadline.django

    app = Calls(threadline.django.asgi_application(spans=MODE != "contrib-alone"))
    async with serving(app, "uvicorn") as base:
        answers = await send(
            base, *(("GET", path, {"X-Request-ID": rid}) for path, rid in REQUESTS)
        )
        await app.idle.wait()  # the last (a 500) ends its span when Django's handler returns
    from django.conf import settings

    spans = [
        {
            "name": span.name,
            "kind": span.kind.name,
            "trace_id": f"{span.context.trace_id:032x}",
            "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
            "scope": span.instrumentation_scope.name if span.instrumentation_scope else "",
            "request_id": (span.attributes or {}).get("request.id"),
            "route": (span.attributes or {}).get("http.route"),
        }
        for span in exporter.get_finished_spans()
    ]
    return {
        "middleware": list(settings.MIDDLEWARE),
        "spans": spans,
        "logs": LINES,
        "answers": [
            {
                "status": a.status,
                "X-Request-ID": a.headers.get("x-request-id"),
                "body": a.body.decode(),
            }
            for a in answers
        ],
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
