"""Middleware of every kind Django has, each noting what context it runs in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import markcoroutinefunction
from django.utils.deprecation import MiddlewareMixin
from opentelemetry.context import attach, detach, set_value

from tests.django_project.views import noted


class SyncSeen:
    """A sync-only middleware (Django runs it in a thread under ASGI)."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        noted(request, "sync middleware")
        return self.get_response(request)


class AsyncSeen:
    """An async-only middleware."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Awaitable[Any]]) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: Any) -> Any:
        noted(request, "async middleware")
        return await self.get_response(request)


class Reattaching(MiddlewareMixin):  # type: ignore[misc]
    """Attaches in process_request, detaches in process_response: two sync_to_async calls.

    What OpenTelemetry's Django middleware did when it was a MiddlewareMixin
    (asgiref issue 534): the detach runs in another context than the attach.
    """

    def process_request(self, request: Any) -> None:
        request.reattached = attach(set_value("tests.reattached", True))

    def process_response(self, request: Any, response: Any) -> Any:
        detach(request.reattached)
        return response
