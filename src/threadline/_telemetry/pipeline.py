"""The SDK set-up from ``OTEL_*`` (spans; logs and metrics when asked), store values on spans."""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence, Sized
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from .._core.context import get_current
from .._core.drops import record_drop
from .._core.settings import (
    CONFIGURED_ENV,
    LOG_ATTRIBUTES_ENV,
    METRIC_ATTRIBUTES_ENV,
    SERVICE_NAME_ENV,
    SPAN_ATTRIBUTES_ENV,
    TRACES_FILE_ENV,
    Settings,
    attribute_map_text,
    mark_configured,
    read_settings,
    valid_seconds,
)
from .._core.stores import ContextStore, request
from .alongside import Alongside
from .attributes import REQUEST_ATTRIBUTES, attribute_map, chosen_attributes
from .export_pipe import PipeSpanExporter, flush_deadline
from .exporters import configured_exporters, traces_file
from .spans import filled_at_start

__all__ = ["REQUEST_ATTRIBUTES", "StoreSpanProcessor", "configure", "shutdown"]

_logger = logging.getLogger("threadline")


_SCALARS = frozenset((str, int, float, bool))


class StoreSpanProcessor(SpanProcessor):
    """Copy chosen store values onto every span started in their scope.

    Add it to a `TracerProvider` and spans from any instrumentation carry the
    request's ids. By default it copies `REQUEST_ATTRIBUTES` from
    `threadline.request`; for another store, pass ``attributes`` (store key
    to attribute name) or leave it None to copy every key as ``"{store}.{key}"``.
    threadline's own spans (server, client, jobs, messages) are given these
    attributes at their start, so that samplers see them too.

    .. versionadded:: 0.1
    """

    def __init__(
        self, store: ContextStore = request, attributes: Mapping[str, str] | None = None
    ) -> None:
        if not isinstance(store, ContextStore):
            raise TypeError(f"StoreSpanProcessor needs a ContextStore, got {store!r}")
        if attributes is None and store is request:
            attributes = REQUEST_ATTRIBUTES
        self._store = store
        self._attributes = attribute_map("attributes", attributes)
        self._last: tuple[object, tuple[tuple[str, Any], ...]] | None = None
        """The last store value copied, and its pairs (replaced whole: any thread reads a pair)."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Set the attributes from the store value current where the span starts."""
        if filled_at_start(self, parent_context):  # threadline's own span: given at its start
            return
        pairs = self._start_attributes(parent_context)
        if len(pairs) == 1:
            span.set_attribute(*pairs[0])
        elif pairs:  # one call: an SDK span takes its lock once
            span.set_attributes(dict(pairs))

    _fills_boundary_spans = on_start
    """Boundary spans start with `_start_attributes`; this ``on_start`` then skips them."""

    def _start_attributes(self, parent_context: Context | None) -> Sequence[tuple[str, Any]]:
        """The ``(name, value)`` pairs a span started in *parent_context* gets from the store."""
        values = self._store.get(parent_context if parent_context is not None else get_current())
        if not values:  # outside any scope: nothing to copy
            return ()
        last = self._last
        if last is not None and last[0] is values:  # every span of one scope: chosen once
            return last[1]
        pairs = tuple(chosen_attributes(values, self._attributes, self._store.name))
        # a store value is immutable, but an object in it may not be: kept for scalars only
        for value in values.values():
            if type(value) not in _SCALARS:
                return pairs
        self._last = (values, pairs)
        return pairs

    def on_end(self, span: ReadableSpan) -> None:
        """Do nothing: the attributes were set at start."""

    def shutdown(self) -> None:
        """Do nothing: the processor holds no resources."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Return True: nothing is buffered."""
        return True


