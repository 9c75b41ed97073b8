"""Data that would make a training run or an evaluation look wrong or too good: validation cases that are also
training cases or whose label is all background are named at the start, so are evaluation cases whose label is all
background, an incomplete BraTS 2021 case is refused whichever contrast it lacks, and label-guided MAE crops check
their labels as the segmentation training does. Through ``python -m monai.bundle run``, as a user runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.networks.nets import UNETR

from shared.data.brats import brats2021_cases
from tests.helpers import BRATS, MAE, SEG, SMALL, TINY_ENCODER, TINY_MAE, TINY_UNETR, bundle_run
from tools import synthetic


@pytest.fixture(scope="module")
def brats(tmp_path_factory) -> Path:
    return Path(synthetic.make_brats(str(tmp_path_factory.mktemp("brats")), layout="brats2021", num_cases=3,
                                     shape=(24, 24, 16)))


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def test_a_validation_case_in_training_or_with_a_background_label_is_named(btcv, tmp_path):
    datalist = json.loads((btcv / "dataset_0.json").read_text())
    train, val = datalist["training"][0], datalist["validation"][0]
    empty = tmp_path / "label_empty.nii.gz"
    label = nib.load(btcv / val["label"])
    nib.save(nib.Nifti1Image(np.zeros(label.shape, np.uint8), label.affine), empty)
    mine = tmp_path / "my_datalist.json"
    mine.write_text(json.dumps({"training": [train], "validation": [
        train, {"image": str(btcv / val["image"]), "label": str(empty)}]}))
    output = bundle_run([SEG / "train.json"], {
        "bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(btcv), "datalist_file": str(mine),
        "epochs": 1,
        "batch_size": 1, "num_samples": 1, "val_interval": 1, "pretrained_encoder": "", **SMALL, **TINY_UNETR})
    image = (btcv / train["image"]).resolve()
    assert f"1 of 2 validation cases are also training cases, so the validation metric is partly measured on " \
           f"training data: {image}" in output
    assert "1 validation cases have a label that is all background" in output
    assert f"Check the labels of these cases: {btcv / val['image']}" in output


def test_a_brats_case_without_any_one_contrast_is_refused_by_the_same_rule(brats, tmp_path):
    data = tmp_path / "brats"
    shutil.copytree(brats, data)
    cases = sorted(p for p in data.iterdir() if p.is_dir())
    flair = cases[0] / f"{cases[0].name}_flair.nii.gz"
    t2 = cases[1] / f"{cases[1].name}_t2.nii.gz"
    flair.unlink()
    t2.unlink()
    with pytest.raises(FileNotFoundError) as error:
        brats2021_cases(str(data))
    assert f"{cases[0].name}: missing {flair}" in str(error.value) and f"{cases[1].name}: missing {t2}" in str(
        error.value)
    output = bundle_run([BRATS / "train.json"], {
        "bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(data), "dataset_layout": "brats2021",
        "epochs": 1, "num_workers": 0}, expect_failure=True)
    assert f"{cases[0].name}: missing {flair}" in output.split("error: ")[-1]


def test_label_guided_mae_crops_refuse_a_label_off_its_image_grid(btcv, tmp_path):
    datalist = json.loads((btcv / "dataset_0.json").read_text())
    case = datalist["training"][0]
    label = nib.load(btcv / case["label"])
    shifted = label.affine.copy()
    shifted[:3, 3] += 5.0
    moved = tmp_path / "label_moved.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(label.dataobj), shifted), moved)
    mine = tmp_path / "my_datalist.json"
    mine.write_text(json.dumps({"training": [{"image": str(btcv / case["image"]), "label": str(moved)}],
                                "validation": datalist["validation"]}))
    output = bundle_run([MAE / "train.json"], {
        "bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(btcv), "datalist_file": str(mine),
        "epochs": 1,
        "batch_size": 1, "num_samples": 1, "label_guided_crops": True, **SMALL, **TINY_MAE}, expect_failure=True)
    assert f"{moved}: the label's affine differs from the image's" in last_line(output)


def empty_label_like(label_file: Path, empty: Path) -> Path:
    """A label of ``label_file``'s grid that is all background."""
    label = nib.load(label_file)
    nib.save(nib.Nifti1Image(np.zeros(label.shape, np.uint8), label.affine), empty)
    return empty


def test_an_evaluation_case_whose_label_is_all_background_is_named(btcv, seg_bundle, tmp_path):
    datalist = json.loads((btcv / "dataset_0.json").read_text())
    case = datalist["validation"][0]
    image = btcv / case["image"]
    empty = empty_label_like(btcv / case["label"], tmp_path / "label_empty.nii.gz")
    mine = tmp_path / "my_datalist.json"
    mine.write_text(json.dumps({"training": datalist["training"], "validation": [
        {"image": str(image), "label": str(btcv / case["label"])},
        {"image": str(image), "label": str(empty)}]}))
    output = bundle_run([SEG / "train.json", SEG / "evaluate.json"], {
        "bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(btcv), "datalist_file": str(mine),
        "model_file": str(seg_bundle / "models" / "model.pt"), **SMALL, **TINY_UNETR})
    assert ("1 evaluation cases have a label that is all background: no class of theirs is scored whatever the "
            "network predicts") in output
    assert f"Check the labels of these cases: {image}\n" in output


def test_a_brats_evaluation_case_whose_label_is_all_background_is_named(tmp_path):
    data = Path(synthetic.make_brats(str(tmp_path / "msd"), layout="msd", num_cases=2, shape=(24, 24, 16)))
    cases = json.loads((data / "dataset.json").read_text())["training"]
    image = data / cases[1]["image"]
    empty = empty_label_like(data / cases[1]["label"], tmp_path / "label_empty.nii.gz")
    mine = tmp_path / "my_datalist.json"
    mine.write_text(json.dumps({"training": [{k: str(data / v) for k, v in cases[0].items()}],
                                "validation": [{"image": str(image), "label": str(empty)}]}))
    model = tmp_path / "model.pt"
    torch.save(UNETR(4, 3, 32, feature_size=8, **TINY_ENCODER).state_dict(), model)
    output = bundle_run([BRATS / "train.json", BRATS / "evaluate.json"], {
        "bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(data), "dataset_layout": "msd",
        "datalist_file": str(mine), "model_file": str(model), **SMALL, **TINY_UNETR})
    assert "1 evaluation cases have a label that is all background" in output
    assert f"Check the labels of these cases: {image}\n" in output
