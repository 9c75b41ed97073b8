"""MONAI's ``Spacingd`` for the inputs MONAI Label gives a bundle.

After resampling a key, MONAI 1.6's ``Spacingd`` updates every entry named ``<key>_*`` with the image's metadata, as
if each were a metadata dictionary (when the image was read from NIfTI). MONAI Label's ``monaibundle`` app puts the
input's path into the data as ``image_path``, a string, which that update fails on, and its writer reads the path
back after the preprocessing. :class:`PathSafeSpacingd` leaves such entries alone.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from monai.transforms import Spacingd

__all__ = ["PathSafeSpacingd"]


class PathSafeSpacingd(Spacingd):
    """``Spacingd`` (same arguments, same output, same inverse) that keeps entries named ``<key>_*`` which are not
    metadata dictionaries (MONAI Label's ``image_path``) unchanged: they are taken out while it resamples and put
    back."""

    def __call__(self, data: Mapping[Hashable, Any], lazy: bool | None = None) -> dict[Hashable, Any]:
        prefixes = tuple(f"{key}_" for key in self.keys)
        aside = {
            name: value
            for name, value in data.items()
            if isinstance(name, str) and name.startswith(prefixes) and not isinstance(value, Mapping)
        }
        resampled = super().__call__({name: value for name, value in data.items() if name not in aside}, lazy=lazy)
        resampled.update(aside)
        return resampled
