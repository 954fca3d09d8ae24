"""Drop counters: plain counters, rate-limited warnings, and an OpenTelemetry metric."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import threadline as tl
from tests.helpers import clean_env
from threadline import diagnostics

METRICS = """
import json
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
import threadline as tl
from threadline import diagnostics

reader = InMemoryMetricReader()
tl.extract({"traceparent": "garbage"})  # before a meter provider: only the plain counter
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
tl.extract({"traceparent": "garbage"})
tl.extract({"baggage": "no equals sign"})
points = {}
for resource_metrics in reader.get_metrics_data().resource_metrics:
    for scope in resource_metrics.scope_metrics:
        for metric in scope.metrics:
            for point in metric.data.data_points:
                points[f"{metric.name}|{point.attributes['reason']}"] = point.value
print(json.dumps({"points": points, "counts": diagnostics.drop_counts()}))
"""


class TestMetric:
    def test_drops_are_a_counter_with_a_reason(self) -> None:
        """With a meter provider set, every drop is added to threadline.drops by reason."""
        out = subprocess.run(
            [sys.executable, "-c", METRICS],
            env=clean_env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        seen = json.loads(out)
        assert {
            "threadline.drops|traceparent.invalid": 1,
            "threadline.drops|baggage.invalid": 1,
        } == seen["points"]
        assert {"traceparent.invalid": 2, "baggage.invalid": 1} == seen["counts"]


class TestWarnings:
    def test_context_and_spans_are_told_apart(
        self, threadline_warnings: pytest.LogCaptureFixture
    ) -> None:
        """Lost spans are reported as spans not exported, never as dropped context."""
        diagnostics.record_drop("export.failed", "the Collector refused them", 3)
        tl.extract({"traceparent": "garbage"})
        messages = [record.getMessage() for record in threadline_warnings.records]
        assert messages[0].startswith("threadline could not export spans (export.failed)")
        assert messages[1].startswith("threadline dropped context (traceparent.invalid)")
        assert {"export.failed": 3, "traceparent.invalid": 1} == diagnostics.drop_counts()
