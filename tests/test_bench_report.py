"""The benchmark report: intervals, verdicts, absolute figures, kept runs, generated profiles.

No benchmark is measured here: the report code runs on made-up samples, and
run.py's whole flow (`main`) on a stand-in benchmark that writes its JSON at once.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import random
import re
import statistics
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
PAGE = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


def dashed(text: str) -> str:
    """*text* with each ``~`` an en dash, as the report writes its intervals."""
    return text.replace("~", "\N{EN DASH}")


def _load(name: str, file: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def report(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """benchmarks/_report.py, imported for one test."""
    return _load("_report", "_report.py", monkeypatch)


@pytest.fixture
def run(report: ModuleType, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """benchmarks/run.py, imported for one test (on the same _report)."""
    return _load("bench_run", "run.py", monkeypatch)


# --- the interval -------------------------------------------------------------------------------


def test_the_interval_of_twenty_rounds_is_the_6th_to_the_15th(report: ModuleType) -> None:
    """n = 20: P(B <= 5) = 2.07%, so the 6th smallest and 6th largest bound it at 95.9%."""
    values = [float(v) for v in range(1, 21)]
    random.Random(7).shuffle(values)  # noqa: S311
    interval = report.median_interval(values)
    assert (6.0, 15.0) == (interval.low, interval.high)
    assert interval.coverage == pytest.approx(1 - 2 * 21700 / 2**20)


def test_too_few_rounds_give_the_whole_range_and_say_what_it_covers(report: ModuleType) -> None:
    """Under 6 rounds no pair reaches 95%: the range, and its own coverage (50% for two)."""
    two = report.median_interval([1.2, 1.1])
    assert (1.1, 1.2, 0.5) == (two.low, two.high, two.coverage)
    five = report.median_interval([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (1.0, 5.0, 1 - 2 / 32) == (five.low, five.high, five.coverage)
    six = report.median_interval([3.0, 1.0, 2.0, 6.0, 5.0, 4.0])
    assert (1.0, 6.0) == (six.low, six.high)
    assert six.coverage >= 0.95
    with pytest.raises(ValueError, match="at least one value"):
        report.median_interval([])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.01, 1e6, allow_nan=False), min_size=1, max_size=400))
def test_the_interval_holds_the_median_and_is_narrowest(values: list[float]) -> None:
    """Any rounds: low <= median <= high, both are rounds; at 95% unless too few rounds."""
    spec = importlib.util.spec_from_file_location("_report_h", BENCHMARKS / "_report.py")
    assert spec is not None
    assert spec.loader is not None
    report = importlib.util.module_from_spec(spec)
    sys.modules["_report_h"] = report
    try:
        spec.loader.exec_module(report)
        interval = report.median_interval(values)
    finally:
        del sys.modules["_report_h"]
    assert interval.low <= statistics.median(values) <= interval.high
    assert interval.low in values
    assert interval.high in values
    if len(values) >= 6:
        assert 0.95 <= interval.coverage < 1


def test_the_interval_covers_the_true_median_95_times_in_100(report: ModuleType) -> None:
    """Rounds drawn from a skewed law (fixed seed): the interval holds its median >= 95% of runs."""
    draw = random.Random(24)  # noqa: S311
    true_median = 1.0  # of exp(N(0, 0.3)) scaled by 1
    for rounds in (6, 8, 15, 40):
        covered = 0
        for _ in range(2000):
            values = [draw.lognormvariate(0, 0.3) for _ in range(rounds)]
            interval = report.median_interval(values)
            covered += interval.low <= true_median <= interval.high
        assert covered / 2000 >= 0.94, (rounds, covered)  # 95% less the draw's own noise


def test_a_ratio_interval_is_taken_over_the_round_by_round_ratios(report: ModuleType) -> None:
    """Each round's pair gives one ratio; the reference's drift between rounds cancels out."""
    reference = report.Result("b", "bare", [1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    ours = report.Result("b", "ours", [1.1, 2.2, 4.4, 8.8, 17.6, 35.2], reference="bare")
    interval = report.ratio_interval(ours, reference)
    assert (interval.low, interval.high) == pytest.approx((1.1, 1.1))


# --- the verdict --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "low", "high", "expected"),
    [
        ("<= 1.15x", 1.00, 1.10, "met"),
        ("<= 1.15x", 1.00, 1.15, "met"),  # the bound itself is on the right side
        ("<= 1.15x", 1.10, 1.20, "tie"),
        ("<= 1.15x", 1.16, 1.30, "not met"),
        (">= 0.95x", 0.96, 1.02, "met"),
        (">= 0.95x", 0.95, 1.02, "met"),
        (">= 0.95x", 0.90, 0.97, "tie"),
        (">= 0.95x", 0.80, 0.94, "not met"),
        (">= 2x", 1.42, 1.69, "not met"),
    ],
)
def test_a_verdict_is_taken_on_the_whole_interval(
    report: ModuleType, target: str, low: float, high: float, expected: str
) -> None:
    """Met only when all of the interval is inside the bound, not met when all is outside."""
    assert expected == report.verdict(target, report.Interval(low, high, 0.95))


def test_a_malformed_target_is_a_clear_error(report: ModuleType) -> None:
    """A benchmark's typo names the target it cannot read."""
    with pytest.raises(ValueError, match=r"not '< 1.1'"):
        report.verdict("< 1.1", report.Interval(1.0, 1.0, 0.95))
    with pytest.raises(ValueError, match="no limit"):
        report.limit_verdict(report.Result("b", "x", [1.0]))


