"""The Collector goes away and comes back: the application keeps going and says what it lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.collector import Collector, collector_binary
from tests.helpers import clean_env, free_port, wait_for
from threadline.export import read_spans

APP = Path(__file__).resolve().parent / "fault_app.py"


class App:
    """fault_app.py, driven line by line."""

    def __init__(self, endpoint: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(APP)],
            env=clean_env(
                OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
                OTEL_EXPORTER_OTLP_TIMEOUT="1",
                OTEL_BSP_SCHEDULE_DELAY="50",
                OTEL_BSP_MAX_QUEUE_SIZE="512",
                THREADLINE_SHUTDOWN_TIMEOUT="3",
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def ask(self, command: str) -> str:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def quit(self) -> tuple[dict[str, int], str]:
        counts = json.loads(self.ask("quit"))
        _, stderr = self.process.communicate(timeout=60)
        assert 0 == self.process.returncode, stderr
        return counts, stderr


def names_in(path: Path) -> list[str]:
    return [span.name for span in read_spans(path)] if path.exists() else []


def wait_until_written(path: Path, name: str, count: int) -> None:
    """Wait (bounded) for the Collector to have written *count* spans named *name*."""
    wait_for(lambda: names_in(path).count(name) >= count)


def test_collector_down_killed_and_restarted(tmp_path: Path) -> None:
    """Not running at start, killed mid-run, restarted: spans after each start all arrive.

    The ones sent to nobody, and those the bounded queue turned away, are
    counted and reported; no error reaches the application.
    """
    binary = collector_binary()
    grpc_port, http_port = free_port(), free_port()
    first = Collector(grpc_port, http_port, tmp_path / "first.jsonl")
    second = Collector(grpc_port, http_port, tmp_path / "second.jsonl")
    app = App(first.http_endpoint)
    try:
        assert "ok before" == app.ask("spans before 30")  # nobody listening yet
        assert "flushed" == app.ask("flush")
        first.start(binary, tmp_path / "collector.log")
        assert "ok up" == app.ask("spans up 40")
        assert "flushed" == app.ask("flush")
        wait_until_written(first.traces_file, "up", 40)  # what it received, it wrote
        first.stop(kill=True)  # killed mid-run
        assert "ok outage" == app.ask("spans outage 2000")  # more than the queue holds
        assert "flushed" == app.ask("flush")
        second.start(binary, tmp_path / "collector.log")
        assert "ok restarted" == app.ask("spans restarted 40")
        assert "flushed" == app.ask("flush")
        wait_until_written(second.traces_file, "restarted", 40)
        counts, stderr = app.quit()
    finally:
        if app.process.poll() is None:
            app.process.kill()
        second.stop()
    assert 40 == names_in(first.traces_file).count("up")
    assert 40 == names_in(second.traces_file).count("restarted")
    assert "before" not in names_in(first.traces_file) + names_in(second.traces_file)
    assert counts.get("export.failed", 0) >= 30  # the spans nobody received, counted
    assert counts.get("export.queue_full", 0) > 0  # the queue is bounded: memory is
    assert "threadline could not export spans (export.failed)" in stderr
    assert "Traceback" not in stderr
