"""A quick smoke of the benchmark code (no timing asserted), and the soaks, whole or small."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.collector import collector_binary

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
AGENT_NOTE = "traces received by the agent stand-in / requests completed in wrk's count"


def dashed(text: str) -> str:
    """*text* with each ``~`` an en dash, as the report writes its intervals."""
    return text.replace("~", "\N{EN DASH}")


@pytest.fixture
def report(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """benchmarks/_report.py, imported for one test (out of sys.modules afterwards)."""
    spec = importlib.util.spec_from_file_location("_report", BENCHMARKS / "_report.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "_report", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("script", "variants"),
    [
        (
            "threads_bench.py",
            (
                "bare ThreadPoolExecutor",
                "tl.ThreadPoolExecutor",
                "instrumentation-threading",
            ),
        ),
        ("import_bench.py", ("import threadline (Python ",)),
        (
            "micro_bench.py",
            (
                "ContextVar.get()",
                "tl.request.get()",
                "ContextVar set+reset",
                "tl.request.scope(",
                "contextvars.copy_context()",
                "tl.snapshot()",
                "opentelemetry.propagate.inject",
                "tl.inject(",
                "), cache hit: the same context again",
                "), cache miss: a new scope each time",
                "opentelemetry.propagate.extract",
                "tl.extract(",
                "), cache hit: the same text again",
                "), cache miss: new text each time",
                "bare ThreadPoolExecutor",
                "tl.ThreadPoolExecutor",
                "bare ProcessPoolExecutor",
                "tl.ProcessPoolExecutor",
            ),
        ),
        (
            "hooks_bench.py",
            (
                "scope enter+exit",
                "thread-pool submit+result",
                "asyncio task create+await",
                "no hook registered",
                "a hook registered",
            ),
        ),
        (
            "logs_bench.py",
            (
                "logging: plain",
                "logging: ids given by hand",
                "logging: ContextFilter",
                "logging: install()",
                "structlog: plain",
                "structlog: add_context",
                "loguru: plain",
                "loguru: patch",
                "metrics counter.add: StoreMeterProvider",
            ),
        ),
        (
            "processes_bench.py",
            (
                "bare ProcessPoolExecutor",
                "tl.ProcessPoolExecutor",
                "subprocess.run",
                "bootstrap on",
                "the job makes a span, exported by tracing.configure() in the worker",
                "exported by tracing.configure() in parent and worker",
                "python -c 'import logging', automatic bootstrap on, a carrier",
                "python -c 'import opentelemetry.trace', automatic bootstrap on, a carrier",
            ),
        ),
        (
            "aiohttp_bench.py",
            (
                "bare aiohttp",
                "an empty middleware",
                "a plain contextvars middleware + logging.Filter",
                "threadline, context only",
                "the live view's module loaded but not served",
                "the live view served (nobody watching)",
                "the live view served and watched",
                "an SDK-span middleware",
                "threadline, a span per request",
                "contrib aiohttp-server, a span per request",
                "ddtrace trace_app",
                "work handler",
                "(per CPU-second of the server)",
            ),
        ),
        (
            "export_bench.py",
            (
                "bare aiohttp",
                "threadline, OTLP from its export process",
                "threadline, OTLP exported in-process",
                "contrib aiohttp-server, BatchSpanProcessor + OTLP exporter (defaults)",
                "contrib aiohttp-server, BatchSpanProcessor + OTLP exporter tuned",
                "on the spare core",
            ),
        ),
        (
            "asgi_bench.py",
            (
                "FastAPI, an empty ASGI middleware",
                "threadline.asgi, context only, access line on",
                "asgi-correlation-id",
                "a plain contextvars middleware + logging.Filter",
                "an SDK-span ASGI middleware",
                "threadline.asgi, a span per request",
                "contrib FastAPIInstrumentor",
                "FastAPI's own telemetry",
            ),
        ),
        (
            "clients_bench.py",
            (
                "aiohttp.ClientSession, bare",
                "aiohttp.ClientSession, threadline.aiohttp.trace_config",
                "aiohttp.ClientSession, contrib aiohttp_client.create_trace_config",
                "httpx.AsyncClient, bare",
                "httpx.AsyncClient, threadline.httpx.instrument",
                "httpx.AsyncClient, contrib HTTPXClientInstrumentor",
                "requests.Session, bare",
                "requests.Session, threadline.requests.instrument",
                "requests.Session, contrib RequestsInstrumentor",
            ),
        ),
        (
            "celery_bench.py",
            (
                "bare Celery",
                "threadline context only",
                "threadline with spans",
                "opentelemetry-instrumentation-celery",
            ),
        ),
        (
            "kafka_bench.py",
            tuple(
                f"{client} {mode}: {what}"
                for client, contrib in (
                    ("aiokafka", "opentelemetry-instrumentation-aiokafka"),
                    ("confluent-kafka", "opentelemetry-instrumentation-confluent-kafka"),
                )
                for mode in ("round trip", "burst of 20")
                for what in (f"bare {client}", "threadline context", "threadline with", contrib)
            ),
        ),
        (
            "scale_bench.py",
            (
                "tl.inject, 150 store keys, cache miss",
                "tl.inject, 150 store keys, cache hit",
                "tl.extract, 150 store keys, cache miss",
                "tl.extract, 150 store keys, cache hit",
                "tl.inject per store key (cache miss",
                "tl.extract per store key (cache miss",
                "process pool, 2 workers: stdlib submit",
                "process pool, 2 workers: tl.ProcessPoolExecutor submit",
            ),
        ),
        (
            "rabbitmq_bench.py",
            tuple(
                f"aio-pika {mode}: {what}"
                for mode in ("round trip", "burst of 20")
                for what in (
                    "bare aio-pika",
                    "threadline context only",
                    "threadline with spans",
                    "opentelemetry-instrumentation-aio-pika",
                )
            ),
        ),
    ],
)
def test_benchmark_smoke(
    script: str,
    variants: tuple[str, ...],
    request: pytest.FixtureRequest,
    report: ModuleType,
    tmp_path: Path,
) -> None:
    """Each benchmark runs in --quick mode and reports every variant it compares, also as JSON."""
    extra = []
    env = {**os.environ, "OTEL_BSP_MAX_QUEUE_SIZE": "1000000"}
    if script == "asgi_bench.py" and shutil.which("wrk") is None:
        pytest.skip("the ASGI rows are measured with wrk (apt-get install wrk)")
    if script in ("asgi_bench.py", "aiohttp_bench.py"):
        env["THREADLINE_BENCH_LOGS"] = str(tmp_path)  # each server's lines, to read below
    if script == "export_bench.py":  # wrk and the real Collector: skipped where either is not
        env["THREADLINE_COLLECTOR"] = str(_wrk_and_collector())
    if script == "celery_bench.py":  # on the tests' Redis: skipped where there is none
        extra = ["--broker", request.getfixturevalue("redis_url").removesuffix("/0")]
    if script == "kafka_bench.py":  # on the tests' Kafka: skipped where there is none
        extra = ["--bootstrap", request.getfixturevalue("kafka_bootstrap")]
    if script == "rabbitmq_bench.py":  # on the tests' RabbitMQ: skipped where there is none
        extra = ["--url", request.getfixturevalue("rabbitmq_url")]
    plots = BENCHMARKS.parent / "docs" / "img"
    before = _files(plots)
    output = tmp_path / "results.json"
    extra += ["--json", str(output)]
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", *extra],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        # a queue that a slow machine cannot fill: what is checked is that no span is lost
        env=env,
    )
    assert 0 == result.returncode, result.stderr
    assert before == _files(plots)  # --quick writes no plot into the docs
    for variant in variants:
        assert variant in result.stdout
    results = report.read_results(output)
    assert_results(results, variants, report)
    assert_rendered(results, report)
    if script == "asgi_bench.py":
        assert_asgi_workload(tmp_path)
    if script == "aiohttp_bench.py":
        assert_aiohttp_workload(tmp_path, results)
    assert_every_span_counted(results)
    for result in results:  # a client variant with spans made exactly one per call
        if "a span per call" in result.variant and "CPU" in result.variant:
            assert "1" == result.notes["CLIENT spans per call"], result


def _files(folder: Path) -> dict[str, int]:
    """Each file in *folder* and when it last changed (ns)."""
    return {path.name: path.stat().st_mtime_ns for path in folder.glob("*")}


def test_scale_results_and_plots(
    report: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scale rows: a slope per key judged by its limit, with a per-op row per key count;
    the plots are PNGs written where asked."""
    pytest.importorskip("matplotlib")
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as run: it imports aiohttp_bench's workload
    spec = importlib.util.spec_from_file_location("scale_bench", BENCHMARKS / "scale_bench.py")
    assert spec is not None
    assert spec.loader is not None
    scale = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "scale_bench", scale)  # dataclasses look their module up
    spec.loader.exec_module(scale)
    counts = (1, 10, 100)
    keys = {  # 2 µs plus 0.3 µs a key, one round a bit slower than the other
        scale.key_variant(op, n): [(2 + 0.3 * n) * 1e-6, (2.2 + 0.33 * n) * 1e-6]
        for op in scale.KEY_OPS
        for n in counts
    }
    results = scale.key_results(keys, counts)
    slopes = {r.variant: r for r in results if "per store key" in r.variant}
    inject = slopes["tl.inject per store key (cache miss, slope over 1-100 keys)"]
    assert [0.3e-6, 0.33e-6] == pytest.approx(inject.samples)
    assert scale.INJECT_PER_KEY == inject.limit
    assert "1.000" == inject.notes["R² of the line through the medians"]
    served = {
        (name, level): [scale.Served(50e-6 * level**0.1, 5000.0)]
        for name in scale.SERVERS
        for level in (1, 8, 64)
    }
    bursts = {(name, workers): [1e-4, 1.1e-4] for name in scale.POOLS for workers in (1, 2)}
    written = scale.plot(tmp_path, counts, keys, served, bursts)
    assert ["scale-concurrency.png", "scale-keys.png", "scale-workers.png"] == sorted(
        path.name for path in written
    )
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG")