def test_a_limit_is_judged_on_its_own_median_interval(report: ModuleType) -> None:
    """A time limit is an upper bound, a rate limit a lower bound, each on the whole interval."""
    fast = report.Result("i", "fast", [0.020, 0.021, 0.022, 0.023, 0.024, 0.025], limit=0.030)
    edge = report.Result("i", "edge", [0.028, 0.029, 0.030, 0.031, 0.032, 0.033], limit=0.030)
    slow = report.Result("i", "slow", [0.031, 0.032, 0.033, 0.034, 0.035, 0.036], limit=0.030)
    rate = report.Result("i", "rate", [900.0, 950.0, 1000.0, 1100.0, 1200.0, 1300.0])
    rate.unit, rate.limit = report.RATE, 800.0
    verdicts = [report.limit_verdict(result)[1] for result in (fast, edge, slow, rate)]
    assert ["met", "tie", "not met", "met"] == verdicts


def test_a_rate_is_shown_as_time_per_request(report: ModuleType) -> None:
    """1e6 / the median rate is the µs a request takes (per CPU-second: CPU µs)."""
    rate = report.Result("h", "x", [20_000.0, 25_000.0, 30_000.0], unit=report.RATE)
    assert report.per_operation(rate) == pytest.approx(40e-6)
    time = report.Result("h", "y", [3e-6, 5e-6, 4e-6])
    assert report.per_operation(time) == pytest.approx(4e-6)


# --- the rendered section -----------------------------------------------------------------------


def test_each_target_row_has_its_interval_figures_and_verdict(
    report: ModuleType, run: ModuleType
) -> None:
    """A row reads `1.100x [1.050-1.140]`, both medians in µs, the bound, and the verdict."""
    bare = report.Result("b", "bare", [10e-6] * 8)
    floor = report.Result("b", "floor", [5e-6] * 8)
    ours = report.Result(
        "b",
        "ours",
        [10.5e-6, 10.8e-6, 11e-6, 11e-6, 11e-6, 11.2e-6, 11.3e-6, 11.4e-6],
        reference="bare",
        target="<= 1.15x",
        also={"floor": ">= 2.5x"},
    )
    bare_rate = report.Result("h", "bare (per CPU-second of the server)", [50_000.0] * 6, "req/s")
    ours_rate = report.Result(
        "h",
        "ours (per CPU-second of the server)",
        [40_000.0, 41_000.0, 42_000.0, 43_000.0, 44_000.0, 45_000.0],
        "req/s",
        reference="bare (per CPU-second of the server)",
        target=">= 0.95x",
    )
    imports = report.Result("i", "import threadline", [0.020, 0.021, 0.022], limit=0.030)
    section = run.render([bare, floor, ours, bare_rate, ours_rate, imports], [], 1.0)
    lines = section.splitlines()
    assert (
        dashed("| ours | bare | 1.100x [1.050~1.140] | 11.0 µs, 10.0 µs | <= 1.15x | met |")
        in lines
    )
    assert (
        dashed("| ours | floor | 2.200x [2.100~2.280] | 11.0 µs, 5.00 µs | >= 2.5x ")
        + ("| **not met** |")
        in lines
    )
    assert (
        "| ours (per CPU-second of the server) | bare (per CPU-second of the server) "
        + dashed("| 0.850x [0.800~0.900] | 23.5 µs CPU, 20.0 µs CPU | >= 0.95x | **not met** |")
    ) in lines
    assert (
        dashed("| import threadline | (its own time) | 21.00 ms [20.00 ms~22.00 ms, 75%] ")
        + "| 21,000 µs | <= 30.00 ms | met (too few rounds for 95%) |"
    ) in lines
    assert any(
        line.startswith("| ours | 11.00 µs |") and dashed("1.10x [1.05~1.14]") in line
        for line in lines
    )


