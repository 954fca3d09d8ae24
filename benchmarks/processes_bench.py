"""Process-pool submit+result, subprocess spawn and child start-up: threadline against bare Python.

Every variant runs interleaved in shuffled order, round by round, in one run;
the report gives each one's median and its ratio to the bare variant of its
group. Budgets (DESIGN.md): process pool <= 1.10x carrying context, <= 1.5x
with a span per job exported on both sides (against the bare pool running the
same job, which makes a span of its own in the worker); subprocess spawn with the env
carrier no slower than ``subprocess.run`` given an environment (``env=None``
is the floor no carrier can reach); a Python child with the automatic
bootstrap and a carrier <= 1.2x the same child without threadline.

The pool is the user's set-up: `threadline.tracing.configure()` in the
parent and, through it, in the worker (which sets up as its parent did), each
with a batch processor whose exporter counts and discards the spans; the
worker's count is checked against the jobs that made spans (a job span is
made in the parent; the worker's spans are those the job makes). The stdlib's
submit runs on the same pool (the same configured worker) as the reference.

The children: ``python -c pass``, ``-c "import logging"``, ``-c "import
opentelemetry.trace"`` and one that imports ``logging`` and logs a line
(shown, not judged), each bare (threadline's ``.pth`` line installed but
off) and through `threadline.subprocess.run` with the bootstrap on and a
carrier (a request scope and a valid span: ``TRACEPARENT`` and ``BAGGAGE``).
Importing OpenTelemetry wakes the bootstrap (it loads threadline and restores
the context); importing ``logging`` takes its light path (only
``opentelemetry.context``), and the first log record restores the whole
context; ``pass`` never wakes it. This environment
sets PYTHONDONTWRITEBYTECODE=1, so each child is first run once without it:
every variant is then measured with its bytecode written, as an installed
package has. The children run before tracing is set up in this process (a
child of a parent set up by `threadline.tracing.configure()` sets up the SDK
too: another cost, not measured here).

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
from typing import Any

from _report import Result, as_results, write_results
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import threadline as tl
from threadline import subprocess as tl_subprocess

Variants = dict[str, Callable[[], float]]

BARE_POOL = "bare ProcessPoolExecutor"
POOL_CONTEXT = "tl.ProcessPoolExecutor, stores set (context only)"
BARE_SPANS = (
    "bare ProcessPoolExecutor, the job makes a span, exported by tracing.configure() in the worker"
)
POOL_SPANS = (
    "tl.ProcessPoolExecutor, recording span (a job span each, the job's span its child), "
    "exported by tracing.configure() in parent and worker"
)
GIVEN_ENV = "bare subprocess.run(['true'], env=os.environ.copy())"
LOGS_A_LINE = (
    "import logging; logging.getLogger().addHandler(logging.NullHandler()); "
    "logging.getLogger('x').warning('one line')"
)
CHILDREN = {
    "pass": ("python -c pass", "python -c pass, automatic bootstrap on, a carrier"),
    "import logging": (
        "python -c 'import logging'",
        "python -c 'import logging', automatic bootstrap on, a carrier",
    ),
    "import opentelemetry.trace": (
        "python -c 'import opentelemetry.trace'",
        "python -c 'import opentelemetry.trace', automatic bootstrap on, a carrier",
    ),
    LOGS_A_LINE: (
        "python -c 'import logging' logging one line",
        "python -c 'import logging' logging one line, automatic bootstrap on, a carrier",
    ),
}
"""Each child's code: its bare variant and its bootstrapped one."""
TARGETS = {
    POOL_CONTEXT: "<= 1.10x",
    POOL_SPANS: "<= 1.5x",
    # (the child that logs a line is shown beside the budget's, not judged: its first
    # record restores the whole context, OpenTelemetry's trace API included)
    **{
        bootstrapped: "<= 1.2x"
        for code, (_, bootstrapped) in CHILDREN.items()
        if code != LOGS_A_LINE
    },
}
"""The budgets (DESIGN.md), as ratios to the first variant of their group."""


def job() -> int:
    return 1


def traced_job() -> int:
    """A job that makes one span of its own in the worker."""
    with trace.get_tracer("bench.job").start_as_current_span("work"):
        return 1


