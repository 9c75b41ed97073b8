"""Random resized crop of 2D images, as torchvision's ``RandomResizedCrop`` (MAE's and the paper's CXR recipe)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable
from monai.utils import ensure_tuple_rep

__all__ = ["RandResizedCropd"]


class RandResizedCropd(Randomizable, MapTransform):
    """Random resized crop of 2D images (torchvision's ``RandomResizedCrop``, as in MAE and the paper's CXR
    recipe): a crop covering ``scale`` of the area with aspect ratio (width / height) in ``ratio`` (log-uniform), at
    a random position, resized to ``size`` bilinearly with antialiasing. After 10 failed draws the central crop
    with the closest allowed aspect ratio is used. All keys get the same crop.

    Args:
        keys: keys of ``(C, H, W)`` images.
        size: output ``(H, W)`` (an int is repeated).
        scale: range of the crop area as a fraction of the image area.
        ratio: range of the aspect ratio.
        allow_missing_keys: don't raise when a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        size: Sequence[int] | int,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.size = tuple(int(s) for s in ensure_tuple_rep(size, 2))
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        if not 0 < self.scale[0] <= self.scale[1] or not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"scale {scale} and ratio {ratio} must be increasing positive ranges.")
        self._box = (0, 0, 0, 0)

    def randomize(self, height: int, width: int) -> None:
        """Choose ``(top, left, crop height, crop width)``."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * self.R.uniform(*self.scale)
            aspect = math.exp(self.R.uniform(*log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                self._box = (int(self.R.randint(0, height - h + 1)), int(self.R.randint(0, width - w + 1)), h, w)
                return
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif aspect > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            h, w = height, width
        self._box = ((height - h) // 2, (width - w) // 2, h, w)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        first = next(self.key_iterator(d), None)
        if first is None:
            return d
        self.randomize(*d[first].shape[-2:])
        top, left, h, w = self._box
        for key in self.key_iterator(d):
            image = torch.as_tensor(d[key])
            crop = image[..., top : top + h, left : left + w].float()
            resized = F.interpolate(crop[None], size=self.size, mode="bilinear", align_corners=False, antialias=True)
            d[key] = resized[0].to(image.dtype) if image.dtype.is_floating_point else resized[0]
        return d
