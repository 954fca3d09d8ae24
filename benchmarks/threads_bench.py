"""Thread-pool submit+result: threadline against bare Python and OpenTelemetry's instrumentation.

Every variant runs in the same process, interleaved round by round, and the
report gives each one's median time per job and its ratio to bare Python.
Spans go through the pipeline `threadline.tracing.configure()` sets up, with
a batch processor whose exporter discards them (as asgi_bench.py's), so a job
span costs what it costs a user short of the network.
Budgets (DESIGN.md): context only <= 1.10x bare; a job span each within 1.05x
of the cheapest SDK span made by hand in a bare pool, same pipeline (the floor
row); and cheaper than opentelemetry-instrumentation-threading. `import threadline`
is measured by import_bench.py.

Run:  .venv/bin/python benchmarks/threads_bench.py          (full)
      .venv/bin/python benchmarks/threads_bench.py --quick  (smoke: checks it runs)
      ... --json PATH                                       (the results, for run.py)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import random
import statistics
import sys
import time
from collections.abc import Callable

from _report import as_results, write_results
from opentelemetry import trace
from opentelemetry.instrumentation.threading import ThreadingInstrumentor

import threadline as tl

BARE = "bare ThreadPoolExecutor"
CONTEXT = "tl.ThreadPoolExecutor, stores set (context only)"
SPANS = "tl.ThreadPoolExecutor, stores + recording span (a job span each)"
FLOOR = "bare ThreadPoolExecutor, an SDK span made in each job by hand (floor of a job span)"
JOB_ATTRIBUTES = {"threadline.boundary": "thread", "code.function.name": "job"}
"""What threadline's job span has; the floor's span has the same."""
TARGETS = {CONTEXT: "<= 1.10x"}
"""The budget (DESIGN.md) judged against the bare pool."""
SPAN_TARGET = "<= 1.05x"
"""The job span's budget (DESIGN.md), judged against the floor row."""


def job() -> int:
    return 1


def per_job(
    submit: Callable[[Callable[[], int]], concurrent.futures.Future[int]], jobs: int
) -> float:
    start = time.perf_counter()
    for _ in range(jobs):
        submit(job).result()
    return (time.perf_counter() - start) / jobs


def measure(rounds: int, jobs: int) -> dict[str, list[float]]:
    """Time every variant, interleaved in shuffled order, on one and the same worker thread.

    Which core a pool's thread lands on changes a hand-off's cost more than
    anything measured here, so all variants share one pool: the bare one
    calls the base class's submit on it.
    """
    _discarding_pipeline()
    tracer = trace.get_tracer("bench")
    pool = tl.ThreadPoolExecutor(1)
    bare_submit = functools.partial(concurrent.futures.ThreadPoolExecutor.submit, pool)
    instrumentor = ThreadingInstrumentor()

    def instrumented() -> float:
        instrumentor.instrument()  # patches concurrent.futures.ThreadPoolExecutor.submit
        try:
            return per_job(
                functools.partial(concurrent.futures.ThreadPoolExecutor.submit, pool), jobs
            )
        finally:
            instrumentor.uninstrument()

    def with_span() -> float:
        with tracer.start_as_current_span("request"):
            return per_job(pool.submit, jobs)

    def spanned_job() -> int:
        with tracer.start_as_current_span("thread job", attributes=JOB_ATTRIBUTES):
            return 1

    def floor() -> float:
        with tracer.start_as_current_span("request"):
            return per_job(lambda _: bare_submit(spanned_job), jobs)

    variants: dict[str, Callable[[], float]] = {
        BARE: lambda: per_job(bare_submit, jobs),
        CONTEXT: lambda: per_job(pool.submit, jobs),
        "opentelemetry-instrumentation-threading (context only)": instrumented,
        SPANS: with_span,
        FLOOR: floor,
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    shuffle = random.Random(0).shuffle
    with tl.request.scope(request_id="r1", user_id=42):
        for _ in range(rounds):
            shuffle(order)  # no variant always runs first, or after the same one
            for name in order:
                results[name].append(variants[name]())
    pool.shutdown()
    return results


def _discarding_pipeline() -> None:
    """`threadline.tracing.configure()`'s pipeline; a batch processor hands its spans to nowhere."""
    import os

    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    import threadline.tracing

    class Discard(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    os.environ.update(OTEL_TRACES_EXPORTER="none", OTEL_SERVICE_NAME="bench")
    provider = threadline.tracing.configure(export_process=False)
    if provider is None:
        raise RuntimeError("threadline.tracing.configure() set nothing up")
    provider.add_span_processor(BatchSpanProcessor(Discard()))


def report(results: dict[str, list[float]]) -> str:
    base = statistics.median(results[BARE])
    rows = ["| variant | per job | ratio to bare |", "|---|---:|---:|"]
    for name, times in results.items():
        median = statistics.median(times)
        rows.append(f"| {name} | {median * 1e6:.1f} µs | {median / base:.2f}x |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few jobs, to check it runs")
    parser.add_argument("--json", metavar="PATH", help="write the results here as JSON")
    args = parser.parse_args(argv)
    rounds, jobs = (2, 50) if args.quick else (300, 200)
    results = measure(rounds, jobs)
    if args.json:
        judged = as_results("threads", results, BARE, TARGETS)
        for result in judged:
            if result.variant == SPANS:
                result.also = {FLOOR: SPAN_TARGET}
        write_results(args.json, judged)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
