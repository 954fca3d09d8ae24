"""One registry of reversible patches: every layer threadline puts over an attribute, in order.

A patch puts a wrapper in place of ``owner.name`` (a class's method, or a
module's global), around what was there. Who asked for it is its *layer*
(``"instrument"``, ``"lost"``: see `ORDER`). For each patched attribute the
registry keeps the object it found there (the *original*) and the layers
asked for now, and whenever a layer comes or goes it builds the chain again
from the original: the original, wrapped by each layer still on, in `ORDER`.
So any interleaving of `add` and `remove` leaves exactly the layers still
asked for, and once none is left the attribute *is* the original again.

Where the chain is linked, and so relinked on each change:

- the owner's own entry, and each subclass's entry that holds the same object
  (as OpenTelemetry's ``unwrap`` leaves on ``threading.Timer``);
- under wrapt proxies (OpenTelemetry's instrumentations): threadline's chain
  goes under them, next to the original, in whichever order the two were
  installed, and each side's undo takes out only its own layer.

Someone else's plain function over the chain cannot be seen through: the
chain under it stays there, and the next change builds over whatever the
owner holds then, without the layers already under it. A layer under such a
function stays there: taken out, its wrapper passes every call straight
through (so a wrapper must pass calls through once its layer is off; a
reference someone kept to it must, too); added again, that same wrapper
works again and no second one is put over it. So one call goes through
each layer once, whatever patched the attribute in between.

`add` and `remove` take one lock; nothing is added to the call path but the
wrappers themselves.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["ORDER", "Patch", "add", "layers", "remove"]

ORDER = ("instrument", "lost")
"""The layers, nearest the original first: ``instrument()`` carries the context at the
hand-off, and the loss detector, outside it, sees each hand-off as the application made it
(and trusts the layer under it that carries the context)."""


@dataclass(frozen=True)
class Patch:
    """One wrapper for ``owner.name``: *wrap* is given what goes under it and returns the wrapper.

    *owner* is a class (its subclasses' entries that hold the same object are
    patched with it) or a module; its ``__dict__`` must hold *name*. *wrap*
    is called again each time the chain is rebuilt, with the new object
    under it, so the wrapper must call that object, not one it found itself.
    """

    owner: Any
    name: str
    wrap: Callable[[Any], Any]


class _Made(NamedTuple):
    layer: str
    wrapper: Any
    inner: Any


@dataclass
class _Chain:
    original: Any  # what the layers are built over: the original, or a foreign function
    top: Any  # what the owner's entry (or the wrapt proxy over it) links to now
    wraps: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    built: list[_Made] = field(default_factory=list)  # between `original` and `top`
    # wrappers left under a foreign function over `original`: never built again
    under: list[_Made] = field(default_factory=list)


_lock = threading.Lock()
_chains: dict[tuple[Any, str], _Chain] = {}


def add(layer: str, *patches: Patch) -> None:
    """Put *layer*'s wrapper on each patched attribute, at its place in `ORDER`.

    All or nothing: a ValueError (a layer not in `ORDER`, one already on one
    of the attributes, an attribute given twice) changes nothing, and so does
    an exception from a *wrap*.
    """
    _check(layer)
    keys = [(patch.owner, patch.name) for patch in patches]
    if len(set(keys)) < len(keys):
        raise ValueError(f"layer {layer!r}: an attribute is given twice")
    with _lock:
        taken = [f"{_name(p.owner)}.{p.name}" for p in patches if layer in _chain_of(p).wraps]
        if taken:
            raise ValueError(f"layer {layer!r} is on {', '.join(taken)} already")
        done: list[tuple[Any, str]] = []
        try:
            for patch, key in zip(patches, keys, strict=True):
                chain = _chains.setdefault(key, _chain_of(patch))
                chain.wraps[layer] = patch.wrap
                done.append(key)
                _rebuild(patch.owner, patch.name, chain)
        except BaseException:
            _take_out(layer, done)
            raise


def remove(layer: str, *patches: Patch) -> None:
    """Take *layer*'s wrapper off each patched attribute (with no patches: off every one).

    Each chain is built again without it; an attribute left with no layer is
    its original again. An attribute the layer is not on is passed over.
    """
    _check(layer)
    with _lock:
        if patches:
            targets = [(p.owner, p.name) for p in patches]
        else:
            targets = [key for key, chain in _chains.items() if layer in chain.wraps]
        _take_out(layer, targets)


def layers(owner: Any, name: str) -> tuple[str, ...]:
    """The layers on ``owner.name`` now, nearest the original first (empty: none)."""
    with _lock:
        chain = _chains.get((owner, name))
        return tuple(n for n in ORDER if chain is not None and n in chain.wraps)


def _check(layer: str) -> None:
    if layer not in ORDER:
        raise ValueError(f"unknown layer {layer!r}: the layers are {', '.join(ORDER)}")


def _chain_of(patch: Patch) -> _Chain:
    found = _chains.get((patch.owner, patch.name))
    if found is not None:
        return found
    original = _innermost(vars(patch.owner)[patch.name])
    return _Chain(original, original)


def _take_out(layer: str, keys: list[tuple[Any, str]]) -> None:
    for owner, name in keys:
        chain = _chains.get((owner, name))
        if chain is None or chain.wraps.pop(layer, None) is None:
            continue
        _rebuild(owner, name, chain)
        if not chain.wraps and not chain.under:
            del _chains[owner, name]


def _rebuild(owner: Any, name: str, chain: _Chain) -> None:
    built, made = _build(chain)
    if not _relink(owner, name, chain.top, built):
        # The chain is covered by someone's plain function (or was replaced): it stays
        # under that function, and the layers not under it go over whatever the owner
        # holds now (less any of our wrappers on top, put back by the one who covered them).
        current = value = _innermost(vars(owner)[name])
        # what was under a foreign function before is there still only if that is reached
        kept = chain.under if _reaches(value, chain.original, chain.under) else []
        under = kept + chain.built  # what we had built is now under *current*
        while (ours := next((m for m in under if m.wrapper is value), None)) is not None:
            under.remove(ours)
            value = ours.inner
        chain.under = under
        chain.original = value
        built, made = _build(chain)
        _relink(owner, name, current, built)
    chain.top = built
    chain.built = made


def _reaches(value: Any, base: Any, under: list[_Made]) -> bool:
    """Whether *value* is, or wraps (``__wrapped__``), *base* or a wrapper of ours in *under*.

    Otherwise the wrappers once under *base* are not under *value* (someone put
    back what was there before them): nothing of ours is under it.
    """
    ours = {id(made.wrapper) for made in under}
    for _ in range(100):  # a cycle of __wrapped__ is someone's bug: not ours to follow
        if value is base or id(value) in ours:
            return bool(under)
        value = getattr(value, "__wrapped__", None)
        if value is None:
            return False
    return False


def _build(chain: _Chain) -> tuple[Any, list[_Made]]:
    """The layers asked for and not under a foreign function, over `original`, in `ORDER`."""
    under = {made.layer for made in chain.under}
    built = chain.original
    made = []
    for layer in ORDER:
        if layer in chain.wraps and layer not in under:
            inner, built = built, chain.wraps[layer](built)
            made.append(_Made(layer, built, inner))
    return built, made


def _relink(owner: Any, name: str, old: Any, new: Any) -> bool:
    """Put *new* wherever *old* is linked; True when the owner's own entry held it."""
    found = False
    for holder, is_entry, owners in list(_holders(owner, name)):
        if is_entry and vars(holder)[name] is old:
            setattr(holder, name, new)
        elif not is_entry and holder.__wrapped__ is old:
            holder.__wrapped__ = new
        else:
            continue
        found = found or owners
    return found


