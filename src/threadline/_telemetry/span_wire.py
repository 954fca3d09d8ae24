"""What crosses the pipe between the application and its export process, both ways.

Each message is a frame: its length (`FRAME_HEADER`, 8 bytes, network
order), then a pickle of ``(kind, body)``: ``("spans", flatten(batch))`` or
``("flush", timeout_millis)``. The export process says `READY` once, when its
exporters are made (or one line saying why they could not be), then answers
each frame with one line: `OK`, or anything else for a failure. Spans cross as
plain tuples (`flatten`) and become SDK `ReadableSpan` objects again on the
other side (`rebuild`), field for field: what an exporter reads of them, all
of it. Pickle is safe here only because both ends are the same application,
over a private pipe.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Sequence
from typing import Any, BinaryIO

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from .._wire.carrier import ParsedTraceState

__all__ = ["FRAME_HEADER", "OK", "READY", "Flat", "flatten", "frame", "read_frame", "rebuild"]

FRAME_HEADER = struct.Struct("!Q")
"""The length of the pickle that follows."""
OK = b"ok\n"
"""The answer to a frame whose spans every exporter took (or whose flush every exporter did)."""
READY = b"ready\n"
"""The export process's first line: its exporters are made."""

Flat = tuple[list[Any], list[Any], list[tuple[Any, ...]]]
"""Spans as `flatten` returns them: ``(resources, scopes, records)``."""


def frame(kind: str, body: Any) -> bytes:
    """The frame of the message ``(kind, body)``."""
    data = pickle.dumps((kind, body), protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_HEADER.pack(len(data)) + data


def read_frame(stream: BinaryIO) -> tuple[str, Any] | None:
    """The next message in *stream*; None when the other end closed it."""
    header = stream.read(FRAME_HEADER.size)
    if len(header) < FRAME_HEADER.size:
        return None
    payload = stream.read(FRAME_HEADER.unpack(header)[0])
    kind, body = pickle.loads(payload)  # noqa: S301 - our own application, over a private pipe
    return kind, body


def flatten(spans: Sequence[ReadableSpan]) -> Flat:
    """Return *spans* as plain tuples: ``(resources, scopes, records)``, what `rebuild` takes."""
    resources: dict[int, int] = {}
    scopes: dict[int, int] = {}
    resource_list: list[Any] = []
    scope_list: list[Any] = []
    records = []
    for span in spans:
        resource = span.resource
        where = resources.get(id(resource))
        if where is None:
            where = resources[id(resource)] = len(resource_list)
            resource_list.append((dict(resource.attributes), resource.schema_url))
        scope = span.instrumentation_scope
        which = scopes.get(id(scope))
        if which is None:
            which = scopes[id(scope)] = len(scope_list)
            scope_list.append(_scope_tuple(scope))
        context, parent, status = span.context, span.parent, span.status
        records.append(
            (
                span.name,
                _context_tuple(context),
                _context_tuple(parent) if parent is not None else None,
                span.kind.value,
                span.start_time,
                span.end_time,
                dict(span.attributes) if span.attributes else None,
                span.dropped_attributes,
                tuple(
                    (e.name, e.timestamp, _plain(e.attributes), _dropped(e)) for e in span.events
                ),
                span.dropped_events,
                tuple(
                    (_context_tuple(k.context), _plain(k.attributes), _dropped(k))
                    for k in span.links
                ),
                span.dropped_links,
                status.status_code.value,
                status.description,
                where,
                which,
            )
        )
    return resource_list, scope_list, records


def _context_tuple(context: SpanContext | None) -> tuple[Any, ...] | None:
    if context is None:
        return None
    members = tuple(context.trace_state.items()) if context.trace_state else ()
    return context.trace_id, context.span_id, context.is_remote, int(context.trace_flags), members


def _scope_tuple(scope: InstrumentationScope | None) -> tuple[Any, ...] | None:
    if scope is None:
        return None
    attributes = getattr(scope, "attributes", None)
    return scope.name, scope.version, scope.schema_url, _plain(attributes)


def _plain(attributes: Any) -> dict[str, Any] | None:
    return dict(attributes) if attributes else None


def _dropped(event_or_link: Any) -> int:
    return int(getattr(event_or_link, "dropped_attributes", 0) or 0)


def rebuild(flat: Flat) -> list[ReadableSpan]:
    """Return the SDK spans `flatten` flattened (what an exporter reads of them, all of it)."""
    resource_list, scope_list, records = flat
    resources = [Resource(attributes, schema_url) for attributes, schema_url in resource_list]
    scopes = [_scope(item) for item in scope_list]
    spans = []
    for (
        name,
        context,
        parent,
        kind,
        start_time,
        end_time,
        attributes,
        dropped_attributes,
        events,
        dropped_events,
        links,
        dropped_links,
        status_code,
        description,
        where,
        which,
    ) in records:
        span = ReadableSpan(
            name,
            context=_span_context(context),
            parent=_span_context(parent),
            resource=resources[where],
            attributes=attributes,
            events=_counted(
                [
                    Event(event, _with_dropped(attrs, dropped), timestamp)
                    for event, timestamp, attrs, dropped in events
                ],
                dropped_events,
            ),
            links=_counted(
                [
                    Link(_span_context(link), _with_dropped(attrs, dropped))
                    for link, attrs, dropped in links
                ],
                dropped_links,
            ),
            kind=SpanKind(kind),
            status=Status(StatusCode(status_code), description),
            start_time=start_time,
            end_time=end_time,
            instrumentation_scope=scopes[which],
        )
        if dropped_attributes:
            span._attributes = _with_dropped(attributes, dropped_attributes)  # what it reads
        spans.append(span)
    return spans


def _span_context(flat: tuple[Any, ...] | None) -> Any:
    if flat is None:
        return None
    trace_id, span_id, is_remote, flags, members = flat
    return SpanContext(
        trace_id,
        span_id,
        is_remote,
        TraceFlags(flags),
        ParsedTraceState(members) if members else None,
    )


def _scope(flat: tuple[Any, ...] | None) -> InstrumentationScope | None:
    if flat is None:
        return None
    name, version, schema_url, attributes = flat
    try:
        return InstrumentationScope(name, version, schema_url, attributes)
    except TypeError:  # an SDK from before scope attributes
        return InstrumentationScope(name, version, schema_url)


def _counted(items: list[Any], dropped: int) -> Any:
    if not dropped:
        return items
    bounded = BoundedList.from_seq(len(items), items)
    bounded.dropped = dropped
    return bounded


def _with_dropped(attributes: dict[str, Any] | None, dropped: int) -> Any:
    """*attributes*, as the SDK keeps them when *dropped* others did not fit."""
    if not dropped:
        return attributes
    from opentelemetry.attributes import BoundedAttributes  # noqa: PLC0415 - rarely needed

    bounded = BoundedAttributes(attributes=attributes, immutable=True)
    bounded.dropped = dropped
    return bounded
