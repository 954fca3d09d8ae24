"""Ids on a log line: each logging library with threadline's fields against the same without.

And a request's value on a metric data point: a counter of a `StoreMeterProvider`
against the same counter given the value by hand.

Three libraries, each writing to a sink that discards what it is given,
inside a request scope (``request_id``, ``user_id``) and a recording span:

- the standard library's ``logging``: a handler whose format prints the four
  ids (``%(request_id)s %(user_id)s %(trace_id)s %(span_id)s``), set by
  `threadline.logging.ContextFilter` on the handler or by
  `threadline.logging.install` (the record factory), against the same
  handler and format without the ids;
- structlog: level, ISO time stamp, `threadline.structlog.add_context`, JSON
  renderer, against the same chain without ``add_context``;
- loguru: a logger patched by `threadline.loguru.patch` whose sink's format
  prints the four ids, against the plain logger and the same format without them.

- metrics: ``add(1, {"route": ...})`` on a counter of
  `threadline.tracing.StoreMeterProvider` (adding ``tenant.id`` from the
  request) against the SDK's counter given ``tenant.id`` by hand (no target:
  a figure for docs/tracing.md).

Each log call is one ``info`` of a short message. The variants of a library run
interleaved, in shuffled order, round by round, in one process; the figure
is the median of the round-by-round ratios (target: <= 1.10x, issue 22).

Run:  .venv/bin/python benchmarks/logs_bench.py          (full: about a minute)
      .venv/bin/python benchmarks/logs_bench.py --quick  (smoke: checks it runs)
      ... --json PATH                                    (the results, for run.py)
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog
from _report import Result, as_results, write_results
from loguru import logger as loguru_logger
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import threadline as tl
import threadline.logging as tl_logging
import threadline.loguru as tl_loguru
import threadline.structlog as tl_structlog
from threadline.tracing import StoreMeterProvider

TARGET = "<= 1.10x"
PLAIN = "plain"
BY_HAND = "ids given by hand"
TENANT_BY_HAND = "tenant given by hand"
IDS = "%(request_id)s %(user_id)s %(trace_id)s %(span_id)s"
CONSTANT_IDS = {
    "request_id": "r-7f3a",
    "user_id": 42,
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "span_id": "00f067aa0ba902b7",
}
"""The same line's ids as constants: what writing the longer line costs, without gathering them."""


class ConstantIds(logging.Filter):
    """Sets the four ids to constants: the cost of printing them, none of finding them."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.update(CONSTANT_IDS)
        return True


class NullWriter:
    """A text stream that discards what it is given."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def timed(fn: Callable[[], object], times: int) -> float:
    start = time.perf_counter()
    for _ in range(times):
        fn()
    return (time.perf_counter() - start) / times


def stdlib_variants() -> dict[str, Callable[[int], float]]:
    def logger(name: str, fmt: str, with_filter: logging.Filter | None) -> logging.Logger:
        handler = logging.StreamHandler(NullWriter())
        handler.setFormatter(logging.Formatter(fmt))
        if with_filter is not None:
            handler.addFilter(with_filter)
        made = logging.getLogger(f"bench.{name}")
        made.handlers[:] = [handler]
        made.propagate = False
        made.setLevel(logging.INFO)
        return made

    plain = logger("plain", "%(asctime)s %(levelname)s %(name)s %(message)s", None)
    fmt = f"%(asctime)s %(levelname)s %(name)s {IDS} %(message)s"
    by_hand = logger("by_hand", fmt, ConstantIds())
    filtered = logger("filter", fmt, tl_logging.ContextFilter())
    installed = logger("install", fmt, None)

    def with_install(times: int) -> float:
        tl_logging.install()
        try:
            return timed(lambda: installed.info("order placed"), times)
        finally:
            tl_logging.uninstall()

    return {
        PLAIN: lambda times: timed(lambda: plain.info("order placed"), times),
        BY_HAND: lambda times: timed(lambda: by_hand.info("order placed"), times),
        "ContextFilter": lambda times: timed(lambda: filtered.info("order placed"), times),
        "install()": with_install,
    }


def structlog_variants() -> dict[str, Callable[[int], float]]:
    def logger(with_context: bool) -> Any:
        chain: list[Any] = [
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
        ]
        if with_context:
            chain.append(tl_structlog.add_context)
        chain.append(structlog.processors.JSONRenderer())
        return structlog.wrap_logger(structlog.PrintLogger(NullWriter()), processors=chain).bind()

    plain, ids = logger(False), logger(True)
    by_hand = plain.bind(**CONSTANT_IDS)
    return {
        PLAIN: lambda times: timed(lambda: plain.info("order placed"), times),
        BY_HAND: lambda times: timed(lambda: by_hand.info("order placed"), times),
        "add_context": lambda times: timed(lambda: ids.info("order placed"), times),
    }


