"""Where a broker benchmark's time goes: py-spy samples of one variant's driver, by package.

Starts a broker as the benchmark does (or uses ``--address``), runs one
variant's driver of kafka_bench.py or rabbitmq_bench.py under ``py-spy
record`` (``pip install py-spy``; it needs the right to trace: root, or
``kernel.yama.ptrace_scope=0``), hands it ``--times`` commands of one mode,
and counts the samples as profile_http.py does (threads that wait left out).

Run:  .venv/bin/python benchmarks/profile_mq.py kafka confluent-kafka/context --mode burst
      .venv/bin/python benchmarks/profile_mq.py rabbitmq aio-pika/bare --mode trip --top 15
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import _mq
import kafka_bench
import rabbitmq_bench
from profile_http import _py_spy, shares

BENCHES = {"kafka": kafka_bench, "rabbitmq": rabbitmq_bench}
COUNTS = {"trip": 200, "burst": 1000}


@contextlib.contextmanager
def broker(bench: str, address: str | None) -> Iterator[str]:
    """*address*, or a broker of *bench*'s kind started as the benchmark starts it."""
    if address:
        yield address
        return
    sys.path.insert(0, str(_mq.ROOT))
    from tests.kafka_broker import kafka_broker
    from tests.rabbitmq_broker import rabbitmq_server

    start = kafka_broker if bench == "kafka" else rabbitmq_server
    with tempfile.TemporaryDirectory() as folder, start(Path(folder)) as started:
        yield started


def record(bench: str, key: str, address: str, mode: str, *, times: int, raw: Path) -> None:
    """py-spy's raw samples of *key*'s driver doing *times* commands of *mode*, in *raw*."""
    script = str(Path(BENCHES[bench].__file__))
    command = [_py_spy(), "record", "--rate", "250", "--format", "raw", "--full-filenames"]
    command += ["--output", str(raw), "--", sys.executable, script, "--drive", key]
    env = {**os.environ, _mq.VARIANT_ENV: key, _mq.ADDRESS_ENV: address}
    lines = f"{mode} {COUNTS[mode]}\n" * times
    subprocess.run(command, input=lines, text=True, env=env, check=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("bench", choices=list(BENCHES))
    parser.add_argument("variant", help="client/kind: aiokafka/context, aio-pika/bare, ...")
    parser.add_argument("--mode", choices=list(COUNTS), default="burst")
    parser.add_argument("--times", type=int, default=20, help="commands of the mode to run")
    parser.add_argument("--address", help="an existing broker (else one started)")
    parser.add_argument("--top", type=int, default=0, help="list the N frames most sampled")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw samples in this file")
    args = parser.parse_args(argv)
    if args.variant not in BENCHES[args.bench].KEYS:
        parser.error(f"{args.bench} has no variant {args.variant!r}")
    raw = args.raw or Path(tempfile.mkdtemp(), "samples.txt")
    with broker(args.bench, args.address) as address:
        record(args.bench, args.variant, address, args.mode, times=args.times, raw=raw)
    packages, frames = shares(raw)
    print(f"| where the samples of `{args.variant}` ({args.mode}) were taken | share |")
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
