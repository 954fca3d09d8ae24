"""Lifecycle hooks: what hook support costs with no hook registered, and with one registered.

Each path runs, interleaved round by round in one process: "before hook
support" (the code of the commit before hooks, 7a49f48^ "Lifecycle hooks":
its ``src/threadline`` taken with ``git archive`` and imported beside today's
as ``threadline_before``), "without hook support" (today's code with the
hook check taken out, written here), "no hook registered" (threadline as
shipped) and "a hook registered" (a hook with four empty callbacks enabled).

Budget (DESIGN.md): with no hook registered, within the spread of the code
before hooks: the row's target is "<= 1.00x", so that its verdict (from the
95% interval of the round-by-round ratio) is "met" or "tie" when no slowdown
stands out of the spread, "not met" when one does. The scope path runs the
old ``Scope``; the thread-pool path runs the old ``submit`` function's own
code on today's pool (the same worker thread, since the core a worker lands
on moves a hand-off more than any variant). The asyncio path had no
threadline code before hooks (task tracking came with them): it has no such
row, and its reference is a plain loop. Without git history (a shallow
clone, an unpacked archive) the rows before hooks are left out and the
report says why.

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
import importlib
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _report import Result, as_results, write_results

import threadline as tl
from threadline import hooks
from threadline._core.context import Context, attach, get_current, restore
from threadline._core.stores import Scope
from threadline._core.values import FrozenMapping

WITHOUT = "without hook support"
"""The variant each path is compared with: the same code with the hook check taken out."""
BEFORE_COMMIT = "7a49f48^"
BEFORE = f"before hook support ({BEFORE_COMMIT})"
"""The variant the budget is judged against: the code of the commit before hooks."""
NO_HOOK = "no hook registered"
NO_SLOWER = "<= 1.00x"
"""The budget against the code before hooks: a tie (within the spread) or better."""
ROOT = Path(__file__).resolve().parent.parent


def load_before(folder: Path) -> tuple[types.ModuleType | None, str]:
    """threadline as of `BEFORE_COMMIT`, imported as ``threadline_before``; or None and why not."""
    tar = folder / "before.tar"
    git, untar = shutil.which("git"), shutil.which("tar")
    if git is None or untar is None:
        return None, "git or tar is not installed"
    try:
        subprocess.run(
            [git, "-C", str(ROOT), "archive", f"--output={tar}", BEFORE_COMMIT, "src/threadline"],
            check=True,
            capture_output=True,
            text=True,
        )
        subprocess.run([untar, "-xf", str(tar), "-C", str(folder)], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        said = getattr(exc, "stderr", "") or str(exc)
        return None, f"no git history to take {BEFORE_COMMIT} from ({said.strip()[:120]})"
    (folder / "src" / "threadline").rename(folder / "threadline_before")
    sys.path.insert(0, str(folder))
    return importlib.import_module("threadline_before"), ""


def old_submit(before: types.ModuleType) -> Callable[..., Any]:
    """The old `ThreadPoolExecutor.submit`, its code run on today's pool.

    Its ``super()`` resolves through the ``__class__`` cell: given today's
    class, it reaches the standard library's ``submit`` as the old one did.
    """
    old = importlib.import_module("threadline_before._threads").ThreadPoolExecutor.submit
    cells = tuple(
        types.CellType(tl.ThreadPoolExecutor) if name == "__class__" else None
        for name in old.__code__.co_freevars
    )
    return types.FunctionType(old.__code__, old.__globals__, old.__name__, old.__defaults__, cells)


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


def measure(
    rounds: int, times: int, before: types.ModuleType | None
) -> dict[str, dict[str, list[float]]]:
    """Time each path every way, in shuffled order each round."""
    value = tl.request._make({"request_id": "r1"}, {})
    key = tl.request._key
    pool = tl.ThreadPoolExecutor(1, job_spans=False)
    # the same pool (so the same worker thread) through the submit without the check
    unhooked_submit = functools.partial(PoolWithoutHooks.submit, pool)
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
            WITHOUT: lambda: timed(lambda: unhooked_submit(job).result(), times),
            "no hook registered": lambda: timed(lambda: pool.submit(job).result(), times),
            "a hook registered": with_hook(lambda: timed(lambda: pool.submit(job).result(), times)),
        },
        "asyncio task create+await (tracked loop)": {
            WITHOUT: lambda: timed(task_path(plain_loop, 10), times // 10 or 1),
            "no hook registered": lambda: timed(task_path(loop, 10), times // 10 or 1),
            "a hook registered": with_hook(lambda: timed(task_path(loop, 10), times // 10 or 1)),
        },
    }
    if before is not None:
        old_scope = before.request.scope(request_id="r1")  # re-entered, as Scope(key, value) is
        paths["scope enter+exit"][BEFORE] = lambda: timed(scope_path(old_scope), times * 20)
        submit = functools.partial(old_submit(before), pool)
        paths["thread-pool submit+result"][BEFORE] = lambda: timed(
            lambda: submit(job).result(), times
        )
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


def results_of(results: dict[str, dict[str, list[float]]], missing: str = "") -> list[Result]:
    """Each path's variants as "path: variant", against the path without hook support;
    "no hook registered" also judged against the code before hooks where it ran."""
    measured: list[Result] = []
    for path, variants in results.items():
        named = {f"{path}: {name}": times for name, times in variants.items()}
        measured += as_results("hooks", named, f"{path}: {WITHOUT}")
    for result in measured:
        path, _, name = result.variant.partition(": ")
        if name != NO_HOOK:
            continue
        old = results[path].get(BEFORE)
        if old is not None:
            result.also[f"{path}: {BEFORE}"] = NO_SLOWER
        elif path.startswith("asyncio"):
            result.notes[BEFORE] = "no threadline code on this path before hooks"
        else:
            result.notes[BEFORE] = f"not measured: {missing}"
    return measured


def report(results: dict[str, dict[str, list[float]]]) -> str:
    names = [BEFORE, WITHOUT, NO_HOOK, "a hook registered"]
    rows = ["| path | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for path, variants in results.items():
        medians = {name: statistics.median(times) for name, times in variants.items()}
        base = medians[WITHOUT]
        cells = [
            f"{medians[n] * 1e6:.2f} µs ({medians[n] / base:.2f}x)" if n in medians else "-"
            for n in names
        ]
        rows.append(f"| {path} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few rounds, to check it runs")
    parser.add_argument("--json", metavar="PATH", help="write the results here as JSON")
    args = parser.parse_args(argv)
    rounds, times = (2, 20) if args.quick else (200, 200)
    folder = Path(tempfile.mkdtemp())
    try:
        before, missing = load_before(folder)
        results = measure(rounds, times, before)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        write_results(args.json, results_of(results, missing))
    print(report(results))
    if missing:
        print(f"\n{BEFORE}: {missing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
