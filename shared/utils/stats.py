"""Small numeric helpers for metrics that may be undefined (NaN) for some classes."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = ["nanmean", "nan_to_none"]


def nanmean(values: Iterable[float]) -> float:
    """Mean of the values that are not NaN; NaN when none is left."""
    finite = [float(v) for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def nan_to_none(value: Any) -> Any:
    """``value`` with every float NaN replaced by None, in nested dicts and lists too (JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_none(v) for v in value]
    return value
