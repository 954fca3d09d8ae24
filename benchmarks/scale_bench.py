"""How threadline's cost grows with the work: store keys, concurrent requests, worker processes.

Three series, each measured side by side with its baseline in one run:

- **keys**: `tl.inject` and `tl.extract` of a context whose store holds
  1 to 150 keys. A *miss* is what a hand-off of a new request pays: every
  operation gets a context (or carrier text) never seen before, with new
  values, so neither the encoded-store cache nor the parsed-baggage cache
  serves it. A *hit* repeats one context (one carrier): what the second and
  later hand-offs of the same request pay. The cost per key is the slope of a
  least-squares line through the misses' per-operation times, one slope per
  round; budget 0.5 µs per key for inject, 1.0 µs for extract. R² says how
  straight the line is.
- **concurrency**: a real aiohttp server (its own process, pinned to core 0),
  bare and with `threadline.aiohttp.setup` (context only), loaded by wrk
  (pinned to core 1) with 1 to 64 connections, every request with a fresh
  ``traceparent``, a 3-member ``baggage`` and an ``X-Request-ID`` (aiohttp_bench's); the
  figure is the server process's CPU time per request (`/proc` times).
- **workers**: a spawn `tl.ProcessPoolExecutor` with 1 to 16 workers, a
  burst of trivial jobs submitted in a request scope then all awaited; jobs
  per second through threadline's submit (context carried) and through the
  stdlib's submit on the same pool and workers (no context), and the
  difference per job.

The full run writes three plots into docs/img/ (``--plots DIR`` elsewhere);
``--quick`` writes none unless asked.

Run:  .venv/bin/python benchmarks/scale_bench.py            (full: about 3 minutes on 2 cores)
      .venv/bin/python benchmarks/scale_bench.py --quick    (smoke: checks it runs, no plots)
      .venv/bin/python benchmarks/scale_bench.py --rounds 1 (every series once: a short look)
      ... --json PATH                                     (the results, for run.py)
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _report import TIME, Result, ratio, write_results
from aiohttp_bench import LUA, _cpu_of, serve_until_sigterm  # the user's workload, its server

import threadline as tl
from threadline._core.context import get_current

BENCHMARK = "scale"
ROOT = Path(__file__).resolve().parent.parent
PLOTS = ROOT / "docs" / "img"

KEY_COUNTS = (1, 5, 10, 25, 50, 100, 150)
INJECT_PER_KEY = 0.5e-6
EXTRACT_PER_KEY = 1.0e-6
"""The budgets (issue 24): seconds per store key, on a cache miss."""
CONCURRENCY = (1, 2, 4, 8, 16, 32, 64)
WORKERS = (1, 2, 4, 8, 16)

STORE = tl.ContextStore("scale")
"""The store whose keys grow (its values are short text, as ids and names are)."""


# --------------------------------------------------------------------------- keys


def _contexts(keys: int, count: int) -> list[Any]:
    """*count* contexts, each with a store value of *keys* keys never used before."""
    made = []
    salt = random.getrandbits(32)
    for number in range(count):
        values = {f"k{key}": f"v{salt:x}-{number}-{key}" for key in range(keys)}
        with STORE.scope(**values):
            made.append(get_current())
    return made


def _carriers(contexts: Sequence[Any]) -> list[dict[str, str]]:
    carriers = []
    for context in contexts:
        carrier: dict[str, str] = {}
        tl.inject(carrier, context)
        carriers.append(carrier)
    return carriers


def _per_op(action: Callable[[Any], object], inputs: Sequence[Any]) -> float:
    start = time.perf_counter()
    for one in inputs:
        action(one)
    return (time.perf_counter() - start) / len(inputs)


def _inject(context: Any) -> None:
    tl.inject({}, context)


KEY_OPS = ("inject, cache miss", "inject, cache hit", "extract, cache miss", "extract, cache hit")


def key_variant(op: str, keys: int) -> str:
    """The row's name: ``tl.inject, 25 store keys, cache miss``."""
    call, _, kind = op.partition(", ")
    return f"tl.{call}, {keys} store key{'s' if keys > 1 else ''}, {kind}"


