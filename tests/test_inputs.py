"""Inputs of ``shared/data/inputs.py``: input lists that would overwrite each other's outputs, a single path, empty
or missing inputs and empty datalists are refused before any work, naming what was looked for; one bad input among
good ones does not stop the others."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from shared.data.inputs import InputFailures, SkipFailedInputs, image_datalist, non_empty
from shared.utils.errors import InputError, cause_line
from tests.helpers import SEG, SMALL, TINY_ENCODER, TINY_UNETR, bundle_run, run_workflow


def nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


def test_two_inputs_with_the_same_name_are_refused_before_any_work(btcv, tmp_path):
    for folder in ("A", "B"):
        (tmp_path / folder).mkdir()
        shutil.copy(btcv / "imagesTs" / "img0061.nii.gz", tmp_path / folder / "ct.nii.gz")
    inputs = [str(tmp_path / "A" / "ct.nii.gz"), str(tmp_path / "B" / "ct.nii.gz")]
    with pytest.raises(ValueError, match=r"same name would overwrite each other's output \(ct: .*A/ct.nii.gz, .*B/ct"):
        image_datalist(inputs)
    with pytest.raises(RuntimeError):
        run_workflow([SEG / "inference.json"], tmp_path / "bundle", "infer", input_files=inputs,
                     output_dir=str(tmp_path / "out"), **SMALL, **TINY_UNETR)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_single_input_path_and_empty_inputs():
    assert image_datalist(__file__) == [{"image": __file__}]  # a string is one file, not its characters
    with pytest.raises(FileNotFoundError, match=r"nothing matches /nowhere/imagesTs/\*.nii.gz"):
        image_datalist([], looked_for="/nowhere/imagesTs/*.nii.gz")
    with pytest.raises(FileNotFoundError, match="not found: /nowhere/ct.nii.gz"):
        image_datalist("/nowhere/ct.nii.gz")
    with pytest.raises(ValueError, match="no validation cases in /data/dataset_0.json"):
        non_empty([], "validation cases in /data/dataset_0.json")


def test_inference_with_a_missing_dataset_dir_says_where_it_looked(tmp_path):
    overrides = {"bundle_root": str(tmp_path), "dataset_dir": "/nowhere", **SMALL, **TINY_UNETR}
    output = bundle_run([SEG / "inference.json"], overrides, expect_failure=True)
    assert output.strip().splitlines()[-1].endswith(
        "FileNotFoundError: no input images: nothing matches /nowhere/imagesTs/*.nii.gz. Pass --input_files or "
        "--dataset_dir.")


def test_one_bad_input_does_not_stop_the_others(btcv, tmp_path):
    """A truncated file and a file with NaN among good ones: the good ones are segmented, the bad ones reported with
    their reasons, and the run fails at the end."""
    good = btcv / "imagesTs" / "img0061.nii.gz"
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    image = nib.load(good)
    data = np.asanyarray(image.dataobj).astype(np.float32)
    data[3, 4, 5] = np.nan
    with_nan = nifti(tmp_path / "with_nan.nii.gz", data, image.affine)
    bundle = tmp_path / "bundle"
    (bundle / "models").mkdir(parents=True)
    from monai.networks.nets import UNETR

    torch.save(UNETR(1, 14, 32, feature_size=8, **TINY_ENCODER).state_dict(), bundle / "models" / "model.pt")
    output = bundle_run([SEG / "inference.json"], {
        "bundle_root": str(bundle), "output_dir": str(tmp_path / "out"), **SMALL, **TINY_UNETR,
        "input_files": [str(truncated), str(good), str(with_nan)]}, expect_failure=True)
    assert (tmp_path / "out" / "img0061_seg.nii.gz").is_file()
    written = {p.name for p in (tmp_path / "out").glob("*.nii.gz")}
    assert written == {"img0061_seg.nii.gz"}
    tail = output[output.rindex("error: InputFailures"):]
    assert "2 of 3 inputs failed (1 done)" in tail
    assert f"{truncated}: cannot be read (EOFError" in tail
    assert f"{with_nan}: 1 of" in tail and "values are NaN or infinite" in tail


class _SomeFail(torch.utils.data.Dataset):
    """Five inputs ``{"image": (1, 2) of i}``; inputs 1 and 4 fail as unreadable files would."""

    data = [{"image": f"x{i}.png"} for i in range(5)]

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        if index in (1, 4):
            raise InputError(f"x{index}.png", "cannot be read")
        return {"image": torch.full((1, 2), float(index))}


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_inference_batches_hold_the_inputs_that_succeeded(batch_size):
    """Batches of several inputs (the X-ray classifier's batch_size) skip the failed ones and report them."""
    loader = SkipFailedInputs(_SomeFail(), batch_size=batch_size)
    done = [value for batch in loader for value in batch["image"][:, 0, 0].tolist()]
    assert done == [0.0, 2.0, 3.0] and max(len(b["image"]) for b in loader) == min(batch_size, 2)
    assert loader.failures == [("x1.png", "cannot be read"), ("x4.png", "cannot be read")]
    with pytest.raises(InputFailures, match="2 of 5 inputs failed \\(3 done\\)"):
        loader.report()


def test_empty_training_or_validation_lists_are_errors(btcv, tmp_path):
    datalist = json.loads((btcv / "dataset_0.json").read_text())
    for split in ("training", "validation"):
        empty = tmp_path / f"no_{split}.json"
        empty.write_text(json.dumps({**datalist, split: []}))
        with pytest.raises(RuntimeError) as error:
            run_workflow([SEG / "train.json"], tmp_path / "bundle", dataset_dir=str(btcv), datalist_file=str(empty),
                         epochs=1, **SMALL, **TINY_UNETR)
        assert f"no {split} cases in {empty}: nothing to do." in cause_line(error.value)
    empty = tmp_path / "no_validation.json"
    with pytest.raises(RuntimeError) as error:
        run_workflow([SEG / "train.json", SEG / "evaluate.json"], tmp_path / "bundle", dataset_dir=str(btcv),
                     datalist_file=str(empty), **SMALL, **TINY_UNETR)
    assert f"no validation cases in {empty}" in cause_line(error.value)
