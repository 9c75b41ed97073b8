"""Fixtures of every test (shared helpers live in ``tests/helpers.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.networks.nets import UNETR

from tests.helpers import TINY_ENCODER
from tools import synthetic


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def small_btcv(tmp_path_factory) -> Path:
    """A miniature BTCV-layout set: one training, one validation and one test case."""
    return Path(synthetic.make_btcv(str(tmp_path_factory.mktemp("btcv")), num_train=1, num_val=1, num_test=1,
                                    shape=(40, 40, 24), body_scale=0.1))


@pytest.fixture(scope="module")
def seg_bundle(tmp_path_factory) -> Path:
    """A bundle root with a tiny UNETR as ``models/model.pt``."""
    root = tmp_path_factory.mktemp("seg_bundle")
    (root / "models").mkdir()
    torch.save(UNETR(1, 14, 32, feature_size=8, **TINY_ENCODER).state_dict(), root / "models" / "model.pt")
    return root