def configure(
    *,
    service_name: str | None = None,
    shutdown_timeout: float | None = None,
    export_process: bool | None = None,
    span_attributes: Mapping[str, str] | None = None,
    log_attributes: Mapping[str, str] | None = None,
    metric_attributes: Mapping[str, str] | None = None,
) -> TracerProvider | None:
    """Set up the OpenTelemetry SDK from the standard ``OTEL_*`` settings, once per process.

    - ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` name the service
      (*service_name* is the default when neither does);
    - ``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG`` choose the sampler;
    - ``OTEL_TRACES_EXPORTER``: any name of an installed
      ``opentelemetry_traces_exporter`` entry point (``console``,
      ``otlp_proto_http``, plug-ins), as OpenTelemetry's auto-configuration
      reads it, plus ``otlp``, ``file`` and ``none`` (comma-separated for
      several). Without it: ``otlp`` when an OTLP endpoint is set, otherwise
      ``file``, the embedded default, which needs no server: OTLP JSON lines
      in ``THREADLINE_TRACES_FILE`` (default ``./threadline-traces.jsonl``);
    - ``otlp`` picks its protocol from ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``,
      then ``OTEL_EXPORTER_OTLP_PROTOCOL``: ``http/protobuf`` (the default) or
      ``grpc`` (with ``threadline[grpc]``). The other ``OTEL_EXPORTER_OTLP_*``
      settings are read by OpenTelemetry's own exporters;
    - ``OTEL_BSP_*``: the batch processor's queue and batch sizes;
    - ``OTEL_SDK_DISABLED=true``: nothing is set up; returns None.

    *export_process* (default: ``THREADLINE_EXPORT_PROCESS=1``): the exporters
    run in a process of their own, fed by the batch processor; encoding spans
    (OTLP: about 43 µs each) then no longer takes the application's
    interpreter from its requests. Worker processes and children that
    threadline sets up export in-process.

    ``OTEL_LOGS_EXPORTER`` (``otlp``, ``console``, any installed
    ``opentelemetry_logs_exporter`` entry point; unset or ``none``: no logs
    pipeline) sets up OpenTelemetry's logs signal too: a global
    `LoggerProvider` exporting in batches (``otlp`` by
    ``OTEL_EXPORTER_OTLP_LOGS_PROTOCOL``, then ``OTEL_EXPORTER_OTLP_PROTOCOL``),
    and OpenTelemetry's logging handler on the root logger, so that every
    record of the standard library's ``logging`` is sent with its trace and
    span ids and the request's values. ``OTEL_METRICS_EXPORTER`` (``otlp``,
    ``console``, any installed ``opentelemetry_metrics_exporter`` entry
    point; unset or ``none``: no metrics pipeline) sets up the metrics
    signal alike: a global `MeterProvider` with a periodic reader per
    exporter (``otlp`` by ``OTEL_EXPORTER_OTLP_METRICS_PROTOCOL``, then
    ``OTEL_EXPORTER_OTLP_PROTOCOL``). A meter provider the application set
    already is left as it is.

    Spans get the `threadline.request` values (`StoreSpanProcessor`) chosen by
    *span_attributes* (store key to attribute name; default
    ``THREADLINE_SPAN_ATTRIBUTES``, else `REQUEST_ATTRIBUTES`), log records
    those chosen by *log_attributes* (default ``THREADLINE_LOG_ATTRIBUTES``,
    else the spans' choice), metric data points those chosen by
    *metric_attributes* (default ``THREADLINE_METRIC_ATTRIBUTES``, else none:
    a request id there makes a time series per request) through a
    `StoreMeterProvider`; the choice is handed to workers and children.
    At exit the spans, log records and data points still held are exported, waiting at
    most *shutdown_timeout* seconds (``THREADLINE_SHUTDOWN_TIMEOUT``, default
    5), so an unreachable Collector never holds the process. Worker processes and Python children
    that threadline starts configure themselves with the same settings,
    handed to them when they start; this process's ``os.environ`` is left as
    it is. If a tracer provider is set already, it is returned as it is.

    Every setting is read and checked before anything is set up. A setting
    that is not valid (``THREADLINE_SHUTDOWN_TIMEOUT=5s``, an exporter that
    is not installed, ``grpc`` without its package) is a warning on the
    ``threadline`` logger naming it, and its default serves: the set-up
    never fails, nor half-happens, over a setting.

    Raises:
        TypeError: an argument is not of its type (the message names it).
        ValueError: *service_name* is empty, *shutdown_timeout* is negative
            or not finite, or an attribute choice maps a key that is not a
            string, or holds ``,``, ``=`` or a control character. Raised
            before anything is set up.
    """
    _check_arguments(service_name, shutdown_timeout, export_process)
    _check_attributes("span_attributes", span_attributes)
    _check_attributes("log_attributes", log_attributes)
    _check_attributes("metric_attributes", metric_attributes)
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    settings = read_settings()
    if settings.sdk_disabled:
        return None
    made = configured_exporters(settings)  # a setting that is not valid is said here, never raised
    names = [name for name, exporter in made if exporter is not None]
    exporters = [exporter for _, exporter in made if exporter is not None]
    if exporters and (settings.export_process if export_process is None else export_process):
        # the export process makes the same exporters; these serve if it cannot start
        exporters = [PipeSpanExporter(names, exporters, traces_file(settings))]
    resource, named_here = _resource(service_name)
    spans_chosen = _chosen(span_attributes, settings.span_attributes, REQUEST_ATTRIBUTES)
    logs_chosen = _chosen(log_attributes, settings.log_attributes, spans_chosen)
    metrics_chosen = _chosen(metric_attributes, settings.metric_attributes, {})
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(StoreSpanProcessor(attributes=spans_chosen))
    processors = [_CountingBatchSpanProcessor(_CountingSpanExporter(e)) for e in exporters]
    for processor in processors:
        provider.add_span_processor(processor)
    _other_signals(provider, settings, resource, logs_chosen, metrics_chosen)
    timeout = settings.shutdown_timeout if shutdown_timeout is None else float(shutdown_timeout)
    trace.set_tracer_provider(provider)
    _exporting.extend(processors)
    atexit.register(shutdown, provider, timeout)
    # What workers and children need to set themselves up alike (never os.environ),
    # the file's absolute path included: all of them write the one file.
    marks = {CONFIGURED_ENV: "1"}
    if named_here and service_name is not None:
        marks[SERVICE_NAME_ENV] = service_name
    if "file" in names:
        marks[TRACES_FILE_ENV] = str(traces_file(settings))
    if span_attributes is not None:
        marks[SPAN_ATTRIBUTES_ENV] = attribute_map_text(span_attributes)
    if log_attributes is not None:
        marks[LOG_ATTRIBUTES_ENV] = attribute_map_text(log_attributes)
    if metric_attributes is not None:
        marks[METRIC_ATTRIBUTES_ENV] = attribute_map_text(metric_attributes)
    mark_configured(marks)
    return provider


