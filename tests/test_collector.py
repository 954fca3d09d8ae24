"""End to end against the real OpenTelemetry Collector: the config loads, and no span is lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.collector import CONFIG, collector_binary, running_collector
from tests.helpers import check_demo_traces, clean_env
from threadline.export import read_spans


def test_config_loads_in_the_real_collector() -> None:
    """collector-config.yaml is valid for the Collector built from the manifest."""
    result = subprocess.run(
        [str(collector_binary()), "validate", "--config", str(CONFIG)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 0 == result.returncode, result.stderr


def test_demo_through_the_collector(tmp_path: Path) -> None:
    """`threadline demo --otlp` exports every span of every process to the Collector."""
    with running_collector(tmp_path) as collector:
        result = subprocess.run(
            [sys.executable, "-m", "threadline", "demo", "--otlp", collector.http_endpoint],
            check=False,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert 0 == result.returncode, result.stderr
        assert f"spans of 2 requests sent to {collector.http_endpoint}" in result.stdout
    check_demo_traces(read_spans(collector.traces_file), requests=2)
