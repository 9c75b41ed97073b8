"""Input checks of ``shared/transforms/checks.py`` (with the loaders of ``shared/transforms/io.py`` and ``xray.py``):
a bad volume, a truncated file, contrasts or a label off the image's grid, labels out of range are refused with the
file and the problem named, and a failed run ends with that cause as its last line."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from shared.transforms.checks import CheckGeometryd, CheckImaged, CheckLabelValuesd
from shared.transforms.io import LoadImaged
from shared.transforms.xray import LoadXRayd
from shared.utils.errors import InputError
from tests.helpers import SEG, SMALL, TINY_UNETR, bundle_run


def nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


def load(path: Path | list, **checks) -> dict:
    """The first steps of every 3-D pipeline: load (errors name the file), channel first, check."""
    from monai.transforms import EnsureChannelFirstd

    d = LoadImaged("image", image_only=True)({"image": str(path) if isinstance(path, Path) else path})
    d = EnsureChannelFirstd("image")(d)
    return CheckImaged("image", **checks)(d)


def test_bad_volumes_are_named_with_their_problem(tmp_path):
    volume = np.random.default_rng(0).normal(size=(20, 20, 12)).astype(np.float32)
    with_inf = volume.copy()
    with_inf[0, 0, 0] = np.inf
    cases = {
        "inf.nii.gz": (with_inf, {"spatial_dims": 3, "channels": 1}, "1 of 4800 values are NaN or infinite"),
        "four_d.nii.gz": (np.stack([volume] * 5, -1), {"spatial_dims": 3, "channels": 1},
                          "5 channels (shape (5, 20, 20, 12)); the network takes 1"),
        "two_d.nii.gz": (volume[:, :, 0], {"spatial_dims": 3, "channels": 1},
                         "2-D image (channel-first shape (1, 20, 20)); the network takes 3-D images"),
        "three_contrasts.nii.gz": (np.stack([volume] * 3, -1), {"spatial_dims": 3, "channels": 4},
                                   "3 channels (shape (3, 20, 20, 12)); the network takes 4"),
    }
    for name, (array, checks, problem) in cases.items():
        path = nifti(tmp_path / name, array)
        with pytest.raises(InputError) as error:
            load(path, **checks)
        assert str(error.value) == f"{path}: {problem}"


def test_truncated_files_are_named(tmp_path):
    good = nifti(tmp_path / "good.nii.gz", np.random.default_rng(0).normal(size=(20, 20, 12)).astype(np.float32))
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match=rf"^{truncated}: cannot be read \("):
        load(truncated, spatial_dims=3)
    png = tmp_path / "xray.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(png)
    png.write_bytes(png.read_bytes()[:60])
    with pytest.raises(InputError, match=rf"^{png}: cannot be read \("):
        LoadXRayd("image")({"image": str(png)})


def test_brats_contrasts_on_different_grids_are_named(tmp_path):
    volume = np.zeros((20, 20, 12), np.float32)
    files = [nifti(tmp_path / f"c{i}.nii.gz", volume) for i in range(3)]
    files.append(nifti(tmp_path / "c3.nii.gz", np.zeros((20, 20, 10), np.float32)))
    with pytest.raises(InputError, match=r"the channels of this case do not share one voxel grid .*c3.nii.gz shape "
                                         r"\(20, 20, 10\)"):
        load([str(f) for f in files], spatial_dims=3, channels=4)
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    files[3] = nifti(tmp_path / "c3.nii.gz", volume, shifted)
    with pytest.raises(InputError, match="do not share one voxel grid"):
        load([str(f) for f in files], spatial_dims=3, channels=4)


def test_a_label_off_its_image_grid_and_labels_out_of_range_are_named(tmp_path):
    from monai.transforms import EnsureChannelFirstd

    image = nifti(tmp_path / "img.nii.gz", np.zeros((64, 64, 32), np.float32))
    label = nifti(tmp_path / "label.nii.gz", np.zeros((64, 64, 20), np.uint8))
    d = LoadImaged(["image", "label"])({"image": str(image), "label": str(label)})
    d = EnsureChannelFirstd(["image", "label"])(d)
    with pytest.raises(InputError, match=rf"^{image}, {label}: the label has spatial shape \(64, 64, 20\), the image "
                                         r"\(64, 64, 32\)"):
        CheckGeometryd(["image", "label"])(d)
    values = np.zeros((64, 64, 32), np.uint8)
    values[0, 0, 0], values[1, 1, 1] = 14, 255
    label = nifti(tmp_path / "label14.nii.gz", values)
    d = LoadImaged("label")({"label": str(label)})
    with pytest.raises(InputError, match=rf"^{label}: label values {{14, 255}} are not labels of this data set "
                                         r"\(allowed: 0..13\)"):
        CheckLabelValuesd("label", range(14))(d)


def test_a_failed_run_ends_with_its_cause(btcv, tmp_path):
    """The last line of the output names the file and the problem, not MONAI's 'Failed to evaluate'."""
    data = tmp_path / "data"
    shutil.copytree(btcv, data)
    label = nib.load(data / "labelsTr" / "label0001.nii.gz")
    values = np.asanyarray(label.dataobj).copy()
    values[0, 0, 0] = 14
    nifti(data / "labelsTr" / "label0001.nii.gz", values, label.affine)
    output = bundle_run([SEG / "train.json"], {"bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(data),
                                               "epochs": 1, **SMALL, **TINY_UNETR}, expect_failure=True)
    assert output.strip().splitlines()[-1] == (
        f"error: InputError: {data / 'labelsTr' / 'label0001.nii.gz'}: label values {{14}} are not labels of this "
        "data set (allowed: 0..13)")
