"""Deterministic training/validation splits, the same rule for every data set."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["num_validation", "split_validation"]

T = TypeVar("T")


def num_validation(num_items: int, val_fraction: float) -> int:
    """``round(val_fraction * num_items)``, but at least 1 and at most ``num_items - 1`` when ``val_fraction > 0``
    and there are two items or more, so that neither side of a split is empty by rounding.

    Raises:
        ValueError: ``val_fraction`` outside ``[0, 1)``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    count = int(round(val_fraction * num_items))
    if val_fraction > 0 and num_items >= 2:
        count = min(max(count, 1), num_items - 1)
    return count


def split_validation(items: Sequence[T], val_fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Split ``items`` into training and validation: the items at the first :func:`num_validation` positions of a
    ``random.Random(seed)`` shuffle are validation. Both lists keep the input order, and the split depends only on
    the number of items, the fraction and the seed.

    Returns:
        ``(training, validation)``.
    """
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    val_ids = set(order[: num_validation(len(items), val_fraction)])
    training = [item for i, item in enumerate(items) if i not in val_ids]
    validation = [item for i, item in enumerate(items) if i in val_ids]
    return training, validation
