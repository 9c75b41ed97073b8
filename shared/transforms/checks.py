"""Checks of inputs that would otherwise be trained or inferred on silently: each raises an :class:`InputError`
naming the file(s) and the problem.

- :class:`CheckImaged`: number of spatial dimensions and channels, and no NaN or infinite value.
- :class:`CheckGeometryd`: a label on the voxel grid of its image (shape, and affine within a tolerance).
- :class:`CheckLabelValuesd`: label values among the expected ones (e.g. 0..13 for BTCV).

Put them right after ``LoadImaged``/``EnsureChannelFirstd``, before any resampling.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import ImageMetaKey

from ..utils.errors import InputError

__all__ = ["source_of", "CheckImaged", "CheckGeometryd", "CheckLabelValuesd"]


def source_of(image: object, fallback: str = "<input without a file name>") -> str:
    """The file an image was loaded from (its MetaTensor's ``filename_or_obj``)."""
    meta = getattr(image, "meta", None) or {}
    return str(meta.get(ImageMetaKey.FILENAME_OR_OBJ) or fallback)


class CheckImaged(MapTransform):
    """Check channel-first images: ``spatial_dims`` spatial axes, ``channels`` channels and finite values.

    Args:
        keys: image keys.
        spatial_dims: number of spatial axes the network takes (3 for CT and MRI volumes, 2 for X-rays).
        channels: number of channels the network takes; not checked when None.
        finite: refuse images with NaN or infinite values. (They are refused rather than repaired: such a value
            is a corrupt file, and no repair is right for every data set.)
        allow_missing_keys: don't raise when a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_dims: int,
        channels: int | None = None,
        finite: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spatial_dims = spatial_dims
        self.channels = channels
        self.finite = finite

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            shape = tuple(image.shape)
            if len(shape) - 1 != self.spatial_dims:
                raise InputError(source_of(image), f"{len(shape) - 1}-D image (channel-first shape {shape}); the "
                                 f"network takes {self.spatial_dims}-D images")
            if self.channels is not None and shape[0] != self.channels:
                raise InputError(source_of(image), f"{shape[0]} channels (shape {shape}); the network takes "
                                 f"{self.channels}")
            if self.finite and image.is_floating_point():
                bad = int((~torch.isfinite(torch.as_tensor(image))).sum())
                if bad:
                    raise InputError(source_of(image), f"{bad} of {image.numel()} values are NaN or infinite")
        return d


class CheckGeometryd(MapTransform):
    """Check that every key after the first lies on the voxel grid of the first (same spatial shape, affines equal
    within ``atol`` mm), e.g. ``keys=["image", "label"]``.

    Args:
        keys: the reference key first.
        atol: tolerance of the affine entries, in mm.
        allow_missing_keys: don't raise when a key is missing.
    """

    def __init__(self, keys: KeysCollection, atol: float = 1e-3, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.atol = atol

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if len(keys) < 2:
            return d
        reference = d[keys[0]]
        for key in keys[1:]:
            other = d[key]
            sources = [source_of(reference), source_of(other)]
            if tuple(other.shape[1:]) != tuple(reference.shape[1:]):
                raise InputError(sources, f"the {key} has spatial shape {tuple(other.shape[1:])}, the {keys[0]} "
                                 f"{tuple(reference.shape[1:])}")
            a, b = getattr(reference, "affine", None), getattr(other, "affine", None)
            if a is not None and b is not None and not torch.allclose(a.double(), b.double(), atol=self.atol):
                raise InputError(sources, f"the {key}'s affine differs from the {keys[0]}'s "
                                 f"(largest difference {float((a.double() - b.double()).abs().max()):.4g} mm)")
        return d


class CheckLabelValuesd(MapTransform):
    """Check that label maps hold only ``values``.

    Args:
        keys: label keys.
        values: the allowed label values, e.g. ``range(14)``.
        allow_missing_keys: don't raise when a key is missing.
    """

    def __init__(self, keys: KeysCollection, values: Iterable[int], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.values = sorted(int(v) for v in values)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            found = torch.unique(torch.as_tensor(d[key])).tolist()
            unexpected = sorted(v for v in found if v not in self.values)
            if unexpected:
                shown = ", ".join(f"{v:g}" for v in unexpected[:10])
                allowed = f"{self.values[0]}..{self.values[-1]}" if self.values == list(
                    range(self.values[0], self.values[-1] + 1)) else str(self.values)
                raise InputError(source_of(d[key]), f"label values {{{shown}}} are not labels of this data set "
                                 f"(allowed: {allowed})")
        return d
