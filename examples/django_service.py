"""A one-file Django project under uvicorn, with threadline; prints what one request saw.

Run as ``python examples/django_service.py``. Django is configured in code
(a real project puts the same lines in ``settings.py`` and ``asgi.py``).
One request (``X-Request-ID: order-7``, a ``traceparent``, a tenant in the
baggage) reaches a ``def`` view, which Django runs in its thread through
``sync_to_async``; the view hands work to another thread. Each place logs;
the program prints the answer, the log lines and the spans, one per line.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import urllib.request

import django
import uvicorn
from django.conf import settings
from django.http import JsonResponse
from django.urls import path
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import threadline as tl
from threadline.logging import install

log = logging.getLogger("orders")


def stock(order: int) -> int:
    """Plain code in another thread: it sees the request."""
    log.info("stock for %d", order)
    return 3


def order(request: object, order: int) -> JsonResponse:  # a def view: Django's thread
    log.info("order %d", order)
    with tl.ThreadPoolExecutor(1) as pool:  # a thread hop, in the request's context
        count = pool.submit(stock, order).result()
    return JsonResponse({"stock": count, **tl.request.get()})


urlpatterns = [path("orders/<int:order>", order)]

settings.configure(
    DEBUG=False,
    SECRET_KEY="example-only",  # noqa: S106 - an example's
    ALLOWED_HOSTS=["127.0.0.1"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["threadline.django.Middleware"],  # names each request's route
    LOGGING_CONFIG=None,
)
django.setup()


async def main() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    install()  # request_id, user_id, trace_id, span_id on every record
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.INFO,
        format="%(name)s: %(message)s request=%(request_id)s trace=%(trace_id)s",
    )

    import threadline.django  # noqa: PLC0415 - asgi.py: once Django is configured

    application = threadline.django.asgi_application()  # asgi.py

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # a free port
    config = uvicorn.Config(application, lifespan="off", access_log=False, log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn tells only by this flag
        await asyncio.sleep(0.01)
    headers = {
        "X-Request-ID": "order-7",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "baggage": "request.tenant=acme;tl",
    }
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/orders/7"
    request = urllib.request.Request(url, headers=headers)
    with await asyncio.to_thread(urllib.request.urlopen, request) as response:
        print("answer:", response.headers["X-Request-ID"], response.read().decode())
    server.should_exit = True
    await serving
    for span in exporter.get_finished_spans():
        print(f"span: {span.name} {span.kind.name} trace={span.context.trace_id:032x}")


if __name__ == "__main__":
    asyncio.run(main())