def _check_arguments(
    service_name: object, shutdown_timeout: object, export_process: object
) -> None:
    """Raise for a wrong argument of `configure`, naming it: a programmer's mistake."""
    if service_name is not None:
        if not isinstance(service_name, str):
            raise TypeError(f"configure(service_name=...) takes a str, got {service_name!r}")
        if not service_name.strip():
            raise ValueError(f"configure(service_name={service_name!r}) names no service")
    if shutdown_timeout is not None:
        if isinstance(shutdown_timeout, bool) or not isinstance(shutdown_timeout, (int, float)):
            raise TypeError(
                "configure(shutdown_timeout=...) takes seconds as a number, "
                f"got {shutdown_timeout!r}"
            )
        if not valid_seconds(shutdown_timeout):
            raise ValueError(
                f"configure(shutdown_timeout={shutdown_timeout!r}): seconds must be finite "
                "and not negative"
            )
    if export_process is not None and not isinstance(export_process, bool):
        raise TypeError(f"configure(export_process=...) takes a bool, got {export_process!r}")


def _chosen(
    given: Mapping[str, str] | None,
    setting: tuple[tuple[str, str], ...] | None,
    default: Mapping[str, str],
) -> Mapping[str, str]:
    if given is not None:
        return dict(given)
    return dict(setting) if setting is not None else default


