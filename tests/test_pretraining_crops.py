"""MAE pre-training crops of the CT and BraTS bundles: label-free random crops by default (truly self-supervised), or
label-guided crops as the official code draws them (``RandCropByPosNegLabeld``) with ``label_guided_crops: true``."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigParser
from monai.transforms import RandCropByPosNegLabeld, RandSpatialCropSamplesd

from tests.helpers import BUNDLES, bundle_importable
from tools import synthetic

ROI = [32, 32, 32]
CONFIGS = {"mae_pretrain_ct": "train.json", "unetr_brats_seg": "pretrain.json"}


def make_data(bundle: str, out: Path) -> dict:
    if bundle == "mae_pretrain_ct":
        return {"dataset_dir": synthetic.make_btcv(str(out), num_train=1, num_val=1, num_test=0, shape=(48, 40, 24),
                                                   body_scale=0.1)}
    synthetic.make_brats(str(out), layout="msd", num_cases=2, shape=(40, 40, 24), seed=0)
    return {"dataset_dir": str(out), "dataset_layout": "msd", "datalist_file": str(out / "datalist.json")}


def pretraining_pipeline(bundle: str, tmp_path: Path, crop: dict | None = None, **overrides) -> tuple[list, dict]:
    """The transforms of the pre-training pipeline and its first training item; ``crop`` overrides arguments of the
    label-guided crop."""
    crop = crop or {}
    root = BUNDLES / bundle
    with bundle_importable(root):
        parser = ConfigParser()
        parser.read_config(str(root / "configs" / CONFIGS[bundle]))
        parser.update({"bundle_root": str(tmp_path), "roi_size": ROI, "num_samples": 4, "num_workers": 0,
                       **make_data(bundle, tmp_path / "data"), **overrides})
        guided = next(i for i, t in enumerate(parser["train#random_transforms"])
                      if t["_target_"] == "RandCropByPosNegLabeld")
        parser.update({f"train#random_transforms#{guided}#{k}": v for k, v in crop.items()})
        transforms = list(parser.get_parsed_content("train#preprocessing").transforms)
        items = parser.get_parsed_content("train#dataset#data")
    return transforms, items[0]


@pytest.mark.parametrize("bundle", sorted(CONFIGS))
@pytest.mark.parametrize("setting", [{}, {"label_guided_crops": "false"}], ids=["default", "false_from_the_cli"])
def test_pretraining_crops_are_label_free_by_default(bundle, setting, tmp_path):
    transforms, item = pretraining_pipeline(bundle, tmp_path, **setting)
    assert set(item) == {"image"}  # labels are not even read
    assert any(isinstance(t, RandSpatialCropSamplesd) for t in transforms)
    assert not any(isinstance(t, RandCropByPosNegLabeld) for t in transforms)


@pytest.mark.parametrize("bundle", sorted(CONFIGS))
def test_label_guided_crops_replace_the_random_crops_and_drop_the_label(bundle, tmp_path):
    transforms, item = pretraining_pipeline(bundle, tmp_path, label_guided_crops="true")
    assert set(item) == {"image", "label"}
    assert not any(isinstance(t, RandSpatialCropSamplesd) for t in transforms)
    samples = run(transforms, item)
    assert len(samples) == 4
    assert all(set(s) >= {"image", "mask"} and "label" not in s for s in samples)
    assert all(tuple(s["image"].shape[1:]) == tuple(ROI) for s in samples)


def corner_blob_case(bundle: str, folder: Path) -> dict:
    """A 96^3 volume (in the bundle's voxel spacing) labelled only in a 6^3 cube at one corner."""
    channels, spacing = (4, [1.0, 1.0, 1.0]) if bundle == "unetr_brats_seg" else (1, [1.5, 1.5, 2.0])
    affine = np.diag([*spacing, 1.0])
    shape = (96, 96, 96)
    image = np.full(shape + ((channels,) if channels > 1 else ()), 100.0, np.float32)
    label = np.zeros(shape, np.uint8)
    label[2:8, 2:8, 2:8] = 1
    nib.save(nib.Nifti1Image(image, affine), str(folder / "image.nii.gz"))
    nib.save(nib.Nifti1Image(label, affine), str(folder / "label.nii.gz"))
    return {"image": str(folder / "image.nii.gz"), "label": str(folder / "label.nii.gz")}


@pytest.mark.parametrize("bundle", sorted(CONFIGS))
def test_label_guided_crops_take_the_label_into_account(bundle, tmp_path):
    """With only positive centres every crop holds the small labelled corner, which a 32^3 crop drawn at random in the
    96^3 volume rarely does (checked before the label is dropped)."""
    transforms, _ = pretraining_pipeline(bundle, tmp_path, crop={"neg": 0, "num_samples": 8}, label_guided_crops=True)
    crop = next(i for i, t in enumerate(transforms) if isinstance(t, RandCropByPosNegLabeld))
    transforms[crop].set_random_state(0)
    samples = run(transforms[:crop + 1], corner_blob_case(bundle, tmp_path))
    assert len(samples) == 8 and all(s["label"].sum() > 0 for s in samples)


def run(transforms: list, item: dict) -> list[dict]:
    data: dict | list = dict(item)
    for t in transforms:
        data = t(data) if isinstance(data, dict) else [t(d) for d in data]
    return data
