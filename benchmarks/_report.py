"""What every benchmark reports: its variants' per-round samples, as JSON for `run.py`.

A benchmark measures its variants side by side, round by round in shuffled
order, and hands `write_results` one `Result` per variant. Ratios are taken
round by round against the variant named as *reference* (the two measured in
the same round, close in time) and their median is the figure; a target is a
bound on that ratio (``"<= 1.15x"``, ``">= 0.95x"``).
"""

from __future__ import annotations

import json
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


def met(target: str, value: float) -> bool:
    """Return True if the ratio *value* is within *target* (``"<= 1.15x"``, ``">= 2x"``)."""
    match = _TARGET.fullmatch(target.strip())
    if match is None:
        raise ValueError(f"a target is '<= N.NNx' or '>= N.NNx', not {target!r}")
    bound = float(match[2])
    return value <= bound if match[1] == "<=" else value >= bound


def write_results(path: str | Path, results: list[Result]) -> None:
    """Write *results* as JSON to *path* (what `run.py` reads)."""
    Path(path).write_text(json.dumps([asdict(result) for result in results], indent=1))


def read_results(path: str | Path) -> list[Result]:
    """Read what `write_results` wrote."""
    return [Result(**item) for item in json.loads(Path(path).read_text())]
