"""Snapshots of the whole context, and `bind` (Node's ``AsyncLocalStorage.snapshot``/``bind``)."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Generator
from contextvars import Token

from .context import Context, attach, await_within, get_current, restore

__all__ = ["Snapshot", "bind", "snapshot"]

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `typing` would cost a store's first use ~3 ms
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")
    Y = TypeVar("Y")
    R = TypeVar("R")
    F = TypeVar("F", bound=Callable[..., Any])

# Code flags (see the inspect module, which costs more to import than this module).
_GENERATOR = 0x20
_ASYNC_GENERATOR = 0x200


class Snapshot:
    """The context at one moment: every store, the active span and baggage.

    ``snap.run(fn)`` and ``with snap:`` run code in it. A snapshot taken by
    `snapshot` also holds every other `contextvars` variable, which ``run``
    restores too; one made by `threadline.extract` holds what came over the
    wire. A snapshot is immutable and may be used from many threads at once.

    .. versionadded:: 0.1
    """

    __slots__ = ("_context", "_entries", "_variables")

    def __init__(self, context: Context, variables: contextvars.Context | None = None) -> None:
        self._context = context
        self._variables = variables
        self._entries: dict[int, Token[Context]] = {}

    @property
    def context(self) -> Context:
        """The OpenTelemetry `Context`: ``tracer.start_span(name, context=snap.context)``."""
        return self._context

    def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Call ``fn(*args, **kwargs)`` inside the snapshot; the caller's context is untouched.

        If ``fn`` is an ``async def`` function, the result is a coroutine that
        runs the whole of ``fn``'s coroutine inside the snapshot: await it, or
        give it to ``asyncio.run`` or ``asyncio.create_task``.
        """
        variables = self._variables.copy() if self._variables is not None else None
        if variables is None:
            with self:
                result = fn(*args, **kwargs)
        else:
            result = variables.run(fn, *args, **kwargs)
        if isinstance(result, Coroutine):
            if variables is None:
                return await_within(self, result)  # type: ignore[return-value]
            return _awaited_in(variables, result)  # type: ignore[return-value]
        return result

    def __enter__(self) -> Snapshot:
        # A fresh Context object per entry tells concurrent entries (tasks,
        # threads) apart: each one's exit finds its own token by it.
        entered = Context(self._context)
        self._entries[id(entered)] = attach(entered)
        return self

    def __exit__(self, *exc_info: object) -> None:
        token = self._entries.pop(id(get_current()), None)
        if token is not None:
            restore(token)

    def __repr__(self) -> str:
        kind = "local" if self._variables is not None else "extracted"
        return f"<Snapshot {kind} keys={sorted(self._context)}>"


def snapshot() -> Snapshot:
    """Capture the current context: every store, the OpenTelemetry context, every contextvar."""
    variables = contextvars.copy_context()
    return Snapshot(get_current(), variables)


def bind(fn: F) -> F:
    """Return ``fn`` bound to the context of this moment, callable from any thread.

    Calls of the result run in a copy of today's context, so what they change
    stays with them. Generator and async generator functions are bound too:
    each item is produced inside the copy, so scopes the generator opens never
    leak to whoever iterates it.

    Raises:
        TypeError: *fn* is not callable (said here, not at the first call).
    """
    if not callable(fn):
        raise TypeError(f"bind() takes a callable, got {type(fn).__name__} {fn!r:.60}")
    snap = snapshot()
    variables = snap._variables
    assert variables is not None  # noqa: S101 - snapshot() always captures them
    flags = _code_flags(fn)
    if flags & _GENERATOR:

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            private = variables.copy()
            return _contained(private, private.run(fn, *args, **kwargs))

        return generator  # type: ignore[return-value]
    if flags & _ASYNC_GENERATOR:

        @functools.wraps(fn)
        def async_generator(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            private = variables.copy()
            return _contained_async(private, private.run(fn, *args, **kwargs))

        return async_generator  # type: ignore[return-value]

    @functools.wraps(fn)
    def bound(*args: Any, **kwargs: Any) -> Any:
        return snap.run(fn, *args, **kwargs)

    return bound  # type: ignore[return-value]


def _code_flags(fn: Callable[..., Any]) -> int:
    """Return the code flags of *fn*, looking through partials and bound methods."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    function = getattr(fn, "__func__", fn)
    code = getattr(function, "__code__", None)
    return code.co_flags if code is not None else 0


async def _awaited_in(variables: contextvars.Context, coroutine: Coroutine[Any, Any, T]) -> T:
    """A real coroutine (what asyncio.run and create_task take) around `InContext`."""
    return await InContext(variables, coroutine)


class InContext(Awaitable["T"]):  # a string: no `typing` at run time
    """Await a coroutine with every step of it run inside one `contextvars.Context`."""

    __slots__ = ("_coroutine", "_variables")

    def __init__(self, variables: contextvars.Context, coroutine: Coroutine[Any, Any, T]) -> None:
        self._variables = variables
        self._coroutine = coroutine

    def __await__(self) -> Generator[Any, Any, T]:
        return (yield from _contained(self._variables, self._coroutine))


def _contained(
    variables: contextvars.Context, gen: Generator[Y, Any, R] | Coroutine[Y, Any, R]
) -> Generator[Y, Any, R]:
    """Drive *gen* (a generator or a coroutine) with every step of it run in *variables*."""
    run = variables.run
    method: Callable[[Any], Y] = gen.send
    argument: Any = None
    while True:
        try:
            item = run(method, argument)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            argument = yield item
            method = gen.send
        except GeneratorExit:
            run(gen.close)
            raise
        except BaseException as exc:  # noqa: BLE001 - every throw goes on to the generator
            method, argument = gen.throw, exc


async def _contained_async(
    variables: contextvars.Context, agen: AsyncGenerator[T, Any]
) -> AsyncGenerator[T, Any]:
    method: Callable[[Any], Awaitable[T]] = agen.asend
    argument: Any = None
    while True:
        try:
            item: T = await InContext(variables, method(argument))  # type: ignore[arg-type]
        except StopAsyncIteration:
            return
        try:
            argument = yield item
            method = agen.asend
        except GeneratorExit:
            await InContext(variables, agen.aclose())
            raise
        except BaseException as exc:  # noqa: BLE001 - every throw goes on to the generator
            method, argument = agen.athrow, exc
