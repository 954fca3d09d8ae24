"""Beside OpenTelemetry's own instrumentations: one operation is one span, decided here once.

Every boundary that makes a span for an operation (a request served or sent,
a message published or processed) asks `plan_span`: continue the span another
instrumentation already made, stand aside when another instrumentation makes
it next, or make threadline's own when a child of the context would record.
Adapters only say what they can see of their framework (whether OpenTelemetry's
middleware or receiver comes next) through `is_contrib`.
"""

from __future__ import annotations

import inspect
import sys
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from .._core.context import Context, span_in
from .._telemetry.spans import INSTRUMENTATION_NAME, is_recording, provider_set

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = [
    "CONTRIB",
    "SpanPlan",
    "contrib_after",
    "contrib_loaded",
    "contrib_method",
    "foreign_span",
    "is_contrib",
    "plan_span",
]

CONTRIB = {
    "aiohttp.server": "opentelemetry.instrumentation.aiohttp_server",
    "aiohttp.client": "opentelemetry.instrumentation.aiohttp_client",
    "asgi": "opentelemetry.instrumentation.asgi",
    "django": "opentelemetry.instrumentation.django",
    "httpx": "opentelemetry.instrumentation.httpx",
    "requests": "opentelemetry.instrumentation.requests",
    "celery": "opentelemetry.instrumentation.celery",
    "kafka": "opentelemetry.instrumentation.kafka",
    "aiokafka": "opentelemetry.instrumentation.aiokafka",
    "confluent_kafka": "opentelemetry.instrumentation.confluent_kafka",
    "aio_pika": "opentelemetry.instrumentation.aio_pika",
}
"""OpenTelemetry's instrumentation module of each integration, by threadline's name for it."""


class SpanPlan(NamedTuple):
    """What a boundary does about the span of one operation.

    Attributes:
        continued: another instrumentation's span that stands for the
            operation (threadline adds its attributes to it), or None.
        own: whether threadline makes the operation's span itself.
    """

    continued: Span | None
    own: bool


_NOTHING = SpanPlan(None, False)
_OWN = SpanPlan(None, True)


def plan_span(
    kind: str,
    context: Context,
    spans: bool = True,
    other_makes_it: bool = False,
    root: bool = False,
    *,
    parent: Context | None = None,
) -> SpanPlan:
    """Decide the span of one operation of *kind* (``SERVER``, ``CLIENT``, ``PRODUCER``, ...).

    Another instrumentation's recording span of that kind, current in
    *context*, is continued. Otherwise, when *other_makes_it* (its middleware
    or receiver comes next) or spans are off, threadline makes none. Otherwise
    it makes its own when a child of *parent* (default: *context*) would be
    recorded, or, with *root* (a request that may begin a trace), whenever a
    tracer provider is set. A *parent* apart from *context* is the context a
    message brought, where another instrumentation's span is current here.
    """
    foreign = foreign_span(context, kind)
    if foreign is not None:
        return SpanPlan(foreign, False)
    if other_makes_it or not spans:
        return _NOTHING
    recording = provider_set() if root else is_recording(context if parent is None else parent)
    return _OWN if recording else _NOTHING


def foreign_span(context: Context, kind: str) -> Span | None:
    """Another instrumentation's recording span of *kind* current in *context*, or None."""
    span: Span | None = span_in(context)
    if span is None or not span.is_recording():
        return None
    span_kind = getattr(span, "kind", None)  # an SDK span's
    if span_kind is None or span_kind.name != kind:
        return None
    scope = getattr(getattr(span, "instrumentation_scope", None), "name", None)
    return None if scope == INSTRUMENTATION_NAME else span


def contrib_loaded(integration: str) -> bool:
    """Whether OpenTelemetry's instrumentation of *integration* (a `CONTRIB` key) is imported."""
    return CONTRIB[integration] in sys.modules


def is_contrib(obj: object, integration: str) -> bool:
    """Whether *obj* (a middleware, a receiver, a config) is OpenTelemetry's for *integration*."""
    return str(getattr(obj, "__module__", None) or "").startswith(CONTRIB[integration])


def contrib_after(ours: object, receivers: Iterable[object], integration: str) -> bool:
    """Whether OpenTelemetry's receiver for *integration* comes after *ours* in *receivers*.

    *receivers* are a framework's callbacks in calling order, each maybe a
    weak reference. OpenTelemetry's receivers make the operation's span and
    build the context afresh, so threadline's must run after them to continue
    that span and put the stores on it: an adapter that finds its receiver
    first moves it behind, and leaves this operation's span to them.
    """
    if CONTRIB[integration] not in sys.modules:  # no receiver of its can exist
        return False
    found = False
    for receiver in receivers:
        target = receiver() if isinstance(receiver, weakref.ReferenceType) else receiver
        if target is ours:
            found = True
        elif found and is_contrib(target, integration):
            return True
    return False


def contrib_method(
    owner: type, name: str, integration: str
) -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    """OpenTelemetry's wrapper of method *name* of *owner*, and the method it wraps, or None.

    OpenTelemetry's instrumentations wrap a client's class methods (with
    ``wrapt``) as ``wrapper(wrapped, instance, args, kwargs)``. An adapter that
    wraps one instance calls that wrapper with its own function as
    ``wrapped``, so that OpenTelemetry's span (current there) is continued
    rather than doubled; or calls the method it wraps, to pass a span by.

    Asked at every call (an instrumentation enabled later is found), it costs
    a dictionary lookup while that instrumentation is not imported: no wrapper
    of its can exist then.
    """
    if CONTRIB[integration] not in sys.modules:
        return None
    method = inspect.getattr_static(owner, name, None)
    wrapper = getattr(method, "_self_wrapper", None)
    wrapped = getattr(method, "__wrapped__", None)
    if wrapper is None or wrapped is None or not is_contrib(wrapper, integration):
        return None
    return wrapper, wrapped
