"""``tools/measure/estimate_memory.py`` builds a config's own network and optimizer and tracks one step on fake
tensors."""

from __future__ import annotations

import pytest

from tests.helpers import TINY_MAE, TINY_UNETR
from tools.measure import estimate_memory

SMALL_MAE = {**TINY_MAE, "network_def#num_layers": 2, "num_samples": 1, "roi_size": [32, 32, 32]}


def _categories_add_up_and_adam_holds_two_moments(estimate: dict) -> None:
    assert estimate["param"] > 0 and estimate["opt"] == pytest.approx(2 * estimate["param"], rel=0.05)
    assert estimate["total"] == pytest.approx(sum(v for k, v in estimate.items() if k not in ("batch", "total")))


def test_activations_grow_with_the_batch():
    one, two = (estimate_memory.estimate("mae_pretrain_ct", "train.json", {**SMALL_MAE, "batch_size": b})
                for b in (4, 8))
    assert one["batch"] == [4, 1, 32, 32, 32] and two["batch"][0] == 8
    assert two["act"] > 1.5 * one["act"] > 0
    _categories_add_up_and_adam_holds_two_moments(one)


def test_the_segmentation_step_is_estimated_with_the_configs_network_and_optimizer():
    small = {**TINY_UNETR, "num_samples": 2, "roi_size": [32, 32, 32], "batch_size": 2}
    estimate = estimate_memory.estimate("unetr_btcv_seg", "train.json", small)
    assert estimate["batch"] == [4, 1, 32, 32, 32]  # batch_size x num_samples crops
    assert estimate["act"] > 0
    _categories_add_up_and_adam_holds_two_moments(estimate)
