"""A real Redis server and real Celery workers for the tests, each stopped afterwards.

`redis_server` starts Debian's ``redis-server`` on a free loopback port with
its own data directory (.ci/run installs it); `CeleryWorker` runs
``celery -A tests.celery_tasks worker`` with the given pool kind, its spans
in a file and its task logs as JSON lines.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.helpers import clean_env, free_port, wait_for
from threadline.export import ExportedSpan, read_spans

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_ENV = "THREADLINE_REQUIRE_REDIS"
LAUNCHER = Path(sys.executable).parent / "opentelemetry-instrument"


class RedisUnavailableError(Exception):
    """No redis-server here, or it would not start."""


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """Run redis-server on a free loopback port in *directory*; yield its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailableError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    command += ["--save", "", "--appendonly", "no", "--protected-mode", "no"]
    log = (directory / "redis.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_for(lambda: _answers(port) or server.poll() is not None, 20) or not _answers(
            port
        ):
            raise RedisUnavailableError(
                f"redis-server did not start: {(directory / 'redis.log').read_text()[-500:]}"
            )
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(20)
        log.close()


class CeleryWorker:
    """One ``celery worker`` process with *pool*; its spans and logs in *directory*.

    *options* are further ``celery worker`` options, *launcher* runs it under
    ``opentelemetry-instrument``, *env* adds to or overrides its environment.
    """

    def __init__(
        self,
        broker: str,
        pool: str,
        directory: Path,
        *options: str,
        launcher: bool = False,
        **env: str,
    ) -> None:
        self.spans_file = directory / f"spans-{pool}.jsonl"
        self.logs_file = directory / f"logs-{pool}.jsonl"
        self.output = directory / f"worker-{pool}.log"
        self.ready_file = directory / f"ready-{pool}"
        for path in (self.spans_file, self.logs_file, self.ready_file):
            path.unlink(missing_ok=True)
        environment = clean_env(
            THREADLINE_TEST_REDIS=broker,
            THREADLINE_TEST_WORKER="1",
            THREADLINE_TEST_LOGS=str(self.logs_file),
            THREADLINE_TEST_READY=str(self.ready_file),
            THREADLINE_TRACES_FILE=str(self.spans_file),
            OTEL_TRACES_EXPORTER="file",
            # nothing is exported before shutdown: what the file holds, the shutdown flushed
            OTEL_BSP_SCHEDULE_DELAY="600000",
            PYTHONPATH=str(ROOT),
        )
        environment.update(env)
        command = [sys.executable, "-m", "celery", "-A", "tests.celery_tasks", "worker"]
        if launcher:  # OpenTelemetry's zero-code launcher, as users run it
            command = [str(LAUNCHER), *command]
        command += options
        command += ["--pool", pool, "--concurrency", "1" if pool == "solo" else "2"]
        command += ["--loglevel", "INFO", "--without-gossip", "--without-mingle"]
        command += ["--without-heartbeat", "--hostname", f"{pool}@threadline-tests"]
        with self.output.open("w") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT
            )
        if not wait_for(lambda: self.ready_file.exists() or self.process.poll() is not None, 60):
            self.stop()
            raise AssertionError(f"the {pool} worker never got ready:\n{self.log()[-3000:]}")
        assert self.process.poll() is None, self.log()[-3000:]

    def log(self) -> str:
        """What the worker printed so far."""
        return self.output.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Shut the worker down (SIGTERM: warm; SIGQUIT: cold) and return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise

    def spans(self) -> list[ExportedSpan]:
        """The spans the worker exported."""
        return read_spans(self.spans_file) if self.spans_file.exists() else []

    def logs(self) -> list[dict[str, Any]]:
        """The task log lines the worker wrote."""
        if not self.logs_file.exists():
            return []
        return [json.loads(line) for line in self.logs_file.read_text().splitlines() if line]


def required() -> bool:
    """Whether the Redis tests must run here (CI) rather than skip."""
    return bool(os.environ.get(REQUIRE_ENV))


def links_of(path: Path) -> dict[str, list[str]]:
    """Span id -> the span ids it links to, read from an OTLP JSON lines file (hex ids)."""
    links: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        for resource in json.loads(line).get("resourceSpans", []):
            for scope in resource.get("scopeSpans", []):
                for span in scope.get("spans", []):
                    links[span["spanId"]] = [link["spanId"] for link in span.get("links", [])]
    return links


def library_logs_from_worker(
    broker: str, app: Any, directory: Path, pool: str = "prefork"
) -> tuple[str, Path]:
    """Run `log_libraries` on a real worker in a request and a span; its trace id, its log folder.

    The worker logs through structlog and loguru as `log_with_libraries` sets them up, into
    *directory*; the lines are there when this returns.
    """
    from opentelemetry import trace

    import threadline as tl
    from tests import celery_tasks

    worker = CeleryWorker(broker, pool, directory, THREADLINE_TEST_LIBRARY_LOGS=str(directory))
    try:
        with tl.request.scope(request_id="req-\nlib", user_id=7):
            with trace.get_tracer("tests").start_as_current_span("request") as root:
                result = app.send_task(celery_tasks.log_libraries.name, args=["t1"])
        result.get(timeout=60)
        loguru_file = directory / "loguru.jsonl"
        assert wait_for(lambda: loguru_file.exists() and loguru_file.read_text().strip(), 30)
    finally:
        worker.stop()
    return f"{root.get_span_context().trace_id:032x}", directory
