"""The real OpenTelemetry Collector (scripts/build-collector), run on free loopback ports."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "collector" / "builder-config.yaml"
CONFIG = ROOT / "collector-config.yaml"


def collector_binary() -> Path:
    """The built Collector; skips the test (or fails it, in CI) when there is none."""
    given = os.environ.get("THREADLINE_COLLECTOR")
    if given:
        return Path(given)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "threadline"
    binary = cache / f"otelcol-{hashlib.sha256(MANIFEST.read_bytes()).hexdigest()[:16]}"
    if binary.exists():
        return binary
    reason = "the OpenTelemetry Collector is not built: run scripts/build-collector (needs Go)"
    if os.environ.get("THREADLINE_REQUIRE_COLLECTOR"):
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class Collector:
    grpc_port: int
    http_port: int
    traces_file: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def logs_file(self) -> Path:
        """Where the Collector writes the log records it receives (OTLP JSON lines)."""
        return self.traces_file.with_name(f"{self.traces_file.stem}-logs.jsonl")

    @property
    def metrics_file(self) -> Path:
        """Where the Collector writes the metric data points it receives (OTLP JSON lines)."""
        return self.traces_file.with_name(f"{self.traces_file.stem}-metrics.jsonl")

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, binary: Path, log: Path) -> None:
        env = {
            **os.environ,
            "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
            "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http_port}",
            "COLLECTOR_TRACES_FILE": str(self.traces_file),
            "COLLECTOR_LOGS_FILE": str(self.logs_file),
            "COLLECTOR_METRICS_FILE": str(self.metrics_file),
        }
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [str(binary), "--config", str(CONFIG)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        process = self.process

        def listening() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the Collector exited: {log.read_text()[-2000:]}")
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", self.http_port)) == 0

        if not wait_for(listening):
            raise RuntimeError("the Collector did not start listening")

    def stop(self, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.process.wait(60)
        self.process = None


@contextmanager
def running_collector(tmp_path: Path) -> Iterator[Collector]:
    binary = collector_binary()
    collector = Collector(free_port(), free_port(), tmp_path / "collector-traces.jsonl")
    collector.start(binary, tmp_path / "collector.log")
    try:
        yield collector
    finally:
        collector.stop()


@dataclass(frozen=True)
class ExportedLogRecord:
    """One log record read back from the Collector's OTLP JSON lines."""

    body: Any
    trace_id: str
    span_id: str
    severity: str
    service: str
    attributes: dict[str, Any]


def read_log_records(path: Path) -> list[ExportedLogRecord]:
    """Every log record in an OTLP JSON lines file (the Collector's file exporter, logs)."""
    found = []
    for line in path.read_text().splitlines() if path.exists() else ():
        for resource_logs in json.loads(line).get("resourceLogs", ()):
            resource = attributes_of(resource_logs.get("resource", {}).get("attributes", ()))
            for scope_logs in resource_logs.get("scopeLogs", ()):
                for record in scope_logs.get("logRecords", ()):
                    found.append(  # noqa: PERF401 - three levels of nesting read better so
                        ExportedLogRecord(
                            body=record.get("body", {}).get("stringValue"),
                            trace_id=record.get("traceId", ""),
                            span_id=record.get("spanId", ""),
                            severity=record.get("severityText", ""),
                            service=str(resource.get("service.name")),
                            attributes=attributes_of(record.get("attributes", ())),
                        )
                    )
    return found


@dataclass(frozen=True)
class ExportedDataPoint:
    """One metric data point read back from the Collector's OTLP JSON lines."""

    metric: str
    kind: str
    """``sum``, ``histogram``, ``gauge``."""
    value: float
    """A sum's or gauge's value; a histogram's count."""
    service: str
    attributes: dict[str, Any]


def read_data_points(path: Path) -> list[ExportedDataPoint]:
    """Every data point in an OTLP JSON lines file (the Collector's file exporter, metrics)."""
    found = []
    for line in path.read_text().splitlines() if path.exists() else ():
        for resource_metrics in json.loads(line).get("resourceMetrics", ()):
            resource = attributes_of(resource_metrics.get("resource", {}).get("attributes", ()))
            for scope_metrics in resource_metrics.get("scopeMetrics", ()):
                for metric in scope_metrics.get("metrics", ()):
                    found += _data_points(metric, str(resource.get("service.name")))
    return found


def _data_points(metric: dict[str, Any], service: str) -> list[ExportedDataPoint]:
    found = []
    for kind in ("sum", "histogram", "gauge"):
        for point in metric.get(kind, {}).get("dataPoints", ()):
            if kind == "histogram":
                value = float(point.get("count", 0))
            else:
                value = float(point.get("asInt", point.get("asDouble", 0)))
            attributes = attributes_of(point.get("attributes", ()))
            found.append(ExportedDataPoint(metric["name"], kind, value, service, attributes))
    return found


def attributes_of(pairs: Any) -> dict[str, Any]:
    """OTLP JSON attributes as a dict (strings, numbers, booleans)."""
    values = {}
    for pair in pairs:
        value = pair.get("value", {})
        for kind in ("stringValue", "intValue", "doubleValue", "boolValue"):
            if kind in value:
                values[pair["key"]] = int(value[kind]) if kind == "intValue" else value[kind]
    return values
