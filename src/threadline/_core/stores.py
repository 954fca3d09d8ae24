"""ContextStore: named, immutable, scoped values inside the OpenTelemetry Context."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Awaitable, Callable, Mapping
from contextvars import Token

from . import lifecycle as _hooks
from .context import (
    STORE_KEY_PREFIX,
    Context,
    attach,
    await_within,
    detach,
    get_current,
    restore,
    store_key,
)
from .values import FrozenMapping, freeze_items

__all__ = [
    "ContextStore",
    "Scope",
    "merged_into",
    "registered_stores",
    "store_values",
    "with_store_values",
]

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `typing` would cost a store's first use ~3 ms
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_registry: dict[str, ContextStore] = {}
_registry_lock = threading.Lock()


def _new_registry_lock() -> None:
    # A thread of the parent may have held it at the fork (making a store).
    global _registry_lock  # noqa: PLW0603 - the forked child's own
    _registry_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_new_registry_lock)


def registered_stores() -> dict[str, ContextStore]:
    """Return the stores made in this process, by name."""
    return dict(_registry)


class Scope:
    """A context manager that makes one store value current until the block ends.

    Entering returns the value. Leaving restores the value the store had
    before, also when the block raised. Made by `ContextStore.scope`,
    `ContextStore.merge` and `ContextStore.exit`.
    """

    __slots__ = ("_hooked", "_key", "_merge", "_token", "_value")

    def __init__(self, key: str, value: FrozenMapping | None, merge: bool = False) -> None:
        self._key = key
        self._value = value
        self._merge = merge
        self._token: Token[Context] | None = None
        self._hooked: Any = None  # set on entry while a lifecycle hook is enabled

    def __enter__(self) -> FrozenMapping | None:
        if self._token is not None:
            raise RuntimeError("a store scope is already entered; make a new one to nest")
        current = get_current()
        value = self._value
        if self._merge and value is not None:
            outer = current.get(self._key)
            if isinstance(outer, FrozenMapping) and outer:
                value = outer | value
        token = self._token = attach(Context({**current, self._key: value}))
        if _hooks.active:
            try:
                self._hooked = _hooks.enter_scope(self, self._key, current.get(self._key), value)
            except BaseException:
                # the with block never starts, so __exit__ never runs: detach here
                self._token = None
                restore(token)
                raise
        return value

    def again(self) -> Scope:
        """Return a new, unentered scope that sets the same value."""
        return Scope(self._key, self._value, self._merge)

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        token = self._token
        self._token = None
        # by what was entered, not by the flag now: a hook disabled meanwhile still exits
        entered = self._hooked
        if entered is not None:
            self._hooked = None
            if token is not None:
                _hooks.exit_scope(entered)
        if token is not None:
            try:  # noqa: SIM105 - restore inline, no with: this is every scope's exit
                detach(token)
            except ValueError:  # ended in another contextvars.Context: left as it is there
                pass


class ContextStore:
    """A named store of immutable values that follow the request, like `AsyncLocalStorage`.

    Values live in the OpenTelemetry Context, so every boundary that carries
    that context (asyncio, threadline's carriers, any OpenTelemetry
    instrumentation) carries them too. Stores never see each other's values.

    Args:
        name: unique in the process; letters, digits, ``_`` and ``-`` (it
            names the store's members on the wire: ``name.key``).

    .. versionadded:: 0.1
    """

    __slots__ = ("_key", "_name")

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"ContextStore name {name!r} is invalid: use 1-64 letters, digits, '_' or '-'"
            )
        with _registry_lock:
            if name in _registry:
                raise ValueError(
                    f"a ContextStore named {name!r} already exists in this process; "
                    "share that one (store names are unique, they name the values on the wire)"
                )
            self._name = name
            self._key = store_key(name)
            _registry[name] = self

    @property
    def name(self) -> str:
        """The store's unique name."""
        return self._name

    def __repr__(self) -> str:
        return f"ContextStore({self._name!r})"

    def get(self, context: Context | None = None) -> FrozenMapping | None:
        """Return the current value (an immutable mapping), or None outside any scope."""
        ctx = get_current() if context is None else context
        return ctx.get(self._key)  # type: ignore[return-value]

    def scope(self, values: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Scope:
        """Make ``values`` (and ``kwargs``) the whole value of the store inside a ``with`` block.

        An outer value is hidden, not merged: use `merge` to add to it.
        """
        if values is None:  # the common call, scope(key=value): kwargs are a new dict, ours
            frozen = kwargs
            for key, value in kwargs.items():
                kind = type(value)
                if not key or not (
                    kind is str or kind is int or value is None or kind is bool or kind is float
                ):  # something to freeze (or an empty key to refuse): the general way
                    frozen = freeze_items(kwargs, self._name)
                    break
            return Scope(self._key, FrozenMapping(frozen, self._name))
        return Scope(self._key, self._make(values, kwargs))

    def merge(self, values: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Scope:
        """Add ``values`` (and ``kwargs``) to the value current at entry, inside a ``with`` block.

        Keys given here win over the outer value's; outside any scope this is `scope`.
        """
        return Scope(self._key, self._make(values, kwargs), True)

    def run(
        self, values: Mapping[str, Any], fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> T:
        """Call ``fn(*args, **kwargs)`` with ``values`` as the store's value and return its result.

        If ``fn`` returns an awaitable (an ``async def`` function), the result
        is an awaitable that runs it inside the scope: ``await store.run(v, afn)``.
        """
        if not isinstance(values, Mapping):
            raise TypeError(f"{self!r}.run() takes a mapping of values first, got {values!r}")
        return _run_in(self.scope(values), fn, args, kwargs)

    def exit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Call ``fn(*args, **kwargs)`` with the store empty; return its result."""
        return _run_in(Scope(self._key, None), fn, args, kwargs)

    def _make(self, values: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> FrozenMapping:
        merged: Mapping[str, Any]
        if values is None:
            merged = kwargs
        elif isinstance(values, Mapping):
            merged = {**values, **kwargs} if kwargs else values
        else:
            raise TypeError(f"{self!r} values must be a mapping, got {type(values).__name__}")
        return FrozenMapping(freeze_items(merged, self._name), self._name)


def _run_in(scope: Scope, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
    with scope:
        result = fn(*args, **kwargs)
    if isinstance(result, Awaitable):
        # A coroutine's body runs when it is awaited, in the awaiting task's
        # context: enter the scope again around the await itself.
        return await_within(scope.again(), result)  # type: ignore[return-value]
    return result


def store_values(context: Context) -> dict[str, FrozenMapping]:
    """Return the value of every store set in *context*, by store name."""
    start = len(STORE_KEY_PREFIX)
    return {
        key[start:]: value  # type: ignore[misc]
        for key, value in context.items()
        if value is not None and key.startswith(STORE_KEY_PREFIX)
    }


def with_store_values(context: Context, values: Mapping[str, dict[str, Any]]) -> Context:
    """Return *context* with each named store's value replaced by the (frozen) dict given.

    The names and the dicts must be valid already, as the strict baggage
    decoder leaves them; stores of other names are left as they are. The
    values count as foreign: the first dropped when the outbound baggage is
    too large.
    """
    if not values:
        return context
    entries = dict(context)
    for name, items in values.items():
        entries[store_key(name)] = FrozenMapping(items, name, frozenset(items))
    return Context(entries)


def merged_into(
    context: Context,
    store: ContextStore,
    values: dict[str, Any],
    also: dict[str, object] | None = None,
) -> Context:
    """Return *context* with *values* (frozen already) merged into *store*'s value there.

    What `ContextStore.merge` does on entry, for code that builds a context
    to attach later (a server building the one context of a request).
    *also* holds further entries of the new context (a span under its key),
    so that it is built once.
    """
    outer = store.get(context) if context else None
    merged = outer | values if outer else FrozenMapping(values, store.name)
    entries = {**context, store._key: merged}
    if also:
        entries.update(also)
    return Context(entries)


request = ContextStore("request")
"""threadline's own store: ``request_id``, ``user_id`` and whatever the request needs.

The HTTP middleware fills it, log records and spans read it.
"""
