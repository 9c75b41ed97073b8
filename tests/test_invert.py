"""The slab-by-slab label map in the original grid (``InvertedArgmaxd``) equals MONAI's ``Invertd`` followed by the
argmax: the same resampled probabilities (float32 instead of float64), the same labels, the original affine."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    GaussianSmooth,
    Invertd,
    LoadImaged,
    Orientationd,
    Spacingd,
    SpatialPadd,
)

from shared.transforms.invert import InvertedArgmaxd, axis_maps, inverted_probability_slabs

# an LPS volume, anisotropic, with its axes stored in another order than RAS (j, k, i), and an oblique-free origin
AFFINES = {
    "LPS": np.diag([-0.8, -0.8, 2.5, 1.0]) + np.array([[0, 0, 0, 40.0], [0, 0, 0, 30.0], [0, 0, 0, -20.0], [0] * 4]),
    "permuted": np.array([[0, 1.1, 0, 5.0], [0, 0, -2.0, 7.0], [0.7, 0, 0, -3.0], [0, 0, 0, 1.0]]),
}
# oblique (12 degrees about x, 6 about z): stored as a float32 sform, the affine is not exactly orthogonal and
# MONAI's resampling centres the new grid instead of keeping the original's origin
_tilt_x, _tilt_z = np.deg2rad(12), np.deg2rad(6)
AFFINES["oblique"] = np.eye(4)
AFFINES["oblique"][:3, :3] = (
    np.array([[1, 0, 0], [0, np.cos(_tilt_x), -np.sin(_tilt_x)], [0, np.sin(_tilt_x), np.cos(_tilt_x)]])
    @ np.array([[np.cos(_tilt_z), -np.sin(_tilt_z), 0], [np.sin(_tilt_z), np.cos(_tilt_z), 0], [0, 0, 1]])
    @ np.diag([0.8, 0.9, 2.5])
)
AFFINES["oblique"][:3, 3] = (40.0, 30.0, -20.0)


def preprocessed(affine: np.ndarray, folder, shape=(61, 47, 23), extra=None, **crop) -> tuple[Compose, dict]:
    """A NIfTI volume with a foreground box that touches one border, through the bundle's spatial preprocessing."""
    volume = np.zeros(shape, dtype=np.float32)
    volume[5:50, :40, 3:20] = 1.0 + np.random.default_rng(0).random((45, 40, 17))
    nib.save(nib.Nifti1Image(volume, affine), folder / "case.nii.gz")
    transforms = [LoadImaged("image", image_only=True), EnsureChannelFirstd("image"),
                  Orientationd("image", axcodes="RAS"), Spacingd("image", pixdim=(1.5, 1.5, 2.0), mode="bilinear"),
                  CropForegroundd("image", "image", **crop), *(extra or [])]
    preprocessing = Compose(transforms)
    return preprocessing, preprocessing({"image": str(folder / "case.nii.gz")})


def probabilities(image: MetaTensor, classes: int = 5) -> MetaTensor:
    logits = GaussianSmooth(1.5)(torch.randn(classes, *image.shape[1:], generator=torch.Generator().manual_seed(0)))
    pred = MetaTensor(torch.softmax(4 * logits, 0))
    pred.copy_meta_from(image)
    return pred


@pytest.mark.parametrize("orientation, crop", [*((name, {}) for name in sorted(AFFINES)),
                                               ("LPS", {"margin": 8}), ("permuted", {"k_divisible": 16})])
def test_equals_invertd_then_argmax(orientation, crop, tmp_path):
    """Every orientation; and crop boxes that reach beyond the image, which the foreground crop pads."""
    preprocessing, data = preprocessed(AFFINES[orientation], tmp_path, **crop)
    pred = probabilities(data["image"])
    reference = Invertd("pred", transform=preprocessing, orig_keys="image", nearest_interp=False)(
        {"pred": pred, "image": data["image"]})["pred"]
    for planes, values in inverted_probability_slabs(pred, data["image"], slab=3):
        assert torch.allclose(values.permute(3, 1, 2, 0), reference[..., planes].float(), atol=1e-6)
    labels = InvertedArgmaxd("pred", slab=3)({"pred": pred, "image": data["image"]})["pred"]
    assert labels.shape == (1, 61, 47, 23) and labels.dtype == torch.uint8
    # float32 here, float64 in Invertd: only near-ties of the two largest probabilities may differ
    top2 = reference.float().topk(2, dim=0).values
    differ = labels[0].long() != reference.argmax(0)
    assert torch.all((top2[0] - top2[1])[differ] < 1e-5)
    assert np.allclose(labels.affine.numpy(), AFFINES[orientation], atol=1e-5)  # the float32 NIfTI header


def test_another_spatial_transform_is_refused_naming_the_file(tmp_path):
    _, data = preprocessed(AFFINES["LPS"], tmp_path, extra=[SpatialPadd("image", (64, 64, 32))])
    with pytest.raises(ValueError, match=r"case\.nii\.gz.*Pad.*Invertd"):
        InvertedArgmaxd("pred")({"pred": probabilities(data["image"]), "image": data["image"]})


def test_labels_are_computed_only_where_the_crop_is_read(tmp_path):
    _, data = preprocessed(AFFINES["permuted"], tmp_path)
    pred = probabilities(data["image"])
    full = torch.empty(61, 47, 23, dtype=torch.long)
    for planes, values in inverted_probability_slabs(pred, data["image"]):
        full[..., planes] = values.argmax(-1).permute(1, 2, 0)
    maps, shape, _ = axis_maps(data["image"])
    box = tuple(m.support(n) for m, n in zip(maps, shape))
    assert [(b.start, b.stop) for b in box] != [(0, n) for n in shape]  # the foreground crop cut something away
    labels = InvertedArgmaxd("pred")({"pred": pred, "image": data["image"]})["pred"][0].long()
    assert torch.equal(labels, full)
    outside = torch.ones_like(labels, dtype=torch.bool)
    outside[box] = False
    assert torch.all(labels[outside] == 0)