def measure_keys(counts: Sequence[int], rounds: int, ops: int) -> dict[str, list[float]]:
    """Seconds per operation, one sample per round, for every op and key count."""
    samples: dict[str, list[float]] = {key_variant(o, n): [] for o in KEY_OPS for n in counts}
    order = [(op, keys) for op in KEY_OPS for keys in counts]
    shuffle = random.Random(0).shuffle
    for _ in range(rounds + 1):  # the first round warms up, and is not kept
        shuffle(order)
        for op, keys in order:
            contexts = _contexts(keys, ops)
            if op.startswith("inject"):
                inputs = contexts if "miss" in op else [contexts[0]] * ops
                figure = _per_op(_inject, inputs)
            else:
                carriers = _carriers(contexts)
                inputs = carriers if "miss" in op else [carriers[0]] * ops
                figure = _per_op(tl.extract, inputs)
            samples[key_variant(op, keys)].append(figure)
    return {name: values[1:] for name, values in samples.items()}


def fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least squares: the slope, the intercept and R² of *ys* against *xs*."""
    slope, intercept = statistics.linear_regression(xs, ys)
    mean = statistics.fmean(ys)
    total = sum((y - mean) ** 2 for y in ys)
    left = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys, strict=True))
    return slope, intercept, 1.0 - left / total if total else 1.0


def key_results(samples: dict[str, list[float]], counts: Sequence[int]) -> list[Result]:
    """A row per op and key count (ratio to its 1-key row), and the per-key slope rows."""
    results = []
    for op in KEY_OPS:
        for keys in counts:
            first = key_variant(op, counts[0])
            name = key_variant(op, keys)
            reference = None if name == first else first
            results.append(Result(BENCHMARK, name, samples[name], TIME, reference=reference))
    for op, limit in (("inject", INJECT_PER_KEY), ("extract", EXTRACT_PER_KEY)):
        for kind in ("cache miss", "cache hit"):
            series = [samples[key_variant(f"{op}, {kind}", keys)] for keys in counts]
            slopes = [fit(counts, [one[at] for one in series])[0] for at in range(len(series[0]))]
            _, intercept, r2 = fit(counts, [statistics.median(one) for one in series])
            miss = kind == "cache miss"
            results.append(
                Result(
                    BENCHMARK,
                    f"tl.{op} per store key ({kind}, slope over {counts[0]}-{counts[-1]} keys)",
                    slopes,
                    TIME,
                    limit=limit if miss else None,
                    notes={
                        "R² of the line through the medians": f"{r2:.3f}",
                        "intercept": f"{intercept * 1e6:.2f} µs",
                    },
                )
            )
    return results


# --------------------------------------------------------------------------- concurrency

SERVERS = {"bare": "bare aiohttp", "threadline": "threadline.aiohttp.setup, context only"}


def serve(name: str, port_file: str) -> None:
    """Run one server until SIGTERM (in its own process, pinned to core 0)."""
    import logging

    from aiohttp import web

    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application()
        if name == "threadline":
            import threadline.aiohttp

            threadline.aiohttp.setup(app)
        app.router.add_get("/hello/{name}", ok)
        await serve_until_sigterm(app, port_file, access_log=None)

    asyncio.run(main())


def _wrk(url: str, connections: int, seconds: int, script: str) -> int:
    """Load *url* with wrk; return the requests answered."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script, url]
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        command = ["taskset", "-c", "1", *command]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    done = re.search(r"(\d+) requests in", out)
    if done is None or "Non-2xx" in out:
        raise RuntimeError(f"wrk did not get its answers: {out}")
    return int(done[1])


@dataclass
class Served:
    """One round of one server at one concurrency."""

    cpu_per_request: float
    rate: float


