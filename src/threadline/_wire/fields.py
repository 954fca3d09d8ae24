"""Carrier fields read from outside: text only, within their limits, one rule for every carrier.

HTTP request headers and message headers are both read through a `GetAll`
(``get_all(name, default)``: every value one field came with) and a
`FieldGetter`, an OpenTelemetry `Getter` that the configured formats
(`threadline._wire.formats.extract_formats`) read through. A field that is
not text, too large, or (where a field means one value) repeated is dropped
whole, counted under ``{field}.{reason}`` and reported, rate-limited
(`threadline._core.drops.record_drop`); it never raises into the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.propagators.textmap import Getter

from .._core.drops import record_drop
from .carrier import FIELD_LIMITS

__all__ = ["TEXTUAL", "FieldGetter", "GetAll"]

GetAll = Callable[[str, Sequence[Any]], Sequence[Any]]
"""``get_all(name, default)``: every value of the field *name*, or *default* (a multidict's
bound ``getall``; a dict of lists' bound ``get``)."""

TEXTUAL = (str, bytes, bytearray, memoryview)
"""What a field's value may be: text, or bytes that are its UTF-8 encoding (Kafka, AMQP)."""

_NONE: Sequence[Any] = ()
_TEXT_ONLY = object()


class FieldGetter(Getter[GetAll]):
    """Reads fields through a `GetAll`, strictly; what fails is dropped whole, counted, reported.

    A value is text: a ``str``, or bytes that are valid in *encoding*
    (``not_text`` otherwise, and *undecodable* for bytes that are not:
    message headers are UTF-8, ``not_utf8``; the HTTP fields threadline
    reads are ASCII by their grammar, ``invalid``). A field with a limit (*limits*, default
    `threadline._wire.carrier.FIELD_LIMITS`) longer than it, all its values
    together, is dropped unread (``too_large``; bytes are measured before
    they are decoded, so an oversized value costs nothing to refuse). With
    *repeatable* False a field given more than once is dropped
    (``duplicate``): message headers, where a key holds one value; HTTP may
    repeat a header (its lines are one list).
    """

    __slots__ = ("_encoding", "_limits", "_repeatable", "_undecodable")

    def __init__(
        self,
        *,
        repeatable: bool,
        limits: Mapping[str, int] = FIELD_LIMITS,
        encoding: str = "utf-8",
        undecodable: str = "not_utf8",
    ) -> None:
        self._repeatable = repeatable
        self._limits = limits
        self._encoding = encoding
        self._undecodable = undecodable

    def get(self, carrier: GetAll, key: str) -> list[str] | None:
        """Return the text values of *key*, or None when it is absent or dropped."""
        values = carrier(key, _NONE)
        if not values:
            return None
        limit = self._limits.get(key)
        if len(values) == 1:  # the common case, checked cheaply: one str, or bytes (ASGI)
            value = values[0]
            kind = type(value)
            if kind is str or kind is bytes:
                if limit is not None and len(value) > limit:
                    record_drop(f"{key}.too_large", f"{len(value)} characters in {key}")
                    return None
                if kind is str:
                    return [value]
                try:
                    return [value.decode(self._encoding)]
                except UnicodeDecodeError:
                    pass  # said by the general way
        return self._read(key, values, limit)

    def _read(self, key: str, values: Sequence[Any], limit: int | None) -> list[str] | None:
        if len(values) > 1 and not self._repeatable:
            record_drop(f"{key}.duplicate", f"{len(values)} {key} fields")
            return None
        odd = next((value for value in values if not isinstance(value, TEXTUAL)), _TEXT_ONLY)
        if odd is not _TEXT_ONLY:
            record_drop(f"{key}.not_text", f"a {type(odd).__name__} in {key}")
            return None
        size = sum(map(len, values))
        if limit is not None and size > limit:
            record_drop(f"{key}.too_large", f"{size} characters in {key}")
            return None
        encoding = self._encoding
        try:
            return [value if isinstance(value, str) else str(value, encoding) for value in values]
        except UnicodeDecodeError as exc:
            reason, why = self._undecodable, f"{exc.reason} at {exc.start}"
            record_drop(f"{key}.{reason}", f"{key} is not {encoding} text: {why}")
            return None

    def keys(self, carrier: GetAll) -> list[str]:
        """No listing: every format asks for its fields by name."""
        return []
