"""Figures over rounds: the uncertainty a result carries from one process group to the next.

A *round* is one fresh process group with its own warm-up. On a shared machine the spread
between rounds dominates the spread between the steps of one round, and steps are not
independent, so a result's interval is taken over its rounds, never over its steps:

- ``median_interval``: the median of the rounds and a distribution-free interval from
  order statistics, with the probability that it covers the true median computed exactly
  from the binomial distribution. With few rounds the widest such interval is the range of
  the rounds, whose coverage is below 95 % (5 rounds: 94 %, 3 rounds: 75 %); ``level`` says
  so rather than pretending.
- ``ratio_interval``: a ratio of two medians (a speedup, a comparison of two sets of runs)
  with a percentile bootstrap over both sides' rounds, seeded so that the same rounds
  always print the same interval.
- ``verdict``: whether a ratio's interval tells the two sides apart.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 4000
#: A ratio interval that contains 1 means no measurable difference.
SAME = "no measurable difference"


@dataclass(frozen=True)
class Interval:
    """A median with its interval; ``level`` is the interval's coverage (0 for one value)."""

    median: float
    low: float
    high: float
    level: float
    n: int

    @property
    def half_width(self) -> float:
        """The larger distance from the median to an end, relative to the median."""
        if self.median == 0:
            return math.inf
        return max(self.median - self.low, self.high - self.median) / abs(self.median)

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def overlaps(self, other: Interval) -> bool:
        return self.low <= other.high and other.low <= self.high

    def describe(self, pattern: str = ".1f") -> str:
        """``"512.3 (498.1-530.0, 94 %, 5 rounds)"``; one round has no interval."""
        if self.n < 2:
            return f"{self.median:{pattern}} (1 round: no interval)"
        return (
            f"{self.median:{pattern}} ({self.low:{pattern}}-{self.high:{pattern}}, "
            f"{self.level * 100:.0f} %, {self.n} rounds)"
        )


def _coverage(n: int, lower: int) -> float:
    """P(x_(lower) <= median <= x_(n-1-lower)) for ``n`` values (0-based order statistics):
    the probability that between ``lower+1`` and ``n-1-lower`` values fall below it."""
    below = sum(math.comb(n, k) for k in range(lower + 1)) / 2**n
    return max(0.0, 1.0 - 2.0 * below)


def median_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Median of ``values`` and the narrowest symmetric order-statistic interval whose
    coverage reaches ``level`` (the full range when none does)."""
    if not values:
        raise ValueError("no rounds to summarize")
    ordered = sorted(float(v) for v in values)
    n = len(ordered)
    median = float(np.median(ordered))
    if n == 1:
        return Interval(median, median, median, 0.0, 1)
    lower = 0
    while lower + 1 < n - 1 - (lower + 1) and _coverage(n, lower + 1) >= level:
        lower += 1
    return Interval(median, ordered[lower], ordered[n - 1 - lower], _coverage(n, lower), n)


def rerun_agreement(rounds: int) -> tuple[float, float]:
    """If every round of two runs were exchangeable (no drift between the runs, only the
    round-to-round spread), the probability that the second run's median falls inside the
    first run's ``median_interval`` (one way), and that each run's median falls inside the
    other's (both ways). Exact: every way of splitting ``2 × rounds`` ranked values between
    the two runs is equally likely, and is counted.

    A 95 % interval of the median is not a 95 % interval for a rerun's median: with 5
    rounds one way is 5/6, and nine configurations all agreeing both ways is unlikely even
    on a perfectly steady machine. This is what an agreement check is compared with."""
    if rounds < 1 or rounds > 10:
        raise ValueError("rerun_agreement counts every split: 1 to 10 rounds")
    values = range(2 * rounds)
    one_way = both_ways = total = 0
    for chosen in itertools.combinations(values, rounds):
        first = [float(v) for v in chosen]
        second = [float(v) for v in values if v not in chosen]
        a, b = median_interval(first), median_interval(second)
        forward = a.contains(b.median)
        one_way += forward
        both_ways += forward and b.contains(a.median)
        total += 1
    return one_way / total, both_ways / total


def ratio_interval(
    numerator: Sequence[float],
    denominator: Sequence[float],
    level: float = LEVEL,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """``median(numerator) / median(denominator)`` with a percentile bootstrap interval,
    resampling each side's rounds independently. With one round on both sides there is
    nothing to resample: the interval is the point (``level`` 0)."""
    top = np.asarray(numerator, dtype=float)
    bottom = np.asarray(denominator, dtype=float)
    if top.size == 0 or bottom.size == 0 or np.any(bottom <= 0):
        raise ValueError("a ratio needs positive rounds on both sides")
    point = float(np.median(top) / np.median(bottom))
    n = min(top.size, bottom.size)
    if top.size == 1 and bottom.size == 1:
        return Interval(point, point, point, 0.0, 1)
    rng = np.random.default_rng(seed)
    tops = np.median(rng.choice(top, size=(resamples, top.size)), axis=1)
    bottoms = np.median(rng.choice(bottom, size=(resamples, bottom.size)), axis=1)
    ratios = tops / bottoms
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return Interval(point, min(float(low), point), max(float(high), point), level, n)


def verdict(ratio: Interval, higher: str = "faster", lower: str = "slower") -> str:
    """``higher`` / ``lower`` when the interval excludes 1, else ``SAME``; one round on
    each side cannot tell (``"1 round: no interval"``)."""
    if ratio.n < 2:
        return "1 round: no interval"
    if ratio.low > 1:
        return higher
    if ratio.high < 1:
        return lower
    return SAME
