"""A quick smoke of the benchmark code: it runs and reports every variant (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_threads_benchmark_smoke() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "threads_bench.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == result.returncode, result.stderr
    for variant in ("bare ThreadPoolExecutor", "tl.ThreadPoolExecutor", "instrumentation-threading"):
        assert variant in result.stdout
    assert "`import threadline`" in result.stdout


def test_processes_benchmark_smoke() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "processes_bench.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert 0 == result.returncode, result.stderr
    for variant in ("bare ProcessPoolExecutor", "tl.ProcessPoolExecutor", "subprocess.run", "bootstrap on"):
        assert variant in result.stdout


def test_aiohttp_benchmark_smoke() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "aiohttp_bench.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert 0 == result.returncode, result.stderr
    for variant in ("bare aiohttp", "context only", "a span per request", "instrumentation-aiohttp-server"):
        assert variant in result.stdout
