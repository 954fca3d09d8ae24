"""The logs signal: the pipeline ``OTEL_LOGS_EXPORTER`` asks for, store values on log records.

`configure_logs` sets up OpenTelemetry's `LoggerProvider` as the SDK's own
auto-configuration does (``opentelemetry_logs_exporter`` entry points,
``otlp`` by its protocol, a batch processor each) and hands the standard
library's records to it through OpenTelemetry's logging handler.
`StoreLogRecordProcessor` puts the request's store values on every log
record; `emit_exception` records an exception as a log record, for
``OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import traceback
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.resources import Resource

from .._core.context import get_current
from .._core.settings import DEFAULT_OTLP_PROTOCOL, OTEL_LOGS_EXPORTER, Settings, invalid_setting
from .._core.stores import ContextStore, request
from .attributes import REQUEST_ATTRIBUTES, attribute_map, attribute_value, chosen_attributes
from .exporters import load_plugin

if TYPE_CHECKING:
    from opentelemetry.trace import Span as APISpan

__all__ = [
    "StoreLogRecordProcessor",
    "configure_logs",
    "configured_log_exporters",
    "emit_exception",
]

_EXPORTER_GROUP = "opentelemetry_logs_exporter"
_OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
_INSTRUMENTATION_NAME = "threadline"


class StoreLogRecordProcessor(LogRecordProcessor):
    """Copy chosen store values onto every log record emitted in their scope.

    Add it to a `LoggerProvider` before its export processors. By default it
    copies `~threadline.tracing.REQUEST_ATTRIBUTES` from `threadline.request`
    (``request.id``, ``enduser.id``); for another store, pass ``attributes``
    (store key to attribute name) or leave it None to copy every key as
    ``"{store}.{key}"``. An attribute the record has already is kept. Values
    are escaped and limited as on spans.

    .. versionadded:: 0.2
    """

    def __init__(
        self, store: ContextStore = request, attributes: Mapping[str, str] | None = None
    ) -> None:
        if not isinstance(store, ContextStore):
            raise TypeError(f"StoreLogRecordProcessor needs a ContextStore, got {store!r}")
        if attributes is None and store is request:
            attributes = REQUEST_ATTRIBUTES
        self._store = store
        self._attributes = attribute_map("attributes", attributes)

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        """Set the attributes from the store value of the record's context (default: current)."""
        record = log_record.log_record
        context = getattr(record, "context", None)
        values = self._store.get(context if isinstance(context, Context) else get_current())
        pairs = chosen_attributes(values, self._attributes, self._store.name)
        if not pairs:
            return
        attributes = record.attributes
        if attributes is None or not hasattr(attributes, "__setitem__"):
            record.attributes = attributes = dict(attributes or {})
        for name, value in pairs:
            if name not in attributes:
                attributes[name] = value

    def emit(self, log_data: ReadWriteLogRecord) -> None:
        """The same as `on_emit`, by the name SDKs before 1.35 call."""
        self.on_emit(log_data)

    def shutdown(self) -> None:
        """Do nothing: the processor holds no resources."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Return True: nothing is buffered."""
        return True


def configured_log_exporters(settings: Settings) -> list[LogRecordExporter]:
    """Make the exporters ``OTEL_LOGS_EXPORTER`` names; empty when it names none.

    A name that cannot be made (not installed, its package missing) is said
    in a warning naming the setting, and its default serves: no logs
    pipeline. Never raises for a setting.
    """
    made: list[LogRecordExporter] = []
    try:
        for name in settings.logs_exporters:
            made.append(_log_exporter(name, settings))  # noqa: PERF401 - the ones made are shut on failure
    except ValueError as exc:
        for exporter in made:
            with contextlib.suppress(Exception):
                exporter.shutdown()  # type: ignore[no-untyped-call]
        setting = ",".join(settings.logs_exporters)
        invalid_setting(
            OTEL_LOGS_EXPORTER, setting, f"log exporter list ({exc})", "'none' (no logs pipeline)"
        )
        return []
    return made


