"""What the broker benchmarks share: a process per variant, interleaved rounds, the report.

A broker benchmark (kafka_bench.py, rabbitmq_bench.py) names its variants
``client/kind`` (kind: ``bare``, ``context``, ``span``, ``contrib``) and runs
each in a process of its own (``--drive KEY``), with its own publisher and
consumer on a topic or queue of its own, all on one broker. A driver answers
``ready`` once it has carried one message, then, for each line ``MODE N`` on
its stdin, does the work and prints the seconds per message:

- ``trip N``: N round trips, one at a time (publish one, acknowledged; consume it);
- ``burst N``: publish N (acknowledged), then consume the N.

Rounds interleave every (variant, mode) in shuffled order; a variant's ratio
is taken round by round against its client's bare variant in the same mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _report import Result, write_results

KINDS = {
    "bare": "bare {client}",
    "context": "threadline context only (no tracing SDK)",
    "span": "threadline with spans (request, PRODUCER, CONSUMER)",
    "contrib": "{contrib} (request + its spans)",
}
CONTEXT_TARGET = "<= 1.05x"
"""The budget (DESIGN.md): context carried costs at most 5% of the bare client."""
SPAN_TARGET = "<= 1.00x"
"""threadline's spans should cost no more than OpenTelemetry's instrumentation's."""
MODES = {"trip": "round trip", "burst": "burst of {burst}"}
VARIANT_ENV, ADDRESS_ENV = "MQ_BENCH_VARIANT", "MQ_BENCH_ADDRESS"


def label(clients: dict[str, str], key: str, mode: str, burst: int) -> str:
    """The row's name: ``aiokafka round trip: threadline context only (no tracing SDK)``."""
    client, kind = key.split("/")
    what = KINDS[kind].format(client=client, contrib=clients[client])
    return f"{client} {MODES[mode].format(burst=burst)}: {what}"


def request_scope(kind: str) -> Any:
    """What surrounds each publish: a request scope and/or a request's span, or nothing."""
    scope: Any = None
    if kind in ("context", "span"):
        import threadline as tl

        scope = tl.request.scope
    if kind in ("span", "contrib"):  # as in a server: a request's span
        from opentelemetry import trace

        request_span = trace.get_tracer("bench").start_as_current_span
        plain = scope

        @contextmanager
        def spanned(**values: Any) -> Iterator[None]:
            with request_span("request"), plain(**values) if plain else contextlib.nullcontext():
                yield

        scope = spanned
    return scope


def set_up_tracing(kind: str) -> None:
    """The span variants' SDK: a batch processor exporting nowhere, room for a burst's spans."""
    if kind in ("span", "contrib"):
        # the default queue (2,048) drops spans in a burst: dropped spans would cost nothing
        os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", "1000000")
        from _tracing import discard_spans

        discard_spans()


