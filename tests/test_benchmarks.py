"""A quick smoke of the benchmark code: it runs and reports every variant (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.parametrize(
    ("script", "variants"),
    [
        (
            "threads_bench.py",
            (
                "bare ThreadPoolExecutor",
                "tl.ThreadPoolExecutor",
                "instrumentation-threading",
                "`import threadline`",
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
                "context only",
                "a span per request",
                "instrumentation-aiohttp-server",
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
    ],
)
def test_benchmark_smoke(
    script: str, variants: tuple[str, ...], request: pytest.FixtureRequest
) -> None:
    """Each benchmark runs in --quick mode and reports every variant it compares."""
    extra = []
    if script == "celery_bench.py":  # on the tests' Redis: skipped where there is none
        extra = ["--broker", request.getfixturevalue("redis_url").removesuffix("/0")]
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", *extra],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert 0 == result.returncode, result.stderr
    for variant in variants:
        assert variant in result.stdout


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
