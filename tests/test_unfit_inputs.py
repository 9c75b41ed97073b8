"""Weights and images that do not fit, and a full disk: each is refused in a few lines that name the file and the
problem. Through ``python -m monai.bundle run``, as a user runs it."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from shared.transforms.io import check_nifti_header
from shared.utils.errors import InputError
from tests.helpers import SEG, SMALL, TINY_UNETR, bundle_run, tiny_mae


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def train_overrides(root: Path, data: Path, **more) -> dict:
    return {"bundle_root": str(root), "dataset_dir": str(data), "epochs": 1, "batch_size": 1, "num_samples": 1,
            "pretrained_encoder": "", **SMALL, **TINY_UNETR, **more}


def test_another_bundles_model_is_refused_in_a_few_lines(btcv, seg_bundle, tmp_path):
    mae_file = tmp_path / "mae.pt"
    torch.save(tiny_mae().state_dict(), mae_file)
    output = bundle_run([SEG / "inference.json"], {"bundle_root": str(seg_bundle), "dataset_dir": str(btcv),
                                                   "model_file": str(mae_file), "output_dir": str(tmp_path / "out"),
                                                   **SMALL, **TINY_UNETR}, expect_failure=True)
    last = last_line(output)
    assert last.startswith(f"error: RuntimeError: {mae_file} does not fit this run's network: "), last
    assert " tensors of the network not in the file, " in last and " of the file not in the network (e.g. " in last
    assert "size mismatch" not in output and "Missing key(s)" not in output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_truncated_model_is_named_at_evaluation(btcv, seg_bundle, tmp_path):
    truncated = tmp_path / "model.pt"
    truncated.write_bytes((seg_bundle / "models" / "model.pt").read_bytes()[:2000])
    output = bundle_run([SEG / "train.json", SEG / "evaluate.json"],
                        train_overrides(tmp_path / "bundle", btcv, model_file=str(truncated)),
                        expect_failure=True)
    assert last_line(output).startswith(f"error: RuntimeError: cannot read the trained network {truncated} (")


def test_a_bare_tensor_as_pretrained_encoder_is_named(btcv, tmp_path):
    encoder = tmp_path / "encoder.pt"
    torch.save(torch.zeros(3, 4), encoder)
    output = bundle_run([SEG / "train.json"], train_overrides(tmp_path / "bundle", btcv,
                                                              pretrained_encoder=str(encoder)), expect_failure=True)
    assert last_line(output).startswith(f"error: ValueError: MAE checkpoint '{encoder}' holds a Tensor, not a "
                                        "state dict")


def nifti_header_only(path: Path, shape: tuple[int, ...], affine: np.ndarray | None = None) -> Path:
    """A ``.nii`` file whose header declares ``shape`` and the voxel-to-mm ``affine`` (as its sform; 1 mm voxels
    when None) but that holds almost no data."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape(shape)
    header.set_qform(None, code=0)
    header.set_sform(np.eye(4) if affine is None else affine, code=1)
    with open(path, "wb") as f:
        header.write_to(f)
        f.write(b"\0" * 1024)
    return path


def test_a_header_that_declares_a_huge_image_is_refused_before_loading(seg_bundle, tmp_path):
    huge = nifti_header_only(tmp_path / "huge.nii", (4000, 4000, 4000))
    output = bundle_run([SEG / "inference.json"], {"bundle_root": str(seg_bundle), "input_files": [str(huge)],
                                                   "output_dir": str(tmp_path / "out"), **SMALL, **TINY_UNETR},
                        expect_failure=True, timeout=60)
    assert f"{huge}: its header declares an image of 4000 x 4000 x 4000 = 6.4e+10 values" in output
    assert "MemoryError" not in output


def test_a_zero_or_degenerate_voxel_size_is_refused(tmp_path):
    zero = nifti_header_only(tmp_path / "zero.nii", (8, 8, 8), np.diag([1.0, 0.0, 2.0, 1.0]))
    with pytest.raises(InputError, match=r"zero.nii: its header declares a voxel size of \[1.0, 0.0, 2.0\] mm"):
        check_nifti_header(str(zero))
    skewed = np.array([[1.0, 1.0, 0, 0], [0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    degenerate = nifti_header_only(tmp_path / "degenerate.nii", (8, 8, 8), skewed)
    with pytest.raises(InputError, match="degenerate.nii: its header declares a degenerate voxel grid"):
        check_nifti_header(str(degenerate))
    check_nifti_header(str(nifti_header_only(tmp_path / "fine.nii", (8, 8, 8), np.diag([0.7, 0.7, 2.5, 1.0]))))


def test_a_full_disk_during_training_names_the_checkpoint(btcv, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    checkpoint = full / "checkpoint.pt"
    output = bundle_run([SEG / "train.json"], train_overrides(tmp_path / "bundle", btcv,
                                                              checkpoint_file=str(checkpoint)),
                        expect_failure=True, via=("tests.disk_full", str(full)))
    last = last_line(output)
    assert last.startswith(f"error: OSError: [Errno 28] cannot write {checkpoint} (No space left on device): the "
                           "disk is full"), last
    assert not checkpoint.exists() or checkpoint.stat().st_size == 0
    assert [p.name for p in full.iterdir()] in ([], ["checkpoint.pt"])
    shutil.rmtree(full)