def _log_exporter(name: str, settings: Settings) -> LogRecordExporter:
    if name == "otlp":  # as the SDK's own auto-configuration: its protocol picks the entry point
        name = _OTLP_BY_PROTOCOL.get(settings.otlp_logs_protocol, DEFAULT_OTLP_PROTOCOL)
    return load_plugin(
        _EXPORTER_GROUP,
        name,
        LogRecordExporter,  # type: ignore[type-abstract] # only checked with isinstance
        what="log record exporter",
        setting=OTEL_LOGS_EXPORTER,
        builtin=("none", "otlp"),
    )


def configure_logs(
    settings: Settings, resource: Resource, attributes: Mapping[str, str] | None = None
) -> LoggerProvider | None:
    """Set up the logs pipeline ``OTEL_LOGS_EXPORTER`` asks for; None when it asks for none.

    The provider is made global, gets a `StoreLogRecordProcessor` (with
    *attributes*, default ``request.id`` and ``enduser.id``), a batch
    processor per exporter, and OpenTelemetry's logging handler on the root
    logger (unless one is there). Its exit is the caller's to bound.
    """
    exporters = configured_log_exporters(settings)
    if not exporters:
        return None
    from opentelemetry._logs import set_logger_provider  # noqa: PLC0415 - only with a pipeline

    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_log_record_processor(StoreLogRecordProcessor(attributes=attributes))
    for exporter in exporters:
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    set_logger_provider(provider)
    _add_handler(provider)
    return provider


def _add_handler(provider: LoggerProvider) -> None:
    root = logging.getLogger()
    if any(type(handler).__name__ == "LoggingHandler" for handler in root.handlers):
        return  # opentelemetry-instrument's (or the application's) own
    try:
        from opentelemetry.instrumentation.logging.handler import (  # noqa: PLC0415
            LoggingHandler,
        )
    except ImportError:  # the SDK's own, deprecated in favour of the one above
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from opentelemetry.sdk._logs import LoggingHandler  # type: ignore[assignment]  # noqa: PLC0415

            handler: logging.Handler = LoggingHandler(logger_provider=provider)
    else:
        handler = LoggingHandler(logger_provider=provider)
    handler.addFilter(_OwnRecords())
    handler.threadline_signal = True  # type: ignore[attr-defined]  # not one the application set up
    root.addHandler(handler)


class _OwnRecords(logging.Filter):
    """Only records this process made: a worker's, handed on to its parent, were sent by it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.process in (None, os.getpid())


def emit_exception(span: APISpan, error: BaseException) -> None:
    """Record *error* as a log record in *span*'s trace: the semantic conventions' attributes.

    ``exception.type``, ``exception.message``, ``exception.stacktrace``, at
    ERROR severity, through the global logger provider (nothing happens
    without one).
    """
    from opentelemetry._logs import LogRecord, SeverityNumber, get_logger  # noqa: PLC0415
    from opentelemetry.trace import set_span_in_context  # noqa: PLC0415

    attributes: dict[str, Any] = {
        "exception.type": type(error).__qualname__,
        "exception.message": attribute_value(str(error)),
        "exception.stacktrace": "".join(traceback.format_exception(error)),
    }
    context = set_span_in_context(span, get_current())
    fields: dict[str, Any] = {
        "timestamp": time.time_ns(),
        "severity_number": SeverityNumber.ERROR,
        "severity_text": "ERROR",
        "body": attribute_value(f"{type(error).__name__}: {error}"),
        "attributes": attributes,
    }
    try:
        record = LogRecord(context=context, **fields)
    except TypeError:  # an API before 1.35: the ids themselves
        span_context = span.get_span_context()
        record = LogRecord(
            trace_id=span_context.trace_id,
            span_id=span_context.span_id,
            trace_flags=span_context.trace_flags,
            **fields,
        )
    get_logger(_INSTRUMENTATION_NAME).emit(record)
