"""The two halves of every boundary: a hand-off where work is given away, an arrival where it runs.

A `Handoff` is captured at ``submit``, ``start``, spawn, send or an outgoing
request: the caller's context, the hand-off's own span when one records
(made by the boundary, which knows its name and attributes), and the
lifecycle-hook resource when hooks are on. The far side's `Arrival` attaches
the context that came, runs the hooks' ``before``/``after`` around the work,
and puts the previous context back. Every boundary goes through these two, so
none can forget the hooks, the loss detector's mark, or to detach.

Both cost nothing beyond a context read while no hook is enabled and no span
records.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .._core import lifecycle
from .._core.context import Context, attach, get_current, restore, span_key
from .._telemetry.spans import record_error

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["CARRIES_CONTEXT", "Arrival", "Handoff", "arrive", "carries_context", "hand_off"]

C = TypeVar("C")
T = TypeVar("T")

CARRIES_CONTEXT = "_threadline_carries_context"
"""The loss detector's mark: an executor, thread, process or callable that runs in its caller's
context (the detector never reports a hand-off to one)."""


def carries_context(obj: C) -> C:
    """Mark *obj* (a class or a function) as carrying its caller's context; return it."""
    setattr(obj, CARRIES_CONTEXT, True)
    return obj


class Handoff:
    """One piece of work handed to another side, captured where it was handed over.

    Attributes:
        context: the caller's context, with the hand-off's span current in it
            when there is one: what the far side is to run in.
        span: the hand-off's own span, or None (nothing records, spans off,
            or another instrumentation's span stands for the operation).
        resource: the lifecycle-hook resource of the work, or None while no
            hook is enabled.
    """

    __slots__ = ("context", "resource", "span")

    def __init__(self, context: Context, span: Span | None, resource: lifecycle.Resource | None):
        self.context = context
        self.span = span
        self.resource = resource

    def end(self, error: BaseException | None = None) -> None:
        """The work is over: end the span (failed by *error*, if any) and destroy the resource.

        Calling it again does nothing, so every way out of a boundary may call it.
        """
        span, self.span = self.span, None
        if span is not None:
            if error is not None:
                record_error(span, error)
            span.end()
        resource, self.resource = self.resource, None
        if resource is not None:
            lifecycle.destroy(resource)

    def end_with(self, *_: object) -> None:
        """`end` without an error: a callback for `Future.add_done_callback` and the like."""
        self.end()


def hand_off(
    resource_type: str,
    *,
    where: str | Callable[[], str] | None = None,
    span: Callable[[Context], Span | None] | None = None,
    context: Context | None = None,
) -> Handoff:
    """Capture a hand-off of work of *resource_type* (``"process.job"``, ``"http.client"``, ...).

    Args:
        resource_type: the lifecycle-hook resource's type (`threadline.hooks.Resource.type`).
        where: the ``"file:line"`` the work was handed over at, or a callable
            that finds it (called only while hooks are on); default: the
            first application frame above the caller.
        span: called with the caller's context to start the hand-off's span,
            or to decline (None); not called at all when it is None.
        context: the context handed over (default: the current one).
    """
    handed = get_current() if context is None else context
    made = span(handed) if span is not None else None
    if made is not None:
        handed = Context({**handed, span_key(): made})
    resource = None
    if lifecycle.active:
        place = where() if callable(where) else where or lifecycle.location(1)
        resource = lifecycle.create(resource_type, place)
    return Handoff(handed, made, resource)