def test_hooks_judged_against_the_code_before_hooks(
    report: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row with no hook registered is judged against the commit before hooks (no slower, a
    tie being within the spread); without that commit (a shallow clone) the row says why."""
    spec = importlib.util.spec_from_file_location("hooks_bench", BENCHMARKS / "hooks_bench.py")
    assert spec is not None
    assert spec.loader is not None
    hooks_bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "hooks_bench", hooks_bench)
    spec.loader.exec_module(hooks_bench)
    path = "scope enter+exit"
    measured = {
        hooks_bench.WITHOUT: [1.0, 1.0, 1.0, 1.0],
        hooks_bench.NO_HOOK: [1.0, 1.0, 1.1, 1.0],
        hooks_bench.BEFORE: [1.0, 1.0, 1.0, 1.2],
    }
    results = {r.variant: r for r in hooks_bench.results_of({path: measured})}
    judged = results[f"{path}: {hooks_bench.NO_HOOK}"]
    assert {f"{path}: {hooks_bench.BEFORE}": "<= 1.00x"} == judged.also
    del measured[hooks_bench.BEFORE]
    results = {r.variant: r for r in hooks_bench.results_of({path: measured}, "no history")}
    judged = results[f"{path}: {hooks_bench.NO_HOOK}"]
    assert {} == judged.also
    assert "not measured: no history" == judged.notes[hooks_bench.BEFORE]
    monkeypatch.setattr(hooks_bench, "BEFORE_COMMIT", "0" * 40)
    module, why = hooks_bench.load_before(tmp_path)
    assert module is None
    assert why.startswith("no git history to take ")


def _wrk_and_collector() -> Path:
    if shutil.which("wrk") is None:
        pytest.skip("the export rows are measured with wrk (apt-get install wrk)")
    return collector_binary()


def assert_every_span_counted(results: list[Any]) -> None:
    """Each export server ended a span per request and the Collector received each (no drop)."""
    for result in results:
        if result.benchmark != "export" or "full load" not in result.variant:
            continue
        counted = result.notes["spans ended / received by the Collector"]
        ended, received = map(int, counted.split(" / "))
        assert ended == received, result
        assert (ended == 0) == result.variant.startswith("bare aiohttp"), result
        assert "0" == result.notes["spans lost"], result


def assert_asgi_workload(logs: Path) -> None:
    """The user's workload ran: each access line has the ids it came with, in the log format."""
    for name, pattern in (
        ("context", r"request_id=[0-9a-f-]{36} user_id=u-4711 trace_id=[0-9a-f]{32} "),
        ("span", r"request_id=[0-9a-f-]{36} user_id=u-4711 trace_id=[0-9a-f]{32} "),
        ("correlation", r"uvicorn\.access \[[0-9a-f-]{36}\]"),
        ("contextvars", r"bench\.access request_id=[0-9a-f-]{36} GET /hello/world 200 "),
        ("contrib", r"uvicorn\.access trace_id=(?!0{32})[0-9a-f]{32} "),
        ("empty-log", r"bench\.access GET /hello/world 200 "),
    ):
        lines = (logs / f"{name}.log").read_text().splitlines()
        access = [line for line in lines if "/hello/world" in line]
        assert access, name
        assert all(re.search(pattern, line) for line in access), (name, access[:3])


_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}"
_THREADLINE_IDS = (
    rf"request_id={_UUID} user_id=u-4711 trace_id=[0-9a-f]{{32}} span_id=[0-9a-f]{{16}} "
)