class CountingDiscard(SpanExporter):
    """An exporter that keeps nothing, counting what it was given."""

    exported = 0

    def export(self, spans: Any) -> SpanExportResult:
        CountingDiscard.exported += len(spans)
        return SpanExportResult.SUCCESS


def export_spans() -> None:
    """Set up tracing as a user does: `threadline.tracing.configure()`, then a counting exporter.

    Run in the parent, and in each worker as the pool's initializer (after the
    worker set tracing up as its parent did).
    """
    os.environ.update(OTEL_TRACES_EXPORTER="none", OTEL_SERVICE_NAME="bench")
    import threadline.tracing

    provider = threadline.tracing.configure() or trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        raise TypeError(f"threadline.tracing.configure() set no SDK provider up: {provider!r}")
    provider.add_span_processor(BatchSpanProcessor(CountingDiscard()))


def spans_exported() -> int:
    """This process's spans exported so far (all its finished spans flushed first)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush()
    return CountingDiscard.exported


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

    def with_span(submit: Callable[..., Any]) -> float:
        with tracer.start_as_current_span("request"):
            return timed(lambda: submit(traced_job).result(), jobs)

    return {
        BARE_POOL: lambda: timed(lambda: bare_submit(job).result(), jobs),
        POOL_CONTEXT: lambda: timed(lambda: pool.submit(job).result(), jobs),
        BARE_SPANS: lambda: with_span(bare_submit),
        POOL_SPANS: lambda: with_span(pool.submit),
    }


def pool_results(pools: dict[str, list[float]]) -> list[Result]:
    """The pool rows: context against the bare pool, spans against the bare pool's span job."""
    results = as_results("processes", pools, BARE_POOL, TARGETS)
    for result in results:
        if result.variant == POOL_SPANS:
            result.reference = BARE_SPANS
    return results


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


def child_variants(code: str, repeat: int) -> Variants:
    """*code*'s child without threadline, and with the bootstrap and a carrier."""
    python = [sys.executable, "-c", code]
    plain_env = {k: v for k, v in os.environ.items() if k != tl_subprocess.BOOTSTRAP_ENV}
    bare, bootstrapped = CHILDREN[code]
    return {
        bare: lambda: timed(lambda: subprocess.run(python, check=True, env=plain_env), repeat),
        bootstrapped: lambda: timed(
            lambda: tl_subprocess.run(python, bootstrap=True, check=True), repeat
        ),
    }


def write_bytecode() -> None:
    """Run each child once with bytecode writing on, so that no measured run compiles."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for code in CHILDREN:
        python = [sys.executable, "-c", code]
        subprocess.run(python, check=True, env=env)
        tl_subprocess.run(python, bootstrap=True, check=True, env=env)


def measure_children(rounds: int, repeat: int) -> list[dict[str, list[float]]]:
    """The children's groups, under a request scope and a valid (not exported) span."""
    write_bytecode()
    span = TracerProvider().get_tracer("bench").start_span("request")  # a traceparent to carry
    with trace.use_span(span, end_on_exit=True):
        return [interleave(child_variants(code, repeat), rounds) for code in CHILDREN]


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
    with tl.request.scope(request_id="r1", user_id=42):
        spawned = interleave(spawn_variants(spawns), max(2, rounds // 5))
        children = measure_children(max(2, rounds // 10), max(1, spawns // 2))
        export_spans()  # from here on, the user's tracing set-up
        spawn = multiprocessing.get_context("spawn")
        with tl.ProcessPoolExecutor(1, mp_context=spawn, initializer=export_spans) as pool:
            pool.submit(job).result()  # start the worker before timing
            before = pool.submit(spans_exported).result()
            pools = interleave(pool_variants(pool, jobs), rounds)
            in_worker = pool.submit(spans_exported).result() - before
    made = 2 * rounds * jobs  # the spans the two span variants' jobs made in the worker
    if in_worker != made:
        raise RuntimeError(f"the worker exported {in_worker} spans, not {made}")
    groups = [pools, spawned, *children]
    if args.json:
        results = pool_results(pools)
        for group in groups[1:]:
            results += as_results("processes", group, next(iter(group)), TARGETS)
        for result in results:
            if result.variant == POOL_SPANS:
                result.notes["spans exported by the worker"] = f"{in_worker} of {made}"
        write_results(args.json, results)
    print(report(groups))
    print(f"\nspans exported by the worker: {in_worker} of {made}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