class Arrival(lifecycle.Pending):
    """Where handed-over work runs: its context attached, the hooks around it, then undone.

    ``with Arrival(context): ...`` attaches *context* for the block and puts
    back the context from before, however the block ends; with None it stays
    in the current one (a thread that runs in a copy of its caller's
    already). With a *resource* (made on this side of the boundary, or by
    `Handoff` in this process), the hooks' ``before`` and ``after`` run
    around the block with `current` answering that resource. With
    *resource_type* instead, the arrival makes the resource itself (while
    hooks are on) once *context* is attached, so that the resource has the
    request id of the work it runs, and destroys it at the end: a request,
    or a message's processing, that begins here.

    *describe*, for a request: names a resource made for it and says where
    (its ``name`` and ``location``), now and each time someone looks. With
    it, while only the live view listens, the request is a
    `lifecycle.Pending` (this arrival) whose resource is made only when
    needed: *where* is then not asked.

    *only_if_current*: put the context from before back only while *context*
    is still the current one. For work framed by two framework signals,
    where another instrumentation's receiver between them may already have
    put back the context from before both (which must stay).
    """

    __slots__ = ("_hooked", "_make", "_only_if_current", "_resource", "_token")

    def __init__(  # noqa: PLR0917 - see the comment below
        self,
        context: Context | None,
        resource: lifecycle.Resource | None = None,
        resource_type: str | None = None,
        where: str | Callable[[], str] | None = None,
        request: bool = False,
        only_if_current: bool = False,
        describe: Callable[[lifecycle.Resource], None] | None = None,
    ) -> None:
        # (positional parameters: a class called with keywords pays for a dict, per request)
        self._context = context
        self._resource = resource
        # the resource this side makes on entry (hooks on), as (type, where, request)
        self._make = (
            (resource_type, where, request)
            if resource is None and resource_type is not None and lifecycle.active
            else None
        )
        self._only_if_current = only_if_current
        self._token: Token[Context] | None = None
        self._describe = describe
        self._made = None
        self._ended = True  # (False while it is a pending request)

    @property
    def resource(self) -> lifecycle.Resource | None:
        """The lifecycle-hook resource the work runs as, or None (also while not made yet)."""
        resource = self._resource
        return resource if resource is not None else self._made

    def __enter__(self) -> Context:
        context = self._context
        make = self._make
        if make is not None and make[2] and lifecycle.lazy_names:
            # a request, while only the live view listens: the short way (nothing to compare)
            if context is None:
                context = self._context = get_current()
            else:
                self._token = attach(context)
            kind, where, _ = make
            describe = self._describe
            if describe is not None:
                hooked = lifecycle.enter_pending(self, kind)
                if hooked is not None:  # its resource is made if needed
                    self._hooked = hooked
                    return context
            place = where() if callable(where) else where or lifecycle.location(1)
            self._resource, self._hooked = lifecycle.enter_request(kind, place)
            if describe is not None:
                lifecycle.describe(self._resource, describe)
            return context  # (`_hooked`: the token `before` would have returned)
        # what was current before: a request that begins here should find no other request in it
        ambient = get_current() if make is not None else None
        if context is None:
            context = ambient if ambient is not None else get_current()
        else:
            self._token = attach(context)
        if make is not None:
            kind, where, request = make
            place = where() if callable(where) else where or lifecycle.location(1)
            self._resource = resource = lifecycle.create(kind, place, request=request)
            if request and ambient is not None:
                lifecycle.began(resource, ambient)
            if resource is not None and self._describe is not None:
                lifecycle.describe(resource, self._describe)
        if self._resource is not None:
            self._hooked = lifecycle.before(self._resource)
        return context

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        resource = self._resource
        if resource is not None:
            if self._make is None:
                lifecycle.after(resource, self._hooked)
            elif resource.request:
                lifecycle.exit_request(resource, self._hooked)
            else:
                lifecycle.after(resource, self._hooked)
                lifecycle.destroy(resource)
        elif not self._ended:
            lifecycle.exit_pending(self, self._hooked)
        self._describe = None  # (it may hold its owner, whose arrival this is)
        token, self._token = self._token, None
        if token is not None and (not self._only_if_current or get_current() is self._context):
            restore(token)

    def leave(self, *, only_if_current: bool = False) -> None:
        """``__exit__``; *only_if_current*: put nothing back unless *context* is current."""
        self._only_if_current = self._only_if_current or only_if_current
        self.__exit__(None, None, None)


def arrive(
    context: Context | None,
    resource: lifecycle.Resource | None,
    fn: Callable[..., T],
    /,
    *args: Any,
    **kwargs: Any,
) -> T:
    """Call ``fn(*args, **kwargs)`` inside ``Arrival(context, resource)``: a job's far side."""
    with Arrival(context, resource):
        return fn(*args, **kwargs)