def assert_aiohttp_workload(logs: Path, results: list[Any]) -> None:
    """The user's workload ran: each variant's access or handler lines have the ids that came.

    And ddtrace, given an agent, sent it a trace per request (it dropped none).
    """
    for result in results:
        if "ddtrace" in result.variant and "CPU" not in result.variant:
            traces, _, requests = result.notes[AGENT_NOTE].partition(" / ")
            assert int(traces) >= int(requests) > 0, result.notes
    access, handler = "/hello/world", "bench.handler"
    for name, kind, pattern in (
        ("bare", access, rf"aiohttp\.access .* request_id={_UUID} traceparent=00-[0-9a-f]{{32}}-"),
        ("noop", access, rf"bench\.access request_id={_UUID} trace_id=[0-9a-f]{{32}} GET "),
        ("contextvars", access, rf"bench\.access request_id={_UUID} GET /hello/world 200 "),
        ("context", access, rf"threadline\.aiohttp {_THREADLINE_IDS}GET /hello/world 200 "),
        ("sdkspan", access, rf"bench\.access request_id={_UUID} trace_id=[0-9a-f]{{32}} GET "),
        ("span", access, rf"threadline\.aiohttp {_THREADLINE_IDS}GET /hello/world 200 "),
        ("contrib", access, rf"aiohttp\.access .* request_id={_UUID} traceparent=00-"),
        ("ddtrace", access, rf"aiohttp\.access .* request_id={_UUID} traceparent=00-"),
        ("bare-work", handler, rf"bench\.handler request_id={_UUID} trace_id=[0-9a-f]{{32}} "),
        ("contextvars-work", handler, rf"bench\.handler request_id={_UUID} "),
        ("context-work", handler, rf"bench\.handler {_THREADLINE_IDS}"),
        ("span-work", handler, rf"bench\.handler {_THREADLINE_IDS}"),
        # OpenTelemetry's LoggingInstrumentor, asked to inject: the handler's lines have ids
        ("contrib-work", handler, r"bench\.handler trace_id=(?!0{32})[0-9a-f]{32} span_id="),
        ("ddtrace-work", handler, r"bench\.handler dd\.trace_id=(?!0 )[0-9a-f]+ dd\.span_id=[1-9]"),
    ):
        lines = (logs / f"{name}.log").read_text().splitlines()
        chosen = [line for line in lines if kind in line]
        assert chosen, name
        assert all(re.search(pattern, line) for line in chosen), (name, chosen[:3])


