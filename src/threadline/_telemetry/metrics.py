"""The metrics signal: the pipeline ``OTEL_METRICS_EXPORTER`` asks for, store values on data points.

`configure_metrics` sets up OpenTelemetry's `MeterProvider` as the SDK's own
auto-configuration does (``opentelemetry_metrics_exporter`` entry points: a
push exporter behind a periodic reader, or a pull reader as it is; ``otlp``
by its protocol). `StoreMeterProvider` wraps any meter provider so that each
measurement of its synchronous instruments carries the chosen store values
of the measurement's context: OpenTelemetry's metrics SDK has no
measurement processor, so the wrapping is of the API's public instrument
interfaces, the SDK's instruments untouched behind them.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import metrics
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackT
from opentelemetry.metrics import _Gauge as Gauge  # provisional: public as _Gauge
from opentelemetry.sdk.metrics import MeterProvider as SDKMeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.util.types import Attributes

from .._core.context import get_current
from .._core.settings import (
    DEFAULT_OTLP_PROTOCOL,
    OTEL_METRICS_EXPORTER,
    Settings,
    invalid_setting,
)
from .._core.stores import ContextStore, request
from .attributes import attribute_map, chosen_attributes
from .exporters import load_plugin

__all__ = [
    "StoreMeterProvider",
    "configure_metrics",
    "configured_metric_readers",
]

_EXPORTER_GROUP = "opentelemetry_metrics_exporter"
_OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
_logger = logging.getLogger("threadline")


class _StoreAttributes:
    """The chosen store values of a measurement's context, under the measurement's own."""

    __slots__ = ("_attributes", "_last", "_store")

    def __init__(self, store: ContextStore, attributes: Mapping[str, str]) -> None:
        self._store = store
        self._attributes = attributes
        self._last: tuple[weakref.ref[Context], dict[str, Any]] | None = None

    def __call__(self, given: Attributes, context: Context | None) -> Attributes:
        if context is None:
            context = get_current()
        last = self._last
        if last is not None and last[0]() is context:
            chosen = last[1]  # a context never changes: nor do the attributes made of it
        else:
            values = self._store.get(context)
            chosen = dict(chosen_attributes(values, self._attributes, "")) if values else {}
            with contextlib.suppress(TypeError):  # weakly: the context is not kept alive for it
                self._last = (weakref.ref(context), chosen)
        if not chosen:
            return given
        merged = dict(chosen)
        if given:
            merged.update(given)  # the measurement's own attribute wins
        return merged


class _Passing:
    """What the wrapped synchronous instruments share: the SDK's instrument and the values."""

    def __init__(self, instrument: Any, add: _StoreAttributes) -> None:
        self._instrument, self._with = instrument, add

    def _pass(
        self,
        method: Callable[..., None],
        amount: float,
        attributes: Attributes,
        context: Context | None,
    ) -> None:
        if context is None:  # SDKs before 1.27 take no context
            method(amount, self._with(attributes, None))
        else:
            method(amount, self._with(attributes, context), context)


