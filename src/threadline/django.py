"""Django under ASGI: each request in its own context, named by the route Django matched.

A page of adaptation over `threadline.asgi`: Django's ASGI application is
wrapped in `threadline.asgi.Middleware`, and a Django middleware tells it
the route template once Django resolved the URL::

    # asgi.py
    application = threadline.django.asgi_application()

    # settings.py
    MIDDLEWARE = ["threadline.django.Middleware", ...]

Every request runs in its context (request id, user id, stores, trace) in
async views, in ``def`` views (Django runs them through
``sync_to_async``), in middleware of both kinds and in Django's 500
handling. Importing this module does not import Django; WSGI is not
served (the middleware does nothing there).

.. versionadded:: 0.2
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from ._boundary.coexistence import contrib_loaded, foreign_span
from ._core import lifecycle
from ._core.context import get_current
from ._core.stores import request as request_store
from ._http.server import ServerExchange
from .asgi import Middleware as AsgiMiddleware
from .asgi import inside, set_exception, set_route
from .asgi._reader import EXCHANGE, code_location

__all__ = ["Middleware", "asgi_application", "route_of"]


def asgi_application(**options: Any) -> AsgiMiddleware:
    """Django's ASGI application (``get_asgi_application()``) in `threadline.asgi.Middleware`.

    Call it in your ``asgi.py`` instead of ``get_asgi_application()``, once
    ``DJANGO_SETTINGS_MODULE`` is set (it sets Django up). Takes the options
    of `threadline.asgi.Middleware`; its ``user_id`` extractor is called with
    the ASGI scope, before Django's middleware ran.
    """
    from django.core.asgi import get_asgi_application  # noqa: PLC0415 - sets Django up

    return AsgiMiddleware(get_asgi_application(), **options)


def route_of(request: Any) -> str | None:
    """The route template Django matched for *request* (``items/<int:item_id>``), or None.

    Django's own form, as OpenTelemetry's Django instrumentation writes it in
    ``http.route``: the patterns of the matched ``path()``/``re_path()`` and
    of the ``include()`` above it, joined, without a leading slash. None
    before URL resolution, for a URL that matched nothing, and for a pattern
    that gives no route (the empty root pattern).
    """
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None)
    return route if isinstance(route, str) and route else None


class Middleware:
    """A Django middleware that names the request's route for threadline's span and access line.

    List it in ``MIDDLEWARE`` (first is best: a middleware above it that
    answers early leaves the request without a route). Sync and async
    capable, so it never adds a thread hop. Once the request is answered it
    passes `route_of` to `threadline.asgi.set_route`: the SERVER span becomes
    ``"{method} {route}"`` with ``http.route``, and the access line shows it.
    Beside OpenTelemetry's Django instrumentation, whose middleware comes
    first: that middleware makes an ``INTERNAL`` span under threadline's
    SERVER span; where threadline makes none (``spans=False``) it makes the
    SERVER span, in a context it builds from the headers, and this one puts
    the request's context back under that span, with ``request.id`` on it.

    Made, it also listens to Django's ``got_request_exception``: an
    exception Django answers with its 500 is the request's failure for
    threadline (span ERROR with ``error.type``, one ``unhandled exception``
    line on ``threadline.asgi``), as if it had been raised. Under WSGI, or
    outside `asgi_application`, it does nothing.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        self._beside = contrib_loaded("django")  # its middleware may build a context of its own
        if self._async:
            markcoroutinefunction(self)
        from django.core.signals import got_request_exception  # noqa: PLC0415 - Django's, loaded

        got_request_exception.connect(_failed, dispatch_uid=__name__)

    def __call__(self, request: Any) -> Any:
        """Pass *request* on (awaitable when the next is async); name its route once answered."""
        if lifecycle.active:  # the live view is on: it shows the route once Django resolved it
            _follow(request)
        if self._beside and _lost(request):
            return self._again(request)
        if self._async:
            return self._serve(request)
        try:
            return self.get_response(request)
        finally:
            _name(request)

    async def _serve(self, request: Any) -> Any:
        try:
            return await self.get_response(request)
        finally:
            _name(request)

    def _again(self, request: Any) -> Any:
        """*request* passed on in its context again, under the span current here."""
        if self._async:
            return self._serve_again(request)
        with inside(request.scope):
            try:
                return self.get_response(request)
            finally:
                _name(request)

    async def _serve_again(self, request: Any) -> Any:
        with inside(request.scope):
            try:
                return await self.get_response(request)
            finally:
                _name(request)


def _lost(request: Any) -> bool:
    """Whether another instrumentation's context replaced the request's (ASGI only)."""
    if getattr(request, "scope", None) is None:
        return False
    context = get_current()
    return request_store.get() is None or foreign_span(context, "SERVER") is not None


def _name(request: Any) -> None:
    """Tell the request's exchange its route (after the view: Django resolves inside)."""
    scope = getattr(request, "scope", None)
    if scope is None:  # WSGI: threadline does not serve it
        return
    route = route_of(request)
    if route is not None:
        set_route(scope, route, handler=_view_of(request))


def _follow(request: Any) -> None:
    """Let the request's exchange ask for its route and view while it runs (the live view)."""
    scope = getattr(request, "scope", None)
    exchange = None if scope is None else scope.get(EXCHANGE)
    if isinstance(exchange, ServerExchange):
        exchange.follow(lambda: (route_of(request), code_location(_view_of(request))))


def _view_of(request: Any) -> Any:
    return getattr(getattr(request, "resolver_match", None), "func", None)


def _failed(sender: object, request: Any = None, **kwargs: Any) -> None:
    """Django answers an unhandled exception with a 500: tell the request's exchange (once)."""
    scope = getattr(request, "scope", None)
    error = sys.exc_info()[1]  # Django sends the signal while it handles the exception
    if scope is None or error is None:
        return
    from django.conf import settings  # noqa: PLC0415 - Django's, loaded

    if not settings.DEBUG_PROPAGATE_EXCEPTIONS:  # else raised on to threadline's middleware
        set_exception(scope, error)
