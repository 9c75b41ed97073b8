"""BraTS label maps to region channels (TC, WT, ET) and back, for the label values of either public layout.

The region definitions come from :mod:`..data.brats` (``LAYOUTS``); a label whose values do not fit the declared
layout raises instead of giving empty regions.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import get_equivalent_dtype

from ..data.brats import BratsLayout, get_layout
from .checks import source_of

__all__ = ["labels_to_regions", "regions_to_labels", "ConvertBratsLabelsToRegionsd", "ConvertBratsRegionsToLabelsd"]


def labels_to_regions(
    label: torch.Tensor | np.ndarray, layout: str | BratsLayout, dtype: torch.dtype | np.dtype | str = torch.uint8
) -> torch.Tensor | np.ndarray:
    """Turn a label map into the three region channels TC, WT, ET, after checking its values.

    Args:
        label: ``(1, *spatial)`` or ``(*spatial)`` label map with the layout's values (integer-valued floats are fine).
        layout: ``"brats2021"``, ``"msd"`` or a :class:`BratsLayout`.
        dtype: dtype of the output, a torch or a numpy dtype (or its name) for either type of ``label``: it is
            converted to the equivalent dtype of ``label``'s type.

    Returns:
        ``(3, *spatial)`` binary TC, WT, ET of ``label``'s type (a ``MetaTensor`` keeps its metadata).

    Raises:
        ValueError: ``label`` holds values the layout does not have (e.g. 4 in an MSD label, or 3 in a BraTS 2021
            one: the data set is not in the declared layout); the message names the file and the values.
    """
    lay = get_layout(layout)
    if label.ndim >= 4 and label.shape[0] == 1:
        label = label[0]
    is_tensor = isinstance(label, torch.Tensor)
    values = torch.unique(label).tolist() if is_tensor else np.unique(label).tolist()
    unexpected = sorted(v for v in values if v not in lay.values)
    if unexpected:
        shown = ", ".join(f"{int(v)}" if float(v).is_integer() else f"{v}" for v in unexpected[:10])
        source = source_of(label, "<label without a file name>")
        raise ValueError(
            f"{source}: label values {{{shown}}} are not labels of the {lay.name!r} layout "
            f"(allowed: {list(lay.values)}). Check dataset_layout: BraTS 2021 uses 1/2/4 (4 = enhancing), MSD Task01 "
            "uses 1/2/3 (3 = enhancing)."
        )
    channels = []
    for members in lay.regions:
        region = label == members[0]
        for value in members[1:]:
            region = region | (label == value)
        channels.append(region)
    if is_tensor:
        return torch.stack(channels, dim=0).to(get_equivalent_dtype(dtype, torch.Tensor))
    return np.stack(channels, axis=0).astype(get_equivalent_dtype(dtype, np.ndarray))


def regions_to_labels(regions: torch.Tensor | np.ndarray, layout: str | BratsLayout) -> torch.Tensor | np.ndarray:
    """Turn binary region channels TC, WT, ET into one label map with the layout's label values.

    Regions are painted from the outside in: WT gets the oedema label, TC overwrites it with the (necrotic /
    non-enhancing) core label, ET overwrites that with the enhancing label. So ET -> enhancing, TC minus ET ->
    core, WT minus TC -> oedema; a prediction where the regions are not nested (e.g. ET outside TC) keeps the
    innermost region.

    Args:
        regions: ``(3, *spatial)`` binary (``> 0.5`` counts as inside) TC, WT, ET.
        layout: ``"brats2021"``, ``"msd"`` or a :class:`BratsLayout`.

    Returns:
        ``(1, *spatial)`` uint8 label map of ``regions``'s type (a ``MetaTensor`` keeps its metadata).
    """
    lay = get_layout(layout)
    if regions.shape[0] != 3:
        raise ValueError(f"expected 3 region channels (TC, WT, ET), got shape {tuple(regions.shape)}.")
    tc, wt, et = (regions[i] > 0.5 for i in range(3))
    if isinstance(regions, torch.Tensor):
        out = torch.zeros_like(regions[:1], dtype=torch.uint8)
    else:
        out = np.zeros_like(regions[:1], dtype=np.uint8)
    out[0][wt] = lay.oedema
    out[0][tc] = lay.core
    out[0][et] = lay.enhancing
    return out


class ConvertBratsLabelsToRegionsd(MapTransform):
    """Dictionary transform: label map -> region channels TC, WT, ET, after checking the label values.

    See :func:`labels_to_regions`. Put it after ``LoadImaged``/``EnsureChannelFirstd`` (and after any resampling of
    the label, which is cheaper on one channel than on three).

    Args:
        keys: label keys.
        layout: ``"brats2021"`` (labels 1/2/4) or ``"msd"`` (labels 1/2/3).
        dtype: output dtype; uint8 keeps cached training data small.
        allow_missing_keys: don't raise when a key is missing.

    Raises:
        ValueError: on an unknown layout, or (when called) on label values the layout does not have.
    """

    def __init__(
        self,
        keys: KeysCollection,
        layout: str,
        dtype: torch.dtype | np.dtype | str = torch.uint8,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.layout = get_layout(layout)
        self.dtype = dtype

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = labels_to_regions(d[key], self.layout, self.dtype)
        return d


class ConvertBratsRegionsToLabelsd(MapTransform):
    """Dictionary transform: binary region channels TC, WT, ET -> one label map with the layout's label values.

    See :func:`regions_to_labels`: ET -> enhancing, TC minus ET -> necrotic / non-enhancing core, WT minus TC ->
    oedema (BraTS 2021: 4, 1, 2; MSD: 3, 2, 1). Use it after thresholding (and after ``Invertd``).

    Args:
        keys: region keys.
        layout: ``"brats2021"`` or ``"msd"``.
        allow_missing_keys: don't raise when a key is missing.
    """

    def __init__(self, keys: KeysCollection, layout: str, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.layout = get_layout(layout)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = regions_to_labels(d[key], self.layout)
        return d
