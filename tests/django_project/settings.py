"""Settings of the test project: no database, no apps, Django's logging set-up left out."""

from __future__ import annotations

from typing import Any

SECRET_KEY = "tests-only"  # noqa: S105 - a test project's
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.django_project.urls"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, Any] = {}
TEMPLATES: list[Any] = []
LOGGING_CONFIG = None  # the tests hold the logging set-up
USE_TZ = True
SYNC_BELOW = [
    "threadline.django.Middleware",
    "tests.django_project.middleware.SyncSeen",
    "tests.django_project.middleware.AsyncSeen",
]
"""A sync-only middleware right below threadline's: it runs sync, in Django's thread."""
ASYNC_BELOW = [
    "threadline.django.Middleware",
    "tests.django_project.middleware.AsyncSeen",
    "tests.django_project.middleware.SyncSeen",
]
"""An async-only middleware right below threadline's: it runs async, on the event loop."""
REATTACHING = [*SYNC_BELOW, "tests.django_project.middleware.Reattaching"]
"""With a middleware that attaches in process_request and detaches in process_response."""
MIDDLEWARE = SYNC_BELOW
