"""Robust summaries of repeated measurements: medians, percentiles, 95 % intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Summary:
    median: float
    p90: float
    mean: float
    ci95_low: float
    ci95_high: float
    n: int


def median_ci95(values: list[float]) -> tuple[float, float]:
    """Distribution-free 95 % interval of the median from order statistics (binomial, normal
    approximation): no assumption that step times are normally distributed."""
    ordered = sorted(values)
    n = len(ordered)
    half_width = 1.96 * math.sqrt(n) / 2
    low = max(0, math.floor(n / 2 - half_width))
    high = min(n - 1, math.ceil(n / 2 + half_width) - 1)
    return ordered[low], ordered[max(low, high)]


def summarize(values: list[float]) -> Summary:
    if not values:
        raise ValueError("no measurements to summarize")
    array = np.asarray(values, dtype=float)
    low, high = median_ci95(values)
    return Summary(
        median=float(np.median(array)),
        p90=float(np.percentile(array, 90)),
        mean=float(array.mean()),
        ci95_low=low,
        ci95_high=high,
        n=len(values),
    )
