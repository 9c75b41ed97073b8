"""The label map in the original image grid, from class probabilities in the network's grid, without ever holding
all the probabilities at the original resolution.

MONAI's way (the model zoo's ``Invertd`` then ``AsDiscreted(argmax=True)``) resamples every class channel to the
original grid in float64 and then takes the argmax: for a 512x512x115 CT and 14 classes that is 3.4 GB per copy of the
probabilities, and most of an inference run's time on a CPU. :class:`InvertedArgmaxd` computes the same label map slab
by slab along the last original axis: it resamples the probabilities of one slab (trilinear, as ``Invertd`` does,
separably along the three axes since the inverse of ``Orientation``, ``Spacing`` and ``CropForeground`` is a signed
permutation with a scale per axis) and keeps only their argmax. It inverts exactly these three spatial transforms and
refuses any other.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import convert_to_tensor

__all__ = ["AxisMap", "axis_maps", "inverted_probability_slabs", "inverted_argmax", "InvertedArgmaxd"]

INVERTIBLE = {"Orientation", "SpatialResample", "CropForeground"}


@dataclass(frozen=True)
class AxisMap:
    """How one axis of the original grid reads the network's grid: original index ``j`` samples source axis
    ``source`` at coordinate ``scale * j + offset`` (in the network grid's voxel indices), clamped to
    ``[low, high]`` (the spaced grid before the foreground crop: resampling pads at its border); source voxels outside
    ``[0, size)`` (cut away by the crop) count as zero probability."""

    source: int
    scale: float
    offset: float
    low: float
    high: float
    size: int

    def weights(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Linear interpolation along this axis at original ``indices``: the two source indices and their weights
        (zero where the source voxel lies outside the crop)."""
        coordinate = np.clip(self.scale * indices + self.offset, self.low, self.high)
        first = np.floor(coordinate)
        fraction = coordinate - first
        second = first + 1
        w_first = np.where((first >= 0) & (first < self.size), 1.0 - fraction, 0.0)
        w_second = np.where((second >= 0) & (second < self.size), fraction, 0.0)
        clip = (0, self.size - 1)
        return (torch.as_tensor(np.clip(first, *clip), dtype=torch.long),
                torch.as_tensor(np.clip(second, *clip), dtype=torch.long),
                torch.as_tensor(w_first, dtype=torch.float32), torch.as_tensor(w_second, dtype=torch.float32))

    def support(self, length: int) -> slice:
        """The original indices in ``[0, length)`` that read at least one voxel inside the crop (elsewhere every class
        has zero probability); an empty slice when none does."""
        _, _, w_first, w_second = self.weights(np.arange(length))
        inside = torch.nonzero((w_first > 0) | (w_second > 0)).flatten()
        return slice(int(inside[0]), int(inside[-1]) + 1) if len(inside) else slice(0, 0)


def _operations(image: MetaTensor) -> dict[str, dict]:
    operations = {op["class"]: op for op in image.applied_operations}
    unknown = set(operations) - INVERTIBLE
    if unknown or len(operations) != len(image.applied_operations):
        raise ValueError(f"InvertedArgmaxd inverts {sorted(INVERTIBLE)} once each; the preprocessing of "
                         f"{image.meta.get('filename_or_obj', 'the image')} applied "
                         f"{[op['class'] for op in image.applied_operations]}: use Invertd and AsDiscreted instead.")
    return operations


def original_geometry(image: MetaTensor, operations: dict[str, dict]) -> tuple[np.ndarray, tuple[int, ...]]:
    """The original image's affine and spatial shape, as the preprocessing of ``image`` recorded them."""
    affine = operations.get("Orientation", {}).get("extra_info", {}).get("original_affine",
                                                                          image.meta.get("original_affine"))
    return np.asarray(affine, dtype=np.float64), tuple(int(s) for s in image.applied_operations[0]["orig_size"])


def axis_maps(image: MetaTensor) -> tuple[list[AxisMap], tuple[int, ...], np.ndarray]:
    """For each original axis, where it reads the network grid of ``image`` (a preprocessed ``MetaTensor``).

    Returns:
        the axis maps, the original spatial shape and the original affine.

    Raises:
        ValueError: the preprocessing applied another spatial transform, or the grids are not axis-aligned.
    """
    operations = _operations(image)
    original_affine, original_shape = original_geometry(image, operations)
    size = tuple(int(s) for s in image.shape[1:])
    crop = operations.get("CropForeground", {}).get("extra_info", {})
    cropped = crop.get("cropped", [0] * 2 * len(size))
    # a crop box reaching beyond the image (CropForegroundd's margin or k_divisible) is padded: the padded voxels
    # lie outside the spaced grid, so its border moves into the network grid by as many voxels
    padded = crop.get("pad_info", {}).get("extra_info", {}).get("padded", [(0, 0)] * (len(size) + 1))[1:]
    # the final affine alone places the network grid in the original one: the resampled grid's origin need not be
    # the original's (MONAI centres it when a float32 NIfTI affine is not exactly orthogonal, as oblique ones are)
    affine = np.asarray(image.affine, dtype=np.float64)
    to_source = np.linalg.inv(affine) @ original_affine
    maps = []
    for axis in range(len(size)):
        column = to_source[:3, axis]
        source = int(np.argmax(np.abs(column)))
        if np.sum(np.abs(column) > 1e-6 * np.abs(column[source])) != 1:
            raise ValueError(f"the network grid of {image.meta.get('filename_or_obj', 'the image')} is not "
                             "axis-aligned with its original grid: use Invertd and AsDiscreted instead.")
        before = cropped[2 * source] - padded[source][0]
        after = cropped[2 * source + 1] - padded[source][1]
        maps.append(AxisMap(source, float(column[source]), float(to_source[source, 3]), float(-before),
                            float(size[source] + after - 1), size[source]))
    if sorted(m.source for m in maps) != list(range(len(size))):
        raise ValueError("two original axes read the same network axis: the affines are inconsistent.")
    return maps, original_shape, original_affine


class _Workspace:
    """Reused output buffers: fresh multi-100-MB tensors per slab cost more in page faults than the arithmetic."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: list[int]) -> torch.Tensor:
        size = int(np.prod(shape))
        if name not in self.buffers or self.buffers[name].numel() < size:
            self.buffers[name] = torch.empty(size)
        return self.buffers[name][:size].view(shape)


def _interpolate(values: torch.Tensor, dim: int, weights, workspace: _Workspace, name: str) -> torch.Tensor:
    """Linear interpolation of ``values`` along ``dim`` (see :meth:`AxisMap.weights`), into ``workspace``."""
    first, second, w_first, w_second = weights
    shape = [1] * values.ndim
    shape[dim] = -1
    out_shape = list(values.shape)
    out_shape[dim] = len(first)
    result = torch.index_select(values, dim, first, out=workspace.get(name, out_shape)).mul_(w_first.view(shape))
    other = torch.index_select(values, dim, second, out=workspace.get(name + "'", out_shape))
    return result.addcmul_(other, w_second.view(shape))


def inverted_probability_slabs(probabilities: torch.Tensor, image: MetaTensor, slab: int = 4
                               ) -> Iterator[tuple[slice, torch.Tensor]]:
    """The probabilities resampled to the original grid, ``slab`` planes of its last axis at a time.

    Args:
        probabilities: ``(C, *network_grid)`` class probabilities in the grid of ``image``.
        image: the preprocessed image (its metadata records the geometry).
        slab: planes of the last original axis per slab.

    Yields:
        ``(planes, values)``: the slice of the last original axis and the ``(len(planes), N0, N1, C)`` values
        (channels last, so that the argmax reads contiguous memory); ``values`` is overwritten by the next slab.
    """
    maps, original_shape, _ = axis_maps(image)
    yield from _slabs(probabilities, maps, [slice(0, n) for n in original_shape], slab)


def _slabs(probabilities: torch.Tensor, maps: list[AxisMap], box: list[slice], slab: int
           ) -> Iterator[tuple[slice, torch.Tensor]]:
    """The slabs of ``inverted_probability_slabs`` within ``box`` (a slice of each original axis): the values of
    each slab cover ``box[0]`` and ``box[1]`` only."""
    # source axes in the order (last original axis, first, second), channels last
    order = (maps[2].source, maps[0].source, maps[1].source)
    source = convert_to_tensor(probabilities, track_meta=False).float()
    source = source.permute(*(1 + axis for axis in order), 0).contiguous()
    rows = [m.weights(np.arange(b.start, b.stop)) for m, b in zip(maps[:2], box[:2])]
    workspace = _Workspace()
    for start in range(box[2].start, box[2].stop, slab):
        planes = slice(start, min(start + slab, box[2].stop))
        values = _interpolate(source, 0, maps[2].weights(np.arange(planes.start, planes.stop)), workspace, "planes")
        values = _interpolate(values, 2, rows[1], workspace, "columns")
        yield planes, _interpolate(values, 1, rows[0], workspace, "rows")


def inverted_argmax(probabilities: torch.Tensor, image: MetaTensor, slab: int = 4) -> MetaTensor:
    """The ``(1, *original_shape)`` label map (argmax over the channels, first class on ties) of ``probabilities``
    resampled to the original grid of ``image``, with the original affine; slab by slab, and only in the box of
    original voxels that read the foreground crop: outside it every probability is zero and the label is 0."""
    maps, original_shape, original_affine = axis_maps(image)
    labels = torch.zeros(original_shape, dtype=torch.uint8 if probabilities.shape[0] <= 256 else torch.int64)
    box = [m.support(n) for m, n in zip(maps, original_shape)]
    if all(b.stop > b.start for b in box):
        for planes, values in _slabs(probabilities, maps, box, slab):
            labels[box[0], box[1], planes] = values.argmax(-1).permute(1, 2, 0).to(labels.dtype)
    meta = {k: v for k, v in image.meta.items() if k not in ("affine", "spatial_shape")}
    meta["spatial_shape"] = np.asarray(original_shape)
    return MetaTensor(labels[None], affine=torch.as_tensor(original_affine), meta=meta)


class InvertedArgmaxd(MapTransform):
    """Dictionary transform: ``Invertd`` (linear interpolation) followed by ``AsDiscreted(argmax=True)``, computed slab
    by slab in float32 (see the module's docstring). Use it after ``Activationsd(softmax=True)``.

    Args:
        keys: keys of the ``(C, ...)`` probabilities, in the grid of ``orig_key``.
        orig_key: the preprocessed image whose metadata records the preprocessing.
        slab: planes of the last original axis per slab (memory: four buffers of ``C * N0 * N1 * slab`` floats
            at most, besides one float32 copy of the probabilities).
        allow_missing_keys: don't raise for missing keys.
    """

    def __init__(self, keys: KeysCollection, orig_key: str = "image", slab: int = 4,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.orig_key = orig_key
        self.slab = slab

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = inverted_argmax(d[key], d[self.orig_key], self.slab)
        return d
