"""Intensity transforms."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.transforms import MapTransform

__all__ = ["ToUint8d"]


class ToUint8d(MapTransform):
    """``round(clip(x, 0, 1) * 255)`` as uint8: stores a resized [0, 1] image in a quarter of the memory (the
    training configs cache images this way; ChestX-ray14 itself is 8-bit)."""

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = (torch.as_tensor(d[key]).clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
        return d
