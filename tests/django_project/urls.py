"""The test project's URLs (an ``include()`` too: its route is the joined patterns)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.signals import got_request_exception
from django.urls import include, path

from tests.django_project import views


def _report(sender: object, request: Any = None, **kwargs: Any) -> None:
    """A project's own handler of Django's got_request_exception signal."""
    logging.getLogger("tests.django").error("signal: %s failed", request.path)


got_request_exception.connect(_report, dispatch_uid="tests.django_project")


urlpatterns = [
    path("items/<item_id>", views.items),
    path("status/<int:code>", views.status),
    path("fail", views.fail),
    path("places/sync/<int:item_id>", views.places_sync),
    path("places/async/<int:item_id>", views.places_async),
    path("api/v1/", include([path("orders/<int:item_id>", views.places_async)])),
    path("leak", views.leak),
    path("boom/sync", views.boom_sync),
    path("boom/async", views.boom_async),
    path("waits/<int:item_id>", views.waits),
]