def measure_concurrency(
    levels: Sequence[int], rounds: int, seconds: int
) -> dict[tuple[str, int], list[Served]]:
    """Each server's CPU per request at each concurrency, rounds in shuffled order."""
    folder = tempfile.mkdtemp()
    script = Path(folder, "headers.lua")
    script.write_text(LUA)
    servers: dict[str, subprocess.Popen[bytes]] = {}
    urls = {}
    try:
        for name in SERVERS:
            port_file = Path(folder, name)
            servers[name] = subprocess.Popen(
                [sys.executable, __file__, "--serve", name, "--port-file", str(port_file)]
            )
            deadline = time.monotonic() + 30
            while not (port_file.exists() and port_file.read_text()):
                if time.monotonic() > deadline or servers[name].poll() is not None:
                    raise RuntimeError(f"server {name} did not start")
                time.sleep(0.05)
            urls[name] = f"http://127.0.0.1:{port_file.read_text()}/hello/world"
            _wrk(urls[name], 8, 1, str(script))  # warm up
        served: dict[tuple[str, int], list[Served]] = {(n, c): [] for n in SERVERS for c in levels}
        order = list(served)
        for _ in range(rounds):
            random.shuffle(order)
            for name, connections in order:
                pid = servers[name].pid
                before, start = _cpu_of(pid), time.perf_counter()
                requests = _wrk(urls[name], connections, seconds, str(script))
                elapsed, used = time.perf_counter() - start, _cpu_of(pid) - before
                served[name, connections].append(Served(used / requests, requests / elapsed))
    finally:
        for server in servers.values():
            server.send_signal(signal.SIGTERM)
        for server in servers.values():
            server.wait(60)
        shutil.rmtree(folder, ignore_errors=True)
    return served


def concurrency_variant(name: str, connections: int) -> str:
    return f"aiohttp server CPU per request, {connections} concurrent: {SERVERS[name]}"


def concurrency_results(served: dict[tuple[str, int], list[Served]]) -> list[Result]:
    results = []
    for (name, connections), rounds in served.items():
        results.append(
            Result(
                BENCHMARK,
                concurrency_variant(name, connections),
                [one.cpu_per_request for one in rounds],
                TIME,
                reference=None if name == "bare" else concurrency_variant("bare", connections),
                notes={"requests/s": f"{statistics.median(one.rate for one in rounds):,.0f}"},
            )
        )
    return results


# --------------------------------------------------------------------------- workers


def job() -> int:
    return 1


def _nap() -> None:
    time.sleep(0.05)


def measure_workers(
    counts: Sequence[int], rounds: int, jobs: int
) -> dict[tuple[str, int], list[float]]:
    """Seconds per job of a burst of *jobs*, through threadline's submit and the stdlib's."""
    bursts: dict[tuple[str, int], list[float]] = {}
    spawn = multiprocessing.get_context("spawn")
    with tl.request.scope(request_id="r1", user_id=42):
        for workers in counts:
            with tl.ProcessPoolExecutor(workers, mp_context=spawn) as pool:
                # every worker up before timing (spawn starts them on demand)
                concurrent.futures.wait([pool.submit(_nap) for _ in range(workers * 2)])
                submits = {
                    "bare": lambda fn, pool=pool: concurrent.futures.ProcessPoolExecutor.submit(
                        pool, fn
                    ),
                    "threadline": pool.submit,
                }
                for name in submits:
                    bursts[name, workers] = []
                order = list(submits)
                for _ in range(rounds):
                    random.shuffle(order)
                    for name in order:
                        submit = submits[name]
                        start = time.perf_counter()
                        concurrent.futures.wait([submit(job) for _ in range(jobs)])
                        bursts[name, workers].append((time.perf_counter() - start) / jobs)
    return bursts


POOLS = {
    "bare": "stdlib submit on the same pool (no context)",
    "threadline": "tl.ProcessPoolExecutor submit (context carried)",
}


def workers_variant(name: str, workers: int) -> str:
    return f"process pool, {workers} worker{'s' if workers > 1 else ''}: {POOLS[name]}"


def workers_results(bursts: dict[tuple[str, int], list[float]]) -> list[Result]:
    results = []
    for (name, workers), per_job in bursts.items():
        notes = {"jobs/s": f"{1 / statistics.median(per_job):,.0f}"}
        if name == "threadline":
            bare = bursts["bare", workers]
            cost = statistics.median(ours - base for ours, base in zip(per_job, bare, strict=True))
            notes["threadline's cost per job"] = f"{cost * 1e6:.1f} µs"
        results.append(
            Result(
                BENCHMARK,
                workers_variant(name, workers),
                per_job,
                TIME,
                reference=None if name == "bare" else workers_variant("bare", workers),
                notes=notes,
            )
        )
    return results


# --------------------------------------------------------------------------- plots


