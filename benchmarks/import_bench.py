"""`import threadline`: a child's wall time with the import, less the same child without it.

For each interpreter (``--python PATH``, repeatable; this one by default),
runs of ``python -c pass`` and ``python -c "import threadline"`` go in pairs,
in random order within each pair; a pair's difference is one sample. The
bytecode is written first (one import with PYTHONDONTWRITEBYTECODE unset), so
no run compiles. Budget (DESIGN.md): <= 25 ms on every supported Python.

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
BUDGET = "<= 25 ms"


def child_time(python: str, code: str, env: dict[str, str]) -> float:
    """Seconds from starting ``python -c code`` until it exits."""
    start = time.perf_counter()
    subprocess.run([python, "-c", code], env=env, check=True)
    return time.perf_counter() - start


def measure(python: str, runs: int) -> Result:
    """Paired runs of *python* with and without the import: their differences as samples."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    child_time(python, IMPORT, env)  # writes whatever bytecode is missing
    shuffle = random.Random(0).shuffle
    times: dict[str, list[float]] = {PLAIN: [], IMPORT: []}
    order = list(times)
    for _ in range(runs):
        shuffle(order)
        for code in order:
            times[code].append(child_time(python, code, env))
    pairs = zip(times[PLAIN], times[IMPORT], strict=True)
    differences = [imported - plain for plain, imported in pairs]
    plain = statistics.median(times[PLAIN])
    return Result(
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
    )


def report(results: list[Result]) -> str:
    rows = ["| interpreter | `import threadline` (median) | quartiles |", "|---|---:|---:|"]
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
    results = [measure(python, runs) for python in args.python or [sys.executable]]
    if args.json:
        write_results(args.json, results)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
