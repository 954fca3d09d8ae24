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

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


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
                "opentelemetry.propagate.extract",
                "tl.extract(",
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
            ),
        ),
        (
            "aiohttp_bench.py",
            (
                "bare aiohttp",
                "an empty middleware",
                "threadline, context only",
                "the live view's module loaded but not served",
                "the live view served (nobody watching)",
                "the live view served and watched",
                "threadline, a span per request",
                "contrib aiohttp-server, a span per request",
                "work handler",
            ),
        ),
        (
            "asgi_bench.py",
            (
                "FastAPI, an empty ASGI middleware",
                "threadline.asgi, context only, access line on",
                "asgi-correlation-id",
                "an SDK-span ASGI middleware",
                "threadline.asgi, a span per request",
                "contrib FastAPIInstrumentor",
                "FastAPI's own telemetry",
            ),
        ),
        (
            "clients_bench.py",
            (
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
    if script == "asgi_bench.py":
        if shutil.which("wrk") is None:
            pytest.skip("the ASGI rows are measured with wrk (apt-get install wrk)")
        env["THREADLINE_BENCH_LOGS"] = str(tmp_path)  # each server's lines, to read below
    if script == "celery_bench.py":  # on the tests' Redis: skipped where there is none
        extra = ["--broker", request.getfixturevalue("redis_url").removesuffix("/0")]
    if script == "kafka_bench.py":  # on the tests' Kafka: skipped where there is none
        extra = ["--bootstrap", request.getfixturevalue("kafka_bootstrap")]
    if script == "rabbitmq_bench.py":  # on the tests' RabbitMQ: skipped where there is none
        extra = ["--url", request.getfixturevalue("rabbitmq_url")]
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
    for variant in variants:
        assert variant in result.stdout
    results = report.read_results(output)
    assert_results(results, variants, report)
    exported = [result for result in results if "OTLP to a Collector" in result.variant]
    if script == "aiohttp_bench.py" and os.environ.get("THREADLINE_COLLECTOR"):
        assert 3 == len(exported)  # the Collector is there: the export variants ran
    for result in exported:  # every span ended under load reached the real Collector
        assert "0" == result.notes["dropped at full load"], result.notes
    if script == "asgi_bench.py":
        assert_asgi_workload(tmp_path)
    for result in results:  # a client variant with spans made exactly one per call
        if "a span per call" in result.variant and "CPU" in result.variant:
            assert "1" == result.notes["CLIENT spans per call"], result


def assert_asgi_workload(logs: Path) -> None:
    """The user's workload ran: each access line has the ids it came with, in the log format."""
    for name, pattern in (
        ("context", r"request_id=[0-9a-f-]{36} user_id=u-4711 trace_id=[0-9a-f]{32} "),
        ("span", r"request_id=[0-9a-f-]{36} user_id=u-4711 trace_id=[0-9a-f]{32} "),
        ("correlation", r"uvicorn\.access \[[0-9a-f-]{36}\]"),
        ("contrib", r"uvicorn\.access trace_id=(?!0{32})[0-9a-f]{32} "),
        ("empty-log", r"bench\.access GET /hello/world 200 "),
    ):
        lines = (logs / f"{name}.log").read_text().splitlines()
        access = [line for line in lines if "/hello/world" in line]
        assert access, name
        assert all(re.search(pattern, line) for line in access), (name, access[:3])


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
    assert "| ours | bare | 1.150x | <= 1.15x | yes |" in text


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
    assert "| kept ours | kept bare | 1.100x | <= 1.15x | yes |" in lines
    assert "| redone ours | redone bare | 1.050x | <= 1.15x | yes |" in lines
    assert "| added ours | added bare | 1.000x | <= 1.15x | yes |" in lines
    assert "| redone ours | redone bare | 1.500x | <= 1.15x | **no** |" not in lines
    headings = [line for line in lines if line.startswith("### ")]
    assert ["### Targets", "### kept", "### redone", "### added"] == headings
    measured = [line for line in lines if line.startswith("Measured ")]
    assert 2 == len(measured)
    assert "`scripts/bench --only` (`redone`, `added`)" in measured[1]
