"""Kafka round trip (send + consume) with and without threadline, on a real broker, with aiokafka.

Each variant is a process of its own with an aiokafka producer and consumer on
a topic of its own, all on one broker: bare aiokafka; threadline's context only
(``threadline.kafka.instrument`` and ``consume``, the stores in a request
scope, no tracing SDK); threadline with spans (the SDK, a batch processor
exporting nowhere: a PRODUCER and a CONSUMER span per message, inside a
request's span); OpenTelemetry's aiokafka instrumentation with the same SDK
(its spans, the same request span). A round trip is ``send_and_wait`` then the
next message from the consumer, one at a time. Variants are measured round by
round in shuffled order; the medians are reported.
Target (DESIGN.md): context only costs at most 5% of a bare round trip.

Run:  .venv/bin/python benchmarks/kafka_bench.py          (full; starts a broker from
                                                           scripts/kafka-jars' jars)
      .venv/bin/python benchmarks/kafka_bench.py --quick  (smoke: checks it runs)
      ... --bootstrap HOST:PORT                             (an existing broker)
      ... --json PATH                                       (the results, for run.py)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _report import as_results, write_results

VARIANTS = {
    "bare": "bare aiokafka",
    "context": "threadline context only (no tracing SDK)",
    "span": "threadline with spans (request, PRODUCER, CONSUMER)",
    "contrib": "opentelemetry-instrumentation-aiokafka (request + its spans)",
}
TARGETS = {VARIANTS["context"]: "<= 1.05x"}
"""The budget (DESIGN.md), as a ratio to bare aiokafka."""
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VARIANT_ENV, BOOTSTRAP_ENV = "KAFKA_BENCH_VARIANT", "KAFKA_BENCH_BOOTSTRAP"


def request_scope(variant: str) -> Any:
    """What surrounds each round trip: a request scope and/or a request's span, or nothing."""
    scope: Any = None
    if variant in ("context", "span"):
        import threadline as tl

        scope = tl.request.scope
    if variant in ("span", "contrib"):  # as in a server: a request's span
        from opentelemetry import trace

        request_span = trace.get_tracer("bench").start_as_current_span
        plain = scope

        @contextmanager
        def spanned(**values: Any) -> Iterator[None]:
            with request_span("request"), plain(**values) if plain else contextlib.nullcontext():
                yield

        scope = spanned
    return scope


async def drive() -> None:
    """One variant's process: on each line N from stdin, time N round trips."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    variant, bootstrap = os.environ[VARIANT_ENV], os.environ[BOOTSTRAP_ENV]
    if variant in ("span", "contrib"):
        from _tracing import discard_spans

        discard_spans()
    if variant == "contrib":
        from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor

        AIOKafkaInstrumentor().instrument()
    topic = f"bench-{variant}-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=topic, auto_offset_reset="earliest"
    )
    await producer.start()
    await consumer.start()
    next_message: Any = consumer.getone
    if variant in ("context", "span"):
        import threadline as tl
        import threadline.kafka

        threadline.kafka.instrument(producer)
        next_message = threadline.kafka.consume(consumer).__anext__
    scope = request_scope(variant)
    try:
        with scope(request_id="req-check") if scope else contextlib.nullcontext():
            await producer.send_and_wait(topic, b"")
        await next_message()
        if variant in ("context", "span") and tl.request.get() != {"request_id": "req-check"}:
            raise RuntimeError(f"the {variant} consumer saw {tl.request.get()!r}")
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            count = int(line)
            start = time.perf_counter()
            for n in range(count):
                if scope is None:
                    await producer.send_and_wait(topic, b"")
                else:
                    with scope(request_id=f"req-{n}"):
                        await producer.send_and_wait(topic, b"")
                await next_message()
            print((time.perf_counter() - start) / count, flush=True)
    finally:
        await consumer.stop()
        await producer.stop()


class Drivers:
    """One process per variant, each with its producer and consumer."""

    def __init__(self, bootstrap: str) -> None:
        self.drivers: dict[str, subprocess.Popen[str]] = {}
        for variant in VARIANTS:
            env = {**os.environ, VARIANT_ENV: variant, BOOTSTRAP_ENV: bootstrap}
            self.drivers[variant] = subprocess.Popen(
                [sys.executable, __file__, "--drive", variant],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        for variant in VARIANTS:
            if self._read(variant) != "ready":
                raise RuntimeError(f"the {variant} process did not start")

    def _read(self, variant: str) -> str:
        out = self.drivers[variant].stdout
        return out.readline().strip() if out is not None else ""

    def measure(self, variant: str, count: int) -> float:
        """Seconds per round trip, over *count* of them."""
        stdin = self.drivers[variant].stdin
        if stdin is None:
            raise RuntimeError("no pipe to the driver")
        stdin.write(f"{count}\n")
        stdin.flush()
        return float(self._read(variant))

    def stop(self) -> None:
        for driver in self.drivers.values():
            if driver.stdin is not None:
                driver.stdin.close()
        for driver in self.drivers.values():
            driver.wait(60)


def measure(bootstrap: str, rounds: int, per_round: int) -> dict[str, list[float]]:
    drivers = Drivers(bootstrap)
    try:
        for variant in VARIANTS:  # warm up
            drivers.measure(variant, per_round // 4 or 1)
        results: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        order = list(VARIANTS)
        for _ in range(rounds):
            random.shuffle(order)
            for variant in order:
                results[variant].append(drivers.measure(variant, per_round))
    finally:
        drivers.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, to check it runs")
    parser.add_argument("--bootstrap", help="HOST:PORT of a Kafka broker (else one started)")
    parser.add_argument("--json", metavar="PATH", help="write the results here as JSON")
    parser.add_argument("--drive", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        asyncio.run(drive())
        return 0
    rounds, per_round = (1, 5) if args.quick else (15, 200)
    if args.bootstrap:
        results = measure(args.bootstrap, rounds, per_round)
    else:  # the tests' broker, from the cached jars
        sys.path.insert(0, str(ROOT))
        from tests.kafka_broker import kafka_broker

        with tempfile.TemporaryDirectory() as folder, kafka_broker(Path(folder)) as bootstrap:
            results = measure(bootstrap, rounds, per_round)
    if args.json:
        labelled = {VARIANTS[variant]: values for variant, values in results.items()}
        write_results(args.json, as_results("kafka", labelled, VARIANTS["bare"], TARGETS))
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