def test_the_section_names_its_run_and_links_it(
    report: ModuleType, run: ModuleType, tmp_path: Path
) -> None:
    """The machine line names the run (its folder, its commit) the figures come from."""
    kept = run.Run("2026-12-07T015100Z-abc1234-dirty", "abc1234", True, tmp_path)
    section = run.render([report.Result("b", "bare", [1.0])], [], 2.0, (1.0, 2.0), kept)
    measured = next(line for line in section.splitlines() if line.startswith("Measured "))
    assert (
        "by `scripts/bench` (2 min) in run [`2026-12-07T015100Z-abc1234-dirty`]"
        "(../benchmarks/runs/2026-12-07T015100Z-abc1234-dirty/section.md) "
        "(commit `abc1234`, with uncommitted changes) on "
    ) in measured


def test_the_profile_section_is_generated_from_the_samples(run: ModuleType) -> None:
    """Shares by package side by side, the top frames, and what could not be profiled, and why."""
    profiles = {
        "aiohttp, context only": (
            {"asyncio and the standard library": 0.52, "threadline": 0.07},
            [("select (selectors.py:1)", 0.2), ("get (threadline/_core/s.py:9)", 0.05)],
        ),
        "ASGI, empty middleware": ({"uvicorn, httptools, uvloop": 0.34}, [("run (a|b`c)", 1.0)]),
    }
    block = run.render_profiles(profiles, {"aiokafka burst": "Error: no Kafka\x1b[0m|"})
    lines = block.splitlines()
    assert lines[0] == run.PROFILES_BEGIN
    assert lines[-1] == run.PROFILES_END
    assert "| where the samples were taken | aiohttp, context only | ASGI, empty middleware |" in (
        lines
    )
    assert "| asyncio and the standard library | 52% |  |" in lines
    assert "| threadline | 7% |  |" in lines
    assert "| uvicorn, httptools, uvloop |  | 34% |" in lines
    assert "| aiohttp, context only | `get (threadline/_core/s.py:9)` | 5.0% |" in lines
    assert "| ASGI, empty middleware | `run (a/b'c)` | 100.0% |" in lines
    assert "Not profiled in this run: aiokafka burst (Error: no Kafka [0m/)." in lines
    assert not any("\x1b" in line for line in lines)


# --- kept runs, run.py's whole flow -------------------------------------------------------------


FAKE = """
import json, sys
out = sys.argv[sys.argv.index("--json") + 1]
ours = [1.0, 1.02, 1.04, 1.05, 1.06, 1.08] if "{name}" == "kept" else [1.3] * 6
json.dump([
    {{"benchmark": "{name}", "variant": "{name} bare", "samples": [1.0] * 6}},
    {{"benchmark": "{name}", "variant": "{name} ours", "samples": ours,
     "reference": "{name} bare", "target": "<= 1.10x"}},
], open(out, "w"))
print("measured", file=sys.stderr)
"""


