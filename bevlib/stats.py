"""Small statistics for results over seeds: means with 95 % confidence intervals."""
from __future__ import annotations

import math

import numpy as np


def mean_ci95(values) -> tuple[float, float]:
    """Mean and the half-width of its two-sided 95 % Student-t confidence interval.

    Args: values: 1-D sequence of floats (one per seed); NaNs are dropped.
    Returns: (mean, half-width); half-width NaN for fewer than two values, mean NaN for none.
    """
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))], np.float64)
    if len(v) == 0:
        return math.nan, math.nan
    if len(v) < 2:
        return float(v.mean()), math.nan
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(half)
