"""Where HTTP time goes under load: py-spy samples of one variant, by package and by frame.

Starts the variant's server (as aiohttp_bench.py or asgi_bench.py does), loads
it with wrk, and records it with py-spy (``pip install py-spy``; it needs the
right to trace the process: root, or ``kernel.yama.ptrace_scope=0``); a
clients_bench.py variant is recorded in the process that makes its calls.
Each sample is counted for the package of the frame it was taken in, and for
threadline when any threadline frame is on its stack; ``--top N`` lists the
N frames most samples were taken in, ``--raw FILE`` keeps py-spy's output.

Run:  .venv/bin/python benchmarks/profile_http.py span [--seconds 6]
      .venv/bin/python benchmarks/profile_http.py --bench asgi span --top 15
      .venv/bin/python benchmarks/profile_http.py --bench clients requests-threadline
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import aiohttp_bench
import asgi_bench
import clients_bench

PACKAGES = (
    ("threadline", "/threadline/"),
    ("OpenTelemetry SDK", "/opentelemetry/sdk/"),
    ("OpenTelemetry API and contrib", "/opentelemetry/"),
    ("aiohttp, multidict, yarl", "/site-packages/aiohttp/"),
    ("aiohttp, multidict, yarl", "/multidict/"),
    ("aiohttp, multidict, yarl", "/yarl/"),
    ("FastAPI, Starlette, pydantic", "/site-packages/fastapi/"),
    ("FastAPI, Starlette, pydantic", "/site-packages/starlette/"),
    ("FastAPI, Starlette, pydantic", "/site-packages/pydantic"),
    ("uvicorn, httptools, uvloop", "/site-packages/uvicorn/"),
    ("uvicorn, httptools, uvloop", "/site-packages/httptools/"),
    ("uvicorn, httptools, uvloop", "/site-packages/uvloop/"),
    ("httpx, httpcore, h11", "/site-packages/httpx/"),
    ("httpx, httpcore, h11", "/site-packages/httpcore/"),
    ("httpx, httpcore, h11", "/site-packages/h11/"),
    ("requests, urllib3", "/site-packages/requests/"),
    ("requests, urllib3", "/site-packages/urllib3/"),
    ("aiokafka", "/site-packages/aiokafka/"),
    ("confluent-kafka", "/site-packages/confluent_kafka/"),
    ("aio-pika, aiormq, pamqp", "/site-packages/aio_pika/"),
    ("aio-pika, aiormq, pamqp", "/site-packages/aiormq/"),
    ("aio-pika, aiormq, pamqp", "/site-packages/pamqp/"),
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


def _record(pid_or_command: int | list[str], seconds: float, raw: Path) -> None:
    target = ["--pid", str(pid_or_command)] if isinstance(pid_or_command, int) else []
    command = [_py_spy(), "record", "--rate", "250", "--format", "raw", "--full-filenames"]
    command += ["--output", str(raw), *target]
    if isinstance(pid_or_command, int):
        command += ["--duration", str(round(seconds))]
    else:
        command += ["--", *pid_or_command]
    subprocess.run(command, check=True, capture_output=True)


def record(bench: str, variant: str, seconds: float, raw: Path) -> None:
    """py-spy's raw samples of *variant* of *bench* under load, in *raw*."""
    if bench == "aiohttp":
        _record_aiohttp(variant, seconds, raw)
        return
    if bench == "clients":
        calls = 300
        script = str(Path(clients_bench.__file__))
        rounds = max(1, round(seconds * 800 / calls))  # about 800 calls a second here
        _record([sys.executable, script, "--only", variant, "--rounds", str(rounds)], seconds, raw)
        return
    folder = tempfile.mkdtemp()
    server, url = asgi_bench._start_server(variant, folder)
    lua = Path(folder, "headers.lua")
    lua.write_text(asgi_bench.LUA)
    try:
        load = threading.Thread(target=asgi_bench.load, args=(url, seconds + 2, str(lua)))
        load.start()
        _record(server.pid, seconds, raw)
    finally:
        load.join()
        server.terminate()
        server.wait()


def _record_aiohttp(variant: str, seconds: float, raw: Path) -> None:
    folder = tempfile.mkdtemp()
    agent = aiohttp_bench._start_sink(folder) if variant.startswith("ddtrace") else None
    server, url = aiohttp_bench._start_server(variant, folder, agent and agent[1])
    try:
        load = threading.Thread(target=aiohttp_bench.load_with_wrk, args=(url, seconds + 2))
        load.start()
        _record(server.pid, seconds, raw)
    finally:
        load.join()
        server.terminate()
        server.wait()
        if agent is not None:
            agent[0].terminate()
            agent[0].wait()


def shares(raw: Path) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """Shares of the samples in *raw*: by package (and under threadline), and by frame."""
    by_frame: collections.Counter[str] = collections.Counter()
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
        by_frame[_short(frames[-1])] += samples
        if any("/threadline/" in frame for frame in frames):
            by_package["under a threadline frame (inclusive)"] += samples
    packages = {name: count / total for name, count in by_package.most_common()}
    return packages, [(frame, count / total) for frame, count in by_frame.most_common()]


def _short(frame: str) -> str:
    """``function (path:line)`` as ``function (package/file.py:line)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")")
    for marker in ("/site-packages/", "/src/"):
        if marker in path:
            path = path.rpartition(marker)[2]
            break
    else:  # the standard library: /lib/python3.11/asyncio/x.py as asyncio/x.py
        path = re.sub(r"^.*/lib/python3\.\d+/", "", path)
    return f"{name} ({path})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("variant", help="a variant of the benchmark (see its VARIANTS)")
    parser.add_argument("--bench", choices=("aiohttp", "asgi", "clients"), default="aiohttp")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--top", type=int, default=0, help="list the N frames most sampled")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw samples in this file")
    args = parser.parse_args(argv)
    known = {"aiohttp": aiohttp_bench, "asgi": asgi_bench, "clients": clients_bench}
    if args.variant not in known[args.bench].VARIANTS:
        parser.error(f"{args.bench} has no variant {args.variant!r}")
    raw = args.raw or Path(tempfile.mkdtemp(), "samples.txt")
    record(args.bench, args.variant, args.seconds, raw)
    packages, frames = shares(raw)
    print(f"| where the samples of `{args.bench} {args.variant}` were taken | share |")
    print("|---|---:|")
    for name, share in packages.items():
        print(f"| {name} | {share:.0%} |")
    if args.top:
        print(f"\n| the {args.top} frames most samples were taken in | share |")
        print("|---|---:|")
        for frame, share in frames[: args.top]:
            print(f"| `{frame}` | {share:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