@pytest.fixture
def fake_benchmarks(run: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two stand-in benchmarks in place of the real ones; the page a copy of the real page."""
    for name in ("kept", "redone"):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(FAKE.format(name=name)))
    monkeypatch.setattr(
        run, "BENCHMARKS", {name: str(tmp_path / f"{name}.py") for name in ("kept", "redone")}
    )
    page = tmp_path / "performance.md"
    page.write_text(PAGE.read_text())
    return page


def test_every_full_and_merge_run_is_kept_and_listed(
    run: ModuleType, fake_benchmarks: Path, tmp_path: Path
) -> None:
    """Each run gets a folder of its own (raw JSON, section, machine line); the page lists them."""
    runs = tmp_path / "runs"
    common = ["--out", str(fake_benchmarks), "--runs", str(runs)]
    assert 0 == run.main([*common, "--no-profiles"])
    assert 0 == run.main([*common, "--no-profiles"])  # the same second, maybe: a folder of its own
    assert 0 == run.main([*common, "--only", "redone", "--merge"])
    assert 0 == run.main([*common, "--only", "kept"])  # neither full nor merged: not kept
    assert 0 == run.main([*common, "--quick"])  # a smoke: not kept
    folders = sorted(runs.iterdir())
    assert 3 == len(folders)
    name = re.compile(r"\d{4}-\d\d-\d\dT\d{6}Z-([0-9a-f]{4,40}|unknown)(-dirty)?(-\d+)?")
    assert all(name.fullmatch(folder.name) for folder in folders), folders
    told = [json.loads((folder / "run.json").read_text()) for folder in folders]
    assert [False, False, True] == sorted(item["partial"] for item in told)
    for folder, item in zip(folders, told, strict=True):
        assert item["finished"]
        names = ["redone"] if item["partial"] else ["kept", "redone"]
        assert names == item["benchmarks"]
        for benchmark in names:
            assert json.loads((folder / f"{benchmark}.json").read_text())
            assert "measured" in (folder / f"{benchmark}.stderr").read_text()
        section = (folder / "section.md").read_text()
        assert f"in run [`{folder.name}`]" in section
        assert (folder / "machine.txt").read_text().startswith("Measured ")
        assert {"met": 0 if item["partial"] else 1, "tie": 0, "**not met**": 1} == item["verdicts"]
    page = fake_benchmarks.read_text()
    listed = page.partition(run.RUNS_BEGIN)[2].partition(run.RUNS_END)[0]
    for folder in folders:
        assert f"[`{folder.name}`](../benchmarks/runs/{folder.name}/section.md)" in listed
    assert "| partial (`--merge`): redone | none | 0 met, 0 tie, 1 not met |" in listed
    assert "| full: kept, redone | none | 1 met, 0 tie, 1 not met |" in listed
    results = page.partition(run.BEGIN)[2].partition(run.END)[0]
    full, merged = (line for line in results.splitlines() if line.startswith("Measured "))
    assert f"in run [`{folders[1].name}`]" in full  # the second full run is the one shown
    assert f"`scripts/bench --only` (`redone`) (0 min) in run [`{folders[2].name}`]" in merged
    assert dashed("| kept ours | kept bare | 1.045x [1.000~1.080] | 1,045,000 µs") in results


def test_a_failed_benchmark_is_kept_with_what_it_said(
    run: ModuleType, fake_benchmarks: Path, tmp_path: Path
) -> None:
    """A benchmark that fails is named in the run and the page; its stderr stays in the run."""
    Path(run.BENCHMARKS["redone"]).write_text("import sys\nsys.exit('no broker here')\n")
    runs = tmp_path / "runs"
    assert 1 == run.main(["--out", str(fake_benchmarks), "--runs", str(runs), "--no-profiles"])
    (folder,) = runs.iterdir()
    assert ["redone"] == json.loads((folder / "run.json").read_text())["failed"]
    assert "no broker here" in (folder / "redone.stderr").read_text()
    page = fake_benchmarks.read_text()
    assert "Not measured in this run (the benchmark failed): redone." in page
    assert "| full: kept, redone | redone |" in page


def test_the_page_has_each_generated_block_once() -> None:
    """docs/performance.md holds the results, the profiles and the kept runs, each marked once."""
    text = PAGE.read_text()
    source = (BENCHMARKS / "run.py").read_text()
    markers = re.findall(r'^[A-Z_]*(?:BEGIN|END) = "(<!--.*-->)"$', source, re.MULTILINE)
    assert 6 == len(markers)
    for marker in markers:
        assert 1 == text.count(marker), marker


PROFILER = """
import sys
raw = sys.argv[sys.argv.index("--raw") + 1]
if "broken" in sys.argv:
    sys.exit("py-spy: Permission denied (os error 13)")
with open(raw, "w") as out:  # py-spy's --format raw: a stack, root first, and its count
    out.write("<module> (/x/bench.py:1);get (/x/src/threadline/_core/stores.py:9) 30\\n")
    out.write("<module> (/x/bench.py:1);write (/x/lib/python3.11/asyncio/events.py:5) 70\\n")
    out.write("<module> (/x/bench.py:1);Event.wait (/x/lib/python3.11/threading.py:3) 500\\n")
print("| a summary |")
"""


def test_a_full_run_profiles_and_keeps_py_spys_output(
    run: ModuleType, fake_benchmarks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The profile section is made from the samples a full run took; the raw output is kept."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # profile_http, which counts the samples
    script = tmp_path / "profiler.py"
    script.write_text(PROFILER)
    monkeypatch.setattr(
        run,
        "PROFILES",
        {"fine": (str(script), ["fine"]), "refused": (str(script), ["broken"])},
    )
    runs = tmp_path / "runs"
    assert 0 == run.main(["--out", str(fake_benchmarks), "--runs", str(runs)])
    (folder,) = runs.iterdir()
    kept = folder / "profiles"
    with gzip.open(kept / "fine.txt.gz", "rt") as raw:
        assert "threadline/_core/stores.py:9) 30" in raw.read()
    assert "| a summary |" in (kept / "fine.md").read_text()
    assert "Permission denied" in (kept / "refused.md").read_text()
    page = fake_benchmarks.read_text()
    block = page.partition(run.PROFILES_BEGIN)[2].partition(run.PROFILES_END)[0]
    assert block.strip() in (folder / "profiles.md").read_text()
    lines = block.splitlines()
    assert f"in run [`{folder.name}`]" in block
    assert "| threadline | 30% |" in lines  # the waiting thread's 500 samples left out
    assert "| asyncio and the standard library | 70% |" in lines
    assert "| fine | `write (asyncio/events.py:5)` | 70.0% |" in lines
    assert "Not profiled in this run: refused (py-spy: Permission denied (os error 13))." in lines
    assert "hand-typed" not in page  # the placeholder is gone
