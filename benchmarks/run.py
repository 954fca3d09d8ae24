"""Run every benchmark and write their table into docs/performance.md (what scripts/bench runs).

Each benchmark runs in a process of its own and measures its variants side by
side, in interleaved rounds (see its docstring); this collects their results
(`_report.Result`) and writes, between the two markers of docs/performance.md,
the targets with their ratios, 95% intervals, absolute figures and verdicts,
then every variant's median and spread, with the machine and the versions it
ran on. A full run also profiles a few variants under py-spy (profile_http.py,
profile_mq.py) and writes their summary between the page's profile markers.

Every full run and every ``--merge`` run is kept, never overwritten, in
``benchmarks/runs/<UTC date-time>-<short commit>[-dirty]/``: each benchmark's
raw JSON and stderr, the rendered section, the machine line, py-spy's raw
output; the page names the run it shows and lists every kept run.

Run:  scripts/bench [--quick] [--only NAME ...]     (the README's command)
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

from _report import (
    CONFIDENCE,
    NOT_MET,
    RATE,
    TIME,
    Interval,
    Result,
    limit_verdict,
    per_operation,
    ratio,
    ratio_interval,
    read_results,
    spread,
    verdict,
)

HERE = Path(__file__).resolve().parent
PAGE = HERE.parent / "docs" / "performance.md"
BEGIN = "<!-- results: written by scripts/bench, do not edit by hand -->"
END = "<!-- end of results -->"
PROFILES_BEGIN = "<!-- profiles: written by scripts/bench, do not edit by hand -->"
PROFILES_END = "<!-- end of profiles -->"
RUNS_BEGIN = "<!-- runs: written by scripts/bench, do not edit by hand -->"
RUNS_END = "<!-- end of runs -->"
RUNS = HERE / "runs"
"""Where every full and ``--merge`` run is kept, one folder each (see `new_run`)."""
LINK = "../benchmarks/runs"
"""*RUNS* as the page (docs/performance.md) links to it."""
TARGETS_HEADER = [
    "| path | against | ratio [95% interval] | µs per operation: path, against "
    "| target | verdict |",
    "|---|---|---:|---:|---|---|",
]
DASH = "\N{EN DASH}"
PROFILE_SECONDS = 6
PROFILES = {
    # name: (script, its arguments): the variants whose profile the page shows
    "aiohttp, context only": ("profile_http.py", ["context"]),
    "aiohttp, a span per request": ("profile_http.py", ["span"]),
    "aiohttp, contrib": ("profile_http.py", ["contrib"]),
    "aiohttp, ddtrace": ("profile_http.py", ["ddtrace"]),
    "ASGI, empty middleware": ("profile_http.py", ["--bench", "asgi", "empty"]),
    "ASGI, context only": ("profile_http.py", ["--bench", "asgi", "context"]),
    "ASGI, a span per request": ("profile_http.py", ["--bench", "asgi", "span"]),
    "aiokafka burst, context only": ("profile_mq.py", ["kafka", "aiokafka/context"]),
    "aio-pika burst, context only": ("profile_mq.py", ["rabbitmq", "aio-pika/context"]),
}
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
    "scale": "scale_bench.py",
}
PACKAGES = (
    "threadline",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "aiohttp",
    "opentelemetry-instrumentation-aiohttp-server",
    "opentelemetry-instrumentation-aiohttp-client",
    "opentelemetry-instrumentation-logging",
    "ddtrace",
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
    names: list[str], quick: bool, interpreters: list[str], folder: Path | None = None
) -> tuple[list[Result], list[str]]:
    """Run each named benchmark; return their results and what failed.

    With *folder*, each benchmark's JSON (``NAME.json``) and what it wrote to
    stderr (``NAME.stderr``) stay there.
    """
    results: list[Result] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            out = Path(folder or scratch, f"{name}.json")
            command = [sys.executable, str(HERE / BENCHMARKS[name]), "--json", str(out)]
            if quick:
                command.append("--quick")
            if name == "import":
                for interpreter in interpreters or [sys.executable]:
                    command += ["--python", interpreter]
            started = time.monotonic()
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            if folder is None:
                done = subprocess.run(command, check=False, stdout=subprocess.DEVNULL)
            else:
                with Path(folder, f"{name}.stderr").open("w") as log:
                    done = subprocess.run(
                        command, check=False, stdout=subprocess.DEVNULL, stderr=log
                    )
            print(f"bench: {name} took {time.monotonic() - started:.0f} s", file=sys.stderr)
            if done.returncode != 0 or not out.exists():
                if folder is not None:
                    said = Path(folder, f"{name}.stderr").read_text(errors="replace")
                    print("\n".join(said.splitlines()[-20:]), file=sys.stderr)
                failed.append(name)
                continue
            results.extend(read_results(out))
    return results, failed


class Run(NamedTuple):
    """A kept run: its folder under *RUNS*, named ``<UTC date-time>-<short commit>[-dirty]``."""

    name: str
    commit: str
    dirty: bool
    folder: Path


def render(
    results: list[Result],
    failed: list[str],
    minutes: float,
    load: tuple[float, float] | None = None,
    run: Run | None = None,
) -> str:
    """The markdown written between the markers (*load*: the load average before and after)."""
    lines = [BEGIN, "", _measured_on(minutes, load, run), ""]
    if failed:
        lines += [f"Not measured in this run (the benchmark failed): {', '.join(failed)}.", ""]
    lines += ["### Targets", "", *TARGETS_HEADER, *target_rows(results)]
    by_key = {(result.benchmark, result.variant): result for result in results}
    for benchmark in dict.fromkeys(result.benchmark for result in results):
        lines += ["", f"### {benchmark}", ""]
        lines += _detail([result for result in results if result.benchmark == benchmark], by_key)
    lines += ["", END]
    return "\n".join(lines)


def target_rows(results: list[Result]) -> list[str]:
    """A row per bound: each ratio with its interval, absolute figures and verdict; then limits."""
    rows = []
    by_key = {(result.benchmark, result.variant): result for result in results}
    for result in results:
        bounds = dict(result.also)
        if result.reference and result.target:
            bounds = {result.reference: result.target, **bounds}
        for reference_name, target in bounds.items():
            reference = by_key.get((result.benchmark, reference_name))
            if reference is None:
                continue
            interval = ratio_interval(result, reference)
            rows.append(
                f"| {result.variant} | {reference_name} "
                f"| {ratio(result, reference):.3f}x {_interval(interval, '{:.3f}')} "
                f"| {_micro(result)}, {_micro(reference)} | {target} "
                f"| {_verdict(verdict(target, interval), interval)} |"
            )
    for result in results:
        if result.limit is not None:
            interval, judged = limit_verdict(result)
            shown = [_figure(value, result.unit) for value in (interval.low, interval.high)]
            side = "<=" if result.unit == TIME else ">="
            rows.append(
                f"| {result.variant} | (its own {'time' if result.unit == TIME else 'rate'}) "
                f"| {_figure(result.median, result.unit)} {_interval(interval, '{}', shown)} "
                f"| {_micro(result)} | {side} {_figure(result.limit, result.unit)} "
                f"| {_verdict(judged, interval)} |"
            )
    return rows


def _interval(interval: Interval, form: str, shown: list[str] | None = None) -> str:
    """``[low-high]`` (an en dash), with its coverage when too few rounds reach 95%."""
    low, high = shown or [form.format(interval.low), form.format(interval.high)]
    short = interval.coverage < CONFIDENCE - 1e-9
    span = f"{low}{DASH}{high}"
    return f"[{span}, {interval.coverage:.0%}]" if short else f"[{span}]"


def _verdict(judged: str, interval: Interval) -> str:
    shown = "**not met**" if judged == NOT_MET else judged
    if interval.coverage < CONFIDENCE - 1e-9:  # the interval is all the rounds, and still short
        shown += f" (too few rounds for {CONFIDENCE:.0%})"
    return shown


def _micro(result: Result) -> str:
    """µs per operation (per request, per call) at the median; CPU µs for per-CPU-second rates."""
    value = per_operation(result) * 1e6
    shown = (
        f"{value:,.0f}"
        if value >= 100
        else f"{value:.1f}"
        if value >= 10
        else f"{value:.2f}"
        if value >= 0.1
        else f"{value:.3f}"
    )
    cpu = result.unit == RATE and "CPU-second" in result.variant
    return f"{shown} µs{' CPU' if cpu else ''}"


def _detail(results: list[Result], by_key: dict[tuple[str, str], Result]) -> list[str]:
    rate = results[0].unit == RATE
    lines = [
        f"| variant | {'median | µs per operation' if rate else 'median per operation'} "
        "| quartiles | ratio [95% interval] | notes |",
        f"|---|---:|{'---:|' if rate else ''}---:|---:|---|",
    ]
    for result in results:
        low, high = spread(result.samples)
        reference = by_key.get((result.benchmark, result.reference or ""))
        shown = ""
        if reference:
            interval = ratio_interval(result, reference)
            shown = (
                f"{ratio(result, reference):.2f}x {_interval(interval, '{:.2f}')} "
                f"to {reference.variant}"
            )
        notes = "; ".join(f"{key}: {value}" for key, value in result.notes.items())
        median = _figure(result.median, result.unit)
        if rate:
            median += f" | {_micro(result)}"
        lines.append(
            f"| {result.variant} | {median} "
            f"| {_figure(low, result.unit)} to {_figure(high, result.unit)} | {shown} | {notes} |"
        )
    return lines


def _figure(value: float, unit: str) -> str:
    if unit == RATE:
        return f"{value:,.0f}/s"
    size = abs(value)  # (a difference of two times may fall below zero: noise)
    if size >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    if size >= 1e-6:
        return f"{value * 1e6:.2f} µs"
    return f"{value * 1e9:.0f} ns"


def _measured_on(
    minutes: float, load: tuple[float, float] | None = None, run: Run | None = None
) -> str:
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
    kept = f" in run {_run_link(run)}" if run else ""
    return (
        f"Measured {datetime.date.today().isoformat()} by `scripts/bench` ({minutes:.0f} min)"
        f"{kept} "
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


def _run_link(run: Run) -> str:
    changes = ", with uncommitted changes" if run.dirty else ""
    return f"[`{run.name}`]({LINK}/{run.name}/section.md) (commit `{run.commit}`{changes})"


def write_page(section: str, page: Path = PAGE) -> None:
    """Put *section* between the markers of *page* (at its end when it has none)."""
    _write_block(page, BEGIN, END, section)


def _write_block(page: Path, begin: str, end: str, block: str, heading: str = "") -> None:
    """Put *block* (its markers included) in place of *page*'s, or at its end under *heading*."""
    text = page.read_text()
    if begin in text and end in text:
        before, _, rest = text.partition(begin)
        _, _, after = rest.partition(end)
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + (f"{heading}\n\n" if heading else "") + block + "\n"
    page.write_text(text)


