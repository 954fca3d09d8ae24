"""Boundary spans: the one place a hand-off's span starts, at no cost unless one records."""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .._core.context import Context, attach, get_current, restore, span_in, span_key

if TYPE_CHECKING:
    from opentelemetry.trace import Link, Span, SpanKind, Tracer

__all__ = [
    "BOUNDARY_ATTRIBUTE",
    "call_as_job",
    "call_in_span",
    "callable_name",
    "current_trace_ids",
    "is_recording",
    "job_span",
    "provider_set",
    "record_error",
    "start_boundary_span",
    "tracer",
]

T = TypeVar("T")
INSTRUMENTATION_NAME = "threadline"
BOUNDARY_ATTRIBUTE = "threadline.boundary"
"""The attribute every boundary span has: which boundary it crosses (``thread``, ``process``, …)."""


def is_recording(context: Context | None = None) -> bool:
    """Return True if a child of the span in *context* (default: the current one) would be recorded.

    That is: that span records, or it is a sampled remote parent (the context
    came from another process) and a tracer provider is set. The one rule
    every boundary asks, in this process or on the far side of one.
    """
    span: Span | None = span_in(get_current() if context is None else context)
    if span is None:
        return False
    if span.is_recording():
        return True
    span_context = span.get_span_context()
    return span_context.is_remote and span_context.trace_flags.sampled and provider_set()


_provider_seen = False
_UNKNOWN = object()


def provider_set() -> bool:
    """Return True once the application has set a tracer provider (or named one to load)."""
    # A tracer provider can be set once only: once one is there, it stays. Until
    # then this runs per request on a server without tracing, so it reads the API
    # module's global rather than calling get_tracer_provider(), which looks the
    # environment up each time (OTEL_PYTHON_TRACER_PROVIDER is read once: the
    # API loads that provider on the first call and keeps it).
    global _provider_seen  # noqa: PLW0603 - flips once, from False to True
    if _provider_seen:
        return True
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:  # nothing loaded the tracing API: nothing can have set a provider
        return False
    if getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None and not _provider_named():
        return False  # (an API without that global is asked below)
    _provider_seen = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return _provider_seen


@functools.cache
def _provider_named() -> bool:
    from .._core.settings import read_settings  # noqa: PLC0415 - rarely needed, not free to import

    return read_settings().tracer_provider_named


_last_ids: tuple[object, tuple[str, str]] | None = None
"""The span context `current_trace_ids` formatted last, with its ids (one entry, any thread)."""


def current_trace_ids(context: Context | None = None) -> tuple[str, str] | None:
    """Return the current ``(trace_id, span_id)`` in lower-case hex; None without a valid span.

    With *context*, the ids of the span current there.
    """
    global _last_ids  # noqa: PLW0603 - replaced whole, so any thread reads a consistent pair
    span: Span | None = span_in(get_current() if context is None else context)
    if span is None:
        return None
    span_context = span.get_span_context()
    last = _last_ids
    if last is not None and last[0] is span_context:
        return last[1]  # every line of one span: formatting 128 bits costs more than the rest
    if not span_context.is_valid:
        return None
    ids = f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"
    _last_ids = (span_context, ids)
    return ids


def callable_name(fn: Callable[..., Any]) -> str:
    """Return a readable, low-cardinality name for *fn* (partials show their function)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__


def start_boundary_span(
    boundary: str,
    name: str,
    *,
    kind: SpanKind | None = None,
    attributes: Mapping[str, Any] | None = None,
    context: Context | None = None,
    links: Sequence[Link] | None = None,
    start_time: int | None = None,
) -> Span:
    """Start the span of one hand-off across *boundary*; every boundary span starts here.

    The span is named *name*, is a child of the span in *context* (default:
    the current one), and has `BOUNDARY_ATTRIBUTE` and *attributes*, all
    given at the start so that samplers see them; so are the store values
    that each `StoreSpanProcessor` of the tracer's provider copies (that
    processor then leaves the span as it is). It is not made current.
    *start_time* (nanoseconds since the epoch) dates a span made after the
    fact, for work whose own process could not report it.
    """
    span_attributes: dict[str, Any] = (
        {BOUNDARY_ATTRIBUTE: boundary, **attributes}
        if attributes
        else {BOUNDARY_ATTRIBUTE: boundary}
    )
    if kind is None:
        from opentelemetry.trace import SpanKind  # noqa: PLC0415 - loaded with any span

        kind = SpanKind.INTERNAL
    parent = get_current() if context is None else context
    spans = tracer()
    fillers = _fillers_of(spans)
    if not fillers:
        return spans.start_span(name, parent, kind, span_attributes, links, start_time=start_time)
    # The store's attributes given at the start, as each processor would set them after
    # it (in its order, over the boundary's): one pass of the SDK's cleaning, not two.
    for processor in fillers:
        span_attributes.update(processor._start_attributes(parent))
    _starting.span = (parent, fillers)
    try:
        return spans.start_span(name, parent, kind, span_attributes, links, start_time=start_time)
    finally:
        _starting.span = None


class _Starting(threading.local):
    span: tuple[Context, tuple[Any, ...]] | None = None
    """The context a span is being started in, and the processors whose attributes it has."""


_starting = _Starting()
_fillers: tuple[object, tuple[Any, ...]] = ((), ())
"""The last tracer's processors seen, and those among them that fill a boundary span."""


