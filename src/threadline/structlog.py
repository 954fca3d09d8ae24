"""Request, user, trace and span ids on every structlog event: a processor.

Put `add_context` in structlog's processor chain, before the renderer::

    structlog.configure(processors=[
        structlog.contextvars.merge_contextvars,
        threadline.structlog.add_context,
        structlog.processors.JSONRenderer(),
    ])

Each event gets ``request_id``, ``user_id`` (from `threadline.request`),
``trace_id`` and ``span_id`` (the current span's, lower-case hex), the names
`threadline.logging.JSONFormatter` writes. A key the event already holds
(given in the call, bound, or merged from structlog's contextvars before
this processor) is left as it is: the caller's value wins. String values
are escaped as the standard-library fields are (no raw CR, LF or other
control character); mappings and sequences become dicts and lists, escaped
alike. This module does not import structlog.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

from ._core.stores import ContextStore, request
from ._telemetry.log_fields import PLACEHOLDER, ContextFields

__all__ = ["ContextProcessor", "add_context", "processor"]


class ContextProcessor:
    """A structlog processor that adds the context's fields to each event dict.

    Made by `processor`; `add_context` is the default one. Picklable.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: ContextFields) -> None:
        self._fields = fields

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Add the fields to *event_dict*, keeping every key it has, and return it."""
        self._fields.fill(event_dict)
        return event_dict

    def __reduce__(self) -> tuple[Any, ...]:
        return ContextProcessor, (self._fields,)

    def __repr__(self) -> str:
        return f"threadline.structlog.processor({self._fields!r})"


def processor(
    *,
    store: ContextStore | str = request,
    keys: Sequence[str] = (),
    placeholder: str | None = PLACEHOLDER,
) -> ContextProcessor:
    """Return a structlog processor adding the context's fields, as `add_context` does.

    Args:
        store: the store (or its name) ``request_id``, ``user_id`` and *keys* come from.
        keys: further store keys to add (``("tenant",)``).
        placeholder: the value of a field with nothing to show, outside any
            request or span (default ``"-"``); None leaves such a field out.

    Raises:
        TypeError: *keys* is not a list of strings, or *placeholder* not a str or None.
        ValueError: *store* names no store of this process.
    """
    return ContextProcessor(ContextFields(store, keys, placeholder))


add_context = processor()
"""The processor with the defaults: `threadline.request`'s ids, the span's, ``"-"`` when absent."""
