"""Checks of the options a programmer passes: once, where they are given, naming the option.

A wrong option is the programmer's mistake, so it is a `TypeError` (or a
`ValueError`) raised at set-up, never a surprise at the first request. A bare
``str`` where a collection of names belongs is refused rather than read
character by character (``keys="tenant"`` is not ``("t", "e", …)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["require_bool", "require_names"]


def require_bool(option: str, value: object) -> bool:
    """Return *value* if it is True or False; else a TypeError naming *option*."""
    if not isinstance(value, bool):
        raise TypeError(f"{option} takes True or False, got {value!r:.80}")
    return value


def require_names(option: str, value: object, what: str = "names") -> tuple[str, ...]:
    """Return *value*, a collection of ``str``, as a tuple; else a TypeError naming *option*.

    One ``str`` (or bytes) is refused, with the list of ``str`` it probably meant.
    """
    if isinstance(value, str):
        raise TypeError(f"{option} takes a list of {what}, not one: [{value!r:.80}]")
    if isinstance(value, (bytes, bytearray)):
        meant = bytes(value).decode("ascii", "replace")
        raise TypeError(f"{option} takes a list of {what} (str), not bytes: [{meant!r:.80}]")
    if not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise TypeError(f"{option} takes a list of {what} (str), got {value!r:.80}")
    names = tuple(value)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{option} takes {what} (str), got {name!r:.80} in {value!r:.80}")
    return names
