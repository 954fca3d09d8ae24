"""`import threadline`: a child's wall time with the import, less the same child without it.

For each interpreter (``--python PATH``, repeatable; this one by default),
runs of ``python -c pass`` and ``python -c "import threadline"`` go in pairs,
in random order within each pair; a pair's difference is one sample. The
bytecode is written first (one import with PYTHONDONTWRITEBYTECODE unset), so
no run compiles. Budget (DESIGN.md): <= 25 ms on every supported Python.

Every public name loads on first use, so a second row per interpreter (no
budget, shown so the import's figure does not flatter) times ``import
threadline`` with the first use of ``threadline.request``, which loads
``opentelemetry.context`` and threadline's core: what a program pays at its
first scope.

Run:  .venv/bin/python benchmarks/import_bench.py                   (full)
      .venv/bin/python benchmarks/import_bench.py --quick           (smoke: checks it runs)
      ... --python .venv-3.12/bin/python --python .venv-3.13/bin/python --json PATH
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time

from _report import TIME, Result, spread, write_results

PLAIN, IMPORT = "pass", "import threadline"
FIRST_USE = "import threadline; threadline.request"
BUDGET = "<= 25 ms"


def child_time(python: str, code: str, env: dict[str, str]) -> float:
    """Seconds from starting ``python -c code`` until it exits."""
    start = time.perf_counter()
    subprocess.run([python, "-c", code], env=env, check=True)
    return time.perf_counter() - start


def measure(python: str, runs: int) -> list[Result]:
    """Rounds of *python* with `pass`, the import and its first use, in random order.

    Each run's difference to its round's `pass` is one sample.
    """
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    child_time(python, FIRST_USE, env)  # writes whatever bytecode is missing
    shuffle = random.Random(0).shuffle
    times: dict[str, list[float]] = {PLAIN: [], IMPORT: [], FIRST_USE: []}
    order = list(times)
    for _ in range(runs):
        shuffle(order)
        for code in order:
            times[code].append(child_time(python, code, env))
    plain = statistics.median(times[PLAIN])

    def over_plain(code: str) -> list[float]:
        pairs = zip(times[PLAIN], times[code], strict=True)
        return [imported - bare for bare, imported in pairs]

    differences = over_plain(IMPORT)
    first_use = over_plain(FIRST_USE)
    return [
        Result(
            "import",
            f"import threadline (Python {version})",
            differences,
            TIME,
            limit=0.025,
            notes={
                "import threadline": f"{statistics.median(differences) * 1e3:.1f} ms over "
                f"`python -c pass` ({plain * 1e3:.1f} ms), budget {BUDGET}",
                "python": python,
            },
        ),
        Result(
            "import",
            f"import threadline, then threadline.request (Python {version})",
            first_use,
            TIME,
            notes={
                "first use": f"{statistics.median(first_use) * 1e3:.1f} ms over "
                "`python -c pass`: the import and the first use of a store "
                "(opentelemetry.context and threadline's core load); no budget",
                "python": python,
            },
        ),
    ]


def report(results: list[Result]) -> str:
    rows = ["| row | median over `pass` | quartiles |", "|---|---:|---:|"]
    for result in results:
        low, high = spread(result.samples)
        rows.append(
            f"| {result.variant} | {result.median * 1e3:.1f} ms "
            f"| {low * 1e3:.1f} to {high * 1e3:.1f} ms |"
        )
    rows.append(f"\nbudget: {BUDGET} over `python -c pass` on every supported Python")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few runs, to check it runs")
    parser.add_argument(
        "--python",
        action="append",
        metavar="PATH",
        help="an interpreter with threadline installed (repeatable; default this one)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the results here as JSON")
    args = parser.parse_args(argv)
    runs = 3 if args.quick else 41
    results = [
        result for python in args.python or [sys.executable] for result in measure(python, runs)
    ]
    if args.json:
        write_results(args.json, results)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
