"""Loading chest X-rays as MetaTensors (see :func:`read_xray`)."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import ImageMetaKey

from ..data.xray import read_xray
from ..utils.config import as_bool
from ..utils.errors import InputError

__all__ = ["LoadXRayd"]


class LoadXRayd(MapTransform):
    """Load chest X-rays (PNG, JPEG, DICOM; see :func:`read_xray`) as ``(1, H, W)`` float32 MetaTensors in [0, 1],
    with ``filename_or_obj`` in the metadata. Rows come first (``H``), so axis 1 of the output is vertical and axis 2
    horizontal (left-right flips are ``spatial_axis=1``).

    The metadata deliberately has no ``spatial_shape``: nothing is inverted back to the image grid (the outputs are
    per-finding scores), and MONAI Label's ``Restored`` would otherwise try to resize the score vector to it.

    A file that cannot be read (truncated, not an image, an undecodable DICOM) raises an :class:`InputError` naming
    it; so does an image with NaN or infinite values (possible in DICOM and float images).

    Args:
        keys: keys holding file paths.
        use_dicom_window: use the DICOM VOI window when present (see :func:`read_xray`).
        source_key: when given, the path is also stored as a string under this key (see ``LoadImaged``).
        allow_missing_keys: don't raise when a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        use_dicom_window: bool = True,
        source_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.use_dicom_window = as_bool(use_dicom_window, "use_dicom_window")
        self.source_key = source_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = os.fspath(d[key])
            try:
                pixels = read_xray(path, self.use_dicom_window)
            except Exception as e:  # PIL and pydicom raise many types for truncated or foreign files
                raise InputError(path, f"cannot be read ({type(e).__name__}: {e})") from e
            if not np.isfinite(pixels).all():
                raise InputError(path, f"{int((~np.isfinite(pixels)).sum())} pixels are NaN or infinite")
            if self.source_key is not None:
                d[self.source_key] = path
            meta = {
                ImageMetaKey.FILENAME_OR_OBJ: path,
                "original_channel_dim": "no_channel",
            }
            d[key] = MetaTensor(torch.from_numpy(np.ascontiguousarray(pixels))[None], affine=torch.eye(3), meta=meta)
        return d