def _other_signals(
    provider: TracerProvider,
    settings: Settings,
    resource: Resource,
    logs_chosen: Mapping[str, str],
    metrics_chosen: Mapping[str, str],
) -> None:
    """Set up the logs and metrics pipelines the settings ask for, flushed with *provider*."""
    if settings.logs_exporters:
        from .logs import configure_logs  # noqa: PLC0415 - the logs SDK, when asked

        logger_provider = configure_logs(settings, resource, logs_chosen)
        if logger_provider is not None:  # flushed and shut down, within bounds, with the spans
            provider.add_span_processor(Alongside(logger_provider))
    if settings.metrics_exporters or metrics_chosen:
        from .metrics import configure_metrics  # noqa: PLC0415 - when asked

        if not settings.parent_configured:  # said once, by the process that chose it
            _warn_per_request(metrics_chosen)
        meter_provider = configure_metrics(settings, resource, metrics_chosen)
        if meter_provider is not None:
            provider.add_span_processor(Alongside(meter_provider))


def _warn_per_request(chosen: Mapping[str, str]) -> None:
    if "request_id" in chosen:
        _logger.warning(
            "metric attributes: request_id=%s puts each request's id on its data points, a "
            "time series per request; choose low-cardinality values (a tenant, a route)",
            chosen["request_id"],
        )


def _check_attributes(argument: str, attributes: object) -> None:
    """Raise for an attribute choice that is not store keys to attribute names, naming it."""
    checked = attribute_map(f"configure({argument}=...)", attributes)
    for key, name in (checked or {}).items():
        if not (key.strip() and name.strip()) or any(mark in key + name for mark in ",="):
            raise ValueError(
                f"configure({argument}=...): {key!r}: {name!r} is empty or holds ',' or '='"
            )
        if not (key + name).isprintable():
            raise ValueError(
                f"configure({argument}=...): {key!r}: {name!r} holds a control character"
            )


def shutdown(provider: TracerProvider, timeout: float) -> bool:
    """Export what *provider* still holds and shut it down, waiting at most *timeout* seconds.

    Returns False when time ran out; the spans still queued or in flight are
    then lost, counted as ``export.shutdown_timeout``, and the exporters stop
    retrying.
    """
    worker = threading.Thread(target=provider.shutdown, name="threadline-shutdown", daemon=True)
    try:
        worker.start()
    except RuntimeError:
        # CPython 3.12.0 and 3.12.1 refuse new threads at exit (gh-113964, fixed
        # in 3.12.2): shut down here, unbounded, rather than not at all.
        provider.shutdown()
        return True
    worker.join(timeout)
    if worker.is_alive():
        _abandon_exports("export.shutdown_timeout", timeout)
        return False
    return True


_exporting: list[_CountingBatchSpanProcessor] = []
"""The export processors `configure` added in this process (and so in its forks)."""


def _abandon_exports(reason: str, seconds: float) -> None:
    """Give up the exports in progress: count the spans they hold as lost, stop their retries.

    Called when an exit ran out of *seconds*. Spans held by processors that
    `configure` did not add are counted as one drop.
    """
    lost = sum(processor.abandon() for processor in _exporting)
    spans = {0: "spans", 1: "1 span"}.get(lost, f"{lost} spans")
    record_drop(reason, f"{spans} not exported within {seconds:g}s of exit", max(lost, 1))


def _resource(service_name: str | None) -> tuple[Resource, bool]:
    """The resource, and whether *service_name* named it (no setting did)."""
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, as the SDK reads them
    resource = Resource.create()
    named = str(resource.attributes.get(SERVICE_NAME, "unknown_service"))
    if not service_name or not named.startswith("unknown_service"):
        return resource, False
    return resource.merge(Resource({SERVICE_NAME: service_name})), True


