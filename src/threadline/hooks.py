"""Lifecycle hooks: Python's counterpart of Node's ``async_hooks``, for the resources of a request.

A *resource* is something that carries a request's context and runs code in
it: an asyncio task (tracked once `track_tasks` wrapped its loop's task
factory), a job of `threadline.ThreadPoolExecutor` or `threadline.run_in_executor`,
a `threadline.Thread`, a job of `threadline.ProcessPoolExecutor`, a
`threadline.processes.Process`, a `threadline.subprocess.Popen` child, an
aiohttp server request or client call, and a store scope. `create_hook`
registers callbacks for each resource's ``init``, ``before``, ``after`` and
``destroy``; `current` says which resource the code runs in. With no hook
enabled, each boundary pays one module attribute read.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
import weakref
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._core import lifecycle as _hooks
from ._core.lifecycle import Hook as Hook
from ._core.lifecycle import Resource as Resource
from ._core.lifecycle import create_hook as create_hook
from ._core.lifecycle import current as current
from ._core.lifecycle import resource_var

__all__ = ["Hook", "Resource", "create_hook", "current", "track_tasks", "tracking", "untrack_tasks"]

T = TypeVar("T")
_tracked: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


def track_tasks(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Make the tasks of *loop* (default: the running loop) resources, from now on.

    Wraps the loop's task factory (any factory already set keeps working
    inside the wrapper) until `untrack_tasks`. While no hook is enabled and
    the loss detector is off, the wrapper only calls the factory it wraps.
    While an enabled hook has a ``before`` or an ``after`` callback, or the
    loss detector runs, a tracked task runs its coroutine inside a small
    wrapper coroutine (what ``task.get_coro()`` returns) which calls them;
    otherwise (on Python 3.11 and later) the task runs its own coroutine in
    a context where `current` answers its resource. Calling it again for the
    same loop does nothing.

    .. versionadded:: 0.1
    """
    loop = loop or asyncio.get_running_loop()
    if loop in _tracked:
        return
    previous = loop.get_task_factory()
    _tracked[loop] = previous
    given_context = _takes_context(previous)

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        # (every task of the loop passes here, aiohttp's one per request too: the cheapest
        # checks first, `wanted()` inline, no call more)
        trigger = resource_var.get()
        if not (
            _hooks.active
            and (
                _hooks.outside
                or (
                    trigger is not None
                    and (isinstance(trigger, _hooks.Pending) or trigger.request or trigger._owner)
                )
            )
            and asyncio.iscoroutine(coro)
        ):
            if previous is None:
                return asyncio.Task(coro, loop=loop, **kwargs)
            return previous(loop, coro, **kwargs)
        resource = _hooks.create("task", _hooks.location(1))
        if resource is None:  # (the hooks changed since `wanted`)
            return _make(previous, loop, coro, kwargs)
        if _hooks.around or not given_context or "context" in kwargs:
            # (a context the caller gave is the task's own: the wrapper sets `current` in it)
            task = _make(previous, loop, _run(resource, coro), kwargs)
            task.add_done_callback(functools.partial(_finished, resource, coro))
        else:
            kwargs["context"] = _hooks.context_for(resource)
            task = _make(previous, loop, coro, kwargs)
            task.add_done_callback(functools.partial(_hooks.destroy, resource))
        _hooks.set_future(resource, task)
        return task

    factory._threadline_tracks = previous  # type: ignore[attr-defined]
    loop.set_task_factory(factory)


def tracking(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the tasks of *loop* are resources (`track_tasks` was called for it).

    .. versionadded:: 0.1
    """
    return loop in _tracked


def untrack_tasks(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Put back the task factory *loop* (default: the running loop) had before `track_tasks`.

    If another factory was set over threadline's since, that one is left in
    place (it still calls threadline's, which only passes tasks on).

    .. versionadded:: 0.1
    """
    loop = loop or asyncio.get_running_loop()
    if loop not in _tracked:
        return
    previous = _tracked.pop(loop)
    if hasattr(loop.get_task_factory(), "_threadline_tracks"):
        loop.set_task_factory(previous)


def _takes_context(previous: Any) -> bool:
    """Whether a task can be made with ``context=`` through *previous* (None: `asyncio.Task`)."""
    if sys.version_info < (3, 11):
        return False
    if previous is None:
        return True
    try:
        parameters = inspect.signature(previous).parameters.values()
    except (TypeError, ValueError):  # a callable with no signature to read: not asked
        return False
    return any(p.name == "context" or p.kind is p.VAR_KEYWORD for p in parameters)


def _make(previous: Any, loop: asyncio.AbstractEventLoop, coro: Any, kwargs: Any) -> Any:
    if previous is None:
        return asyncio.Task(coro, loop=loop, **kwargs)
    return previous(loop, coro, **kwargs)


def _finished(resource: _hooks.Resource, coro: Coroutine[Any, Any, Any], _task: object) -> None:
    # A task cancelled before its first step never started the user's coroutine:
    # close it, as asyncio would have, instead of a "never awaited" warning.
    # (only a native coroutine has a state: aiohttp's request managers are Coroutines too)
    if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
        coro.close()
    _hooks.destroy(resource)


async def _run(resource: _hooks.Resource, coro: Coroutine[Any, Any, T]) -> T:
    token = _hooks.before(resource)
    try:
        return await coro
    finally:
        _hooks.after(resource, token)
