"""What every benchmark reports: its variants' per-round samples, as JSON for `run.py`.

A benchmark measures its variants side by side, round by round in shuffled
order, and hands `write_results` one `Result` per variant. Ratios are taken
round by round against the variant named as *reference* (the two measured in
the same round, close in time) and their median is the figure; a target is a
bound on that ratio (``"<= 1.15x"``, ``">= 0.95x"``).

Each figure comes with a 95% interval over its rounds (`median_interval`:
order statistics, no assumption on the distribution), and a bound is judged on
the whole interval (`verdict`): *met* when all of it is on the right side,
*not met* when all of it is on the wrong side, a *tie* otherwise.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

TIME = "s"
"""Samples are seconds per operation: lower is better."""
RATE = "req/s"
"""Samples are operations per second: higher is better."""

_TARGET = re.compile(r"(<=|>=)\s*([\d.]+)x")

MET = "met"
TIE = "tie"
NOT_MET = "not met"
CONFIDENCE = 0.95


@dataclass
class Result:
    """One variant of one benchmark: a sample per round, and how it is judged."""

    benchmark: str
    variant: str
    samples: list[float]
    unit: str = TIME
    reference: str | None = None
    """The variant (of the same benchmark) this one's ratio is taken against."""
    target: str | None = None
    """A bound on the ratio to *reference*: ``"<= 1.15x"`` or ``">= 0.95x"``."""
    limit: float | None = None
    """An absolute bound on the median, in the samples' unit (a time: at most this)."""
    also: dict[str, str] = field(default_factory=dict)
    """Further references, each with its target: ``{"bare aiohttp": ">= 0.6x"}``."""
    notes: dict[str, str] = field(default_factory=dict)
    """Further figures shown beside the median (latency percentiles, drops, ...)."""

    @property
    def median(self) -> float:
        """The median of the samples."""
        return statistics.median(self.samples)


def as_results(
    benchmark: str,
    samples: Mapping[str, list[float]],
    reference: str,
    targets: Mapping[str, str] | None = None,
    unit: str = TIME,
) -> list[Result]:
    """One `Result` per variant of *samples*, each but *reference* itself judged against it.

    Args:
        benchmark: the benchmark's name.
        samples: each variant's samples, one per round.
        reference: the variant (a key of *samples*) the others' ratios are taken against.
        targets: a variant's bound on that ratio, for those that have one.
        unit: `TIME` or `RATE`.
    """
    targets = targets or {}
    return [
        Result(
            benchmark,
            variant,
            list(values),
            unit,
            reference=None if variant == reference else reference,
            target=targets.get(variant),
        )
        for variant, values in samples.items()
    ]


def ratio(result: Result, reference: Result) -> float:
    """The median of the round-by-round ratios of *result* to *reference*."""
    pairs = list(zip(result.samples, reference.samples, strict=False))
    if not pairs:
        return result.median / reference.median
    return statistics.median(value / base for value, base in pairs)


def spread(samples: list[float]) -> tuple[float, float]:
    """The lower and upper quartile of *samples* (the samples themselves when fewer than 4)."""
    if len(samples) < 4:
        return min(samples), max(samples)
    quartiles = statistics.quantiles(samples, n=4)
    return quartiles[0], quartiles[2]


def ratios(result: Result, reference: Result) -> list[float]:
    """The round-by-round ratios of *result* to *reference* (rounds measured close in time).

    Where the two have no round in common, the one ratio of their medians.
    """
    pairs = list(zip(result.samples, reference.samples, strict=False))
    if not pairs:
        return [result.median / reference.median]
    return [value / base for value, base in pairs]


@dataclass(frozen=True)
class Interval:
    """Where the median lies: between *low* and *high* with probability *coverage*."""

    low: float
    high: float
    coverage: float


