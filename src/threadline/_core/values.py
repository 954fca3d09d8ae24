"""Immutable store values: what ``ContextStore.get()`` hands out."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `typing` would cost a store's first use ~3 ms
if TYPE_CHECKING:
    from typing import Any, NoReturn

__all__ = ["FrozenMapping", "foreign_keys", "freeze"]


class FrozenMapping(Mapping[str, "Any"]):  # a string: no `typing` at run time
    """A read-only mapping; every write raises a `TypeError` saying how to change it.

    Nested lists become tuples and nested dicts become `FrozenMapping`, so no
    part of a value can be changed under a task that is reading it.
    """

    __slots__ = ("_data", "_foreign", "_owner")

    def __init__(
        self, data: dict[str, Any], owner: str = "", foreign: frozenset[str] = frozenset()
    ) -> None:
        self._data = data
        self._owner = owner
        # The keys whose values came from outside (a decoded carrier) and were
        # not set again here: the first to go when outbound baggage is too large.
        self._foreign = foreign

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value for *key*, or *default*."""
        return self._data.get(key, default)

    # The dict's own read-only views: Mapping's generic ones go through
    # __getitem__ per key, and every carrier and log line walks these.
    def keys(self) -> KeysView[str]:
        """The keys, a read-only view."""
        return self._data.keys()

    def values(self) -> ValuesView[Any]:
        """The values, a read-only view."""
        return self._data.values()

    def items(self) -> ItemsView[str, Any]:
        """The ``(key, value)`` pairs, a read-only view."""
        return self._data.items()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenMapping):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return f"FrozenMapping({self._data!r})"

    def __or__(self, other: Mapping[str, Any]) -> FrozenMapping:
        added = freeze_items(other)
        return FrozenMapping({**self._data, **added}, self._owner, self._foreign.difference(added))

    def _refuse(self, *_args: object, **_kwargs: object) -> NoReturn:
        where = f"ContextStore {self._owner!r}" if self._owner else "a store value"
        raise TypeError(
            f"{where} is immutable: enter a new scope instead "
            "(store.merge(key=value) adds to it, store.scope(...) replaces it)"
        )

    __setitem__ = __delitem__ = __ior__ = _refuse
    update = pop = popitem = clear = setdefault = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMapping, (self._data, self._owner, self._foreign))


def foreign_keys(value: FrozenMapping) -> frozenset[str]:
    """Return the keys of *value* that came from outside this process and were not set again."""
    return value._foreign


def freeze(value: Any, owner: str = "") -> Any:
    """Return *value* with every list, tuple, set and dict inside it made immutable."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if isinstance(value, FrozenMapping):
        return value
    if isinstance(value, Mapping):
        return FrozenMapping(freeze_items(value), owner)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(freeze(item) for item in value)
    return value


def freeze_items(values: Mapping[str, Any], owner: str = "") -> dict[str, Any]:
    """Return a new dict of *values* with each value frozen; keys must be strings."""
    frozen: dict[str, Any] = {}
    for key, value in values.items():
        if type(key) is not str or not key:
            raise TypeError(f"store keys must be non-empty str, got {key!r}")
        kind = type(value)
        # (the scalars inline: a scope of a few ids is the hot path)
        if kind is str or kind is int or value is None or kind is bool or kind is float:
            frozen[key] = value
        else:
            frozen[key] = freeze(value, owner)
    return frozen
