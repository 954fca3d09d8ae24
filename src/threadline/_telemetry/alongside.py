"""Another signal's provider, flushed and shut down with the tracer provider: `Alongside`."""

from __future__ import annotations

from typing import Protocol

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

__all__ = ["Alongside"]


class _Provider(Protocol):
    def shutdown(self) -> object: ...

    def force_flush(self, timeout_millis: int = 30000) -> object: ...


class Alongside(SpanProcessor):
    """A span processor that flushes and shuts down *provider* with its tracer provider.

    Added last to the tracer provider `configure` makes, so that every bounded
    flush and exit of threadline's (the application's exit, a worker's, a
    child's) covers the log records and data points too, within the same bound.
    """

    def __init__(self, provider: _Provider) -> None:
        self._provider = provider

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Do nothing."""

    def on_end(self, span: ReadableSpan) -> None:
        """Do nothing."""

    def shutdown(self) -> None:
        """Shut the provider down: what it holds is exported first."""
        self._provider.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export what the provider holds."""
        return bool(self._provider.force_flush(timeout_millis))