def _holders(owner: Any, name: str) -> Iterator[tuple[Any, bool, bool]]:
    """Where ``owner.name`` may be linked: ``(holder, is a class or module entry, is owner's)``.

    An entry's link is its attribute; a wrapt proxy's, its ``__wrapped__``.
    """
    entries = [owner, *_subclasses(owner)] if isinstance(owner, type) else [owner]
    for holder in entries:
        if name not in vars(holder):
            continue
        yield holder, True, holder is owner
        value = vars(holder)[name]
        while _is_proxy(value):
            yield value, False, holder is owner
            value = value.__wrapped__


def _subclasses(cls: type) -> Iterator[type]:
    sub: type
    for sub in type.__subclasses__(cls):
        yield sub
        yield from _subclasses(sub)


def _is_proxy(value: object) -> bool:
    wrapt = sys.modules.get("wrapt")
    if wrapt is None:  # no wrapt loaded: no wrapt proxy anywhere
        return False
    # wrapt 2 proxies derive from BaseObjectProxy; wrapt 1 has ObjectProxy only
    return isinstance(value, getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy))


def _innermost(value: Any) -> Any:
    while _is_proxy(value):
        value = value.__wrapped__
    return value


def _name(owner: Any) -> str:
    return str(getattr(owner, "__qualname__", None) or getattr(owner, "__name__", owner))
