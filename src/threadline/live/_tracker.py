"""The requests in flight and what each made, kept by one lifecycle hook, bounded.

While the live view is on, one `threadline.hooks` hook records each request
(a resource that begins one) and every resource made under it: when it
began, whether it still runs. An HTTP request that is no resource yet
(`lifecycle.Pending`) is noted as it begins (`Tracker._began`) and moves to
the requests' table once made one. A request leaves the table when it ends; what
it left running, the failures nobody retrieved and the spans never ended
stay for `leaks`. Every table is capped, and what did not fit is counted.

The hook runs on every request of the service, watched or not, so it does
little: plain dict operations (each atomic under the GIL: no lock on its
path; the lock guards only the drop counters and `forget_leaks`), the
monotonic clock, and the resources' own owners (`lifecycle.Resource`'s
request); the wall-clock time, the names and what a reader sees are worked
out when someone reads.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from .._core import lifecycle
from .._core.context import Context, get_current
from ..hooks import track_tasks, tracking, untrack_tasks

# The loop each task is running on (asyncio's own table): whether the loop last seen runs a task
# here is a dict lookup, where asking for the running loop is a getpid() system call on 3.10/3.11
_CURRENT_TASKS: dict[Any, Any] = getattr(asyncio.tasks, "_current_tasks", {})

_monotonic = time.monotonic
_get_ident = threading.get_ident

_OPENTELEMETRY = (os.path.dirname(os.path.dirname(os.path.abspath(trace.__file__))) + os.sep,)
"""OpenTelemetry's folder: a span is made where the application called into it."""

MAX_REQUESTS = 1000
"""Requests tracked at once; a request that begins while this many run is counted, not shown."""
MAX_RESOURCES = 200
"""Resources kept per request (running and ended); the others are counted in its ``dropped``."""
MAX_LEAKS = 1000
"""Entries kept of each kind of leak (work that outlived its request, failures nobody
retrieved, spans never ended); the others are counted."""


@dataclass(frozen=True)
class Leak:
    """Something a request left behind, found by `threadline.live.leaks`.

    Attributes:
        kind: ``"outlived"`` (a task, job, thread or child still running after
            its request ended), ``"unretrieved"`` (a task's or a job's
            exception nobody retrieved) or ``"unended"`` (a span started and
            never ended).
        what: the resource's type (``"task"``, ``"thread.job"``, ...) or
            ``"span"``, with its name when it has one.
        location: ``"file:line"`` where it was made.
        request_id: the request it belonged to, or None.
        request_location: where that request began, or None.
        detail: the exception (``"ValueError('boom')"``) for ``"unretrieved"``, else ``""``.

    .. versionadded:: 0.1
    """

    kind: str
    what: str
    location: str
    request_id: str | None
    request_location: str | None
    detail: str = ""


class _Item:
    """One resource of a request: when it began and ended (monotonic seconds)."""

    __slots__ = ("context", "ended", "resource", "started")

    def __init__(self, resource: lifecycle.Resource, context: Context) -> None:
        self.resource = resource
        self.started = time.monotonic()
        self.ended: float | None = None
        self.context = context


class _Made:
    """What one request in flight made: its resources, and how many did not fit."""

    __slots__ = ("dropped", "items")

    def __init__(self) -> None:
        self.items: dict[int, _Item] = {}
        self.dropped = 0


_NOTHING = _Made()
"""What a request that made nothing made (never changed)."""


class _Left:
    """What a leak needs of its resource, its request and the context to log it in."""

    __slots__ = ("context", "detail", "item", "request_id", "request_location", "retrieved", "what")

    def __init__(
        self,
        what: str,
        item: _Item | None,
        request: lifecycle.Resource | None,
        context: Context,
        detail: str = "",
    ) -> None:
        self.what = what
        self.item = item
        self.request_id = None if request is None else request.request_id
        self.request_location = None if request is None else request.location
        self.context = context
        self.detail = detail
        self.retrieved: Callable[[], bool] = _never


def _never() -> bool:
    return False