def plot(
    folder: Path,
    counts: Sequence[int],
    keys: dict[str, list[float]],
    served: dict[tuple[str, int], list[Served]],
    bursts: dict[tuple[str, int], list[float]],
) -> list[Path]:
    """Write the three plots into *folder*; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []

    figure, axes = plt.subplots(figsize=(7, 4.2))
    for op, style in zip(KEY_OPS, ("o-", "o:", "s-", "s:"), strict=True):
        medians = [statistics.median(keys[key_variant(op, n)]) * 1e6 for n in counts]
        axes.plot(counts, medians, style, label=f"tl.{op}")
    axes.set_xlabel("keys in the store")
    axes.set_ylabel("µs per operation (median)")
    axes.set_title("Carrier cost against store keys")
    axes.grid(alpha=0.3)
    axes.legend()
    written.append(_save(figure, folder / "scale-keys.png"))

    levels = sorted({level for _, level in served})
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for name, label in SERVERS.items():
        cpu = [statistics.median(o.cpu_per_request for o in served[name, c]) * 1e6 for c in levels]
        axes.plot(levels, cpu, "o-", label=label)
    axes.set_xscale("log", base=2)
    axes.set_xticks(levels, [str(level) for level in levels])
    axes.set_ylim(bottom=0)
    axes.set_xlabel("concurrent connections (wrk -c)")
    axes.set_ylabel("server CPU µs per request (median)")
    axes.set_title("aiohttp server cost against concurrency")
    axes.grid(alpha=0.3)
    axes.legend()
    written.append(_save(figure, folder / "scale-concurrency.png"))

    workers = sorted({count for _, count in bursts})
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for name, label in POOLS.items():
        rates = [1 / statistics.median(bursts[name, count]) for count in workers]
        axes.plot(workers, rates, "o-", label=label)
    axes.set_xscale("log", base=2)
    axes.set_xticks(workers, [str(count) for count in workers])
    axes.set_ylim(bottom=0)
    axes.set_xlabel(f"worker processes (on {os.cpu_count()} cores)")
    axes.set_ylabel("trivial jobs per second (median)")
    axes.set_title("Process pool throughput against workers")
    axes.grid(alpha=0.3)
    axes.legend()
    written.append(_save(figure, folder / "scale-workers.png"))
    return written


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    # no date or version in the file: the same figures make the same bytes
    figure.savefig(path, dpi=100, metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


# --------------------------------------------------------------------------- the run


def report(results: list[Result]) -> str:
    by_name = {result.variant: result for result in results}
    rows = ["| variant | median | ratio | notes |", "|---|---:|---:|---|"]
    for result in results:
        base = by_name.get(result.reference or "")
        shown = f"{ratio(result, base):.2f}x" if base else ""
        notes = "; ".join(f"{key}: {value}" for key, value in result.notes.items())
        rows.append(f"| {result.variant} | {result.median * 1e6:.2f} µs | {shown} | {notes} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run of each, no plots")
    parser.add_argument("--json", metavar="PATH", help="write the results here as JSON")
    parser.add_argument(
        "--plots", type=Path, help=f"write the PNGs here (default {PLOTS}, none with --quick)"
    )
    parser.add_argument(
        "--rounds", type=int, help="rounds of every series (default 30 keys, 3 servers, 8 pools)"
    )
    parser.add_argument("--serve", choices=list(SERVERS), help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port_file)
        return 0
    if args.quick:
        counts, key_rounds, ops = (1, 10, 50, 150), 3, 20
        levels, served_rounds, seconds = (1, 16), 1, 1
        workers, pool_rounds, jobs = (1, 2), 2, 40
    else:
        counts, key_rounds, ops = KEY_COUNTS, 30, 200
        levels, served_rounds, seconds = CONCURRENCY, 3, 2
        workers, pool_rounds, jobs = WORKERS, 8, 400
    if args.rounds:
        key_rounds = served_rounds = pool_rounds = args.rounds
    keys = measure_keys(counts, key_rounds, ops)
    served = measure_concurrency(levels, served_rounds, seconds) if shutil.which("wrk") else {}
    bursts = measure_workers(workers, pool_rounds, jobs)
    results = key_results(keys, counts) + concurrency_results(served) + workers_results(bursts)
    if args.json:
        write_results(args.json, results)
    print(report(results))
    folder = args.plots or (None if args.quick else PLOTS)
    if folder is not None and served:
        for path in plot(folder, counts, keys, served, bursts):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
