"""A small Django project for the tests: settings, URLs, views, middleware of both kinds.

In-process tests call `configure`; a child process (under
``opentelemetry-instrument``) names ``tests.django_project.settings`` in
``DJANGO_SETTINGS_MODULE`` instead.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any


def configure() -> None:
    """Django set up with this project's settings in this process (once)."""
    import django
    from django.conf import settings

    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        from tests.django_project import settings as project

        names = [name for name in dir(project) if name.isupper()]
        settings.configure(**{name: getattr(project, name) for name in names})
    django.setup()


class Calls:
    """An ASGI app, and whether a call to it is in flight.

    The SERVER span of a 5xx ends when the application returns (an exception
    may still come), which Django does after its clean-up, once the client
    has the response: a test waits for `idle` before it reads the spans.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        self.idle.clear()
        try:
            await self.app(scope, receive, send)
        finally:
            self.calls -= 1
            if not self.calls:
                self.idle.set()
