"""Fixtures of every test (shared helpers live in ``tests/helpers.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from monai.networks.nets import UNETR

from tests.helpers import TINY_ENCODER
from tools import synthetic


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _contents(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every file under ``root``."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def btcv(tmp_path_factory) -> Iterator[Path]:
    """A miniature BTCV-layout set shared by every test: two training, two validation and one test case
    (``imagesTs/img0061.nii.gz``), 64x64x32 voxels of miniature anatomy (about 27x27x13 at the bundles' spacing).

    Read-only: a test that writes data copies what it needs into its ``tmp_path``; the session fails at the end if
    any file of the set was changed, added or removed.
    """
    root = Path(synthetic.make_btcv(str(tmp_path_factory.mktemp("btcv")), num_train=2, num_val=2, num_test=1,
                                    shape=(64, 64, 32), seed=0, body_scale=0.1))
    written = _contents(root)
    yield root
    assert _contents(root) == written, f"a test changed the shared data set {root}"


@pytest.fixture(scope="module")
def seg_bundle(tmp_path_factory) -> Path:
    """A bundle root with a tiny UNETR as ``models/model.pt``."""
    root = tmp_path_factory.mktemp("seg_bundle")
    (root / "models").mkdir()
    torch.save(UNETR(1, 14, 32, feature_size=8, **TINY_ENCODER).state_dict(), root / "models" / "model.pt")
    return root
