"""Store values as attribute values of any signal: escaped, valid UTF-8, limited in length."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .._core.safe import safe_value
from .._core.text import escape_controls, valid_utf8

__all__ = [
    "MAX_ATTRIBUTE_CHARS",
    "REQUEST_ATTRIBUTES",
    "attribute_map",
    "attribute_value",
    "chosen_attributes",
]

REQUEST_ATTRIBUTES: Mapping[str, str] = {"request_id": "request.id", "user_id": "enduser.id"}
"""Which `threadline.request` keys land on spans and log records, under which attribute names."""

MAX_ATTRIBUTE_CHARS = 4096
"""The longest text a store value becomes (baggage holds at most 8192 bytes in all)."""

_SCALARS = (bool, int, float)


def _text(value: str) -> str:
    return valid_utf8(escape_controls(value))[:MAX_ATTRIBUTE_CHARS]


def attribute_map(option: str, attributes: object) -> dict[str, str] | None:
    """Return *attributes* (store key to attribute name) as a dict; None stays None.

    Raises:
        TypeError: it is not a mapping of str to str; the message names *option*.
    """
    if attributes is None:
        return None
    if not (
        isinstance(attributes, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in attributes.items())
    ):
        raise TypeError(
            f"{option} takes a mapping of store key to attribute name (str to str), "
            f"got {attributes!r:.80}"
        )
    return dict(attributes)


def attribute_value(value: Any) -> Any:
    """Return *value* as an OpenTelemetry attribute value, or None for None.

    Strings are escaped as log fields are (no raw control character), made
    valid UTF-8 and cut at `MAX_ATTRIBUTE_CHARS`; numbers and booleans stay;
    a tuple or list of one scalar type becomes an array of them; anything
    else is written as JSON, escaped and cut alike.
    """
    if value is None:
        return None
    if type(value) is str:
        return _text(value)
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (tuple, list)) and value:
        kind = type(value[0])
        if kind in (str, bool, int, float) and all(type(item) is kind for item in value):
            return [_text(item) if kind is str else item for item in value]
    return _text(json.dumps(safe_value(value), ensure_ascii=False))


def chosen_attributes(
    values: Mapping[str, Any] | None, attributes: Mapping[str, str] | None, prefix: str
) -> list[tuple[str, Any]]:
    """The ``(attribute name, value)`` pairs of store *values*, as *attributes* maps keys.

    *attributes* None: every key, as ``"{prefix}.{key}"``. A value that is None is left out.
    """
    if not values:
        return []
    if attributes is None:
        named = [(f"{prefix}.{key}", value) for key, value in values.items()]
    else:
        named = [(name, values[key]) for key, name in attributes.items() if key in values]
    pairs: list[tuple[str, Any]] = []
    for name, value in named:
        # the common value (an id: short printable ASCII) as it is, without further calls
        if type(value) is str and value.isascii() and value.isprintable():
            pairs.append((name, value[:MAX_ATTRIBUTE_CHARS]))
        elif type(value) is int or type(value) is bool or type(value) is float:
            pairs.append((name, value))
        else:
            converted = attribute_value(value)
            if converted is not None:
                pairs.append((name, converted))
    return pairs
