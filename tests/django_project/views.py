"""Views: the HTTP contract's probe app, and views that note what each place of a request saw."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpResponse, JsonResponse
from opentelemetry import trace
from opentelemetry.context import attach, set_value

import threadline as tl
from tests.http_contract import probe

log = logging.getLogger("tests.django")
LEAKY: contextvars.ContextVar[str | None] = contextvars.ContextVar("leaky", default=None)
ENTERED = threading.Event()
"""Set when `waits` began; it answers once `GATE` is set."""
GATE = threading.Event()


def seen() -> dict[str, Any]:
    """The request id, the tenant (a store value from the baggage), the trace id, a leak."""
    value = tl.request.get() or {}
    return {
        "request_id": value.get("request_id"),
        "tenant": value.get("tenant"),
        "trace_id": f"{trace.get_current_span().get_span_context().trace_id:032x}",
        "leaky": LEAKY.get(),
    }


async def aseen() -> dict[str, Any]:
    return seen()


def noted(request: Any, place: str) -> None:
    request.__dict__.setdefault("places", {})[place] = seen()


# ---------------------------------------------------------------------- the contract's probe app


def items(request: Any, item_id: str) -> HttpResponse:
    return JsonResponse(probe())


async def status(request: Any, code: int) -> HttpResponse:
    return HttpResponse(status=code)


def fail(request: Any) -> HttpResponse:
    raise RuntimeError("handler failed")


# ---------------------------------------------------------------------- every place of a request


async def places_async(request: Any, item_id: int) -> HttpResponse:
    noted(request, "view")
    request.places["sync_to_async"] = await sync_to_async(seen)()
    request.places["other thread"] = await sync_to_async(seen, thread_sensitive=False)()
    log.info("async view %s", item_id)
    return JsonResponse(request.places)


def places_sync(request: Any, item_id: int) -> HttpResponse:
    noted(request, "view")
    request.places["async_to_sync"] = async_to_sync(aseen)()
    with tl.ThreadPoolExecutor(1) as pool:
        request.places["other thread"] = pool.submit(seen).result()
    log.info("sync view %s", item_id)
    return JsonResponse(request.places)


def leak(request: Any) -> HttpResponse:
    """Set a ContextVar and attach a context, and never put them back."""
    LEAKY.set("leaked")
    attach(set_value("tests.leaked", True))
    return HttpResponse("leaked")


def boom_sync(request: Any) -> HttpResponse:
    log.info("about to fail")
    raise RuntimeError("sync view failed")


async def boom_async(request: Any) -> HttpResponse:
    log.info("about to fail")
    assert b"" == request.body  # read: Django closes the body's file (it leaves it open when
    # the exception goes on to the server, with DEBUG_PROPAGATE_EXCEPTIONS)
    raise RuntimeError("async view failed")


async def waits(request: Any, item_id: int) -> HttpResponse:
    """Answers once the test sets `GATE` (the live view looks at it in flight)."""
    ENTERED.set()
    await asyncio.to_thread(GATE.wait, 30)
    return HttpResponse("done")
