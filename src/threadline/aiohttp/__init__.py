"""aiohttp integration: a server middleware and a client `TraceConfig` that carry the context.

Server::

    app = web.Application(middlewares=[threadline.aiohttp.middleware()])

Every request runs in the context that arrived with it (strictly parsed), under
a SERVER span ``"{method} {route}"`` and in a `threadline.request` scope with
``request_id``, ``user_id`` and ``start_time``; the id goes back in the
``X-Request-ID`` response header, on errors too.

Client::

    session = aiohttp.ClientSession(trace_configs=[threadline.aiohttp.trace_config()])

Every outgoing request carries the caller's context, under a CLIENT span of
its own; baggage and store values go only to the hosts you allow.

.. versionadded:: 0.1
"""

from __future__ import annotations

from .._http.incoming import REQUEST_ID_HEADER as REQUEST_ID_HEADER
from .client import trace_config as trace_config
from .server import UserIdExtractor as UserIdExtractor
from .server import middleware as middleware
from .server import setup as setup

__all__ = ["REQUEST_ID_HEADER", "UserIdExtractor", "middleware", "setup", "trace_config"]