class _CountingBatchSpanProcessor(BatchSpanProcessor):
    """A BatchSpanProcessor that counts the spans its full queue turns away.

    The queue is bounded (``OTEL_BSP_MAX_QUEUE_SIZE``), so memory is; a span
    that does not fit is dropped by the SDK. The count reads the SDK's queue
    where this version of it has one, and is skipped where it has not.
    """

    def __init__(self, exporter: _CountingSpanExporter) -> None:
        super().__init__(exporter)
        self._counting_exporter = exporter
        # Looked up once: on_end runs for every span. A fork clears the queue, never replaces it.
        processor = getattr(self, "_batch_processor", None)
        queue = getattr(processor, "_queue", None)
        limit = getattr(processor, "_max_queue_size", None)
        self._held: Sized | None = queue if isinstance(limit, int) else None
        self._limit = limit if isinstance(limit, int) else 0
        self._shut_down = False

    def on_end(self, span: ReadableSpan) -> None:
        """Queue the span, counting it as ``export.queue_full`` when there is no room."""
        held = self._held
        if held is not None and len(held) >= self._limit:
            record_drop("export.queue_full", f"the export queue holds {self._limit} spans already")
        super().on_end(span)

    def abandon(self) -> int:
        """Stop exporting (and retrying); return how many spans were queued or in flight."""
        return len(self._held or ()) + self._counting_exporter.abandon()

    def shutdown(self) -> None:
        """Export what is queued and stop; a flush after it has nothing left to do."""
        self._shut_down = True
        super().shutdown()  # type: ignore[no-untyped-call] # the SDK does not type it

    def force_flush(self, timeout_millis: int | None = None) -> bool:
        """Export what is queued; False when that took longer than *timeout_millis*.

        After `shutdown` (which exported what was queued) there is nothing to
        flush: True at once, and the shut exporter is not called again. (On
        Python 3.13 a worker's exit flush runs after the provider's shutdown.)

        The SDK's own flush ignores its timeout (opentelemetry-python#4568):
        here it runs in a thread the caller stops waiting for at the
        timeout, and the export process's exchanges end by then.
        """
        if self._shut_down:
            return True
        millis = 30000 if timeout_millis is None else timeout_millis
        deadline = time.monotonic() + millis / 1000
        flushed: list[bool] = []

        def flush() -> None:
            flush_deadline.set(deadline)
            flushed.append(BatchSpanProcessor.force_flush(self, millis))

        flushing = threading.Thread(target=flush, name="threadline-force-flush", daemon=True)
        try:
            flushing.start()
        except RuntimeError:  # no new thread at exit (CPython 3.12.0 and 3.12.1, gh-113964)
            flush()
            return flushed[0]
        flushing.join(max(0.0, deadline - time.monotonic()))
        return bool(flushed) and flushed[0]


class _CountingSpanExporter(SpanExporter):
    """An exporter that counts and reports the spans its exporter failed to deliver."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter
        self._in_flight = 0
        self._abandoned = False

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        if self._abandoned:  # counted already, by whoever abandoned the export
            return SpanExportResult.FAILURE
        self._in_flight += len(spans)
        try:
            result = self._exporter.export(spans)
        except Exception as exc:  # noqa: BLE001 - an exporter must never break the processor
            result = SpanExportResult.FAILURE
            failure = f"{type(exc).__name__}: {exc}"
            reported = False
        else:
            failure = f"{type(self._exporter).__name__} refused them"
            # one that says itself why (the file exporter: the path and the OS error)
            reported = getattr(self._exporter, "reports_failures", False) is True
        finally:
            self._in_flight -= len(spans)
        if result is not SpanExportResult.SUCCESS and not self._abandoned and not reported:
            record_drop("export.failed", failure, len(spans))
        return result

    def abandon(self) -> int:
        """Refuse further exports and interrupt the one in progress; return its span count.

        OpenTelemetry's OTLP exporters end their retry wait when shut down.
        """
        self._abandoned = True
        in_flight = self._in_flight
        with contextlib.suppress(Exception):  # an exporter's shutdown must not break an exit
            self._exporter.shutdown()
        return in_flight

    def shutdown(self) -> None:
        if not self._abandoned:
            self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)
