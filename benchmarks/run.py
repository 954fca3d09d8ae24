"""Run every benchmark and write their table into docs/performance.md (what scripts/bench runs).

Each benchmark runs in a process of its own and measures its variants side by
side, in interleaved rounds (see its docstring); this collects their results
(`_report.Result`) and writes, between the two markers of docs/performance.md,
the targets with their ratios and whether each is met, then every variant's
median and spread, with the machine and the versions it ran on.

Run:  scripts/bench [--quick] [--only NAME ...]     (the README's command)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from _report import RATE, Result, met, ratio, read_results, spread

HERE = Path(__file__).resolve().parent
PAGE = HERE.parent / "docs" / "performance.md"
BEGIN = "<!-- results: written by scripts/bench, do not edit by hand -->"
END = "<!-- end of results -->"
BENCHMARKS = {
    "micro": "micro_bench.py",
    "threads": "threads_bench.py",
    "processes": "processes_bench.py",
    "hooks": "hooks_bench.py",
    "logs": "logs_bench.py",
    "aiohttp": "aiohttp_bench.py",
    "export": "export_bench.py",
    "asgi": "asgi_bench.py",
    "clients": "clients_bench.py",
    "celery": "celery_bench.py",
    "kafka": "kafka_bench.py",
    "rabbitmq": "rabbitmq_bench.py",
    "import": "import_bench.py",
}
PACKAGES = (
    "threadline",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "aiohttp",
    "opentelemetry-instrumentation-aiohttp-server",
    "fastapi",
    "uvicorn",
    "uvloop",
    "httptools",
    "asgi-correlation-id",
    "opentelemetry-instrumentation-fastapi",
    "httpx",
    "opentelemetry-instrumentation-httpx",
    "requests",
    "opentelemetry-instrumentation-requests",
    "opentelemetry-instrumentation-threading",
    "celery",
    "aiokafka",
    "opentelemetry-instrumentation-aiokafka",
    "confluent-kafka",
    "opentelemetry-instrumentation-confluent-kafka",
    "aio-pika",
    "opentelemetry-instrumentation-aio-pika",
    "structlog",
    "loguru",
    "pyperf",
)


def run_benchmarks(
    names: list[str], quick: bool, interpreters: list[str]
) -> tuple[list[Result], list[str]]:
    """Run each named benchmark; return their results and what failed."""
    results: list[Result] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            out = Path(folder, f"{name}.json")
            command = [sys.executable, str(HERE / BENCHMARKS[name]), "--json", str(out)]
            if quick:
                command.append("--quick")
            if name == "import":
                for interpreter in interpreters or [sys.executable]:
                    command += ["--python", interpreter]
            started = time.monotonic()
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            done = subprocess.run(command, check=False, stdout=subprocess.DEVNULL)
            print(f"bench: {name} took {time.monotonic() - started:.0f} s", file=sys.stderr)
            if done.returncode != 0 or not out.exists():
                failed.append(name)
                continue
            results.extend(read_results(out))
    return results, failed


def render(
    results: list[Result],
    failed: list[str],
    minutes: float,
    load: tuple[float, float] | None = None,
) -> str:
    """The markdown written between the markers (*load*: the load average before and after)."""
    lines = [BEGIN, "", _measured_on(minutes, load), ""]
    if failed:
        lines += [f"Not measured in this run (the benchmark failed): {', '.join(failed)}.", ""]
    lines += ["### Targets", "", "| path | against | ratio | target | met |"]
    lines.append("|---|---|---:|---|---|")
    by_key = {(result.benchmark, result.variant): result for result in results}
    for result in results:
        bounds = dict(result.also)
        if result.reference and result.target:
            bounds = {result.reference: result.target, **bounds}
        for reference_name, target in bounds.items():
            reference = by_key.get((result.benchmark, reference_name))
            if reference is None:
                continue
            value = ratio(result, reference)
            lines.append(
                f"| {result.variant} | {reference_name} | {value:.3f}x | {target} "
                f"| {'yes' if met(target, value) else '**no**'} |"
            )
    for result in results:
        if result.limit is not None:
            median = result.median
            lines.append(
                f"| {result.variant} | (its own time) | {_figure(median, result.unit)} "
                f"| <= {_figure(result.limit, result.unit)} "
                f"| {'yes' if median <= result.limit else '**no**'} |"
            )
    for benchmark in dict.fromkeys(result.benchmark for result in results):
        lines += ["", f"### {benchmark}", ""]
        lines += _detail([result for result in results if result.benchmark == benchmark], by_key)
    lines += ["", END]
    return "\n".join(lines)


def _detail(results: list[Result], by_key: dict[tuple[str, str], Result]) -> list[str]:
    rate = results[0].unit == RATE
    lines = [
        f"| variant | {'median' if rate else 'median per operation'} | quartiles | ratio | notes |",
        "|---|---:|---:|---:|---|",
    ]
    for result in results:
        low, high = spread(result.samples)
        reference = by_key.get((result.benchmark, result.reference or ""))
        shown = f"{ratio(result, reference):.2f}x to {reference.variant}" if reference else ""
        notes = "; ".join(f"{key}: {value}" for key, value in result.notes.items())
        lines.append(
            f"| {result.variant} | {_figure(result.median, result.unit)} "
            f"| {_figure(low, result.unit)} to {_figure(high, result.unit)} | {shown} | {notes} |"
        )
    return lines


def _figure(value: float, unit: str) -> str:
    if unit == RATE:
        return f"{value:,.0f}/s"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    if value >= 1e-6:
        return f"{value * 1e6:.2f} µs"
    return f"{value * 1e9:.0f} ns"


def _measured_on(minutes: float, load: tuple[float, float] | None = None) -> str:
    installed = {dist.metadata["Name"].lower(): dist.version for dist in metadata.distributions()}
    versions = [f"{name} {installed[name]}" for name in PACKAGES if name in installed]
    if shutil.which("wrk"):
        said = subprocess.run(
            [shutil.which("wrk") or "wrk", "--version"], capture_output=True, text=True, check=False
        )
        words = (said.stdout or said.stderr).split()
        if len(words) > 1:
            versions.append(f"wrk {words[1]}")
    busy = f", load average {load[0]:.1f} before and {load[1]:.1f} after" if load else ""
    return (
        f"Measured {datetime.date.today().isoformat()} by `scripts/bench` ({minutes:.0f} min) "
        f"on {_cpu()}, {os.cpu_count()} cores{busy}, Linux {platform.release()}; "
        f"Python {platform.python_version()}; {', '.join(versions)}."
    )


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "an unknown processor"


def write_page(section: str, page: Path = PAGE) -> None:
    """Put *section* between the markers of *page* (at its end when it has none)."""
    text = page.read_text()
    if BEGIN in text and END in text:
        before, _, rest = text.partition(BEGIN)
        _, _, after = rest.partition(END)
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    page.write_text(text)


def merge(section: str, old: str, names: list[str]) -> str:
    """*old* (a section `render` wrote) with the benchmarks *names* as *section* has them.

    Their target rows replace those of the same paths (or go after the
    others), their own tables replace theirs (or go last), and *section*'s
    line saying when and on what it was measured is added, naming them: the
    rest of *old* stays as that run left it.
    """
    fresh = section.splitlines()
    lines = old.splitlines()
    ours = {line.split("|")[1].strip() for line in _targets(fresh)}
    targets = [line for line in _targets(lines) if line.split("|")[1].strip() not in ours]
    targets += _targets(fresh)
    tables = {**_tables(lines), **{n: t for n, t in _tables(fresh).items() if n in names}}
    measured = [line for line in lines if line.startswith("Measured ")]
    measured = [line for line in measured if not any(f"`{n}`" in line for n in names)]
    told = next(line for line in fresh if line.startswith("Measured "))
    named = ", ".join(f"`{name}`" for name in names)
    measured.append(told.replace("by `scripts/bench`", f"by `scripts/bench --only` ({named})", 1))
    out = [BEGIN, ""]
    for line in measured:
        out += [line, ""]
    out += ["### Targets", "", "| path | against | ratio | target | met |"]
    out += ["|---|---|---:|---|---|"]
    out += targets
    for name, table in tables.items():
        out += ["", f"### {name}", "", *table]
    return "\n".join([*out, "", END])


def _targets(lines: list[str]) -> list[str]:
    start = lines.index("### Targets") + 4 if "### Targets" in lines else len(lines)
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def _tables(lines: list[str]) -> dict[str, list[str]]:
    tables: dict[str, list[str]] = {}
    for at, line in enumerate(lines):
        if line.startswith("### ") and line != "### Targets":
            rows = []
            for row in lines[at + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(row)
            tables[line[4:]] = rows
    return tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke of each; nothing written")
    parser.add_argument(
        "--only", action="append", choices=list(BENCHMARKS), help="these only; nothing written"
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --only: write these benchmarks' rows into the page, keeping the others'",
    )
    parser.add_argument(
        "--interpreter", action="append", default=[], help="measure `import threadline` under it"
    )
    parser.add_argument("--out", type=Path, default=PAGE, help="the page to write")
    args = parser.parse_args(argv)
    started, before = time.monotonic(), os.getloadavg()[0]
    results, failed = run_benchmarks(args.only or list(BENCHMARKS), args.quick, args.interpreter)
    load = (before, os.getloadavg()[0])  # the machine's other work, which moves every figure
    section = render(results, failed, (time.monotonic() - started) / 60, load)
    print(section)
    if not args.quick and not args.only:  # the page shows every benchmark, of one run
        write_page(section, args.out)
    elif not args.quick and args.merge and not failed:
        text = args.out.read_text()
        old = text.partition(BEGIN)[2].partition(END)[0]
        write_page(merge(section, old, args.only), args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
