"""The one seeded draw behind every split (``shared/data/splits.py``): pinned to the cases it has always drawn, since
the bundles' validation splits and the study's committed confirmatory plan depend on them."""

from __future__ import annotations

import pytest

from shared.data.splits import num_validation, seeded_order, split_by_seed, split_validation


def test_the_seeded_order_is_python_s_shuffle_pinned():
    """``random.Random(seed).shuffle`` orders, recorded before the split helpers were merged into one."""
    assert seeded_order(12, seed=0) == [1, 9, 8, 5, 10, 2, 3, 7, 4, 0, 11, 6]
    assert seeded_order(12, seed=2027) == [2, 4, 8, 10, 9, 3, 6, 5, 0, 11, 7, 1]
    assert seeded_order(0, seed=3) == []


def test_split_by_seed_draws_the_first_positions_and_keeps_the_input_order():
    items = [f"case{i}" for i in range(10)]
    rest, drawn = split_by_seed(items, 3, seed=100)
    assert drawn == ["case0", "case4", "case5"] and rest == [c for c in items if c not in drawn]
    assert split_by_seed(items, 0, seed=100) == (items, [])
    assert split_by_seed(items, 10, seed=100) == ([], items)


@pytest.mark.parametrize("num_items,fraction,seed,validation", [
    (10, 0.3, 7, [1, 3, 8]),
    (20, 0.2, 0, [10, 14, 16, 18]),
])
def test_validation_splits_are_the_draws_of_before(num_items, fraction, seed, validation):
    items = list(range(num_items))
    training, drawn = split_validation(items, fraction, seed)
    assert drawn == validation and training == [i for i in items if i not in validation]
    assert len(drawn) == num_validation(num_items, fraction)
