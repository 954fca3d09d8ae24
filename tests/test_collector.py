"""End to end against the real OpenTelemetry Collector: the config loads, and no span is lost."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from tests.collector import CONFIG, collector_binary, running_collector
from threadline.export import ExportedSpan, read_spans

EXPECTED_TREE = {
    # span name: its parent's name (None: the trace's root), the service that reports it
    "GET /orders/{order}": (None, "demo-gateway"),
    "GET": ("GET /orders/{order}", "demo-gateway"),
    "GET /stock/{order}": ("GET", "demo-backend"),
    "thread read_stock": ("GET /stock/{order}", "demo-backend"),
    "process checksum": ("GET /stock/{order}", "demo-backend"),
    "subprocess python": ("GET /stock/{order}", "demo-backend"),
    "resize image": ("subprocess python", "demo-python-child"),
    "subprocess sh": ("GET /stock/{order}", "demo-backend"),
}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "THREADLINE_"))}
    return {**env, **extra}


def test_config_loads_in_the_real_collector() -> None:
    """collector-config.yaml is valid for the Collector built from the manifest."""
    result = subprocess.run(
        [str(collector_binary()), "validate", "--config", str(CONFIG)],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert 0 == result.returncode, result.stderr


def check_demo_traces(spans: list[ExportedSpan], requests: int) -> None:
    """One trace per request, every expected span once, under the right parent and service."""
    by_trace: dict[str, list[ExportedSpan]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    assert requests == len(by_trace)
    for members in by_trace.values():
        names = sorted(span.name for span in members)
        assert sorted(EXPECTED_TREE) == names  # every span, and none twice: nothing lost
        by_id = {span.span_id: span for span in members}
        for span in members:
            parent = by_id.get(span.parent_id) if span.parent_id else None
            actual = (parent.name if parent else None, span.service)
            assert EXPECTED_TREE[span.name] == actual, span.name


def test_demo_through_the_collector(tmp_path: Path) -> None:
    """`threadline demo --otlp` exports every span of every process to the Collector."""
    with running_collector(tmp_path) as collector:
        result = subprocess.run(
            [sys.executable, "-m", "threadline", "demo", "--otlp", collector.http_endpoint],
            env=clean_env(),
            capture_output=True,
            check=False,
            text=True,
            timeout=180,
        )
        assert 0 == result.returncode, result.stderr
        assert f"spans of 2 requests sent to {collector.http_endpoint}" in result.stdout
    check_demo_traces(read_spans(collector.traces_file), requests=2)