class _Counter(_Passing, metrics.Counter):
    def add(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        self._pass(self._instrument.add, amount, attributes, context)


class _UpDownCounter(_Passing, metrics.UpDownCounter):
    def add(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        self._pass(self._instrument.add, amount, attributes, context)


class _Histogram(_Passing, metrics.Histogram):
    def record(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        self._pass(self._instrument.record, amount, attributes, context)


class _Gauge(_Passing, Gauge):
    def set(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        self._pass(self._instrument.set, amount, attributes, context)


class _StoreMeter(metrics.Meter):
    """A meter whose synchronous instruments add the store values; the others are the SDK's."""

    def __init__(self, meter: metrics.Meter, add: _StoreAttributes) -> None:
        super().__init__(meter.name, meter.version, meter.schema_url)
        self._meter = meter
        self._with = add

    def create_counter(self, name: str, unit: str = "", description: str = "") -> metrics.Counter:
        return _Counter(self._meter.create_counter(name, unit, description), self._with)

    def create_up_down_counter(
        self, name: str, unit: str = "", description: str = ""
    ) -> metrics.UpDownCounter:
        made = self._meter.create_up_down_counter(name, unit, description)
        return _UpDownCounter(made, self._with)

    def create_histogram(
        self,
        name: str,
        unit: str = "",
        description: str = "",
        *,
        explicit_bucket_boundaries_advisory: Sequence[float] | None = None,
    ) -> metrics.Histogram:
        made = self._meter.create_histogram(
            name,
            unit,
            description,
            explicit_bucket_boundaries_advisory=explicit_bucket_boundaries_advisory,
        )
        return _Histogram(made, self._with)

    def create_gauge(self, name: str, unit: str = "", description: str = "") -> Gauge:
        return _Gauge(self._meter.create_gauge(name, unit, description), self._with)

    # Observable instruments: their callbacks run in the reader's thread, at collection,
    # outside any request; there is no request's value to add.
    def create_observable_counter(
        self,
        name: str,
        callbacks: Sequence[CallbackT] | None = None,
        unit: str = "",
        description: str = "",
    ) -> metrics.ObservableCounter:
        return self._meter.create_observable_counter(name, callbacks, unit, description)

    def create_observable_up_down_counter(
        self,
        name: str,
        callbacks: Sequence[CallbackT] | None = None,
        unit: str = "",
        description: str = "",
    ) -> metrics.ObservableUpDownCounter:
        return self._meter.create_observable_up_down_counter(name, callbacks, unit, description)

    def create_observable_gauge(
        self,
        name: str,
        callbacks: Sequence[CallbackT] | None = None,
        unit: str = "",
        description: str = "",
    ) -> metrics.ObservableGauge:
        return self._meter.create_observable_gauge(name, callbacks, unit, description)


class StoreMeterProvider(metrics.MeterProvider):
    """A meter provider that puts chosen store values on every measurement made in their scope.

    Wraps *provider* (the SDK's `~opentelemetry.sdk.metrics.MeterProvider`,
    or any): each ``add``, ``record`` or ``set`` of a counter, up-down
    counter, histogram or gauge gets the values of *store* in the
    measurement's context (the one passed as ``context=``, else the current
    one) as attributes, named as *attributes* maps store keys (``{"tenant":
    "tenant.id"}``). An attribute the measurement is given itself wins.
    Values are escaped and limited as on spans. Observable instruments are
    *provider*'s own: their callbacks run when the reader collects, outside
    any request.

    Choose low-cardinality values (a tenant, a plan, a region): each
    distinct set of attributes is a time series of its own, so a request id
    makes one per request.

    Set it as the global meter provider (`opentelemetry.metrics.set_meter_provider`)
    in place of the provider it wraps; ``shutdown`` and ``force_flush`` are
    passed on to it.

    Raises:
        TypeError: *provider* is not a meter provider, *store* not a
            `~threadline.ContextStore`, or *attributes* not a mapping of str to str.

    .. versionadded:: 0.2
    """

    def __init__(
        self,
        provider: metrics.MeterProvider,
        attributes: Mapping[str, str],
        *,
        store: ContextStore = request,
    ) -> None:
        if not isinstance(provider, metrics.MeterProvider):
            raise TypeError(f"StoreMeterProvider wraps a MeterProvider, got {provider!r:.80}")
        if not isinstance(store, ContextStore):
            raise TypeError(f"StoreMeterProvider needs a ContextStore, got {store!r:.80}")
        chosen = attribute_map("StoreMeterProvider(attributes=...)", attributes)
        if chosen is None:
            raise TypeError("StoreMeterProvider(attributes=...) takes a mapping, got None")
        self._provider = provider
        self._with = _StoreAttributes(store, chosen)

    @property
    def provider(self) -> metrics.MeterProvider:
        """The meter provider wrapped."""
        return self._provider

    def get_meter(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> metrics.Meter:
        """A meter of the wrapped provider whose instruments add the store values."""
        meter = self._provider.get_meter(name, version, schema_url, attributes)
        return _StoreMeter(meter, self._with)

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        """Shut the wrapped provider down (its readers export what they hold)."""
        shutdown: Callable[..., Any] | None = getattr(self._provider, "shutdown", None)
        if shutdown is not None:
            shutdown(timeout_millis=timeout_millis)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Export what the wrapped provider holds; False when it could not in time."""
        flush: Callable[..., Any] | None = getattr(self._provider, "force_flush", None)
        return True if flush is None else bool(flush(timeout_millis=timeout_millis))


def configured_metric_readers(settings: Settings) -> list[MetricReader]:
    """Make the readers ``OTEL_METRICS_EXPORTER`` names; empty when it names none.

    A push exporter gets a `PeriodicExportingMetricReader` (``OTEL_METRIC_EXPORT_*``
    read by the SDK); a pull reader (Prometheus') serves as it is. A name that
    cannot be made is said in a warning naming the setting, and its default
    serves: no metrics pipeline. Never raises for a setting.
    """
    made: list[MetricReader | MetricExporter] = []
    try:
        for name in settings.metrics_exporters:
            made.append(_metric_exporter(name, settings))  # noqa: PERF401 - the ones made are shut on failure
    except ValueError as exc:
        for each in made:
            with contextlib.suppress(Exception):
                each.shutdown()
        setting = ",".join(settings.metrics_exporters)
        invalid_setting(
            OTEL_METRICS_EXPORTER,
            setting,
            f"metric exporter list ({exc})",
            "'none' (no metrics pipeline)",
        )
        return []
    return [
        each if isinstance(each, MetricReader) else PeriodicExportingMetricReader(each)
        for each in made
    ]


def _metric_exporter(name: str, settings: Settings) -> MetricReader | MetricExporter:
    if name == "otlp":  # as the SDK's own auto-configuration: its protocol picks the entry point
        name = _OTLP_BY_PROTOCOL.get(settings.otlp_metrics_protocol, DEFAULT_OTLP_PROTOCOL)
    made = load_plugin(
        _EXPORTER_GROUP,
        name,
        object,
        what="metric exporter",
        setting=OTEL_METRICS_EXPORTER,
        builtin=("none", "otlp"),
    )
    if not isinstance(made, (MetricReader, MetricExporter)):
        raise ValueError(f"the exporter {name!r} is no metric exporter or reader")  # noqa: TRY004
    return made


def configure_metrics(
    settings: Settings, resource: Resource, attributes: Mapping[str, str]
) -> SDKMeterProvider | None:
    """Set up the metrics pipeline ``OTEL_METRICS_EXPORTER`` asks for; None when it asks for none.

    The SDK's provider, with a reader per exporter, is made global: wrapped
    in a `StoreMeterProvider` when *attributes* chooses any store value, as
    it is otherwise. Its exit is the caller's to bound. None too when a meter
    provider is set already: the application's own stays (with a warning
    when *attributes* asked for values it will not get).
    """
    current = metrics.get_meter_provider()
    if isinstance(current, (SDKMeterProvider, StoreMeterProvider)):
        _keep_the_applications(current, attributes)
        return None
    readers = configured_metric_readers(settings)
    if not readers:
        return None
    provider = SDKMeterProvider(metric_readers=readers, resource=resource, shutdown_on_exit=False)
    made: metrics.MeterProvider = (
        StoreMeterProvider(provider, attributes) if attributes else provider
    )
    metrics.set_meter_provider(made)
    if metrics.get_meter_provider() is not made:  # one of another kind was set: it stays
        provider.shutdown()
        _keep_the_applications(metrics.get_meter_provider(), attributes)
        return None
    return provider


def _keep_the_applications(current: metrics.MeterProvider, attributes: Mapping[str, str]) -> None:
    if attributes and not isinstance(current, StoreMeterProvider):
        _logger.warning(
            "a meter provider is set already (%s): threadline leaves it as it is, and its data "
            "points get no store values (%s); wrap it in threadline.tracing.StoreMeterProvider "
            "before setting it",
            type(current).__name__,
            ", ".join(attributes.values()),
        )
