"""The runtime of lifecycle hooks: resources, the enabled hooks, and the one flag boundaries read.

Every boundary reads `active` once (``if _hooks.active:``) and does nothing
more while it is False, which it is until a hook is enabled or the loss
detector runs: with neither, hooks cost one module attribute read per hand-off.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import os
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar, Token

from .context import STORE_KEY_PREFIX, Context, get_current, span_key, store_key

__all__ = [
    "Hook",
    "Pending",
    "Resource",
    "active",
    "after",
    "around",
    "before",
    "began",
    "context_for",
    "create",
    "create_hook",
    "current",
    "describe",
    "destroy",
    "enter_pending",
    "enter_request",
    "enter_scope",
    "exit_pending",
    "exit_request",
    "exit_scope",
    "forget_requests",
    "future_of",
    "in_library",
    "lazy_names",
    "location",
    "made",
    "pending_table",
    "pending_watch",
    "refresh",
    "request_later",
    "request_of",
    "retrieved",
    "run",
    "set_future",
    "set_watchers",
    "watchers",
]

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `typing` would cost a store's first use ~3 ms
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")
InitHook = Callable[["Resource", "Resource | None"], object]
ResourceHook = Callable[["Resource"], object]

active = False
"""True while a hook is enabled or a watcher (the loss detector) runs."""

_logger = logging.getLogger("threadline")
_current: ContextVar[Resource | Pending | None] = ContextVar("threadline.resource", default=None)
resource_var = _current
"""The variable `current` reads (for a task factory that decides inline, as `wanted` does)."""
_ids = itertools.count(1)
_lock = threading.Lock()
_making = threading.RLock()  # a pending request's resource is made once (`made`)
_hooks: tuple[Hook, ...] = ()
# The enabled hooks' callbacks of each kind, as (hook, function) pairs, rebuilt (under the lock)
# whenever a hook is enabled or disabled, so that a resource's path reads one tuple per step.
_inits: tuple[tuple[Hook, InitHook], ...] = ()
_befores: tuple[tuple[Hook, ResourceHook], ...] = ()
_afters: tuple[tuple[Hook, ResourceHook], ...] = ()
_destroys: tuple[tuple[Hook, ResourceHook], ...] = ()
# True while an enabled hook may make resources from its callbacks (any hook made by
# `create_hook`): only then is the thread-local guard against re-entering read and set.
_guarding = False
outside = False
"""False while every enabled hook asked only for requests and what is made under one
(threadline's own) and no watcher runs: work outside any request is then no resource."""
lazy_names = False
"""True while only threadline's own hooks listen (the live view) and no watcher runs: a
resource's name may wait until a reader asks for it, who calls `refresh` first."""
around = False
"""True while a task's work needs ``before`` and ``after`` around it: a hook with either is
enabled, or a watcher (the loss detector) runs. Otherwise a tracked task only has to be the
resource `current` answers inside it (`context_for`)."""
_REQUEST_KEY = store_key("request")
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_STDLIB = os.path.dirname(os.path.abspath(os.__file__)) + os.sep
# resources still running, by the id of the request resource they belong to
_live: dict[int, dict[int, Resource]] = {}


class _Calling(threading.local):
    # set on a thread while one of its guarded hook callbacks runs: a callback is plain sync
    # code, so nothing else runs on that thread meanwhile, and what the callback does fires no
    # hook (a class attribute: reading it on a thread that never set it raises nothing)
    on = False


_calling = _Calling()


class _Watchers:
    """What the loss detector listens to: scopes entered, requests ended with work running, bleeds.

    A bleed: work that began in a context still holding a request that had ended.
    """

    scope: Callable[[str, Any, Any, bool], None] | None = None
    outlived: Callable[[Resource, list[Resource]], None] | None = None
    # (the resource that began, the id of the request that bled in or None, what held it)
    bleed: Callable[[Resource, str | None, str], None] | None = None


ENDED_KEPT = 4096
"""How many ended requests the bleed watch remembers (the newest); older ones are forgotten."""
# While the bleed watch is on: the ids of requests in flight (how many of each) and of the
# requests that ended, with where each began. An id repeated by a client counts as open
# while any request with it runs, so only an id whose every request ended is "ended".
_open: dict[str, int] = {}
_ended: OrderedDict[str, str] = OrderedDict()
VALUES_KEPT = 32
"""How many store values one request remembers having set (the first), for the bleed watch."""
# The store values the ended requests set (a scope's value; a request's own values), by
# identity, each with the request that set it: held, so no other object can take the id.
_ended_values: OrderedDict[int, tuple[object, str, str]] = OrderedDict()


watchers = _Watchers()


class Resource:
    """Something that carries a request's context and runs code in it: a task, a job, a request.

    Attributes:
        type: ``"task"``, ``"thread"``, ``"thread.job"``, ``"process"``,
            ``"process.job"``, ``"subprocess"``, ``"http.server"``,
            ``"http.client"``, ``"message.publish"``, ``"message.process"`` or
            ``"scope"``.
        id: unique in the process, increasing (Node's ``asyncId``).
        trigger_id: the id of the resource current where this one was made,
            0 when there was none (Node's ``triggerAsyncId``).
        location: where it was made, ``"file:line"`` of the code that made it.
        request_id: the ``request_id`` of `threadline.request` where it was made, or None.
        request: True for a resource that begins a request (an HTTP server
            request; a message's processing; a `threadline.request` scope with
            a new ``request_id``).
        name: what it is, for people (``"GET /items/{id}"`` for an HTTP
            request or call), or None; it may change while the resource lives
            (a route known after routing). While the live view is the only
            listener, an HTTP request becomes a resource only once something
            needs it (work it hands over, `current`, the view's look): its
            name is worked out then, and again when the view is read
            (`refresh`).

    .. versionadded:: 0.1
    """

    __slots__ = (
        "_future",
        "_owner",
        "_refresh",
        "_silent",
        "_values",
        "destroyed",
        "id",
        "location",
        "name",
        "request",
        "request_id",
        "trigger_id",
        "type",
    )

    def __init__(  # noqa: PLR0917 - positional: every resource's way in
        self,
        kind: str,
        trigger: Resource | None,
        where: str,
        request_id: str | None,
        request: bool,
        known_id: int = 0,
    ) -> None:
        self.type = kind
        self.id = known_id or next(_ids)
        self.trigger_id = 0 if trigger is None else trigger.id
        self.location = where
        self.request_id = request_id
        self.request = request
        self.destroyed = False
        self.name: str | None = None
        self._future: weakref.ref[Any] | None = None
        self._refresh: Callable[[], None] | None = None
        self._values: list[object] | None = None  # what a request set (bleed watch on)
        # made by a hook callback: no callback is called for it, init to destroy
        self._silent = _guarding and _calling.on
        self._owner: Resource | None = (
            None if trigger is None else trigger if trigger.request else trigger._owner
        )

    def __repr__(self) -> str:
        return (
            f"Resource({self.type!r}, id={self.id}, trigger_id={self.trigger_id}, "
            f"location={self.location!r}, request_id={self.request_id!r})"
        )


class Pending:
    """A request begun while only threadline's own hooks listen (`lazy_names`), not yet a resource.

    Its resource is made only once something needs it (`made`): work handed
    over under it, `current` asked inside it, the live view's look. A
    request that needs none of these (most, when nobody watches) costs its
    service no resource and no hook call. `current` reads the pending request
    as the resource it stands for.

    The arrival that begins a request is its `Pending` (a base class: no
    object more per request).
    """

    __slots__ = (
        "_context",
        "_describe",
        "_ended",
        "_kind",
        "_made",
        "_outer",
        "_pid",
        "_place",
        "_started",
    )

    _kind: str
    _ended: bool
    _outer: Resource | Pending | None  # current where it began: what made it
    _pid: int  # the id its resource gets
    _place: str | None  # "" once asked for (`request_later`); where it began, once ended
    _started: float  # monotonic, set by the live view

    _context: Context | None  # the context it attached: its request id
    _made: Resource | None
    _describe: Callable[[Resource], None] | None


pending_watch: Callable[[Pending], None] | None = None
"""The live view's: told of each request begun as a `Pending` (it keeps `pending_table`)."""
pending_table: dict[int, Pending] = {}
"""The live view's requests in flight not yet made resources, by the id each will have."""


class Hook:
    """Callbacks for the lifecycle of every `Resource`, made by `create_hook`; off until enabled.

    .. versionadded:: 0.1
    """

    __slots__ = (
        "_after",
        "_before",
        "_destroy",
        "_guarded",
        "_init",
        "_reported",
        "_requests_only",
        "errors",
    )

    def __init__(
        self,
        init: InitHook | None,
        before: ResourceHook | None,
        after: ResourceHook | None,
        destroy: ResourceHook | None,
        *,
        guarded: bool = True,
        requests_only: bool = False,
    ) -> None:
        self._init = init
        self._before = before
        self._after = after
        self._destroy = destroy
        # False only for threadline's own hooks, whose callbacks make no resources: they run
        # without the thread-local guard that keeps a callback's own resources silent
        self._guarded = guarded
        # True: called only for requests and the resources made under one (threadline's own)
        self._requests_only = requests_only
        self._reported: set[str] = set()
        self.errors = 0
        """How many times a callback of this hook raised (each was logged once per callback)."""

    @property
    def enabled(self) -> bool:
        """Whether the hook is called now."""
        return self in _hooks

    def enable(self) -> Hook:
        """Start calling this hook for resources made from now on; return the hook."""
        global _hooks  # noqa: PLW0603 - replaced whole, read without a lock
        with _lock:
            if self not in _hooks:
                _hooks = (*_hooks, self)
            _update()
        return self

    def disable(self) -> Hook:
        """Stop calling this hook; return it. Resources already made stay valid."""
        global _hooks  # noqa: PLW0603 - replaced whole, read without a lock
        with _lock:
            _hooks = tuple(hook for hook in _hooks if hook is not self)
            _update()
        return self

    def _failed(self, callback: str, resource: Resource) -> None:
        self.errors += 1
        if callback not in self._reported:
            _logger.exception(
                "threadline hook %s raised for %r; not raised into the application "
                "(further errors of this callback are only counted in Hook.errors)",
                callback,
                resource,
            )
            # after the logging call: an error that could not be logged is tried again next time
            self._reported.add(callback)


def create_hook(
    *,
    init: InitHook | None = None,
    before: ResourceHook | None = None,
    after: ResourceHook | None = None,
    destroy: ResourceHook | None = None,
) -> Hook:
    """Return a `Hook` with these callbacks (Node's ``async_hooks.createHook``), not yet enabled.

    ``init(resource, trigger)`` runs where the resource is made, in its
    maker's context (*trigger* is the resource current there, or None);
    ``before(resource)`` and ``after(resource)`` run around the resource's
    work, in its context, with `current` answering *resource*; ``destroy``
    runs once, last. An exception in a callback is logged on the
    ``threadline`` logger and counted in `Hook.errors`, never raised into
    the application.

    .. versionadded:: 0.1
    """
    return Hook(init, before, after, destroy)


def current() -> Resource | None:
    """Return the resource whose work runs here, or None (Node's ``executionAsyncResource``).

    While the live view is the only listener (no hook of yours, no loss
    detector), work outside any request is no resource: there, this answers
    the resource current where that work was made, or None. Inside an HTTP
    request begun then, the first call makes the request's resource.

    .. versionadded:: 0.1
    """
    found = _current.get()
    return made(found) if isinstance(found, Pending) else found


_watching = 0


def set_watchers(change: int) -> None:
    """Count a watcher (the loss detector) in (+1) or out (-1)."""
    global _watching  # noqa: PLW0603 - counted under the lock
    with _lock:
        _watching += change
        _update()


def _update() -> None:
    """Rebuild the flags and the callbacks' tuples from the hooks and watchers (under the lock)."""
    global active, around, lazy_names, _guarding, outside  # noqa: PLW0603 - replaced whole, read without a lock
    global _inits, _befores, _afters, _destroys  # noqa: PLW0603 - the same
    _inits = tuple((hook, hook._init) for hook in _hooks if hook._init is not None)
    _befores = tuple((hook, hook._before) for hook in _hooks if hook._before is not None)
    _afters = tuple((hook, hook._after) for hook in _hooks if hook._after is not None)
    _destroys = tuple((hook, hook._destroy) for hook in _hooks if hook._destroy is not None)
    _guarding = any(hook._guarded for hook in _hooks)
    outside = _watching > 0 or not all(hook._requests_only for hook in _hooks)
    around = bool(_befores or _afters) or _watching > 0
    active = bool(_hooks) or _watching > 0
    lazy_names = bool(_hooks) and not outside
    if _watching <= 0:
        _live.clear()


watch_retrieval = False
"""True while someone (the live view) wants to know whether a job's exception was retrieved."""


def set_future(resource: Resource | None, future: Any) -> None:
    """Say that *future* (a task or a `concurrent.futures.Future`) holds *resource*'s outcome.

    While `watch_retrieval`, a `concurrent.futures.Future` also notes in
    `retrieved` whether its ``result`` or ``exception`` was called (a task
    knows that itself).
    """
    if resource is None:
        return
    resource._future = weakref.ref(future)
    if watch_retrieval and not hasattr(future, "_asyncio_future_blocking"):
        seen = [False]
        result, exception = future.result, future.exception

        def result_(timeout: float | None = None) -> Any:
            seen[0] = True
            return result(timeout)

        def exception_(timeout: float | None = None) -> Any:
            seen[0] = True
            return exception(timeout)

        with contextlib.suppress(AttributeError):  # a Future subclass with __slots__: unknown
            future.result, future.exception = result_, exception_
            future._threadline_retrieved = seen


def retrieved(future: Any) -> list[bool] | None:
    """The flag `set_future` keeps for *future* (``[True]`` once retrieved), or None."""
    return getattr(future, "_threadline_retrieved", None)


def refresh(resource: Resource) -> None:
    """Bring *resource*'s ``name`` and ``location`` up to date (see `describe`)."""
    update = resource._refresh
    if update is not None:
        update()


def future_of(resource: Resource) -> Any:
    """The future `set_future` gave *resource*, while it lives; else None."""
    ref = resource._future
    return None if ref is None else ref()


def location(depth: int = 1, skip: tuple[str, ...] = ()) -> str:
    """``"file:line"`` of the first caller *depth* frames up or further out, outside the libraries.

    Frames of threadline, of the standard library and of the directories
    *skip* are passed over, so the place is the application's line.
    """
    known = _in_library.get(skip)
    if known is None:
        known = _in_library.setdefault(skip, {})
    frame: Any = sys._getframe(depth + 1)
    while frame is not None:
        name = frame.f_code.co_filename
        library = known.get(name)
        if library is None:
            library = in_library(name, skip)
            if not name.startswith("<"):  # (code compiled under made-up names: not kept)
                known[name] = library
        if not library:
            return f"{name}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


# whether each file is a library's (`in_library`), by the directories skipped, then by file name
_in_library: dict[tuple[str, ...], dict[str, bool]] = {}


def request_later(running: Resource | Pending | None) -> Resource | Pending | None:
    """What `request_of` takes later for the request *running* (current somewhere) is in.

    None outside a request in flight. Keeps no more than the request's own
    record (a pending request then notes its place when it ends).
    """
    if isinstance(running, Pending):
        if running._ended:
            return None
        if running._place is None:
            running._place = ""
        return running
    owner = None if running is None else running if running.request else running._owner
    return None if owner is None or owner.destroyed else owner


def request_of(kept: Resource | Pending | None) -> tuple[str | None, str | None]:
    """The request id and place of the request `request_later` kept (None, None: none)."""
    if isinstance(kept, Pending):
        found = made(kept)
        if found is None:  # ended, never made a resource: its place noted as it ended
            return _request_id_in(kept._context), kept._place or None
        kept = found
    return (None, None) if kept is None else (kept.request_id, kept.location)


def in_library(name: str, skip: tuple[str, ...] = ()) -> bool:
    """Whether the file *name* is threadline's, the standard library's, or under *skip*."""
    if name.startswith((PACKAGE_DIR, "<frozen", *skip)):
        return True
    return name.startswith(_STDLIB) and "-packages" not in name[len(_STDLIB) :]


def wanted() -> bool:
    """Whether work handed over here would be a resource (the caller checked `active`).

    False only outside any request while no hook nor watcher wants such work
    (`Hook` ``requests_only``): a boundary may then skip finding its place.
    """
    if outside:
        return True
    trigger = _current.get()
    return trigger is not None and (
        isinstance(trigger, Pending) or trigger.request or trigger._owner is not None
    )


def create(kind: str, where: str, *, request: bool = False) -> Resource | None:
    """Make a resource here (the caller checked `active`) and call the ``init`` hooks.

    None instead for work outside any request while no hook nor watcher
    wants it (see `wanted`): not a resource, nothing to call.
    """
    trigger = _current.get()
    if isinstance(trigger, Pending):
        trigger = made(trigger)
    if not (outside or request) and (
        trigger is None or not (trigger.request or trigger._owner is not None)
    ):
        return None
    value = get_current().get(_REQUEST_KEY)
    request_id = value.get("request_id") if value is not None else None  # type: ignore[attr-defined]
    resource = Resource(kind, trigger, where, request_id, request)
    if _watching > 0:
        owner = resource._owner
        if owner is not None and not owner.destroyed:
            with _lock:
                _live.setdefault(owner.id, {})[resource.id] = resource
        # the bleed watch counts the requests in flight; work made in an ended request's
        # context is that request's own (outlived, not bled): only where it runs is checked
        if request and request_id is not None and watchers.bleed is not None:
            with _lock:
                _open[request_id] = _open.get(request_id, 0) + 1
    if _inits and not resource._silent:
        if _guarding:
            _call(_inits, "init", resource, trigger)
        else:  # threadline's own hooks only: inline, on every request's path
            for hook, function in _inits:
                # (a try per callback: one callback's error must not skip the others)
                try:
                    function(resource, trigger)
                except BaseException:  # noqa: BLE001, PERF203 - reported, never the app's
                    _failed(hook, "init", resource)
    return resource


def enter_request(kind: str, where: str) -> tuple[Resource, Token[Resource | Pending | None]]:
    """`create` and `before` for a request, while `lazy_names` (only threadline's own hooks listen).

    The same effects with none of the checks those hooks make unneeded (no
    watcher runs, no hook is guarded or has a ``before``): this is every
    request's way in while the live view is served. `exit_request` ends it.
    """
    if not lazy_names or _guarding or _befores:  # the hooks changed since the caller looked
        resource = create(kind, where, request=True)
        if resource is None:  # (never: a request is always a resource)
            raise RuntimeError(f"threadline: no resource made for a request ({kind})")
        return resource, before(resource)
    trigger = _current.get()
    if isinstance(trigger, Pending):
        trigger = made(trigger)
    value = get_current().get(_REQUEST_KEY)
    request_id = value.get("request_id") if value is not None else None  # type: ignore[attr-defined]
    resource = Resource(kind, trigger, where, request_id, True)
    for hook, function in _inits:
        # (a try per callback: one callback's error must not skip the others)
        try:
            function(resource, trigger)
        except BaseException:  # noqa: BLE001, PERF203 - reported, never the app's
            _failed(hook, "init", resource)
    return resource, _current.set(resource)


def exit_request(resource: Resource, token: Token[Resource | Pending | None]) -> None:
    """`after` and `destroy` for a request `enter_request` made.

    The general way when the hooks changed since it began.
    """
    if not lazy_names or resource.destroyed:
        after(resource, token)
        destroy(resource)
        return
    try:  # noqa: SIM105 - inline, no with: this is every request's way out
        _current.reset(token)
    except ValueError:  # it ended in another context than it began
        pass
    resource.destroyed = True  # (only its own arrival or scope ends a request)
    resource._values = None
    resource._refresh = None  # (it may hold its owner, the request's exchange)
    if resource._silent:
        return
    for hook, function in _destroys:
        try:
            function(resource)
        except BaseException:  # noqa: BLE001, PERF203 - reported, never the app's
            _failed(hook, "destroy", resource)


def enter_pending(pending: Pending, kind: str) -> Token[Resource | Pending | None] | None:
    """Begin the request *pending* without a resource: current, told to the live view.

    Only while `lazy_names` and the view watches (`pending_watch`); None
    otherwise (the hooks changed since the caller looked): the caller takes
    the general way. `made` makes its resource when needed; `exit_pending`
    ends it.
    """
    watch = pending_watch
    if not lazy_names or _guarding or _befores or watch is None:
        return None
    pending._kind = kind
    pending._ended = False
    pending._place = None
    pending._pid = next(_ids)
    pending._outer = _current.get()
    try:
        watch(pending)
    except BaseException:  # noqa: BLE001 - the view's error is never the app's: the general way
        return None
    return _current.set(pending)


def made(pending: Pending) -> Resource | None:
    """The resource of the request *pending*, made (and the ``init`` hooks called) the first time.

    None once it ended without one. Any thread may ask (the live view's
    does): one resource is made, and one that a request ending meanwhile on
    another thread did not see is destroyed here.
    """
    found = pending._made
    if found is not None or pending._ended:
        return found
    return _make(pending, init=True)


def _make(pending: Pending, *, init: bool) -> Resource | None:
    """Make *pending*'s resource; with *init*, call the ``init`` hooks (not once it ended)."""
    with _making:
        found = pending._made
        if found is not None or (init and pending._ended):
            return found
        outer = pending._outer
        trigger = made(outer) if isinstance(outer, Pending) else outer
        request_id = _request_id_in(pending._context)
        found = Resource(pending._kind, trigger, "?", request_id, True, pending._pid)
        by = pending._describe
        if by is not None:
            describe(found, by)
        pending._made = found  # (before the hooks: one that asks for `current` finds it)
        if init and _inits and not found._silent:
            _call(_inits, "init", found, trigger)
    if init and pending._ended:  # it ended on another thread while this one made it
        destroy(found)
    return found


def _request_id_in(context: Context | None) -> str | None:
    """The ``request_id`` of the request store in *context*, or None."""
    value = None if context is None else context.get(_REQUEST_KEY)
    return value.get("request_id") if value is not None else None  # type: ignore[attr-defined]


def describe(resource: Resource | None, by: Callable[[Resource], None]) -> None:
    """Name *resource* and say where it is *by* a function of it, now and whenever `refresh` asks.

    The function is forgotten when the resource is destroyed.
    """
    if resource is None:
        return
    _describe(resource, by)
    resource._refresh = lambda: _describe(resource, by)


def _describe(resource: Resource, by: Callable[[Resource], None]) -> None:
    try:
        by(resource)
    except Exception:  # noqa: BLE001 - a framework's odd request: the resource stays as it was
        return


def exit_pending(pending: Pending, token: Token[Resource | Pending | None]) -> None:
    """End the request *pending* (`enter_pending`): its resource too, if one was made.

    A hook enabled since it began hears it end (``after``, ``destroy``), as
    it would of a resource made before it was enabled.
    """
    pending._ended = True
    found = pending._made
    if found is None and (_afters or _destroys) and not lazy_names:
        found = _make(pending, init=False)
    elif found is not None:
        with _making:  # (made on another thread, maybe still calling its init hooks: after them)
            pass
    if found is not None and _afters and not found._silent:
        _call(_afters, "after", found)
    try:  # noqa: SIM105 - inline, no with: this is every request's way out
        _current.reset(token)
    except ValueError:  # it ended in another context than it began
        pass
    pending_table.pop(pending._pid, None)
    if found is None and pending._place is not None:  # asked for later (`request_later`)
        by = pending._describe
        if by is not None:
            probe = Resource(pending._kind, None, "?", None, True, pending._pid)  # (no hooks)
            _describe(probe, by)
            pending._place = probe.location
    pending._describe = None  # (it may hold its owner: the request's exchange)
    pending._outer = None
    if found is not None:
        destroy(found)


def context_for(resource: Resource) -> contextvars.Context:
    """A copy of the current `contextvars` context in which `current` answers *resource*.

    For work that runs in a context of its own from start to end (an asyncio
    task given it), while no ``before`` or ``after`` is needed (not `around`).
    """
    context = contextvars.copy_context()
    context.run(_current.set, resource)
    return context


def before(resource: Resource) -> Token[Resource | Pending | None]:
    """Make *resource* current and call the ``before`` hooks; `after` takes the token back."""
    token = _current.set(resource)
    bleed = watchers.bleed
    if bleed is not None and not resource.request:
        # work that runs in another context than it was handed over in (a shared Context)
        value = get_current().get(_REQUEST_KEY)
        found = value.get("request_id") if value is not None else None  # type: ignore[attr-defined]
        if found != resource.request_id:
            _check_request_id(resource, found, bleed)
    if _befores and not resource._silent:
        _call(_befores, "before", resource)
    return token


def after(resource: Resource, token: Token[Resource | Pending | None]) -> None:
    """Call the ``after`` hooks, then put back the resource current before `before`."""
    if _afters and not resource._silent:
        _call(_afters, "after", resource)
    try:  # noqa: SIM105 - inline, no with: this is every resource's way out
        _current.reset(token)
    except ValueError:  # it ended in another context than it began (a generator closed elsewhere)
        pass


def destroy(resource: Resource, *_: object) -> None:
    """Call the ``destroy`` hooks once; for a request, report what it leaves running."""
    _lock.acquire()  # (not `with`: this is every resource's end)
    try:
        if resource.destroyed:
            return
        resource.destroyed = True
        if _watching > 0 or _live:
            left = _forget(resource)
        else:
            left = None
            resource._values = None
    finally:
        _lock.release()
    if _destroys and not resource._silent:
        if _guarding:
            _call(_destroys, "destroy", resource)
        else:  # threadline's own hooks only: inline, on every request's path
            for hook, function in _destroys:
                # (a try per callback: one callback's error must not skip the others)
                try:
                    function(resource)
                except BaseException:  # noqa: BLE001, PERF203 - reported, never the app's
                    _failed(hook, "destroy", resource)
    resource._refresh = None  # (it may hold its owner: a request's exchange)
    if left:
        running = [r for r in left.values() if r.type != "scope" and not r.destroyed]
        report = watchers.outlived
        if running and report is not None:
            report(resource, running)


def _forget(resource: Resource) -> dict[int, Resource] | None:
    """The watchers' bookkeeping of a resource that ends (under the lock): what it left running."""
    owner = resource._owner
    if owner is not None:
        _live.get(owner.id, {}).pop(resource.id, None)
    left = _live.pop(resource.id, None) if resource.request else None
    request_id = resource.request_id
    if resource.request and request_id is not None and request_id in _open:
        still = _open.pop(request_id) - 1
        if still:
            _open[request_id] = still
        else:
            _ended[request_id] = resource.location
            _ended.move_to_end(request_id)
            if len(_ended) > ENDED_KEPT:
                _ended.popitem(last=False)
    if resource.request and resource._values:
        for value in resource._values:
            _ended_values[id(value)] = (value, request_id or "?", resource.location)
        while len(_ended_values) > ENDED_KEPT:
            _ended_values.popitem(last=False)
    resource._values = None
    return left


def began(resource: Resource | None, ambient: Context) -> None:
    """A request *resource* began where the context *ambient* was current (before its own).

    The bleed watch's look at a request's start: *ambient* should hold no
    request that has ended and no span that has ended.
    """
    bleed = watchers.bleed
    if bleed is None or resource is None:
        return
    # what the request sets, against what was there: its own values, for the watch
    resource._values = [
        value
        for key, value in get_current().items()
        if key.startswith(STORE_KEY_PREFIX) and value is not None and ambient.get(key) is not value
    ][:VALUES_KEPT]
    value = ambient.get(_REQUEST_KEY)
    held = None if value is None else value.get("request_id")  # type: ignore[attr-defined]
    if held is not None and _check_request_id(resource, held, bleed):
        return  # one bleed, reported once, even when the span that bled in says it too
    if _check_values(resource, ambient, bleed):
        return
    span = ambient.get(span_key())
    if getattr(span, "end_time", None) is not None:  # an SDK span, ended
        attributes = getattr(span, "attributes", None) or {}
        held = attributes.get("request.id")
        of = f" of request {str(held)!r}" if held is not None else ""
        name = getattr(span, "name", "?")
        bleed(resource, None if held is None else str(held), f"the span {name!r}{of}, ended")


def _check_values(
    resource: Resource, ambient: Context, bleed: Callable[[Resource, str | None, str], None]
) -> bool:
    """Report a bleed if *ambient* holds a store value an ended request set; whether it did."""
    with _lock:
        if not _ended_values:
            return False
        for key, value in ambient.items():
            if not key.startswith(STORE_KEY_PREFIX):
                continue
            found = _ended_values.get(id(value))
            if found is not None and found[0] is value and found[1] not in _open:
                name = key.removeprefix(STORE_KEY_PREFIX)
                held, began = found[1], found[2]
                break
        else:
            return False
    bleed(
        resource,
        held,
        f"the {name} store's values set by request {held!r} (begun at {began}), ended",
    )
    return True


def _check_request_id(
    resource: Resource, request_id: object, bleed: Callable[[Resource, str | None, str], None]
) -> bool:
    """Report a bleed if *request_id* is of a request that ended; whether it was one."""
    if request_id is None or request_id == (resource.request_id if resource.request else None):
        return False
    with _lock:
        began = _ended.get(request_id) if request_id not in _open else None  # type: ignore[call-overload]
    if began is not None:
        held = str(request_id)
        bleed(resource, held, f"the request id of request {held!r} (begun at {began}), ended")
        return True
    return False


def forget_requests() -> None:
    """Forget the requests in flight and ended (the bleed watch starts afresh)."""
    with _lock:
        _open.clear()
        _ended.clear()
        _ended_values.clear()


def run(resource: Resource, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` between the ``before`` and ``after`` hooks of *resource*."""
    token = before(resource)
    try:
        return fn(*args, **kwargs)
    finally:
        after(resource, token)


def _call(
    callbacks: tuple[tuple[Hook, Callable[..., object]], ...],
    name: str,
    resource: Resource,
    *args: Any,
) -> None:
    """Call each of *callbacks* with *resource* (and *args*); report whatever one raises.

    A guarded hook's callback runs with the thread's hooks off (what it does
    fires no hook); none runs while a guarded callback runs on this thread.
    BaseException too: the docs promise a hook's error never reaches the
    application, and a KeyboardInterrupt or SystemExit raised here would
    leave a scope or a resource half entered.
    """
    if _guarding and _calling.on:
        return
    for hook, function in callbacks:
        guarded = hook._guarded
        if guarded:
            _calling.on = True
        try:
            function(resource, *args)
        except BaseException:  # noqa: BLE001 - a hook's error is reported, never the app's
            _failed(hook, name, resource)
        finally:
            if guarded:
                _calling.on = False


def _failed(hook: Hook, name: str, resource: Resource) -> None:
    with contextlib.suppress(Exception):  # a logging filter that raises: still counted
        hook._failed(name, resource)


def enter_scope(scope: Any, key: str, outer: Any, value: Any) -> Any:
    """A scope was entered (the caller checked `active`): watch it, make it a resource.

    Returns what `exit_scope` takes back.
    """
    watch = watchers.scope
    if watch is not None:
        watch(key, outer, value, scope._merge)
    request = False
    if key == _REQUEST_KEY and value is not None:
        before_id = outer.get("request_id") if outer is not None else None
        request = value.get("request_id") not in (None, before_id)
    if request and lazy_names:
        return enter_request("scope", location(2))
    resource = create("scope", location(2), request=request)
    if resource is None:
        return None
    bleed = watchers.bleed
    if bleed is not None:
        owner = resource if request else resource._owner
        if owner is not None and value is not None:  # a value this request sets
            if owner._values is None:
                owner._values = []
            if len(owner._values) < VALUES_KEPT:
                owner._values.append(value)
        if request:
            ambient = get_current()
            if not (
                outer is not None and _check_request_id(resource, outer.get("request_id"), bleed)
            ):
                _check_values(resource, ambient, bleed)
    return resource, before(resource)


def exit_scope(entered: Any) -> None:
    """The scope `enter_scope` returned *entered* for ends: ``after``, then ``destroy``."""
    resource, token = entered
    if resource.request:
        exit_request(resource, token)
        return
    after(resource, token)
    destroy(resource)
