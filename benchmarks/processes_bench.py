"""Process-pool submit+result, subprocess spawn and child start-up: threadline against bare Python.

Every variant runs interleaved in shuffled order, round by round, in one run;
the report gives each one's median and its ratio to the bare variant of its
group. Budgets (DESIGN.md): process pool <= 1.10x carrying context, <= 1.5x
with a span per job; subprocess spawn with the env carrier no slower than
``subprocess.run`` given an environment (``env=None`` is the floor no carrier
can reach); a Python child with the automatic bootstrap <= 1.1x ``python -c pass``.

Run:  .venv/bin/python benchmarks/processes_bench.py          (full)
      .venv/bin/python benchmarks/processes_bench.py --quick  (smoke: checks it runs)
      ... --json PATH                                         (the results, for run.py)
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

from _report import Result, as_results, write_results
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import threadline as tl
from threadline import subprocess as tl_subprocess

Variants = dict[str, Callable[[], float]]

BARE_POOL = "bare ProcessPoolExecutor"
POOL_CONTEXT = "tl.ProcessPoolExecutor, stores set (context only)"
POOL_SPANS = "tl.ProcessPoolExecutor, recording span (a job span each)"
GIVEN_ENV = "bare subprocess.run(['true'], env=os.environ.copy())"
PLAIN_CHILD = "python -c pass"
BOOTSTRAP = "python -c pass, automatic bootstrap on"
TARGETS = {POOL_CONTEXT: "<= 1.10x", POOL_SPANS: "<= 1.5x", BOOTSTRAP: "<= 1.1x"}
"""The budgets (DESIGN.md), as ratios to the first variant of their group."""


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
        BARE_POOL: lambda: timed(lambda: bare_submit(job).result(), jobs),
        POOL_CONTEXT: lambda: timed(lambda: pool.submit(job).result(), jobs),
        POOL_SPANS: with_span,
    }


def spawn_variants(repeat: int) -> Variants:
    """The carrier's spawn against one given an environment, and the env=None floor."""
    true = ["true"]
    return {
        GIVEN_ENV: lambda: timed(
            lambda: subprocess.run(true, check=True, env=os.environ.copy()), repeat
        ),
        "bare subprocess.run(['true']) (the floor)": lambda: timed(
            lambda: subprocess.run(true, check=True), repeat
        ),
        "threadline.subprocess.run(['true']), context in env": lambda: timed(
            lambda: tl_subprocess.run(true, bootstrap=False), repeat
        ),
    }


def child_variants(repeat: int) -> Variants:
    python = [sys.executable, "-c", "pass"]
    plain_env = {k: v for k, v in os.environ.items() if k != tl_subprocess.BOOTSTRAP_ENV}
    return {
        PLAIN_CHILD: lambda: timed(
            lambda: subprocess.run(python, check=True, env=plain_env), repeat
        ),
        BOOTSTRAP: lambda: timed(lambda: tl_subprocess.run(python, bootstrap=True), repeat),
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
    parser.add_argument("--json", metavar="PATH", help="write the results here as JSON")
    args = parser.parse_args(argv)
    rounds, jobs, spawns = (2, 20, 2) if args.quick else (150, 100, 20)
    trace.set_tracer_provider(TracerProvider())
    with tl.request.scope(request_id="r1", user_id=42):
        with tl.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            pool.submit(job).result()  # start the worker before timing
            pools = interleave(pool_variants(pool, jobs), rounds)
        spawned = interleave(spawn_variants(spawns), max(2, rounds // 5))
        children = interleave(child_variants(spawns // 2), max(2, rounds // 10))
    groups = [pools, spawned, children]
    if args.json:
        results: list[Result] = []
        for group in groups:
            results += as_results("processes", group, next(iter(group)), TARGETS)
        write_results(args.json, results)
    print(report(groups))
    return 0


if __name__ == "__main__":
    sys.exit(main())
