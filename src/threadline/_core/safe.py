"""Values from outside made safe to write, whole: every string in them escaped."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .text import escape_controls

__all__ = ["safe_value"]

_SCALARS = (bool, int, float, type(None))
_MAX_DEPTH = 8  # store values are JSON-like; deeper nesting is written as text


def safe_value(value: Any, depth: int = 0) -> Any:
    r"""Return *value* with nothing that could forge a line: every string escaped as `repr` does.

    Strings go through `escape_controls` (CR, LF, other controls, separators);
    numbers, booleans and None stay as they are (NaN and infinities become
    text, which every JSON reader takes); mappings become dicts and
    sequences lists, their keys and items made safe alike (a JSON renderer
    then writes them as objects and arrays); anything else is its escaped ``str``.
    """
    if type(value) is str:
        return escape_controls(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or Infinity: "nan", "inf", as JSONFormatter writes
    if isinstance(value, _SCALARS):
        return value
    if depth < _MAX_DEPTH:
        if isinstance(value, Mapping):
            return {
                escape_controls(str(key)): safe_value(item, depth + 1)
                for key, item in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [safe_value(item, depth + 1) for item in value]
    return escape_controls(str(value))
