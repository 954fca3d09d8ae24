"""The implementation of `threadline.propagation.ThreadlinePropagator`."""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)

from .carrier import FIELDS, extract_context, inject_without_failing

__all__ = ["ThreadlinePropagator"]


class ThreadlinePropagator(TextMapPropagator):
    """W3C traceparent, tracestate and baggage, with every store's values in the baggage.

    As OpenTelemetry asks of propagators, it never raises: a context whose
    baggage cannot be encoded (a store value that is not JSON-typed, or over
    the limits) is sent without baggage, and the drop is counted as
    ``baggage.outbound_invalid``. Use `threadline.inject` to get the error instead.
    """

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        """Return *context* (default: an empty one) with what *carrier* brought."""
        return extract_context(lambda field: getter.get(carrier, field) or (), context)

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        """Write *context* (default: the current one) into *carrier*."""
        inject_without_failing(lambda field, value: setter.set(carrier, field, value), context)

    @property
    def fields(self) -> set[str]:
        """The carrier fields this propagator sets."""
        return set(FIELDS)
