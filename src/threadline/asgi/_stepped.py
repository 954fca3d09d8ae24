"""The server's side of a request, run in the context the request arrived in.

uvicorn starts a pipelined request from inside the previous one's last
``send``, and reads on from inside ``receive`` after flow control paused it
(CPython issue 140947): what a server does there inherits the context current
there. Stepping the server's ``receive`` and ``send`` through
`contextvars.Context.run` of the context from before the request keeps the
next request clean, whatever the application left in its own.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Callable, Generator, MutableMapping
from contextvars import Context, copy_context
from functools import partial
from typing import Any

__all__ = ["Guard", "first_step", "guarded", "rest_in", "run_in", "steps_of"]

_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_ASGIApp = Callable[[Any, _Receive, _Send], Awaitable[None]]

_STEPPABLE = (types.CoroutineType, types.GeneratorType)


def steps_of(awaitable: Any) -> Any:
    """What to step *awaitable* through: a coroutine (or generator-based one) is its own."""
    return awaitable if type(awaitable) in _STEPPABLE else awaitable.__await__()


def first_step(fn: Callable[..., Awaitable[Any]], *args: Any) -> tuple[Any, Any]:
    """Call ``fn(*args)`` and take the first step of it: its steps and what that yielded.

    Raises `StopIteration` (with the result) when it finished in that step, as most
    sends do. Run through `contextvars.Context.run`: both in one call.
    """
    steps = steps_of(fn(*args))
    return steps, steps.send(None)


@types.coroutine
def rest_in(context: Context, steps: Any, yielded: Any) -> Generator[Any, Any, Any]:
    """Go on stepping *steps* in *context*, from its first *yielded* value, to its result."""
    while True:
        try:
            value = yield yielded
        except BaseException as thrown:  # noqa: BLE001 - cancellation goes on to the step
            step, argument = steps.throw, thrown
        else:
            step, argument = steps.send, value
        try:
            yielded = context.run(step, argument)
        except StopIteration as stop:
            return stop.value


@types.coroutine
def run_in(
    context: Context, fn: Callable[..., Awaitable[Any]], *args: Any
) -> Generator[Any, Any, Any]:
    """Await ``fn(*args)`` with each of its steps run in *context* (a `contextvars.Context`)."""
    try:
        steps, yielded = context.run(first_step, fn, *args)
    except StopIteration as stop:
        return stop.value
    return (yield from rest_in(context, steps, yielded))


async def guarded(app: _ASGIApp, scope: Any, receive: _Receive, send: _Send) -> None:
    """Call *app* with the server's receive and send run in the context the request came in."""
    arrived = copy_context()
    await app(scope, partial(run_in, arrived, receive), partial(run_in, arrived, send))


class Guard:
    """Outermost in a stack where threadline sits inside OpenTelemetry's middleware."""

    __slots__ = ("app",)

    def __init__(self, app: _ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await guarded(self.app, scope, receive, send)
