"""Which formats carry the context to a program that may not be threadline (HTTP, the environment).

Nothing configured: threadline's carrier, W3C Trace Context and W3C Baggage
with the stores inside. ``OTEL_PROPAGATORS`` (or ``set_global_textmap``)
configured: exactly those formats. ``tracecontext`` and ``baggage`` are still
written and read by threadline's strict codec (``baggage`` with the stores);
any other propagator (b3, jaeger, …) by itself, beside them. Without
``baggage`` the stores cannot travel: that is said once, as a warning.
Process-pool IPC always uses threadline's carrier: both ends are threadline.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from opentelemetry.propagators.textmap import Getter, Setter, TextMapPropagator

from .._core.context import Context
from .carrier import (
    BAGGAGE,
    TRACEPARENT,
    TRACESTATE,
    extract_context,
    inject_context,
    inject_without_failing,
)

__all__ = ["DEFAULT", "Formats", "configured_formats", "extract_formats", "inject_formats"]

_logger = logging.getLogger("threadline")


class Formats(NamedTuple):
    """The formats in use: W3C trace fields, W3C baggage (with the stores), other propagators."""

    trace: bool
    baggage: bool
    others: tuple[TextMapPropagator, ...] = ()

    def fields(self) -> set[str]:
        """Every carrier field these formats write."""
        names = {TRACEPARENT, TRACESTATE} if self.trace else set()
        if self.baggage:
            names.add(BAGGAGE)
        for propagator in self.others:
            names.update(propagator.fields)
        return names


DEFAULT = Formats(trace=True, baggage=True)
_last: tuple[object, Formats] | None = None


def configured_formats() -> Formats:
    """Return the formats the application configured; `DEFAULT` when it configured none.

    ``opentelemetry.propagate`` is only consulted once something loaded it or
    ``OTEL_PROPAGATORS`` is set, so a process pays nothing for it otherwise.
    """
    global _last  # noqa: PLW0603 - a one-entry cache keyed by the global propagator
    if "opentelemetry.propagate" not in sys.modules and not _propagators_named():
        return DEFAULT
    propagator = _global_textmap()()
    last = _last
    if last is not None and last[0] is propagator:
        return last[1]
    formats = _formats_of(propagator)
    if not formats.baggage:  # said once for each configuration
        _logger.warning(
            "the configured propagators (OTEL_PROPAGATORS) carry no W3C baggage: "
            "threadline's store values (request id, user id, ...) do not cross HTTP "
            "or the environment; add 'baggage' to OTEL_PROPAGATORS to carry them"
        )
    _last = (propagator, formats)
    return formats


@functools.cache
def _global_textmap() -> Callable[[], TextMapPropagator]:
    # an import statement per call costs 0.9 µs (per request) even once the module is loaded
    from opentelemetry.propagate import get_global_textmap  # noqa: PLC0415 - see above

    return get_global_textmap


@functools.cache
def _propagators_named() -> bool:
    # Read once, as OpenTelemetry reads it (when opentelemetry.propagate loads).
    if not os.environ.get("OTEL_PROPAGATORS"):  # (without loading the settings: ~3 ms)
        return False
    from .._core.settings import read_settings  # noqa: PLC0415

    return read_settings().propagators_set


def _formats_of(propagator: TextMapPropagator) -> Formats:
    from opentelemetry.baggage.propagation import W3CBaggagePropagator  # noqa: PLC0415
    from opentelemetry.propagators.composite import CompositePropagator  # noqa: PLC0415
    from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
        TraceContextTextMapPropagator,
    )

    from .textmap import ThreadlinePropagator  # noqa: PLC0415

    parts: Sequence[TextMapPropagator] = [propagator]
    if isinstance(propagator, CompositePropagator):
        parts = getattr(propagator, "_propagators", parts)
    trace = baggage = False
    others: list[TextMapPropagator] = []
    for part in parts:
        if isinstance(part, ThreadlinePropagator):
            trace = baggage = True
        elif isinstance(part, TraceContextTextMapPropagator):
            trace = True
        elif isinstance(part, W3CBaggagePropagator):
            baggage = True
        else:
            others.append(part)
    formats = Formats(trace, baggage, tuple(others))
    return DEFAULT if formats == DEFAULT else formats


def inject_formats(
    carrier: Any,
    setter: Setter[Any],
    context: Context,
    formats: Formats,
    *,
    with_baggage: bool = True,
    strict: bool = False,
) -> None:
    """Write *context* into *carrier* in *formats*.

    *with_baggage* False keeps the baggage (and the stores) back, for a host
    that may not have them; the trace fields of every format still go.
    *strict*: a store value that cannot cross raises the `TypeError` (or the
    `ValueError`) of `threadline.inject`, before anything is written;
    otherwise the context goes without its baggage, counted.
    """

    def set_field(field: str, value: str) -> None:
        if (field == BAGGAGE and formats.baggage) or (field != BAGGAGE and formats.trace):
            setter.set(carrier, field, value)

    if not (with_baggage and formats.baggage):
        inject_context(set_field, context, with_baggage=False)
    elif strict:
        inject_context(set_field, context)
    else:
        inject_without_failing(set_field, context)
    for propagator in formats.others:
        propagator.inject(carrier, context, setter)


def extract_formats(
    carrier: Any,
    getter: Getter[Any],
    formats: Formats,
    context: Context | None = None,
    *,
    with_baggage: bool = True,
) -> Context:
    """Return the context *carrier* brought in *formats*, on *context* (default: empty).

    Never raises for what came; threadline's fields are parsed strictly, the
    other propagators' by themselves. *with_baggage* False reads no baggage.
    """
    if formats is DEFAULT and with_baggage:  # every field wanted (a getter's None is "none")
        get_all = functools.partial(getter.get, carrier)
        return extract_context(get_all, context)  # type: ignore[arg-type]
    wanted = {TRACEPARENT, TRACESTATE} if formats.trace else set()
    if with_baggage and formats.baggage:
        wanted.add(BAGGAGE)

    def get(field: str) -> Sequence[str]:
        return (getter.get(carrier, field) or ()) if field in wanted else ()

    ctx = extract_context(get, context)
    for propagator in formats.others:
        ctx = propagator.extract(carrier, ctx, getter)
    return ctx
