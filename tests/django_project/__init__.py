"""A small Django project for the tests: settings, URLs, views, middleware of both kinds.

In-process tests call `configure`; a child process (under
``opentelemetry-instrument``) names ``tests.django_project.settings`` in
``DJANGO_SETTINGS_MODULE`` instead.
"""

from __future__ import annotations

import os


def configure() -> None:
    """Django set up with this project's settings in this process (once)."""
    import django
    from django.conf import settings

    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        from tests.django_project import settings as project

        names = [name for name in dir(project) if name.isupper()]
        settings.configure(**{name: getattr(project, name) for name in names})
    django.setup()