def assert_results(results: list[Any], variants: tuple[str, ...], report: ModuleType) -> None:
    """Every expected variant is named; references resolve; samples and targets are well formed."""
    names = {(result.benchmark, result.variant) for result in results}
    for variant in variants:
        assert any(variant in name for _, name in names), (variant, names)
    for result in results:
        assert result.samples
        assert result.unit in (report.TIME, report.RATE)
        assert result.reference is None or (result.benchmark, result.reference) in names
        if result.target is not None:
            report.met(result.target, 1.0)  # raises unless the target is well formed


def assert_rendered(results: list[Any], report: ModuleType) -> None:
    """run.py renders them: each bound a row with its interval, both medians in µs, a verdict."""
    spec = importlib.util.spec_from_file_location("bench_run", BENCHMARKS / "run.py")
    assert spec is not None
    assert spec.loader is not None
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    rows = run.target_rows(results)
    bounds = sum(
        bool(r.reference and r.target) + len(r.also) + (r.limit is not None) for r in results
    )
    assert bounds == len(rows), rows
    verdict = re.compile(r"\| (met|tie|\*\*not met\*\*)( \(too few rounds for 95%\))? \|$")
    for row in rows:
        assert re.search(r"x? \[[^]]+\] \| -?[\d,.]+ µs", row), row
        assert verdict.search(row), row
    section = run.render(results, [], 0.0)
    assert section.startswith(run.BEGIN)
    assert section.endswith(run.END)


