"""A resumed run says what differs between its settings and the checkpoint's: another network definition is refused
(even one that keeps every tensor's shape), other optimizer settings are applied with a warning naming both values,
and a checkpoint of an earlier version (no settings recorded) still resumes. Through ``python -m monai.bundle run``,
as a user runs it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from shared.handlers.checkpoint import RunSettings, settings_differences
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


def copy_of(root: Path, tmp_path: Path) -> Path:
    """A copy of the bundle root (a test that resumes must not change the module's checkpoint)."""
    return Path(shutil.copytree(root, tmp_path / "bundle"))


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def test_the_checkpoint_records_the_resolved_network_and_optimizer_settings(trained):
    root, _ = trained
    settings = torch.load(root / "models" / "checkpoint.pt", weights_only=True)["settings"]
    network = settings["network"]["network_def"]
    assert network["_target_"] == "UNETR" and network["out_channels"] == 14 and network["img_size"] == [32, 32, 32]
    assert network["hidden_size"] == 48 and network["norm_name"] == "instance" and network["dropout_rate"] == 0.0
    optimizer = settings["optimizer"]
    assert optimizer["optimizer"]["lr"] == pytest.approx(0.0043 / 256) and "params" not in optimizer["optimizer"]
    assert optimizer["param_groups"] == {"_target_": "scripts.optimizers.layer_decay.param_groups",
                                         "lr": pytest.approx(0.0043 / 256), "weight_decay": 0.05, "layer_decay": 0.75}


def test_a_changed_learning_rate_is_applied_with_a_warning_naming_both_values(trained, tmp_path):
    root = copy_of(trained[0], tmp_path)
    output = bundle_run([SEG / "train.json"], overrides(root, trained[1], epochs=2, base_learning_rate=0.01))
    assert "this run's optimizer settings differ from those" in output
    assert f"optimizer#lr: {0.0043 / 256!r} in the checkpoint, {0.01 / 256!r} now" in output
    assert f"param_groups#lr: {0.0043 / 256!r} in the checkpoint, {0.01 / 256!r} now" in output
    assert "The resumed run trains with this run's" in output and "resumed from" in output
    groups = torch.load(root / "models" / "checkpoint.pt", weights_only=True)["optimizer"]["param_groups"]
    assert groups[0]["initial_lr"] == pytest.approx(0.01 / 256)  # the base group: the new rate was used
    assert groups[-1]["initial_lr"] == pytest.approx(0.01 / 256 * 0.75 ** 13)  # layer decay kept on top of it


def test_a_network_with_the_same_tensor_shapes_is_refused_naming_the_key(trained):
    root, data = trained
    before = (root / "models" / "checkpoint.pt").read_bytes()
    output = bundle_run([SEG / "train.json"], overrides(root, data, epochs=2, **{"network_def#dropout_rate": 0.1}),
                        expect_failure=True)
    assert last_line(output) == (
        f"error: RuntimeError: {root}/models/checkpoint.pt was trained with another network definition: "
        "network_def#dropout_rate: 0.0 in the checkpoint, 0.1 now. Its weights would be loaded into a different "
        "network. Resume with the settings it was trained with (the values 'in the checkpoint' above), or run with "
        "--resume false to start over.")
    assert (root / "models" / "checkpoint.pt").read_bytes() == before


def test_a_network_of_other_shapes_is_refused_naming_the_key_and_the_tensors(trained):
    root, data = trained
    output = bundle_run([SEG / "train.json"], overrides(root, data, epochs=2, **{"network_def#feature_size": 16}),
                        expect_failure=True)
    last = last_line(output)
    assert last.startswith(f"error: RuntimeError: {root}/models/checkpoint.pt was trained with another network "
                           "definition: network_def#feature_size: 8 in the checkpoint, 16 now (")
    assert "tensors differ in name or shape)" in last and "size mismatch" not in output.split("Traceback")[0]


def test_turning_layer_decay_off_is_refused_since_the_optimizer_state_cannot_be_carried_over(trained):
    root, data = trained
    output = bundle_run([SEG / "train.json"], overrides(root, data, epochs=2, layer_decay=1.0), expect_failure=True)
    last = last_line(output)
    assert last.startswith(f"error: RuntimeError: {root}/models/checkpoint.pt holds the optimizer state of ")
    assert "(param_groups#layer_decay: 0.75 in the checkpoint, 1.0 now)" in last and "--resume false" in last


@pytest.fixture()
def earlier_version(trained, tmp_path) -> Path:
    """A copy of the bundle root whose checkpoint has no settings, as an earlier version wrote it."""
    root = copy_of(trained[0], tmp_path)
    checkpoint = torch.load(root / "models" / "checkpoint.pt", weights_only=True)
    del checkpoint["settings"]
    torch.save(checkpoint, root / "models" / "checkpoint.pt")
    return root


def test_a_checkpoint_without_settings_resumes_saying_they_could_not_be_compared(trained, earlier_version):
    output = bundle_run([SEG / "train.json"], overrides(earlier_version, trained[1], epochs=2,
                                                        base_learning_rate=0.01))
    assert "does not record the settings it was trained with" in output and "could not be compared" in output
    assert f"initial_lr: {0.0043 / 256!r} in the checkpoint, {0.01 / 256!r} now (parameter group 0)" in output
    assert "resumed from" in output and "has no 'settings'" not in output
    assert "settings" in torch.load(earlier_version / "models" / "checkpoint.pt", weights_only=True)


def test_a_checkpoint_without_settings_and_other_shapes_is_refused_in_a_few_lines(trained, earlier_version):
    output = bundle_run([SEG / "train.json"], overrides(earlier_version, trained[1], epochs=2,
                                                        **{"network_def#feature_size": 16}), expect_failure=True)
    last = last_line(output)
    assert last.startswith(f"error: RuntimeError: {earlier_version}/models/checkpoint.pt does not fit this run's "
                           "'model': ")
    assert "and" in last and "more)" in last and "size mismatch" not in output.split("Traceback")[0]


def test_settings_differences_name_each_key_with_both_values():
    saved = RunSettings({"network_def": {"_target_": "UNETR", "norm_name": "instance", "img_size": [32, 32, 32]}})
    now = RunSettings({"network_def": {"_target_": "SwinUNETR", "norm_name": "instance", "img_size": (32, 32, 32),
                                       "depths": [2, 2]}})
    assert now.differences(saved.state_dict()) == {"network": [
        "network_def#_target_: 'UNETR' in the checkpoint, 'SwinUNETR' now",
        "network_def#depths: not set in the checkpoint, [2, 2] now"], "optimizer": None, "encoder": None}
    assert settings_differences({"optimizer": {"lr": 0.1 * 3}}, {"optimizer": {"lr": 0.3}}) == []
