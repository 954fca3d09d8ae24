"""The fields a log line takes from the context, made safe: one reader for every logging library.

`ContextFields` reads ``request_id``, ``user_id`` (and chosen keys) from a
store and ``trace_id``, ``span_id`` from the current span, with the names
threadline's own `~threadline.logging.JSONFormatter` writes, so one reader
(``threadline doctor --logs``) serves the lines of every library.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import MutableMapping, Sequence
from typing import Any

from .._core.checks import require_names
from .._core.context import Context, get_current
from .._core.safe import safe_value
from .._core.stores import ContextStore, registered_stores, request
from .._core.text import escape_controls
from .spans import current_trace_ids

__all__ = ["FIELDS", "PLACEHOLDER", "ContextFields"]

PLACEHOLDER = "-"
FIELDS = ("request_id", "user_id", "trace_id", "span_id")
"""The fields every line gets: two from the store, two from the span."""


class ContextFields:
    """Reads the fields of one log call from the current context.

    Args:
        store: the store (or its name) ``request_id``, ``user_id`` and *keys* come from.
        keys: further store keys to add.
        placeholder: the value of a field with nothing to show; None leaves such a field out.

    Raises:
        TypeError: *keys* is not a list of strings (one string included), or
            *placeholder* is not a string or None.
        ValueError: *store* names no store of this process.

    Pickled (into a spawn worker, with a loguru logger), it keeps the store's
    name and finds the store there.
    """

    __slots__ = ("_keys", "_last", "_placeholder", "_store", "_store_name")

    def __init__(
        self,
        store: ContextStore | str = request,
        keys: Sequence[str] = (),
        placeholder: str | None = PLACEHOLDER,
    ) -> None:
        keys = require_names("keys", keys, "store keys")
        if placeholder is not None and not isinstance(placeholder, str):
            raise TypeError(f"placeholder takes a str or None, got {placeholder!r:.80}")
        if isinstance(store, ContextStore):
            self._store: ContextStore | None = store
        else:
            self._store = registered_stores().get(store)
            if self._store is None:
                raise ValueError(f"no ContextStore named {store!r} exists in this process")
        self._store_name = self._store.name
        self._keys = tuple(dict.fromkeys(("request_id", "user_id", *keys)))
        self._placeholder = placeholder
        self._last: tuple[weakref.ref[Context], dict[str, Any]] | None = None

    @property
    def store_name(self) -> str:
        """The name of the store the fields come from."""
        return self._store_name

    @property
    def keys(self) -> tuple[str, ...]:
        """The store keys read: ``request_id``, ``user_id`` and the chosen ones."""
        return self._keys

    @property
    def placeholder(self) -> str | None:
        """The value of a field with nothing to show (None: the field is left out)."""
        return self._placeholder

    def fill(self, target: MutableMapping[str, Any]) -> None:
        """Add the fields to *target*, leaving every key it holds already as it is."""
        context = get_current()
        last = self._last
        fields = last[1] if last is not None and last[0]() is context else self._gather(context)
        for key, value in fields.items():
            if key not in target:
                target[key] = value

    def _gather(self, context: Context) -> dict[str, Any]:
        """The fields of *context*, kept for the next line while it is still the current one.

        A context never changes (a scope makes a new one), so every line of one
        request step reads the same fields: made once, they are copied from then on.
        """
        store = self._store or registered_stores().get(self._store_name)
        values = store.get(context) if store is not None else None
        placeholder = self._placeholder
        fields: dict[str, Any] = {}
        shared = store is not None
        for key in self._keys:
            value = values.get(key) if values is not None else None
            if value is None:
                if placeholder is not None:
                    fields[key] = placeholder
            elif type(value) is str:  # may have come in as baggage: never a raw control char
                fields[key] = value if value.isprintable() else escape_controls(value)
            elif type(value) is int:  # the common id: nothing to make safe
                fields[key] = value
            else:
                fields[key] = made = safe_value(value)
                shared = shared and not isinstance(made, (dict, list))  # a line may change them
        ids = current_trace_ids(context)
        if ids is not None:
            fields["trace_id"], fields["span_id"] = ids
        elif placeholder is not None:
            fields["trace_id"] = fields["span_id"] = placeholder
        if shared:
            # weakly: the last line's context (its span, its values) is not kept alive for it
            with contextlib.suppress(TypeError):
                self._last = (weakref.ref(context), fields)
        return fields

    def __reduce__(self) -> tuple[Any, ...]:
        return _unpickled, (self._store_name, self._keys[2:], self._placeholder)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(store={self._store_name!r}, keys={self._keys[2:]!r}, "
            f"placeholder={self._placeholder!r})"
        )


def _unpickled(store_name: str, keys: tuple[str, ...], placeholder: str | None) -> ContextFields:
    # In a worker the store may be made later (its module imported by the job): find it then.
    fields = ContextFields.__new__(ContextFields)
    fields._store = registered_stores().get(store_name)
    fields._store_name = store_name
    fields._keys = tuple(dict.fromkeys(("request_id", "user_id", *keys)))
    fields._placeholder = placeholder
    fields._last = None
    return fields
