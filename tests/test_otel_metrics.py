"""The OpenTelemetry metrics signal: store values on data points, the pipeline configure() sets up.

End to end through the real Collector: a counter and a histogram recorded in
two requests of different tenants, in the parent and in a spawn worker,
arrive as data points carrying ``tenant.id``; those recorded outside any
request carry none. Beside a meter provider the application set first,
configure() leaves it as it is.
"""

from __future__ import annotations

import json
import textwrap
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import threadline as tl
from tests.collector import read_data_points, running_collector
from tests.helpers import run_app, wait_for
from threadline._core.settings import read_settings
from threadline._telemetry.metrics import configured_metric_readers
from threadline.tracing import StoreMeterProvider, configure


class Recorded:
    """An SDK meter provider reading into memory."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)

    def meter(self, store: tl.ContextStore = tl.request) -> metrics.Meter:
        """A meter of the provider wrapped to add *store*'s ``tenant`` as ``tenant.id``."""
        wrapped = StoreMeterProvider(self.provider, {"tenant": "tenant.id"}, store=store)
        return wrapped.get_meter("tests")

    def points(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Each metric's data points: their attributes, and their value (a histogram's count)."""
        found: dict[str, list[tuple[dict[str, Any], Any]]] = defaultdict(list)
        data = self.reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", getattr(point, "count", None))
                        found[metric.name].append((dict(point.attributes or {}), value))
        return found


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    made = Recorded()
    yield made
    made.provider.shutdown()


class TestStoreMeterProvider:
    def test_each_instrument_carries_the_requests_values(self, recorded: Recorded) -> None:
        """Counters, up-down counters, histograms and gauges get the value current at the call."""
        app = recorded.meter()
        orders, queue = app.create_counter("orders"), app.create_up_down_counter("queue")
        latency, load = app.create_histogram("latency"), app.create_gauge("load")
        for tenant in ("acme", "globex"):
            with tl.request.scope(tenant=tenant, request_id="r1"):
                orders.add(1)
                queue.add(-1)
                latency.record(0.5)
                load.set(3)
        found = recorded.points()
        for name in ("orders", "queue", "latency", "load"):
            tenants = sorted(attributes["tenant.id"] for attributes, _ in found[name])
            assert ["acme", "globex"] == tenants, name
            # only the chosen key: never the request id
            assert all(set(attributes) == {"tenant.id"} for attributes, _ in found[name])

    def test_each_measurement_reads_its_own_context(self, recorded: Recorded) -> None:
        """Measurements one after another in changing scopes each get their context's value."""
        orders = recorded.meter().create_counter("orders")
        for tenant in ("acme", None, "globex", "acme", None):
            if tenant is None:
                orders.add(1)
            else:
                with tl.request.scope(tenant=tenant):
                    orders.add(1)
                    with tl.request.merge(tenant=f"{tenant}-eu"):
                        orders.add(1)
        found = {
            attributes.get("tenant.id"): value for attributes, value in recorded.points()["orders"]
        }
        assert {None: 2, "acme": 2, "acme-eu": 2, "globex": 1, "globex-eu": 1} == found

    def test_nothing_outside_a_request(self, recorded: Recorded) -> None:
        app = recorded.meter()
        app.create_counter("orders").add(2, {"route": "/"})
        assert [({"route": "/"}, 2)] == recorded.points()["orders"]

    def test_the_measurements_own_attribute_wins_and_values_are_escaped(
        self, recorded: Recorded
    ) -> None:
        orders = recorded.meter().create_counter("orders")
        with tl.request.scope(tenant="ac\nme"):
            orders.add(1)
            orders.add(1, {"tenant.id": "given"})
        found = recorded.points()["orders"]
        assert ["ac\\nme", "given"] == sorted(attributes["tenant.id"] for attributes, _ in found)

    def test_the_context_passed_is_the_one_read(self, recorded: Recorded) -> None:
        """A measurement made for another context (``context=``) gets that context's values."""
        orders = recorded.meter().create_counter("orders")
        with tl.request.scope(tenant="acme"):
            handed = tl.snapshot()
        with tl.request.scope(tenant="globex"):
            orders.add(1, context=handed.context)
        assert [({"tenant.id": "acme"}, 1)] == recorded.points()["orders"]

    def test_another_store(self, recorded: Recorded, store: tl.ContextStore) -> None:
        orders = recorded.meter(store).create_counter("orders")
        with store.scope(tenant="acme"), tl.request.scope(tenant="other"):
            orders.add(1)
        assert [({"tenant.id": "acme"}, 1)] == recorded.points()["orders"]

    def test_observable_instruments_are_the_providers_own(self, recorded: Recorded) -> None:
        """Their callbacks run when the reader collects, outside any request: nothing added."""

        def observe(options: metrics.CallbackOptions) -> list[metrics.Observation]:
            return [metrics.Observation(4, {"pool": "db"})]

        recorded.meter().create_observable_gauge("connections", [observe])
        with tl.request.scope(tenant="acme"):
            found = recorded.points()
        assert [({"pool": "db"}, 4)] == found["connections"]

    @pytest.mark.parametrize(
        ("arguments", "match"),
        [
            ((object(), {"tenant": "tenant.id"}), "wraps a MeterProvider"),
            ((MeterProvider(shutdown_on_exit=False), ["tenant"]), "attributes"),
        ],
    )
    def test_a_wrong_argument_is_a_clear_error(
        self, arguments: tuple[Any, ...], match: str
    ) -> None:
        with pytest.raises(TypeError, match=match):
            StoreMeterProvider(*arguments)


