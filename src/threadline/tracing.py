"""OpenTelemetry SDK helpers: store values on spans, trace ids for logs.

This module imports the OpenTelemetry SDK; ``import threadline`` does not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from ._context import get_current
from ._spans import current_trace_ids
from ._store import ContextStore, request

__all__ = ["REQUEST_ATTRIBUTES", "StoreSpanProcessor", "current_trace_ids"]

REQUEST_ATTRIBUTES: Mapping[str, str] = {"request_id": "request.id", "user_id": "enduser.id"}
"""Which `threadline.request` keys land on spans, under which attribute names."""

_SCALARS = (str, bool, int, float)


class StoreSpanProcessor(SpanProcessor):
    """Copy chosen store values onto every span started in their scope.

    Add it to a `TracerProvider` and spans from any instrumentation carry the
    request's ids. By default it copies `REQUEST_ATTRIBUTES` from
    `threadline.request`; for another store, pass ``attributes`` (store key
    to attribute name) or leave it None to copy every key as ``"{store}.{key}"``.

    .. versionadded:: 0.1
    """

    def __init__(
        self, store: ContextStore = request, attributes: Mapping[str, str] | None = None
    ) -> None:
        if not isinstance(store, ContextStore):
            raise TypeError(f"StoreSpanProcessor needs a ContextStore, got {store!r}")
        if attributes is None and store is request:
            attributes = REQUEST_ATTRIBUTES
        self._store = store
        self._attributes = dict(attributes) if attributes is not None else None

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Set the attributes from the store value current where the span starts."""
        values = self._store.get(parent_context if parent_context is not None else get_current())
        if not values:
            return
        if self._attributes is None:
            prefix = self._store.name
            pairs = ((f"{prefix}.{key}", value) for key, value in values.items())
        else:
            pairs = ((name, values[key]) for key, name in self._attributes.items() if key in values)
        for name, value in pairs:
            converted = _attribute_value(value)
            if converted is not None:
                span.set_attribute(name, converted)

    def on_end(self, span: ReadableSpan) -> None:
        """Do nothing: the attributes were set at start."""

    def shutdown(self) -> None:
        """Do nothing: the processor holds no resources."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Return True: nothing is buffered."""
        return True


def _attribute_value(value: Any) -> Any:
    if value is None or isinstance(value, _SCALARS):
        return value
    if (
        isinstance(value, tuple)
        and value
        and isinstance(value[0], _SCALARS)
        and all(type(v) is type(value[0]) for v in value)
    ):
        return list(value)
    return json.dumps(value, default=lambda v: dict(v) if isinstance(v, Mapping) else str(v))
