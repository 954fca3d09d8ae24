"""Where a server's time goes under load: py-spy samples of one aiohttp_bench variant, by package.

Starts the variant's server (as aiohttp_bench.py does), loads it with wrk, and
records it with py-spy (``pip install py-spy``; it needs the right to trace
the process: root, or ``kernel.yama.ptrace_scope=0``). Each sample is counted
for the package of the frame it was taken in, and for threadline when any
threadline frame is on its stack.

Run:  .venv/bin/python benchmarks/profile_http.py span [--seconds 6]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import aiohttp_bench

PACKAGES = (
    ("threadline", "/threadline/"),
    ("OpenTelemetry SDK", "/opentelemetry/sdk/"),
    ("OpenTelemetry API and contrib", "/opentelemetry/"),
    ("aiohttp, multidict, yarl", "/site-packages/aiohttp/"),
    ("aiohttp, multidict, yarl", "/multidict/"),
    ("aiohttp, multidict, yarl", "/yarl/"),
    ("other installed packages", "/site-packages/"),
    ("asyncio and the standard library", "/lib/python3"),
)


IDLE = ("Condition.wait ", "Event.wait ", "EpollSelector.select ", "Thread._wait_for_tstate_lock ")
"""Frames of a thread that is waiting: py-spy samples them, but they use no CPU."""


def _py_spy() -> str:
    """py-spy beside this interpreter (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"


def package_of(frame: str) -> str:
    """The package a py-spy frame (``function (path:line)``) belongs to."""
    for name, marker in PACKAGES:
        if marker in frame:
            return name
    return "the benchmark and others"


def profile(variant: str, seconds: float) -> dict[str, float]:
    """Shares of the server's samples: by the package they were taken in, and under threadline."""
    folder = tempfile.mkdtemp()
    collector = None
    if aiohttp_bench.VARIANTS[variant].handler == "otlp":
        binary = aiohttp_bench.collector_binary()
        if binary is None:
            raise SystemExit("this variant needs the Collector: scripts/build-collector")
        collector = aiohttp_bench.Collector(binary, folder, variant)
    server, url = aiohttp_bench._start_server(variant, folder, collector)
    raw = Path(folder, "samples.txt")
    try:
        load = threading.Thread(target=aiohttp_bench.load_with_wrk, args=(url, seconds + 2))
        load.start()
        subprocess.run(
            [
                _py_spy(),
                "record",
                "--rate",
                "250",
                "--duration",
                str(round(seconds)),
                "--pid",
                str(server.pid),
                "--format",
                "raw",
                "--full-filenames",
                "--output",
                str(raw),
            ],
            check=True,
            capture_output=True,
        )
    finally:
        load.join()
        server.terminate()
        server.wait()
        if collector is not None:
            collector.stop()
    by_package: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        samples = int(count)
        if frames[-1].startswith(IDLE):
            continue  # a thread waiting (the batch processor's, the loop's epoll): no CPU
        total += samples
        by_package[package_of(frames[-1])] += samples
        if any("/threadline/" in frame for frame in frames):
            by_package["under a threadline frame (inclusive)"] += samples
    return {name: count / total for name, count in by_package.most_common()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("variant", choices=list(aiohttp_bench.VARIANTS))
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args(argv)
    shares = profile(args.variant, args.seconds)
    print(f"| where the samples of `{args.variant}` were taken | share |")
    print("|---|---:|")
    for name, share in shares.items():
        print(f"| {name} | {share:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