def median_interval(values: list[float], confidence: float = CONFIDENCE) -> Interval:
    """The narrowest order-statistic interval for the median of *values* covering *confidence*.

    Distribution-free: the j-th smallest and the j-th largest value bound the
    median with probability 1 - 2 P(B < j), B binomial (n, 1/2). With fewer
    than 6 values no such pair reaches 95%: the interval is then the whole
    range and *coverage* says what it reaches (50% for 2 values).
    """
    if not values:
        raise ValueError("an interval needs at least one value")
    ordered = sorted(values)
    n = len(ordered)
    below = 0  # the count of outcomes with B < j, of 2**n
    chosen = Interval(ordered[0], ordered[-1], 1 - 2 / 2**n)  # the whole range
    for j in range(1, n // 2 + 1):
        below += math.comb(n, j - 1)
        coverage = 1 - 2 * below / 2**n
        if coverage < confidence:
            break
        chosen = Interval(ordered[j - 1], ordered[n - j], coverage)
    return chosen


def ratio_interval(result: Result, reference: Result) -> Interval:
    """The 95% interval of the median of the round-by-round ratios (see `median_interval`)."""
    return median_interval(ratios(result, reference))


def bound_of(target: str) -> tuple[str, float]:
    """``"<= 1.15x"`` as ``("<=", 1.15)``; a clear error for anything else."""
    match = _TARGET.fullmatch(target.strip())
    if match is None:
        raise ValueError(f"a target is '<= N.NNx' or '>= N.NNx', not {target!r}")
    return match[1], float(match[2])


def met(target: str, value: float) -> bool:
    """Return True if the ratio *value* is within *target* (``"<= 1.15x"``, ``">= 2x"``)."""
    side, bound = bound_of(target)
    return value <= bound if side == "<=" else value >= bound


def judge(side: str, bound: float, interval: Interval) -> str:
    """`MET`, `TIE` or `NOT_MET`: where *interval* lies against ``side bound`` (``"<="``, ``">="``).

    Met only when the whole interval is on the right side of the bound (a
    bound equal to an end counts as on the right side), not met only when the
    whole interval is on the wrong side, a tie when the bound is inside it.
    """
    if side not in ("<=", ">="):
        raise ValueError(f"a side is '<=' or '>=', not {side!r}")
    low, high = (interval.low, interval.high) if side == "<=" else (-interval.high, -interval.low)
    bound = bound if side == "<=" else -bound  # ">=" as "<=" of the negated values
    if high <= bound:
        return MET
    if low > bound:
        return NOT_MET
    return TIE


def verdict(target: str, interval: Interval) -> str:
    """`MET`, `TIE` or `NOT_MET` of a ratio's *interval* against *target* (``"<= 1.15x"``)."""
    return judge(*bound_of(target), interval)


def limit_verdict(result: Result) -> tuple[Interval, str]:
    """The interval of *result*'s median and its verdict against its `limit`.

    A limit is at most that much time per operation, or at least that rate.
    """
    if result.limit is None:
        raise ValueError(f"{result.variant!r} has no limit")
    interval = median_interval(result.samples)
    return interval, judge("<=" if result.unit == TIME else ">=", result.limit, interval)


def per_operation(result: Result) -> float:
    """Seconds per operation (or per request) at the median: a rate's median turned over."""
    return result.median if result.unit == TIME else 1 / result.median


def rate_table(results: list[Result], unit: str = "requests/s") -> str:
    """A benchmark's own summary of *results*: each median, its ratio to its reference, notes."""
    by_label = {result.variant: result for result in results}
    rows = [f"| variant | {unit} | ratio | to | notes |", "|---|---:|---:|---|---|"]
    for result in results:
        reference = by_label.get(result.reference or "")
        shown = f"{ratio(result, reference):.2f}x" if reference else ""
        notes = ", ".join(f"{key} {value}" for key, value in result.notes.items())
        rows.append(
            f"| {result.variant} | {result.median:.0f} | {shown} "
            f"| {result.reference or ''} | {notes} |"
        )
    return "\n".join(rows)


def write_results(path: str | Path, results: list[Result]) -> None:
    """Write *results* as JSON to *path* (what `run.py` reads)."""
    Path(path).write_text(json.dumps([asdict(result) for result in results], indent=1))


def read_results(path: str | Path) -> list[Result]:
    """Read what `write_results` wrote."""
    return [Result(**item) for item in json.loads(Path(path).read_text())]
