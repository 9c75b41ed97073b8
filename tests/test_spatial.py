"""``shared/transforms/spatial.py``: ``PathSafeSpacingd`` is ``Spacingd`` that keeps MONAI Label's ``image_path``."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Spacingd

from shared.transforms.spatial import PathSafeSpacingd

ARGS = {"keys": "image", "pixdim": (2.0, 2.0, 2.0), "mode": "bilinear"}


def _data(**extra) -> dict:
    affine = torch.diag(torch.tensor([1.0, 1.0, 1.5, 1.0]))
    pixels = torch.arange(6 * 8 * 4, dtype=torch.float32).reshape(1, 6, 8, 4)
    image = MetaTensor(pixels, affine=affine, meta={"filename_or_obj": "/data/case 1.nii.gz"})
    return {"image": image, **extra}


def test_output_and_inverse_equal_spacingd():
    ours, theirs = PathSafeSpacingd(**ARGS), Spacingd(**ARGS)
    resampled, expected = ours(_data()), theirs(_data())
    assert torch.equal(resampled["image"], expected["image"])
    np.testing.assert_allclose(resampled["image"].affine, expected["image"].affine)
    assert ours.inverse(resampled)["image"].shape == theirs.inverse(expected)["image"].shape == (1, 6, 8, 4)


def test_a_path_beside_the_image_is_kept_and_a_metadata_dictionary_still_updated():
    data = _data(image_path="/data/case 1.nii.gz", image_meta_dict={"note": "kept"})
    resampled = PathSafeSpacingd(**ARGS)(data)
    assert resampled["image_path"] == "/data/case 1.nii.gz"
    assert resampled["image_meta_dict"]["note"] == "kept"
    assert resampled["image_meta_dict"]["filename_or_obj"] == "/data/case 1.nii.gz"  # updated, as Spacingd does
    assert torch.equal(resampled["image"], Spacingd(**ARGS)(_data())["image"])


def test_spacingd_alone_fails_on_the_path_the_transform_exists_for():
    # if MONAI stops updating "<key>_*" entries, the subclass can go: this test then tells
    with pytest.raises(AttributeError):
        Spacingd(**ARGS)(_data(image_path="/data/case 1.nii.gz"))
