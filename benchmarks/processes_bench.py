"""Process-pool submit+result, subprocess spawn and child start-up: threadline against bare Python.

Every variant runs interleaved in shuffled order, round by round, in one run;
the report gives each one's median and its ratio to the bare variant of its
group. Budgets (DESIGN.md): process pool <= 1.10x carrying context, <= 1.5x
with a span per job; subprocess spawn with the env carrier <= 1.02x; a Python
child with the automatic bootstrap <= 1.3x ``python -c pass``.

Run:  .venv/bin/python benchmarks/processes_bench.py          (full)
      .venv/bin/python benchmarks/processes_bench.py --quick  (smoke: checks it runs)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import threadline as tl
from threadline import subprocess as tl_subprocess

Variants = dict[str, Callable[[], float]]


def job() -> int:
    return 1


def timed(action: Callable[[], object], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        action()
    return (time.perf_counter() - start) / repeat


def interleave(variants: Variants, rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    shuffle = random.Random(0).shuffle
    for _ in range(rounds):
        shuffle(order)
        for name in order:
            results[name].append(variants[name]())
    return results


def pool_variants(pool: tl.ProcessPoolExecutor, jobs: int) -> Variants:
    """All variants on one pool, so on the same worker processes."""
    bare_submit = functools.partial(concurrent.futures.ProcessPoolExecutor.submit, pool)
    tracer = trace.get_tracer("bench")

    def with_span() -> float:
        with tracer.start_as_current_span("request"):
            return timed(lambda: pool.submit(job).result(), jobs)

    return {
        "bare ProcessPoolExecutor": lambda: timed(lambda: bare_submit(job).result(), jobs),
        "tl.ProcessPoolExecutor, stores set (context only)": lambda: timed(
            lambda: pool.submit(job).result(), jobs
        ),
        "tl.ProcessPoolExecutor, recording span (a job span each)": with_span,
    }


def spawn_variants(repeat: int) -> Variants:
    true = ["true"]
    return {
        "bare subprocess.run(['true'])": lambda: timed(
            lambda: subprocess.run(true, check=True), repeat
        ),
        "bare subprocess.run(['true'], env=os.environ.copy())": lambda: timed(
            lambda: subprocess.run(true, check=True, env=os.environ.copy()), repeat
        ),
        "threadline.subprocess.run(['true']), context in env": lambda: timed(
            lambda: tl_subprocess.run(true, bootstrap=False), repeat
        ),
    }


def child_variants(repeat: int) -> Variants:
    python = [sys.executable, "-c", "pass"]
    plain_env = {k: v for k, v in os.environ.items() if k != tl_subprocess.BOOTSTRAP_ENV}
    return {
        "python -c pass": lambda: timed(
            lambda: subprocess.run(python, check=True, env=plain_env), repeat
        ),
        "python -c pass, automatic bootstrap on": lambda: timed(
            lambda: tl_subprocess.run(python, bootstrap=True), repeat
        ),
    }


def report(groups: list[dict[str, list[float]]]) -> str:
    rows = ["| variant | median | ratio to the group's first |", "|---|---:|---:|"]
    for results in groups:
        base = statistics.median(next(iter(results.values())))
        for name, times in results.items():
            median = statistics.median(times)
            rows.append(f"| {name} | {median * 1e6:.0f} µs | {median / base:.3f}x |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few runs, to check it runs")
    args = parser.parse_args(argv)
    rounds, jobs, spawns = (2, 20, 2) if args.quick else (150, 100, 20)
    trace.set_tracer_provider(TracerProvider())
    with tl.request.scope(request_id="r1", user_id=42):
        with tl.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            pool.submit(job).result()  # start the worker before timing
            pools = interleave(pool_variants(pool, jobs), rounds)
        spawned = interleave(spawn_variants(spawns), max(2, rounds // 5))
        children = interleave(child_variants(spawns // 2), max(2, rounds // 10))
    print(report([pools, spawned, children]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
