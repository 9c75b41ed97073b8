"""A resumed run says what differs between its settings and the checkpoint's. Through ``python -m monai.bundle run``,
as a user runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import SEG, SMALL, TINY_UNETR, bundle_run
from tools import synthetic


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A bundle root with a checkpoint after one epoch of a tiny UNETR, and its data."""
    data = Path(synthetic.make_btcv(str(tmp_path_factory.mktemp("btcv")), num_train=1, num_val=1, num_test=0,
                                    shape=(40, 40, 24), body_scale=0.1))
    root = tmp_path_factory.mktemp("bundle")
    bundle_run([SEG / "train.json"], overrides(root, data))
    return root, data


def overrides(root: Path, data: Path, **more) -> dict:
    return {"bundle_root": str(root), "dataset_dir": str(data), "epochs": 1, "batch_size": 1, "num_samples": 1,
            "warmup_epochs": 1, "val_interval": 1, "pretrained_encoder": "", **SMALL, **TINY_UNETR, **more}


def test_a_changed_learning_rate_is_reported(trained):
    root, data = trained
    output = bundle_run([SEG / "train.json"], overrides(root, data, epochs=2, base_learning_rate=0.01))
    assert "this run asks for learning rate 3.90625e-05, " in output and "continues with the checkpoint's" in output


def test_a_network_of_other_shapes_is_refused_in_a_few_lines(trained):
    root, data = trained
    output = bundle_run([SEG / "train.json"], overrides(root, data, epochs=2, **{"network_def#feature_size": 16}),
                        expect_failure=True)
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"error: RuntimeError: {root}/models/checkpoint.pt does not fit this run's 'model': ")
    assert "and" in last and "more)" in last and "size mismatch" not in output.split("Traceback")[0]
