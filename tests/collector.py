"""The real OpenTelemetry Collector (scripts/build-collector), run on free loopback ports."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, binary: Path, log: Path) -> None:
        env = {
            **os.environ,
            "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
            "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http_port}",
            "COLLECTOR_TRACES_FILE": str(self.traces_file),
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
