"""The one place threadline touches OpenTelemetry's runtime context.

Stores live inside the OpenTelemetry `Context` (one context, not two), so
whatever carries that context carries the stores as well.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, suppress
from contextvars import ContextVar, Token

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

__all__ = [
    "STORE_KEY_PREFIX",
    "Context",
    "attach",
    "await_within",
    "context_of_error",
    "detach",
    "get_current",
    "mark_error",
    "restore",
    "span_in",
    "span_key",
    "store_key",
]

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `typing` would cost a store's first use ~3 ms
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")

STORE_KEY_PREFIX = "threadline.store."

# The runtime's own detach raises where OpenTelemetry's public one logs
# "Failed to detach context"; threadline decides itself what that means.
_runtime = otel_context._RUNTIME_CONTEXT
_variable = getattr(_runtime, "_current_context", None)

if type(_runtime) is ContextVarsRuntimeContext and isinstance(_variable, ContextVar):
    # OpenTelemetry's default runtime is one ContextVar behind two Python calls;
    # every store read and scope goes straight to it (same variable, same tokens).
    get_current: Callable[[], Context] = _variable.get
    attach: Callable[[Context], Token[Context]] = _variable.set
    _detach: Callable[[Token[Context]], None] = _variable.reset
else:  # another runtime (OTEL_PYTHON_CONTEXT): through OpenTelemetry's API
    get_current = otel_context.get_current
    attach = otel_context.attach
    _detach = _runtime.detach


detach = _detach
"""Put back the context *token* replaced; `ValueError` where it cannot be (see `restore`)."""


def restore(token: Token[Context]) -> bool:
    """Put back the context that *token* replaced; False when that cannot be done here.

    It cannot when the scope ends in another `contextvars.Context` than it
    began in (a generator closed from another task or thread, or by the
    garbage collector); the context current there is then left as it is.
    """
    try:
        _detach(token)
    except ValueError:
        return False
    return True


_ERROR_CONTEXT = "_threadline_context"


def mark_error(error: BaseException, context: Context) -> None:
    """Keep *context* on *error*, which escapes the request it was raised in.

    What logs *error* after the request's context is gone (the server, an
    outer middleware) reads the request's ids from it (`context_of_error`).
    The first mark stays: it is the innermost request's.
    """
    if _ERROR_CONTEXT not in getattr(error, "__dict__", {_ERROR_CONTEXT: None}):
        # (an exception type without attributes of its own keeps none)
        with suppress(AttributeError, TypeError):
            setattr(error, _ERROR_CONTEXT, context)


def context_of_error(error: object) -> Context | None:
    """The context `mark_error` kept on *error*, or None."""
    context = getattr(error, "__dict__", {}).get(_ERROR_CONTEXT)
    return context if isinstance(context, Context) else None


def store_key(name: str) -> str:
    """Return the OpenTelemetry context key that holds the store *name*."""
    return STORE_KEY_PREFIX + name


_span_key: str | None = None


def span_key() -> str:
    """Return the context key OpenTelemetry keeps the current span under (loads its trace API)."""
    global _span_key  # noqa: PLW0603 - resolved once
    if _span_key is None:
        from opentelemetry.trace.propagation import _SPAN_KEY  # noqa: PLC0415 - with a span only

        _span_key = _SPAN_KEY
    return _span_key


def span_in(context: Context) -> Any:
    """Return the span in *context*, or None, without importing opentelemetry.trace.

    Until something imports opentelemetry.trace no context can hold a span;
    once it has, its (randomly named) span key is read from it once.
    """
    global _span_key  # noqa: PLW0603 - resolved once, read on every call
    key = _span_key
    if key is None:
        module = sys.modules.get("opentelemetry.trace.propagation")
        key = getattr(module, "_SPAN_KEY", None)
        if key is None:
            return None
        _span_key = key
    return context.get(key)


async def await_within(manager: AbstractContextManager[Any], awaitable: Awaitable[T]) -> T:
    """Await *awaitable* inside *manager* (a scope or a snapshot), entered around the await.

    A coroutine's body runs when it is awaited, in the awaiting task's
    context, so the manager must be entered there, not where it was made.
    """
    with manager:
        return await awaitable