class Tracker:
    """The tables of the live view, filled by one lifecycle hook while it is enabled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # the requests in flight by their resource's id, each with when it began (monotonic),
        # and what each made once it made something
        self._requests: dict[int, tuple[lifecycle.Resource, float]] = {}
        # the requests in flight not made resources yet (`lifecycle.Pending`), by the id each
        # will have: lifecycle's own table, which it keeps as they end
        self._pending = lifecycle.pending_table
        self._made: dict[int, _Made] = {}
        self._outlived: dict[int, _Left] = {}
        self._failed: list[_Left] = []
        # span id -> (span, the context it began in, where, the request in flight there)
        self._spans: dict[int, tuple[Any, Context, str, Any]] = {}
        self.dropped = {"requests": 0, "outlived": 0, "unretrieved": 0, "unended": 0}
        self._loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._providers: weakref.WeakSet[Any] = weakref.WeakSet()
        self.on = False
        self._last_loop: Any = None
        # the thread a request last began on and its loop, as one pair (replaced whole: another
        # thread reads it without a lock)
        self._seen: tuple[int, Any] = (0, None)
        self._last_provider: Any = None
        self._next_look = 0.0
        # (its callbacks make no resources: no thread-local guard around them)
        self._hook = lifecycle.Hook(
            self._init, None, None, self._destroy, guarded=False, requests_only=True
        )

    # -- switching ----------------------------------------------------------------------------

    def enable(self) -> None:
        """Start tracking (the hook, the running loop's tasks, the SDK's spans)."""
        self.on = True
        self.dropped["requests"] = 0  # a view served afresh counts afresh
        lifecycle.watch_retrieval = True
        lifecycle.pending_watch = self._began
        self._hook.enable()
        self._watch_here(time.monotonic())

    def disable(self) -> None:
        """Stop tracking; put back the loops' task factories; forget the requests in flight."""
        self.on = False
        lifecycle.watch_retrieval = False
        lifecycle.pending_watch = None
        self._hook.disable()
        loops = list(self._loops)
        self._loops.clear()
        self._last_loop = self._last_provider = None
        self._seen = (0, None)
        self._next_look = 0.0
        for loop in loops:
            if loop.is_closed():
                continue
            if loop is asyncio._get_running_loop():
                untrack_tasks(loop)
            else:
                loop.call_soon_threadsafe(untrack_tasks, loop)
        self._requests.clear()
        self._pending.clear()
        self._made.clear()

    def _watch_here(self, now: float) -> None:
        """Track the tasks of the running loop, and the spans of the global SDK provider."""
        loop = asyncio._get_running_loop()
        if loop is not None:
            self._seen = (threading.get_ident(), loop)
        if loop is not None and loop is not self._last_loop:
            self._last_loop = loop  # (checked per request: most requests meet the same loop)
            if loop not in self._loops and not tracking(loop):
                self._loops.add(loop)
                track_tasks(loop)
        if now < self._next_look:
            return
        # a provider set later is found within a second (asking costs an environment lookup)
        self._next_look = now + 1.0
        provider = trace.get_tracer_provider()
        if provider is not self._last_provider:
            self._last_provider = provider
            add = getattr(provider, "add_span_processor", None)
            if add is not None and provider not in self._providers:
                self._providers.add(provider)
                add(_span_watch(self))  # a provider cannot drop a processor: it checks `on`

    # -- the hook -----------------------------------------------------------------------------

    def _began(self, pending: lifecycle.Pending) -> None:
        """A request began as a `lifecycle.Pending`: keep it, with when it began."""
        pending._started = now = _monotonic()
        # on the loop seen last on this thread when that loop runs a task: this task is its
        # (one thread runs one loop at a time); else ask which loop runs here
        thread, loop = self._seen
        if now >= self._next_look or _get_ident() != thread or _CURRENT_TASKS.get(loop) is None:
            self._watch_here(now)
        table = self._pending
        if len(table) + len(self._requests) < MAX_REQUESTS:
            table[pending._pid] = pending
        else:
            with self._lock:
                self.dropped["requests"] += 1

    def _init(self, resource: lifecycle.Resource, trigger: lifecycle.Resource | None) -> None:
        if resource.request:
            pending = self._pending.pop(resource.id, None)
            if pending is not None:  # made for what needed it: kept since it began
                self._requests[resource.id] = (resource, pending._started)
                if resource.destroyed:  # (it ended meanwhile, on another thread)
                    self._requests.pop(resource.id, None)
                return
            now = time.monotonic()
            thread, loop = self._seen
            if (
                now >= self._next_look
                or threading.get_ident() != thread
                or _CURRENT_TASKS.get(loop) is None
            ):
                self._watch_here(now)
            if len(self._requests) + len(self._pending) < MAX_REQUESTS:
                self._requests[resource.id] = (resource, now)
                if resource.destroyed:  # (it ended meanwhile, on another thread)
                    self._requests.pop(resource.id, None)
            else:
                with self._lock:
                    self.dropped["requests"] += 1
            return
        owner = resource._owner  # the request it was made under, however deep
        if owner is None or resource.type == "scope":
            return
        if owner.id not in self._requests:
            return
        made = self._made.get(owner.id)
        if made is None:
            made = self._made.setdefault(owner.id, _Made())
            if owner.id not in self._requests:  # it ended meanwhile, on another thread
                self._made.pop(owner.id, None)
                return
        if len(made.items) >= MAX_RESOURCES:
            with self._lock:
                made.dropped += 1
            return
        made.items[resource.id] = _Item(resource, get_current())

    def _destroy(self, resource: lifecycle.Resource) -> None:
        if resource.request:
            if self._requests.pop(resource.id, None) is not None and self._made:
                made = self._made.pop(resource.id, None)
                if made is not None:
                    for running in list(made.items.values()):
                        if running.ended is None:
                            self._keep_outlived(running, resource)
            return
        owner = resource._owner
        if owner is None:
            return
        if self._outlived:
            self._outlived.pop(resource.id, None)
        made = self._made.get(owner.id)
        item = None if made is None else made.items.get(resource.id)
        if item is not None:
            item.ended = time.monotonic()
        if resource._future is not None:
            self._check_outcome(resource, item, owner)

    def _keep_outlived(self, item: _Item, request: lifecycle.Resource) -> None:
        if len(self._outlived) >= MAX_LEAKS:
            with self._lock:
                self.dropped["outlived"] += 1
            return
        what = _what(item.resource)
        self._outlived[item.resource.id] = _Left(what, item, request, item.context)

    def _check_outcome(
        self, resource: lifecycle.Resource, item: _Item | None, owner: lifecycle.Resource
    ) -> None:
        """A task or job that failed: remember its exception until someone retrieves it."""
        future = lifecycle.future_of(resource)
        if future is None or not future.done() or future.cancelled():
            return
        if isinstance(future, asyncio.Future):
            error = future._exception  # (not exception(): that marks it retrieved)
            if error is None:
                return
            ref = weakref.ref(future)

            def retrieved() -> bool:
                task = ref()
                # collected: asyncio itself said so when it was (if nobody retrieved it)
                return task is None or not task._log_traceback
        else:
            seen = lifecycle.retrieved(future)
            error = future._exception  # (the wrapped exception() would count as retrieved)
            if error is None or seen is None:
                return

            def retrieved() -> bool:
                return seen[0]

        context = item.context if item is not None else get_current()
        left = _Left(_what(resource), item, owner, context, repr(error))
        left.retrieved = retrieved
        if len(self._failed) >= MAX_LEAKS:
            with self._lock:
                self.dropped["unretrieved"] += 1
            return
        self._failed.append(left)

    # -- spans --------------------------------------------------------------------------------

    def span_started(self, span: Any, parent: Context | None) -> None:
        if len(self._spans) >= MAX_LEAKS:
            with self._lock:
                self.dropped["unended"] += 1
            return
        # what a leak needs, kept as it is: worked out only for a span never ended (`leaks`)
        self._spans[span.context.span_id] = (
            span,
            parent if parent is not None else get_current(),
            lifecycle.location(2, _OPENTELEMETRY),
            lifecycle.request_later(lifecycle.resource_var.get()),
        )

    def span_ended(self, span: Any) -> None:
        self._spans.pop(span.context.span_id, None)

    # -- what the view and leaks read --------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The requests in flight, slowest first, as plain data (what ``/requests`` serves)."""
        for pending in list(self._pending.values()):  # each now a resource, in `_requests`
            lifecycle.made(pending)
        now, wall = time.monotonic(), time.time()
        # (sorted() copies the values in one step under the GIL: the hook may go on meanwhile)
        requests = sorted(self._requests.values(), key=lambda request: request[1])
        for resource, _ in requests:
            _refresh(resource)
        shown = [
            _request_data(resource, started, self._made.get(resource.id, _NOTHING), now, wall)
            for resource, started in requests
        ]
        return {
            "time": wall,
            "requests": shown,
            "dropped_requests": self.dropped["requests"],
            "limits": {"requests": MAX_REQUESTS, "resources": MAX_RESOURCES},
        }

    def leaks(self) -> list[tuple[Leak, Context]]:
        """What requests left behind, each with the context to report it in."""
        outlived = list(self._outlived.values())
        failed = list(self._failed)
        spans = list(self._spans.values())
        found = [(_leak("outlived", left), left.context) for left in outlived]
        found += [
            (_leak("unretrieved", left), left.context) for left in failed if not left.retrieved()
        ]
        for span, context, where, running in spans:
            request_id, request_location = lifecycle.request_of(running)
            leak = Leak("unended", f"span {span.name!r}", where, request_id, request_location)
            found.append((leak, _with_span(context, span)))
        return found

    def forget_leaks(self) -> None:
        """Forget what `leaks` would list (it is reported)."""
        with self._lock:
            self._outlived.clear()
            self._failed.clear()
            self._spans.clear()
            self.dropped.update(outlived=0, unretrieved=0, unended=0)


