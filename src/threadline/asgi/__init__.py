"""ASGI servers (FastAPI, Starlette, Django, any ASGI 3 app): each request in its own context.

A page of adaptation: it reads the ASGI scope for `threadline._http.server.ServerExchange`,
tells it how the application answered, and adds its headers to ``http.response.start``::

    app.add_middleware(threadline.asgi.Middleware)    # Starlette, FastAPI
    app = threadline.asgi.Middleware(app)             # any ASGI app
    threadline.asgi.setup(app)                        # beside OpenTelemetry's middleware

Every HTTP request runs in the context that arrived with it (strictly parsed),
under a SERVER span ``"{method} {route}"`` (or OpenTelemetry's, or FastAPI's,
continued) and in a `threadline.request` scope with ``request_id``,
``user_id`` and ``start_time``; the id goes back in ``X-Request-ID`` on every
response, 500s and streams included. The span and the access line end with
the last body chunk; background tasks run after it, still in the request's
scope. Lifespan and WebSocket scopes pass through untouched.

.. versionadded:: 0.2
"""

from __future__ import annotations

from .._http.incoming import REQUEST_ID_HEADER as REQUEST_ID_HEADER
from .middleware import BACKGROUND_MODES as BACKGROUND_MODES
from .middleware import Middleware as Middleware
from .middleware import Scope as Scope
from .middleware import UserIdExtractor as UserIdExtractor
from .middleware import set_route as set_route
from .middleware import setup as setup

__all__ = [
    "BACKGROUND_MODES",
    "REQUEST_ID_HEADER",
    "Middleware",
    "Scope",
    "UserIdExtractor",
    "set_route",
    "setup",
]
