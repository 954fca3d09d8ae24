"""`threadline.instrument()` as an OpenTelemetry instrumentor, for auto-instrumentation.

``opentelemetry-instrument`` (and ``opentelemetry.instrumentation.auto_instrumentation``)
loads every entry point of the ``opentelemetry_instrumentor`` group; threadline's is
this class. It needs ``opentelemetry-instrumentation``, which only that path has.
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=threadline`` leaves it out.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

# mypy does not resolve BaseInstrumentor from this package (its type is Any here), so
# the subclass is typed by what threadline defines on it.
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from .stdlib import instrument, uninstrument

__all__ = ["ThreadlineInstrumentor"]


class ThreadlineInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Calls `threadline.instrument` and `threadline.uninstrument`; needs no other package.

    .. versionadded:: 0.1
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        """None: the patched hand-offs are the standard library's."""
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        instrument()

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstrument()
