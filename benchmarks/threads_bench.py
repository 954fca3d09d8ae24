"""Thread-pool submit+result: threadline against bare Python and OpenTelemetry's instrumentation.

Every variant runs in the same process, interleaved round by round, and the
report gives each one's median time per job and its ratio to bare Python.
Budget (DESIGN.md): <= 1.15x bare, and cheaper than opentelemetry-instrumentation-threading.

Run:  .venv/bin/python benchmarks/threads_bench.py          (full)
      .venv/bin/python benchmarks/threads_bench.py --quick  (smoke: checks it runs)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.instrumentation.threading import ThreadingInstrumentor
from opentelemetry.sdk.trace import TracerProvider

import threadline as tl


def job() -> int:
    return 1


def per_job(pool: concurrent.futures.Executor, jobs: int) -> float:
    submit = pool.submit
    start = time.perf_counter()
    for _ in range(jobs):
        submit(job).result()
    return (time.perf_counter() - start) / jobs


def measure(rounds: int, jobs: int) -> dict[str, list[float]]:
    trace.set_tracer_provider(TracerProvider())
    tracer = trace.get_tracer("bench")
    bare = concurrent.futures.ThreadPoolExecutor(1)
    ours = tl.ThreadPoolExecutor(1)
    instrumentor = ThreadingInstrumentor()
    results: dict[str, list[float]] = {
        "bare ThreadPoolExecutor": [],
        "tl.ThreadPoolExecutor, stores set": [],
        "tl.ThreadPoolExecutor, stores + recording span (job span)": [],
        "opentelemetry-instrumentation-threading, recording span": [],
    }
    names = list(results)
    with tl.request.scope(request_id="r1", user_id=42):
        for _ in range(rounds):
            results[names[0]].append(per_job(bare, jobs))
            results[names[1]].append(per_job(ours, jobs))
            with tracer.start_as_current_span("request"):
                results[names[2]].append(per_job(ours, jobs))
                instrumentor.instrument()
                try:
                    results[names[3]].append(per_job(bare, jobs))
                finally:
                    instrumentor.uninstrument()
    bare.shutdown()
    ours.shutdown()
    return results


def import_time(runs: int) -> tuple[float, float]:
    """Median wall time of `python -c pass` and of `python -c "import threadline"`."""

    def median_of(code: str) -> float:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return median_of("pass"), median_of("import threadline")


def report(results: dict[str, list[float]], imports: tuple[float, float]) -> str:
    base = statistics.median(next(iter(results.values())))
    rows = ["| variant | per job | ratio to bare |", "|---|---:|---:|"]
    for name, times in results.items():
        median = statistics.median(times)
        rows.append(f"| {name} | {median * 1e6:.1f} µs | {median / base:.2f}x |")
    plain, with_import = imports
    rows.append("")
    rows.append(
        f"`import threadline`: {(with_import - plain) * 1e3:.1f} ms over `python -c pass` "
        f"({plain * 1e3:.1f} ms)"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few jobs, to check it runs")
    args = parser.parse_args(argv)
    rounds, jobs, runs = (2, 50, 2) if args.quick else (15, 4000, 15)
    results = measure(rounds, jobs)
    print(report(results, import_time(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