def loguru_variants() -> dict[str, Callable[[int], float]]:
    loguru_logger.remove()
    base = "{time} {level} {name} "
    ids = "{extra[request_id]} {extra[user_id]} {extra[trace_id]} {extra[span_id]} "
    # loguru's loggers share their sinks: each variant's records go to its own (both filter)
    for variant, fmt in ((PLAIN, base), (BY_HAND, base + ids), ("patch", base + ids)):
        loguru_logger.add(
            NullWriter(),
            format=fmt + "{message}",
            filter=lambda record, v=variant: record["extra"].get("variant") == v,
            colorize=False,
        )
    plain = loguru_logger.bind(variant=PLAIN)
    by_hand = loguru_logger.bind(variant=BY_HAND, **CONSTANT_IDS)
    patched = tl_loguru.patch(loguru_logger.bind(variant="patch"))
    return {
        PLAIN: lambda times: timed(lambda: plain.info("order placed"), times),
        BY_HAND: lambda times: timed(lambda: by_hand.info("order placed"), times),
        "patch": lambda times: timed(lambda: patched.info("order placed"), times),
    }


def metrics_variants() -> dict[str, Callable[[int], float]]:
    sdk = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    by_hand = sdk.get_meter("bench").create_counter("orders.by_hand")
    wrapped = StoreMeterProvider(sdk, {"tenant": "tenant.id"}).get_meter("bench")
    counter = wrapped.create_counter("orders.wrapped")
    given = {"route": "/orders", "tenant.id": "acme"}
    route = {"route": "/orders"}
    return {
        TENANT_BY_HAND: lambda times: timed(lambda: by_hand.add(1, given), times),
        "StoreMeterProvider": lambda times: timed(lambda: counter.add(1, route), times),
    }


def measure(rounds: int, times: int) -> dict[str, dict[str, list[float]]]:
    """Time every library's variants, in shuffled order each round."""
    paths = {
        "logging": stdlib_variants(),
        "structlog": structlog_variants(),
        "loguru": loguru_variants(),
        "metrics counter.add": metrics_variants(),
    }
    results = {path: {name: [] for name in variants} for path, variants in paths.items()}
    order = [(path, name) for path, variants in paths.items() for name in variants]
    shuffle = random.Random(0).shuffle
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("bench")
    scope = tl.request.scope(request_id="r-7f3a", user_id=42, tenant="acme")
    with scope, tracer.start_as_current_span("request") as span:
        if not span.is_recording():
            raise RuntimeError("the span must record, as a sampled request's does")
        for _ in range(rounds):
            shuffle(order)
            for path, name in order:
                results[path][name].append(paths[path][name](times))
    return results


def results_of(results: dict[str, dict[str, list[float]]]) -> list[Result]:
    """Each library's variants as "library: variant", judged against its plain one."""
    measured: list[Result] = []
    for path, variants in results.items():
        named = {f"{path}: {name}": times for name, times in variants.items()}
        if PLAIN not in variants:  # metrics: the figure only, against the value by hand
            measured += as_results("logs", named, f"{path}: {TENANT_BY_HAND}")
            continue
        ours = [name for name in named if not name.endswith((PLAIN, BY_HAND))]
        results_here = as_results("logs", named, f"{path}: {PLAIN}", dict.fromkeys(ours, TARGET))
        for result in results_here:
            if result.variant in ours:  # the gathering alone: against the same line, by hand
                result.also = {f"{path}: {BY_HAND}": TARGET}
        measured += results_here
    return measured


def report(results: dict[str, dict[str, list[float]]]) -> str:
    rows = [
        "| variant | median per call | to plain | to the same by hand |",
        "|---|---:|---:|---:|",
    ]
    for path, variants in results.items():
        for name, times in variants.items():
            by_hand = variants.get(BY_HAND, variants.get(TENANT_BY_HAND))
            ratios = [_ratio(times, variants.get(PLAIN)), _ratio(times, by_hand)]
            rows.append(
                f"| {path}: {name} | {statistics.median(times) * 1e6:.2f} µs "
                f"| {ratios[0]} | {ratios[1]} |"
            )
    return "\n".join(rows)


def _ratio(times: list[float], base: list[float] | None) -> str:
    if base is None:
        return ""
    return f"{statistics.median(t / b for t, b in zip(times, base, strict=True)):.3f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few rounds, to check it runs")
    parser.add_argument("--json", metavar="PATH", help="write the results here as JSON")
    args = parser.parse_args(argv)
    rounds, times = (2, 20) if args.quick else (150, 1000)
    results = measure(rounds, times)
    if args.json:
        write_results(args.json, results_of(results))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
