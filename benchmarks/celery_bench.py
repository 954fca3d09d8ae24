"""Celery round trip (publish + execute + result) with and without threadline, on a real Redis.

Each variant is a publisher process of its own with its own ``celery worker``
(prefork, one child), on its own Redis database of one redis-server: bare
Celery; bare Celery with empty receivers on the signals threadline uses (what
Celery's dispatch costs by itself); threadline's context only
(``threadline.celery.setup``, the stores in a request scope, no tracing
SDK); threadline with spans (the SDK, a batch processor exporting nowhere:
a PRODUCER and a CONSUMER span per task); OpenTelemetry's Celery
instrumentation with the same SDK (its two spans). A round trip is
``task.delay()`` then ``.get()``, one at a time, inside a request scope where
threadline is set up, inside a request's span where the SDK is (as in a
server: three spans per round trip in both span variants). Variants are
measured round by round in shuffled order; the medians are reported.
Target (issue 14): context only costs at most 5% of a bare round trip.

Run:  .venv/bin/python benchmarks/celery_bench.py          (full; starts redis-server)
      .venv/bin/python benchmarks/celery_bench.py --quick  (smoke: checks it runs)
      ... --broker redis://HOST:PORT                         (an existing Redis)
      ... --json PATH                                        (the results, for run.py)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _report import as_results, write_results

VARIANTS = {
    "bare": "bare Celery",
    "noop": "bare Celery, empty receivers on threadline's signals (for reference)",
    "context": "threadline context only (no tracing SDK)",
    "span": "threadline with spans (request, PRODUCER, CONSUMER)",
    "contrib": "opentelemetry-instrumentation-celery (request + its 2 spans)",
}
TARGETS = {VARIANTS["context"]: "<= 1.05x"}
"""The budget (DESIGN.md, issue 14), as a ratio to bare Celery."""
HERE = Path(__file__).resolve().parent
VARIANT_ENV, BROKER_ENV = "CELERY_BENCH_VARIANT", "CELERY_BENCH_BROKER"


def make_app() -> Any:
    """The app of the variant named by CELERY_BENCH_VARIANT (publisher and worker alike)."""
    from celery import Celery

    variant, broker = os.environ[VARIANT_ENV], os.environ[BROKER_ENV]
    app = Celery("celery_bench", broker=broker, backend=broker, set_as_current=False)
    app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)
    if variant in ("span", "contrib"):
        from _tracing import discard_spans

        discard_spans()
    if variant == "contrib":
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument()
    if variant in ("context", "span"):
        import threadline.celery

        threadline.celery.setup(app)
    if variant == "noop":  # what Celery's signal dispatch costs by itself
        from celery import signals

        def empty(**_: object) -> None:
            return None

        for name in ("before_task_publish", "after_task_publish", "task_received"):
            getattr(signals, name).connect(empty, weak=False)
        for name in ("task_prerun", "task_postrun", "task_failure", "task_retry"):
            getattr(signals, name).connect(empty, weak=False)

    @app.task(name="bench.noop")
    def noop() -> None:
        return None

    @app.task(name="bench.seen")
    def seen() -> list[object]:
        """The request id and whether a span records here: what crossed."""
        from opentelemetry import trace

        store = sys.modules.get("threadline")
        value = store.request.get() if store is not None else None
        recording = trace.get_current_span().is_recording()
        return [value["request_id"] if value else None, recording]

    return app


if os.environ.get(VARIANT_ENV) and __name__ != "__main__":  # `celery -A celery_bench worker`
    app = make_app()


def drive() -> None:
    """One variant's publisher: start its worker; on each line N from stdin, time N round trips."""
    app = make_app()
    variant = os.environ[VARIANT_ENV]
    noop = app.tasks["bench.noop"]
    command = [sys.executable, "-m", "celery", "-A", "celery_bench", "worker"]
    command += ["--pool", "prefork", "--concurrency", "1", "--loglevel", "WARNING"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    # the worker imports this module, and threadline from where the publisher does
    path = os.pathsep.join(filter(None, (str(HERE), os.environ.get("PYTHONPATH"))))
    worker = subprocess.Popen(
        command,
        cwd=HERE,
        env={**os.environ, "PYTHONPATH": path},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    scope: Any = None
    if os.environ[VARIANT_ENV] in ("context", "span"):
        import threadline as tl

        scope = tl.request.scope
    if os.environ[VARIANT_ENV] in ("span", "contrib"):  # as in a server: a request's span
        from opentelemetry import trace

        request_span = trace.get_tracer("bench").start_as_current_span
        plain = scope
        if plain is None:
            scope = lambda **_: request_span("request")  # noqa: E731
        else:

            @contextmanager
            def scope(**values: Any) -> Iterator[None]:
                with request_span("request"), plain(**values):
                    yield

    try:
        noop.delay().get(timeout=120)  # the worker is up
        expected = [
            "req-check" if variant in ("context", "span") else None,
            variant in ("span", "contrib"),
        ]
        with scope(request_id="req-check", user_id=0) if scope else contextlib.nullcontext():
            seen = app.tasks["bench.seen"].delay().get(timeout=60)
        if expected != seen:  # what crosses is what the variant says
            raise RuntimeError(f"the {variant} worker saw {seen!r}, not {expected!r}")
        print("ready", flush=True)
        for line in sys.stdin:
            count = int(line)
            start = time.perf_counter()
            for n in range(count):
                if scope is None:
                    noop.delay().get(timeout=60)
                else:
                    with scope(request_id=f"req-{n}", user_id=n):
                        noop.delay().get(timeout=60)
            print((time.perf_counter() - start) / count, flush=True)
    finally:
        worker.terminate()
        worker.wait(60)


class RedisServer:
    """A redis-server of the benchmark's own on a free loopback port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit(
                "no redis-server here (apt-get install redis-server), or give --broker"
            )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder = tempfile.mkdtemp()
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", self.folder, "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


class Publishers:
    """One publisher process per variant (each with its worker), on its own database."""

    def __init__(self, base: str) -> None:
        self.drivers: dict[str, subprocess.Popen[str]] = {}
        for number, variant in enumerate(VARIANTS, start=1):
            env = {**os.environ, VARIANT_ENV: variant, BROKER_ENV: f"{base}/{number}"}
            self.drivers[variant] = subprocess.Popen(
                [sys.executable, __file__, "--drive", variant],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        for variant in VARIANTS:
            if self._read(variant) != "ready":
                raise RuntimeError(f"the {variant} publisher or its worker did not start")

    def _read(self, variant: str) -> str:
        out = self.drivers[variant].stdout
        return out.readline().strip() if out is not None else ""

    def measure(self, variant: str, count: int) -> float:
        """Seconds per round trip, over *count* of them."""
        stdin = self.drivers[variant].stdin
        if stdin is None:
            raise RuntimeError("no pipe to the publisher")
        stdin.write(f"{count}\n")
        stdin.flush()
        return float(self._read(variant))

    def stop(self) -> None:
        for driver in self.drivers.values():
            if driver.stdin is not None:
                driver.stdin.close()
        for driver in self.drivers.values():
            driver.wait(60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, to check it runs")
    parser.add_argument("--broker", help="redis://HOST:PORT of a Redis to use (else one started)")
    parser.add_argument("--json", metavar="PATH", help="write the results here as JSON")
    parser.add_argument("--drive", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        drive()
        return 0
    rounds, per_round = (1, 5) if args.quick else (15, 200)
    redis = None if args.broker else RedisServer()
    base = args.broker.rstrip("/") if args.broker else f"redis://127.0.0.1:{redis.port}"  # type: ignore[union-attr]
    publishers = None
    try:
        publishers = Publishers(base)
        for variant in VARIANTS:  # warm up
            publishers.measure(variant, per_round // 4 or 1)
        results: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        order = list(VARIANTS)
        for _ in range(rounds):
            random.shuffle(order)
            for variant in order:
                results[variant].append(publishers.measure(variant, per_round))
    finally:
        if publishers is not None:
            publishers.stop()
        if redis is not None:
            redis.stop()
    if args.json:
        labelled = {VARIANTS[variant]: values for variant, values in results.items()}
        write_results(args.json, as_results("celery", labelled, VARIANTS["bare"], TARGETS))
    medians = {variant: statistics.median(values) for variant, values in results.items()}
    print(f"{rounds} rounds of {per_round} round trips per variant, one at a time; medians")
    print("| variant | round trip | ratio to bare | ratio to contrib |")
    print("|---|---:|---:|---:|")
    for variant, label in VARIANTS.items():
        print(
            f"| {label} | {medians[variant] * 1e3:.2f} ms "
            f"| {medians[variant] / medians['bare']:.3f}x "
            f"| {medians[variant] / medians['contrib']:.3f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