class TestSettings:
    def test_metric_attributes_and_exporters(
        self, threadline_warnings: pytest.LogCaptureFixture
    ) -> None:
        settings = read_settings(
            {
                "THREADLINE_METRIC_ATTRIBUTES": "tenant=tenant.id",
                "OTEL_METRICS_EXPORTER": "OTLP,none",
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc",
            }
        )
        assert ((("tenant", "tenant.id"),), ("otlp",), "grpc") == (
            settings.metric_attributes,
            settings.metrics_exporters,
            settings.otlp_metrics_protocol,
        )
        assert read_settings({}).metric_attributes is None  # the default: none

    def test_unknown_metric_exporter_is_a_warning_and_no_pipeline(
        self, threadline_warnings: pytest.LogCaptureFixture
    ) -> None:
        settings = read_settings({"OTEL_METRICS_EXPORTER": "console,statsd"})
        assert [] == configured_metric_readers(settings)
        assert "OTEL_METRICS_EXPORTER='console,statsd' is not a valid metric exporter list" in (
            threadline_warnings.text
        )

    def test_console_is_a_periodic_reader(self) -> None:
        [reader] = configured_metric_readers(read_settings({"OTEL_METRICS_EXPORTER": "console"}))
        assert "PeriodicExportingMetricReader" == type(reader).__name__
        reader.shutdown()

    def test_a_wrong_choice_in_code_is_a_clear_error(self) -> None:
        with pytest.raises(ValueError, match="metric_attributes"):
            configure(metric_attributes={"tenant": "tenant,id"})


APP = textwrap.dedent(
    """
    import multiprocessing
    import threadline as tl
    from opentelemetry import metrics
    from threadline.tracing import configure

    def work(amount):
        meter = metrics.get_meter("app.worker")
        meter.create_counter("orders").add(amount)
        meter.create_histogram("latency", unit="s").record(0.25)

    if __name__ == "__main__":
        configure(service_name="metrics-app", metric_attributes={"tenant": "tenant.id"})
        meter = metrics.get_meter("app")
        orders = meter.create_counter("orders")
        latency = meter.create_histogram("latency", unit="s")
        for tenant, amount in (("acme", 2), ("globex", 3)):
            with tl.request.scope(request_id=f"r-{tenant}", tenant=tenant):
                orders.add(amount)
                latency.record(0.1)
        orders.add(7)  # outside any request
        latency.record(0.2)
        context = multiprocessing.get_context("spawn")
        with tl.request.scope(request_id="r-w", tenant="acme"):
            with tl.ProcessPoolExecutor(1, mp_context=context) as pool:
                pool.submit(work, 5).result()
    """
)


def totals(path: Path) -> dict[tuple[str, str | None], float]:
    """Each (metric, tenant.id) summed over every data point: delta temporality, any process."""
    summed: dict[tuple[str, str | None], float] = defaultdict(float)
    for point in read_data_points(path):
        assert "metrics-app" == point.service
        assert "request.id" not in point.attributes  # not chosen: never a series per request
        summed[point.metric, point.attributes.get("tenant.id")] += point.value
    return dict(summed)


def test_data_points_reach_the_collector_with_the_requests_tenant(tmp_path: Path) -> None:
    """Each request's measurements carry its tenant, the worker's too; the others none."""
    (tmp_path / "app.py").write_text(APP)
    expected = {
        ("orders", "acme"): 7.0,  # 2 in the parent, 5 in the spawn worker
        ("orders", "globex"): 3.0,
        ("orders", None): 7.0,
        ("latency", "acme"): 2.0,  # histogram: the count of measurements
        ("latency", "globex"): 1.0,
        ("latency", None): 1.0,
    }
    with running_collector(tmp_path) as collector:
        result = run_app(
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.http_endpoint,
            OTEL_TRACES_EXPORTER="none",
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="delta",
            THREADLINE_CHILD_EXIT_TIMEOUT="20",  # a loaded machine: what is checked is arrival
        )
        assert 0 == result.returncode, result.stderr
        assert wait_for(lambda: totals(collector.metrics_file) == expected, 30), totals(
            collector.metrics_file
        )


BESIDE = textwrap.dedent(
    """
    import json, sys
    import threadline as tl
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from threadline.tracing import StoreMeterProvider, configure

    reader = InMemoryMetricReader()
    mine = MeterProvider(metric_readers=[reader])
    if sys.argv[1] == "wrapped":
        mine = StoreMeterProvider(mine, {"tenant": "tenant.id"})
    metrics.set_meter_provider(mine)
    configure(metric_attributes={"tenant": "tenant.id"})
    with tl.request.scope(tenant="acme"):
        metrics.get_meter("app").create_counter("orders").add(1)
    data = reader.get_metrics_data()
    [point] = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
    kept = metrics.get_meter_provider() is mine
    print(json.dumps({"kept": kept, "attributes": dict(point.attributes)}))
    """
)


@pytest.mark.parametrize(("how", "attributes"), [("own", {}), ("wrapped", {"tenant.id": "acme"})])
def test_the_applications_meter_provider_stays(
    tmp_path: Path, how: str, attributes: dict[str, str]
) -> None:
    """configure() never replaces a meter provider; it says so when values were asked for."""
    (tmp_path / "app.py").write_text(BESIDE)
    result = run_app(tmp_path, how, OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="console")
    assert 0 == result.returncode, result.stderr
    said = json.loads(result.stdout.splitlines()[-1])
    assert {"kept": True, "attributes": attributes} == said
    warned = "a meter provider is set already (MeterProvider)" in result.stderr
    assert warned == (how == "own"), result.stderr


def test_a_request_id_on_data_points_is_warned(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "from threadline.tracing import configure\n"
        "configure(metric_attributes={'request_id': 'request.id'})\n"
    )
    result = run_app(tmp_path, OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none")
    assert 0 == result.returncode, result.stderr
    assert "a time series per request" in result.stderr