def new_run(partial: bool, root: Path = RUNS) -> Run:
    """A new folder for a run under *root*, named by the UTC time and the commit; never reused."""
    commit, dirty = _commit()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    name = f"{stamp}-{commit}{'-dirty' if dirty else ''}"
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 100):
        folder = root / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue  # a run of the same second and commit: this one gets a name of its own
        run = Run(folder.name, commit, dirty, folder)
        _describe(run, {"partial": partial, "finished": False})
        return run
    raise RuntimeError(f"no free run folder named {name} under {root}")


def _describe(run: Run, fields: dict[str, object]) -> None:
    path = run.folder / "run.json"
    told = json.loads(path.read_text()) if path.exists() else {}
    told.update({"name": run.name, "commit": run.commit, "dirty": run.dirty, **fields})
    path.write_text(json.dumps(told, indent=1) + "\n")


def _commit() -> tuple[str, bool]:
    """The checkout's short commit, and whether anything but kept runs differs from it."""
    root = HERE.parent
    git = shutil.which("git") or "git"
    try:
        head = subprocess.run(
            [git, "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            [git, "-C", str(root), "status", "--porcelain"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True
    runs = RUNS.relative_to(root).as_posix() + "/"
    return head, any(runs not in line for line in status)


def keep(
    run: Run,
    section: str,
    *,
    results: list[Result],
    failed: list[str],
    names: list[str],
    minutes: float,
    load: tuple[float, float],
) -> None:
    """Write what *run* measured into its folder: the section, the machine line, a summary."""
    (run.folder / "section.md").write_text(section + "\n")
    measured = next(line for line in section.splitlines() if line.startswith("Measured "))
    (run.folder / "machine.txt").write_text(measured + "\n")
    judged = target_rows(results)
    _describe(
        run,
        {
            "finished": True,
            "benchmarks": names,
            "failed": failed,
            "minutes": round(minutes, 1),
            "load": list(load),
            "verdicts": {
                kind: sum(line.rsplit("| ", 1)[-1].startswith(kind) for line in judged)
                for kind in ("met", "tie", "**not met**")
            },
        },
    )


def render_runs(root: Path = RUNS) -> str:
    """The table of every kept run under *root*, newest first, between the runs' markers."""
    rows = []
    for folder in sorted((path for path in root.glob("*") if path.is_dir()), reverse=True):
        try:
            told = json.loads((folder / "run.json").read_text())
        except (OSError, ValueError):
            told = {}
        kind = "partial (`--merge`)" if told.get("partial") else "full"
        if not told.get("finished"):
            rows.append(f"| `{folder.name}` | {told.get('commit', '?')} | {kind}, unfinished | | |")
            continue
        failed = ", ".join(told.get("failed", [])) or "none"
        verdicts = told.get("verdicts", {})
        judged = ", ".join(
            f"{verdicts.get(kind, 0)} {kind.strip('*')}" for kind in ("met", "tie", "**not met**")
        )
        link = f"[`{folder.name}`]({LINK}/{folder.name}/section.md)"
        rows.append(
            f"| {link} | `{told.get('commit', '?')}`{' (dirty)' if told.get('dirty') else ''} "
            f"| {kind}: {', '.join(told.get('benchmarks', []))} | {failed} | {judged} |"
        )
    lines = [RUNS_BEGIN, ""]
    if rows:
        lines += ["| run | commit | what ran | failed | verdicts |", "|---|---|---|---|---|", *rows]
    else:
        lines.append(
            "No run kept yet: the next `scripts/bench` (or `--only ... --merge`) keeps one."
        )
    return "\n".join([*lines, "", RUNS_END])


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
    out += ["### Targets", "", *TARGETS_HEADER]
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


Shares = tuple[dict[str, float], list[tuple[str, float]]]
"""What profile_http.shares makes of py-spy's samples: by package, and by frame."""


def run_profiles(folder: Path) -> tuple[dict[str, Shares], dict[str, str]]:
    """Profile each of *PROFILES* under py-spy, keeping its raw samples and summary in *folder*.

    py-spy's raw samples stay as ``NAME.txt.gz``, its summary as ``NAME.md``.
    Returns each profile's shares, and why each that failed did (py-spy
    missing or not allowed to trace, a broker that did not start, ...).
    """
    from profile_http import shares  # the benchmarks' own imports: only for a full run

    folder.mkdir(parents=True, exist_ok=True)
    done: dict[str, Shares] = {}
    failed: dict[str, str] = {}
    for name, (script, arguments) in PROFILES.items():
        slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
        raw = folder / f"{slug}.txt"
        command = [sys.executable, str(HERE / script), *arguments, "--raw", str(raw), "--top", "15"]
        if script == "profile_http.py":
            command += ["--seconds", str(PROFILE_SECONDS)]
        print(f"bench: profiling {name} ...", file=sys.stderr, flush=True)
        said = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
        (folder / f"{slug}.md").write_text(said.stdout + said.stderr)
        if said.returncode != 0 or not raw.exists():
            lines = (said.stderr or said.stdout).strip().splitlines()
            failed[name] = lines[-1] if lines else f"exit status {said.returncode}"
            continue
        done[name] = shares(raw)
        # kept in the repository with the run: py-spy's text is a few hundred kB, gzip a tenth
        with raw.open("rb") as text, gzip.open(raw.with_suffix(".txt.gz"), "wb") as packed:
            shutil.copyfileobj(text, packed)
        raw.unlink()
    return done, failed


def render_profiles(
    profiles: dict[str, Shares], failed: dict[str, str], run: Run | None = None, top: int = 5
) -> str:
    """The page's profile section (between its markers): shares by package, then the top frames."""
    where = f" in run {_run_link(run)}" if run else ""
    kept = f", py-spy's raw output in `benchmarks/runs/{run.name}/profiles/`" if run else ""
    lines = [
        PROFILES_BEGIN,
        "",
        f"Profiled by `scripts/bench`{where}: py-spy at 250 samples a second of each variant "
        f"under load ({PROFILE_SECONDS} s of wrk for HTTP, 20 bursts of 1,000 messages for a "
        f"broker), each sample counted for the package of the frame it was taken in, threads "
        f"that wait left out{kept}.",
        "",
    ]
    if failed:
        lines += [
            "Not profiled in this run: "
            + "; ".join(f"{name} ({_plain(why)})" for name, why in failed.items())
            + ".",
            "",
        ]
    if profiles:
        names = list(profiles)
        first = ("threadline", "under a threadline frame (inclusive)")  # threadline's share
        packages = list(dict.fromkeys(p for shares, _ in profiles.values() for p in shares))
        packages = [p for p in first if p in packages] + [p for p in packages if p not in first]
        lines.append(f"| where the samples were taken | {' | '.join(names)} |")
        lines.append(f"|---|{'---:|' * len(names)}")
        for package in packages:
            cells = [profiles[name][0].get(package) for name in names]
            shown = " | ".join("" if cell is None else f"{cell:.0%}" for cell in cells)
            lines.append(f"| {package} | {shown} |")
        lines += ["", f"The {top} frames most samples were taken in:", ""]
        lines += ["| variant | frame | share |", "|---|---|---:|"]
        for name in names:
            for frame, share in profiles[name][1][:top]:
                shown = f"`{_plain(frame)}`" if frame.strip(" ()") else "(no Python frame)"
                lines.append(f"| {name} | {shown} | {share:.1%} |")
    return "\n".join([*lines, "", PROFILES_END])


def _plain(text: str) -> str:
    """*text* fit for a table cell: no control character, no pipe, no backtick."""
    cleaned = "".join(c if c.isprintable() else " " for c in text)
    return cleaned.replace("|", "/").replace("`", "'")[:200]


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
    parser.add_argument(
        "--runs", type=Path, default=RUNS, help="where full and --merge runs are kept"
    )
    parser.add_argument(
        "--no-profiles", action="store_true", help="a full run without its py-spy profiles"
    )
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    full = not args.quick and not args.only
    run = (
        new_run(partial=not full, root=args.runs)
        if full or (args.merge and not args.quick)
        else None
    )
    started, before = time.monotonic(), os.getloadavg()[0]
    results, failed = run_benchmarks(
        names, args.quick, args.interpreter, run.folder if run else None
    )
    load = (before, os.getloadavg()[0])  # the machine's other work, which moves every figure
    minutes = (time.monotonic() - started) / 60
    section = render(results, failed, minutes, load, run)
    print(section)
    if run is not None:
        keep(run, section, results=results, failed=failed, names=names, minutes=minutes, load=load)
        print(f"bench: kept in {run.folder}", file=sys.stderr)
    if full:  # the page shows every benchmark, of one run
        write_page(section, args.out)
        if run is not None and not args.no_profiles:
            profiles, unprofiled = run_profiles(run.folder / "profiles")
            block = render_profiles(profiles, unprofiled, run)
            (run.folder / "profiles.md").write_text(block + "\n")
            _write_block(args.out, PROFILES_BEGIN, PROFILES_END, block, "## Profiles")
    elif run is not None and not failed:
        text = args.out.read_text()
        old = text.partition(BEGIN)[2].partition(END)[0]
        write_page(merge(section, old, names), args.out)
    if run is not None:
        _write_block(args.out, RUNS_BEGIN, RUNS_END, render_runs(args.runs), "## Kept runs")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
