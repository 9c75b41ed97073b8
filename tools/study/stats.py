"""Paired comparison of the two arms over seeds: mean difference and its 95% confidence interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

__all__ = ["PairedDifference", "paired_difference", "mean_sd"]


@dataclass(frozen=True)
class PairedDifference:
    """MAE − scratch over paired runs (same seed, same labelled cases).

    Attributes:
        mean: mean of the per-seed differences.
        sd: their sample standard deviation (NaN for one pair).
        ci95: two-sided 95% confidence interval of the mean difference, from Student's t with ``n - 1`` degrees of
            freedom (``(nan, nan)`` for one pair).
        n: number of pairs.
    """

    mean: float
    sd: float
    ci95: tuple[float, float]
    n: int

    @property
    def excludes_zero(self) -> bool:
        """Whether the confidence interval lies entirely above or below zero."""
        low, high = self.ci95
        return not math.isnan(low) and (low > 0 or high < 0)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for fewer than two values)."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return mean, sd


def paired_difference(mae: Sequence[float], scratch: Sequence[float]) -> PairedDifference:
    """The paired difference ``mae[i] - scratch[i]`` of runs that share seed ``i``.

    Raises:
        ValueError: the two arms have a different number of runs, or none.
    """
    if len(mae) != len(scratch) or not mae:
        raise ValueError(f"paired runs needed: {len(mae)} MAE and {len(scratch)} scratch values.")
    differences = [float(a) - float(b) for a, b in zip(mae, scratch)]
    mean, sd = mean_sd(differences)
    n = len(differences)
    if n < 2:
        return PairedDifference(mean, sd, (float("nan"), float("nan")), n)
    half_width = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return PairedDifference(mean, sd, (mean - half_width, mean + half_width), n)