class Drivers:
    """One process per variant, each with its publisher and consumer."""

    def __init__(self, script: str, keys: list[str], address: str) -> None:
        self.drivers: dict[str, subprocess.Popen[str]] = {}
        for key in keys:
            env = {**os.environ, VARIANT_ENV: key, ADDRESS_ENV: address}
            self.drivers[key] = subprocess.Popen(
                [sys.executable, script, "--drive", key],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        for key in keys:
            if self._read(key) != "ready":
                raise RuntimeError(f"the {key} process did not start")

    def _read(self, key: str) -> str:
        out = self.drivers[key].stdout
        return out.readline().strip() if out is not None else ""

    def measure(self, key: str, mode: str, count: int) -> float:
        """Seconds per message, over *count* of them in *mode*."""
        stdin = self.drivers[key].stdin
        if stdin is None:
            raise RuntimeError("no pipe to the driver")
        stdin.write(f"{mode} {count}\n")
        stdin.flush()
        answer = self._read(key)
        if not answer:
            raise RuntimeError(f"the {key} process ended")
        return float(answer)

    def stop(self) -> None:
        for driver in self.drivers.values():
            if driver.stdin is not None:
                driver.stdin.close()
        for driver in self.drivers.values():
            _end(driver)


def _end(driver: subprocess.Popen[str]) -> None:
    try:
        driver.wait(60)
    except subprocess.TimeoutExpired:
        driver.kill()
        driver.wait(10)


def measure(
    script: str, keys: list[str], address: str, *, rounds: int, trips: int, burst: int
) -> dict[tuple[str, str], list[float]]:
    """Each (variant, mode)'s seconds per message, a sample per round."""
    counts = {"trip": trips, "burst": burst}
    drivers = Drivers(script, keys, address)
    try:
        for key in keys:  # warm up
            for mode, count in counts.items():
                drivers.measure(key, mode, count // 4 or 1)
        results: dict[tuple[str, str], list[float]] = {
            (key, mode): [] for key in keys for mode in counts
        }
        order = list(results)
        for _ in range(rounds):
            random.shuffle(order)
            for key, mode in order:
                results[key, mode].append(drivers.measure(key, mode, counts[mode]))
    finally:
        drivers.stop()
    return results


def as_results(
    benchmark: str,
    clients: dict[str, str],
    samples: dict[tuple[str, str], list[float]],
    burst: int,
) -> list[Result]:
    """One `Result` per (variant, mode): each against its client's bare variant in that mode."""
    results = []
    for (key, mode), values in samples.items():
        client, kind = key.split("/")
        name = label(clients, key, mode, burst)
        bare = label(clients, f"{client}/bare", mode, burst)
        contrib = label(clients, f"{client}/contrib", mode, burst)
        result = Result(
            benchmark,
            name,
            list(values),
            reference=None if kind == "bare" else bare,
            target=CONTEXT_TARGET if kind == "context" else None,
            notes={"messages/s": f"{1 / statistics.median(values):,.0f}"},
        )
        if kind == "span" and (f"{client}/contrib", mode) in samples:
            result.also = {contrib: SPAN_TARGET}
        results.append(result)
    return results


def report(
    benchmark: str,
    clients: dict[str, str],
    samples: dict[tuple[str, str], list[float]],
    burst: int,
    json_path: str | None,
) -> None:
    """Write the results as JSON (for run.py) and print their medians."""
    results = as_results(benchmark, clients, samples, burst)
    if json_path:
        write_results(json_path, results)
    medians = {key: statistics.median(values) for key, values in samples.items()}
    print("| variant | per message | ratio to bare | ratio to contrib |")
    print("|---|---:|---:|---:|")
    for (key, mode), median in medians.items():
        client = key.split("/")[0]
        bare = medians[f"{client}/bare", mode]
        contrib = medians.get((f"{client}/contrib", mode), float("nan"))
        print(
            f"| {label(clients, key, mode, burst)} | {median * 1e3:.3f} ms "
            f"| {median / bare:.3f}x | {median / contrib:.3f}x |"
        )


def run_driver(drive: Callable[[str, str], None]) -> None:
    """In a driver process: *drive* (variant key, broker address)."""
    drive(os.environ[VARIANT_ENV], os.environ[ADDRESS_ENV])


def serve(modes: dict[str, Callable[[int], None]]) -> None:
    """In a sync driver: ``ready``, then for each line ``MODE N`` the seconds per message."""
    print("ready", flush=True)
    while line := sys.stdin.readline():
        mode, count = line.split()
        start = time.perf_counter()
        modes[mode](int(count))
        print((time.perf_counter() - start) / int(count), flush=True)


async def serve_async(modes: dict[str, Callable[[int], Awaitable[None]]]) -> None:
    """In an asyncio driver: `serve`, the lines read in a thread."""
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        mode, count = line.split()
        start = time.perf_counter()
        await modes[mode](int(count))
        print((time.perf_counter() - start) / int(count), flush=True)


ROOT = Path(__file__).resolve().parent.parent