def test_soak_small() -> None:
    """50 hostile and valid requests through HTTP, threads and processes: none wrong or lost."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "soak.py"), "--requests", "50", "--in-flight", "10"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (0, "wrong or lost: 0") == (result.returncode, result.stdout.splitlines()[-1])


@pytest.mark.timeout(400)
def test_asgi_soak() -> None:
    """2,000 requests, 200 in flight, half hostile, FastAPI -> httpx -> FastAPI under uvicorn with
    a thread hop on each side: every hop and log line sees the same ids, no span is lost."""
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "soak.py"),
            "--stack",
            "asgi",
            "--requests",
            "2000",
            "--in-flight",
            "200",
            "--seconds",
            "300",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=360,
    )
    lines = result.stdout.splitlines()
    assert (0, "wrong or lost: 0") == (result.returncode, lines[-1] if lines else result.stderr)
    summary = dict(line.split(": ", 1) for line in lines[:-1])
    assert ("2000", "8000", "4000") == (
        summary["requests"],
        summary["log_lines"],
        summary["access_lines"],
    )


def test_the_table_goes_between_the_markers(report: ModuleType, tmp_path: Path) -> None:
    """run.py writes its section between the page's markers, leaving the prose around it."""
    spec = importlib.util.spec_from_file_location("bench_run", BENCHMARKS / "run.py")
    assert spec is not None
    assert spec.loader is not None
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    bare = report.Result("b", "bare", [2.0, 2.0], report.TIME)
    ours = report.Result("b", "ours", [2.2, 2.4], report.TIME, reference="bare", target="<= 1.15x")
    page = tmp_path / "performance.md"
    page.write_text(f"# Performance\n\nbefore\n\n{run.BEGIN}\nold\n{run.END}\n\nafter\n")
    run.write_page(run.render([bare, ours], [], 1.0), page)
    text = page.read_text()
    assert text.startswith("# Performance\n\nbefore\n\n")
    assert text.endswith(f"{run.END}\n\nafter\n")
    assert "old" not in text
    assert (
        dashed("| ours | bare | 1.150x [1.100~1.200, 50%] | ")
        + "2,300,000 µs, 2,000,000 µs | <= 1.15x | tie (too few rounds for 95%) |"
        in text
    )


def test_merge_keeps_the_other_benchmarks_rows(report: ModuleType) -> None:
    """`--only NAME --merge` puts in NAME's rows and table, keeps the others', says when."""
    spec = importlib.util.spec_from_file_location("bench_run", BENCHMARKS / "run.py")
    assert spec is not None
    assert spec.loader is not None
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)

    def pair(benchmark: str, ours: list[float]) -> list[Any]:
        bare = report.Result(benchmark, f"{benchmark} bare", [2.0, 2.0])
        mine = report.Result(
            benchmark, f"{benchmark} ours", ours, reference=f"{benchmark} bare", target="<= 1.15x"
        )
        return [bare, mine]

    old = run.render(pair("kept", [2.2, 2.2]) + pair("redone", [3.0, 3.0]), [], 1.0)
    fresh = run.render(pair("redone", [2.1, 2.1]) + pair("added", [2.0, 2.0]), [], 1.0)
    old = old.removeprefix(run.BEGIN).removesuffix(run.END)
    merged = run.merge(fresh, old, ["redone", "added"])
    assert merged.startswith(run.BEGIN)
    assert merged.endswith(run.END)
    lines = merged.splitlines()
    assert (
        dashed("| kept ours | kept bare | 1.100x [1.100~1.100, 50%] | ")
        + "2,200,000 µs, 2,000,000 µs | <= 1.15x | met (too few rounds for 95%) |"
        in lines
    )
    assert (
        dashed("| redone ours | redone bare | 1.050x [1.050~1.050, 50%] | ")
        + "2,100,000 µs, 2,000,000 µs | <= 1.15x | met (too few rounds for 95%) |"
        in lines
    )
    assert (
        dashed("| added ours | added bare | 1.000x [1.000~1.000, 50%] | ")
        + "2,000,000 µs, 2,000,000 µs | <= 1.15x | met (too few rounds for 95%) |"
        in lines
    )
    assert not any(line.startswith("| redone ours | redone bare | 1.500x") for line in lines)
    headings = [line for line in lines if line.startswith("### ")]
    assert ["### Targets", "### kept", "### redone", "### added"] == headings
    measured = [line for line in lines if line.startswith("Measured ")]
    assert 2 == len(measured)
    assert "`scripts/bench --only` (`redone`, `added`)" in measured[1]
