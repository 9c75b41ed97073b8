"""The masking transform: draws the MAE patch mask in the data pipeline (and so in data-loader workers)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable
from monai.utils import ensure_tuple_rep

from ..networks.patches import grid_size, num_masked_patches

__all__ = ["RandPatchMaskd"]


class RandPatchMaskd(Randomizable, MapTransform):
    """Draw a random patch mask for a masked autoencoder and store it under ``mask_key``.

    The mask is a ``(N,)`` bool tensor over the patch grid of the image in ``keys`` (row-major grid order, as
    :class:`MaskedAutoencoderViT` numbers its patches), True where a patch is hidden. Exactly
    ``round(mask_ratio * N)`` patches are hidden. Draws come from the transform's own random state, so they are
    reproducible under ``monai.utils.set_determinism`` and MONAI's data loaders (which seed each worker).

    Args:
        keys: the image key whose spatial shape defines the patch grid (only the first key is read).
        patch_size: spatial size of a patch; a single int is repeated for every spatial axis.
        mask_ratio: fraction of the patches to hide.
        mask_key: where to store the mask.
        allow_missing_keys: don't raise when the image key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        patch_size: Sequence[int] | int = 16,
        mask_ratio: float = 0.75,
        mask_key: str = "mask",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}.")
        self.patch_size = patch_size
        self.mask_ratio = mask_ratio
        self.mask_key = mask_key
        self._hidden: np.ndarray = np.zeros(0, dtype=np.int64)
        self._num_patches = 0

    def randomize(self, num_patches: int) -> None:
        """Choose which of ``num_patches`` patches are hidden."""
        num_masked = num_masked_patches(num_patches, self.mask_ratio)
        self._num_patches = num_patches
        self._hidden = self.R.permutation(num_patches)[:num_masked]

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        key = next(self.key_iterator(d), None)
        if key is None:
            return d
        spatial = tuple(d[key].shape[1:])
        self.randomize(math.prod(grid_size(spatial, ensure_tuple_rep(self.patch_size, len(spatial)))))
        mask = torch.zeros(self._num_patches, dtype=torch.bool)
        mask[torch.from_numpy(self._hidden)] = True
        d[self.mask_key] = mask
        return d
