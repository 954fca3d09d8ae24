"""What a consumer's body reports, for tests/messaging_contract.py; imported by broker workers too.

`observe` is called in the body that processes a message, wherever it runs (a
Celery worker, an in-process Kafka consumer), and returns what it sees as
JSON-able data: the `tl.request` values, plain baggage, the trace and the
current span, the lifecycle-hook resource, and the drops counted since the
previous message (the counters are then set back to zero).
"""

from __future__ import annotations

from typing import Any

from opentelemetry import baggage, trace

import threadline as tl
from threadline import diagnostics, hooks


def observe() -> dict[str, Any]:
    """Everything the contract checks, as the body sees it now."""
    value = tl.request.get()
    span = trace.get_current_span()
    span_context = span.get_span_context()
    drops = diagnostics.drop_counts()
    diagnostics.reset_drop_counts()
    resource = hooks.current()
    return {
        "request": dict(value) if value is not None else None,
        "baggage": dict(baggage.get_all()),
        "trace_id": f"{span_context.trace_id:032x}" if span_context.is_valid else None,
        "span": _span(span) if span.is_recording() else None,
        "drops": drops,
        "resource": (
            None if resource is None else {"type": resource.type, "request_id": resource.request_id}
        ),
    }


def _span(span: Any) -> dict[str, Any]:
    """An SDK span while it runs: its name, kind, parent, attributes and links."""
    parent = getattr(span, "parent", None)
    return {
        "span_id": f"{span.get_span_context().span_id:016x}",
        "name": getattr(span, "name", None),
        "kind": getattr(getattr(span, "kind", None), "name", None),
        "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
        "attributes": dict(getattr(span, "attributes", None) or {}),
        "links": [f"{link.context.span_id:016x}" for link in getattr(span, "links", ())],
    }