def _leak(kind: str, left: _Left) -> Leak:
    where = "?" if left.item is None else left.item.resource.location
    return Leak(kind, left.what, where, left.request_id, left.request_location, left.detail)


def _refresh(resource: lifecycle.Resource) -> None:
    """The request's route and handler, if its framework routed it since it began."""
    try:
        lifecycle.refresh(resource)
    except Exception:  # noqa: BLE001 - a framework's odd route object: the name stays as it was
        return


def _what(resource: lifecycle.Resource) -> str:
    return resource.type if resource.name is None else f"{resource.type} {resource.name}"


def _with_span(context: Context, span: Any) -> Context:
    from opentelemetry.trace import set_span_in_context  # noqa: PLC0415 - spans are on

    return set_span_in_context(span, context)


def _request_data(
    resource: lifecycle.Resource, started: float, made: _Made, now: float, wall: float
) -> dict[str, Any]:
    items = sorted(made.items.values(), key=lambda item: item.started)
    return {
        "id": resource.id,
        "request_id": resource.request_id,
        "type": resource.type,
        "name": resource.name,
        "location": resource.location,
        "started": wall - (now - started),
        "age": now - started,
        "running": sum(1 for item in items if item.ended is None),
        "dropped": made.dropped,
        "resources": [
            {
                "id": item.resource.id,
                "type": item.resource.type,
                "name": item.resource.name,
                "location": item.resource.location,
                "start": item.started - started,
                "duration": None if item.ended is None else item.ended - item.started,
            }
            for item in items
        ],
    }


def _span_watch(tracker: Tracker) -> Any:
    """A span processor telling *tracker* which spans started and which ended."""
    from opentelemetry.sdk.trace import SpanProcessor  # noqa: PLC0415 - the SDK is in use

    class SpanWatch(SpanProcessor):
        def on_start(self, span: Any, parent_context: Context | None = None) -> None:
            if tracker.on:
                tracker.span_started(span, parent_context)

        def on_end(self, span: Any) -> None:
            if tracker.on:
                tracker.span_ended(span)

    return SpanWatch()


tracker = Tracker()
"""The one tracker of the process."""

__all__ = ["MAX_LEAKS", "MAX_REQUESTS", "MAX_RESOURCES", "Leak", "Tracker", "tracker"]
