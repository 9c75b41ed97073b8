"""Deterministic seeded draws, the same rule for every data set and for the study: training/validation splits, held-out
cases and nested labelled subsets all come from one ``random.Random(seed)`` permutation (:func:`seeded_order`).

``monai.data.partition_dataset(shuffle=True)`` would do the shuffling with numpy's generator, which draws other cases
for the same seed: the validation splits of the bundles and the study's committed, sha256-pinned confirmatory plan
depend on these exact draws, so the permutation stays Python's.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["seeded_order", "split_by_seed", "num_validation", "split_validation"]

T = TypeVar("T")


def seeded_order(num_items: int, seed: int) -> list[int]:
    """The positions ``0 .. num_items - 1`` in the order of one ``random.Random(seed).shuffle``.

    Args:
        num_items: how many items to order.
        seed: seed of the permutation; the same seed always gives the same order.

    Returns:
        a permutation of ``range(num_items)``.
    """
    order = list(range(num_items))
    random.Random(seed).shuffle(order)
    return order


def split_by_seed(items: Sequence[T], count: int, seed: int) -> tuple[list[T], list[T]]:
    """Draw ``count`` of ``items``: those at the first ``count`` positions of :func:`seeded_order`.

    Args:
        items: the items to split.
        count: how many items to draw, from 0 to ``len(items)``.
        seed: seed of the draw.

    Returns:
        ``(rest, drawn)``, both in the input order.
    """
    drawn = set(seeded_order(len(items), seed)[:count])
    rest = [item for i, item in enumerate(items) if i not in drawn]
    return rest, [item for i, item in enumerate(items) if i in drawn]


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
    """Split ``items`` into training and validation: the :func:`num_validation` items drawn by :func:`split_by_seed`
    are validation. Both lists keep the input order, and the split depends only on the number of items, the
    fraction and the seed.

    Returns:
        ``(training, validation)``.
    """
    return split_by_seed(items, num_validation(len(items), val_fraction), seed)
