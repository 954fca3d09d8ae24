"""Lifecycle hooks: what hook support costs with no hook registered, and with one registered.

Each path runs three ways, interleaved round by round in one process:
"without hook support" (the same code with the hook check taken out),
"no hook registered" (threadline as shipped), and "a hook registered" (a
hook with four empty callbacks enabled). The report gives each one's median
and its ratio to the path without hook support. Budget (DESIGN.md): with no
hook registered, unmeasurable.

Run:  .venv/bin/python benchmarks/hooks_bench.py          (full)
      .venv/bin/python benchmarks/hooks_bench.py --quick  (smoke: checks it runs)
      ... --json PATH                                     (the results, for run.py)
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextvars
import functools
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from _report import Result, as_results, write_results

import threadline as tl
from threadline import hooks
from threadline._core.context import Context, attach, get_current, restore
from threadline._core.stores import Scope
from threadline._core.values import FrozenMapping

WITHOUT = "without hook support"
"""The variant each path is compared with: the same code with the hook check taken out."""


class ScopeWithoutHooks(Scope):
    """`Scope` as it was before hook support: the same enter and exit, no check."""

    __slots__ = ()

    def __enter__(self) -> Any:
        if self._token is not None:
            raise RuntimeError("a store scope is already entered; make a new one to nest")
        current = get_current()
        value = self._value
        if self._merge and value is not None:
            outer = current.get(self._key)
            if isinstance(outer, FrozenMapping) and outer:
                value = outer | value
        self._token = attach(Context({**current, self._key: value}))
        return value

    def __exit__(self, *exc_info: object) -> None:
        token, self._token = self._token, None
        if token is not None:
            restore(token)


class PoolWithoutHooks(tl.ThreadPoolExecutor):
    """`tl.ThreadPoolExecutor` (without job spans) as it was before hook support."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        context = contextvars.copy_context()
        return concurrent.futures.ThreadPoolExecutor.submit(self, context.run, fn, *args, **kwargs)


def job() -> int:
    return 1


def timed(fn: Callable[[], object], times: int) -> float:
    start = time.perf_counter()
    for _ in range(times):
        fn()
    return (time.perf_counter() - start) / times


def scope_path(scope: Scope) -> Callable[[], object]:
    def enter_and_exit() -> None:
        with scope:
            pass

    return enter_and_exit


def task_path(loop: asyncio.AbstractEventLoop, tasks: int) -> Callable[[], object]:
    async def nothing() -> None:
        return None

    async def many() -> None:
        for _ in range(tasks):
            await loop.create_task(nothing())

    return lambda: loop.run_until_complete(many())


def measure(rounds: int, times: int) -> dict[str, dict[str, list[float]]]:
    """Time each path three ways, in shuffled order each round."""
    value = tl.request._make({"request_id": "r1"}, {})
    key = tl.request._key
    pool = tl.ThreadPoolExecutor(1, job_spans=False)
    # the same pool (so the same worker thread) through the old submit
    old_submit = functools.partial(PoolWithoutHooks.submit, pool)
    loop = asyncio.new_event_loop()
    plain_loop = asyncio.new_event_loop()
    hooks.track_tasks(loop)
    hook = hooks.create_hook(
        init=lambda r, t: None, before=lambda r: None, after=lambda r: None, destroy=lambda r: None
    )

    def with_hook(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            hook.enable()
            try:
                return fn()
            finally:
                hook.disable()

        return run

    paths: dict[str, dict[str, Callable[[], float]]] = {
        "scope enter+exit": {
            WITHOUT: lambda: timed(scope_path(ScopeWithoutHooks(key, value)), times * 20),
            "no hook registered": lambda: timed(scope_path(Scope(key, value)), times * 20),
            "a hook registered": with_hook(
                lambda: timed(scope_path(Scope(key, value)), times * 20)
            ),
        },
        "thread-pool submit+result": {
            WITHOUT: lambda: timed(lambda: old_submit(job).result(), times),
            "no hook registered": lambda: timed(lambda: pool.submit(job).result(), times),
            "a hook registered": with_hook(lambda: timed(lambda: pool.submit(job).result(), times)),
        },
        "asyncio task create+await (tracked loop)": {
            WITHOUT: lambda: timed(task_path(plain_loop, 10), times // 10 or 1),
            "no hook registered": lambda: timed(task_path(loop, 10), times // 10 or 1),
            "a hook registered": with_hook(lambda: timed(task_path(loop, 10), times // 10 or 1)),
        },
    }
    results = {path: {name: [] for name in variants} for path, variants in paths.items()}
    order = [(path, name) for path, variants in paths.items() for name in variants]
    shuffle = random.Random(0).shuffle
    with tl.request.scope(request_id="r1", user_id=42):
        for _ in range(rounds):
            shuffle(order)
            for path, name in order:
                results[path][name].append(paths[path][name]())
    hooks.untrack_tasks(loop)
    loop.close()
    plain_loop.close()
    pool.shutdown()
    return results


def results_of(results: dict[str, dict[str, list[float]]]) -> list[Result]:
    """Each path's variants as "path: variant", judged against the path without hook support."""
    measured: list[Result] = []
    for path, variants in results.items():
        named = {f"{path}: {name}": times for name, times in variants.items()}
        measured += as_results("hooks", named, f"{path}: {WITHOUT}")
    return measured


def report(results: dict[str, dict[str, list[float]]]) -> str:
    rows = [
        "| path | without hook support | no hook registered | a hook registered |",
        "|---|---:|---:|---:|",
    ]
    for path, variants in results.items():
        medians = {name: statistics.median(times) for name, times in variants.items()}
        base = medians[WITHOUT]
        cells = [f"{m * 1e6:.2f} µs ({m / base:.2f}x)" for m in medians.values()]
        rows.append(f"| {path} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few rounds, to check it runs")
    parser.add_argument("--json", metavar="PATH", help="write the results here as JSON")
    args = parser.parse_args(argv)
    rounds, times = (2, 20) if args.quick else (200, 200)
    results = measure(rounds, times)
    if args.json:
        write_results(args.json, results_of(results))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