def filled_at_start(processor: object, parent_context: Context | None) -> bool:
    """Return True if the span now starting in *parent_context* has *processor*'s attributes.

    For a processor's ``on_start``: `start_boundary_span` gave them at the start.
    """
    starting = _starting.span
    return starting is not None and starting[0] is parent_context and processor in starting[1]


def _fillers_of(spans: Tracer) -> tuple[Any, ...]:
    # The SDK tracer's processors (a tuple, replaced whole when one is added): those whose
    # on_start is a store processor's own (`_fills_boundary_spans`), not a subclass's override.
    global _fillers  # noqa: PLW0603 - replaced whole: any thread reads a consistent pair
    processors = getattr(getattr(spans, "span_processor", None), "_span_processors", ())
    seen = _fillers
    if seen[0] is processors:
        return seen[1]
    found = tuple(
        processor
        for processor in processors
        if getattr(type(processor), "_fills_boundary_spans", None) is type(processor).on_start
    )
    _fillers = (processors, found)
    return found


def job_span(boundary: str, name: str) -> Span:
    """Start the span ``"{boundary} {name}"`` of a job (a function run on the far side)."""
    return start_boundary_span(
        boundary, f"{boundary} {name}", attributes={"code.function.name": name}
    )


def call_in_span(span: Span, fn: Callable[..., T], args: Any, kwargs: Mapping[str, Any]) -> T:
    """Call ``fn(*args, **kwargs)`` with *span* current; end it, failed if *fn* raised.

    An exception fails the span; a way out that is no error (``SystemExit``,
    ``KeyboardInterrupt``, ``GeneratorExit``) ends it as it is.
    """
    context = get_current()
    token = attach(Context({**context, span_key(): span}))  # what use_span does, less its layers
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        record_error(span, exc)
        raise
    finally:
        restore(token)
        span.end()


def call_as_job(
    boundary: str,
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    name: str | None = None,
) -> T:
    """Call ``fn(*args, **kwargs)``, under a child span ``"{boundary} {name}"`` when recording.

    *name* defaults to the name of *fn*.
    """
    if not is_recording():
        return fn(*args, **kwargs)
    return call_in_span(job_span(boundary, name or callable_name(fn)), fn, args, kwargs)


_tracer: Tracer | None = None


def tracer() -> Tracer:
    """Return threadline's tracer (a proxy until the application sets a provider)."""
    global _tracer  # noqa: PLW0603 - made once, on first use
    if _tracer is not None:
        return _tracer
    from opentelemetry import trace  # noqa: PLC0415 - only once a span records

    made = trace.get_tracer(INSTRUMENTATION_NAME)
    if provider_set():  # kept only once it is the provider's own, not a proxy to it
        _tracer = made
    return made


def record_error(span: Span, error: BaseException) -> None:
    """Mark *span* failed by *error*: ``error.type``, the exception, an ERROR status.

    The exception is an event on the span, or a log record in the span's
    trace where ``OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN`` is ``logs`` (both
    for ``logs/dup``), as the semantic conventions for exceptions say.
    """
    from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415 - loaded with the span

    from .._core.settings import read_settings  # noqa: PLC0415 - on failures only

    signal = read_settings().exception_signal
    span.set_attribute("error.type", type(error).__qualname__)
    if signal != "logs":
        span.record_exception(error)
    if signal != "spans":
        from .logs import emit_exception  # noqa: PLC0415 - loads the logs SDK, on opt-in only

        emit_exception(span, error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
