"""What the synthetic data sets share: per-case random generators, shapes, smooth noise, NIfTI/JSON writing and the
drawing primitives (a normalised voxel grid, ellipsoids, tubes) of the phantoms."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from shared.utils.files import replace_marked_folder

STREAM_BTCV, STREAM_BRATS, STREAM_CXR14 = 1, 2, 3
"""Random streams of the data sets, so that their cases never share random numbers."""


STREAM_BTCV, STREAM_BRATS, STREAM_CXR14 = 1, 2, 3


def case_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """Random generator of one case, independent of how many other cases are generated."""
    return np.random.default_rng([int(seed), stream, int(index)])


def as_shape(shape: Sequence[int] | str, ndim: int) -> tuple[int, ...]:
    """Validate a shape given as a sequence (or a string such as "64,64,32" from the command line)."""
    if isinstance(shape, str):
        shape = [int(s) for s in shape.strip("[]() ").split(",") if s.strip()]
    out = tuple(int(s) for s in shape)
    if len(out) != ndim or min(out) < 16:
        raise ValueError(f"shape must have {ndim} entries of at least 16 voxels, got {shape}.")
    return out


def smooth_noise(rng: np.random.Generator, shape: Sequence[int], cells: Sequence[int]) -> np.ndarray:
    """Smooth random field of unit standard deviation.

    A coarse grid of white noise (``cells`` nodes per axis) is interpolated to ``shape`` with Gaussian kernels,
    axis by axis (a few small matrix products, no per-voxel loops).

    Args:
        rng: random generator.
        shape: output shape.
        cells: number of coarse nodes per axis (larger gives finer structure).

    Returns:
        float32 array of ``shape``.
    """
    field = rng.standard_normal(tuple(int(c) for c in cells))
    for axis, (n, c) in enumerate(zip(shape, cells)):
        pos = (np.arange(n) + 0.5) / n * c - 0.5
        weights = np.exp(-0.5 * ((pos[:, None] - np.arange(c)[None, :]) / 0.75) ** 2)
        weights /= weights.sum(axis=1, keepdims=True)
        field = np.moveaxis(np.tensordot(weights, np.moveaxis(field, axis, 0), axes=1), 0, axis)
    field -= field.mean()
    return (field / (field.std() + 1e-8)).astype(np.float32)


SYNTHETIC_MARKER = ".synthetic_data"
"""The file that marks a folder as written by a generator here, which the next generation into it may replace."""


def prepare_output_folder(out_dir: str | Path) -> Path:
    """``out_dir`` as a new or empty folder holding only :data:`SYNTHETIC_MARKER`.

    The generators write the real data sets' file names (``imagesTr/img0001.nii.gz``, ``dataset.json``, ...), so
    they replace a folder only when an earlier generation marked it as synthetic, and never write into another folder
    that holds files (e.g. a real data set given as ``out_dir`` by mistake); see
    :func:`shared.utils.files.replace_marked_folder`.
    """
    return replace_marked_folder(
        out_dir, SYNTHETIC_MARKER, "written by python -m tools.synthetic; the next generation into this folder "
        "replaces it.\n",
        f"{out_dir} is not an empty folder and holds no synthetic data set (no {SYNTHETIC_MARKER}): the generators "
        "write only into a new or empty folder or one they wrote, so that they never replace files of a real data "
        "set; choose another out_dir.")


def save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write ``array`` (dtype kept) as a gzipped NIfTI-1 with the same qform and sform (scanner space, mm)."""
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))


def write_json(data: dict, path: Path) -> None:
    """Write ``data`` as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4) + "\n")


class Grid:
    """Open (broadcastable) voxel grid in normalised coordinates.

    By default each axis spans about [-1, 1] over the array. With ``voxel_size`` (the size of a voxel in normalised
    units per axis, e.g. the voxel spacing in mm divided by a body half-extent in mm) the coordinates are physical:
    the array's centre is 0 and a structure has the same size in normalised units whatever the array's shape.

    Args:
        shape: array shape (3-D).
        voxel_size: size of one voxel in normalised units per axis; ``2 / shape`` (the array spans [-1, 1]) when None.
    """

    def __init__(self, shape: Sequence[int], voxel_size: Sequence[float] | None = None):
        self.shape = tuple(int(s) for s in shape)
        default = [2.0 / s for s in self.shape]
        self.voxel_size = np.asarray(default if voxel_size is None else voxel_size, dtype=float)
        self.centre = np.array([s / 2.0 for s in self.shape])

    @property
    def half(self) -> np.ndarray:
        """Voxels per normalised unit along each axis (half the array's shape for the default grid)."""
        return 1.0 / self.voxel_size

    def coords(self, window: tuple[slice, ...]) -> list[np.ndarray]:
        """Normalised coordinates of the voxels in ``window``, one open array per axis."""
        out = []
        for axis, sl in enumerate(window):
            index = np.arange(sl.start, sl.stop, dtype=np.float32) + 0.5 - self.centre[axis]
            c = (index * self.voxel_size[axis]).astype(np.float32)
            view = [1] * len(self.shape)
            view[axis] = c.size
            out.append(c.reshape(view))
        return out

    def window(self, low: Sequence[float], high: Sequence[float]) -> tuple[slice, ...]:
        """Voxel slices covering the normalised box [low, high] (clipped to the array, never empty)."""
        slices = []
        for axis, n in enumerate(self.shape):
            start = int(np.floor(low[axis] / self.voxel_size[axis] + self.centre[axis])) - 1
            stop = int(np.ceil(high[axis] / self.voxel_size[axis] + self.centre[axis])) + 1
            start, stop = min(max(start, 0), n - 1), max(min(stop, n), 1)
            slices.append(slice(start, max(stop, start + 1)))
        return tuple(slices)

    def radii(self, radii: Sequence[float], min_voxels: float) -> np.ndarray:
        """Normalised radii enlarged where needed so that every semi-axis spans at least ``min_voxels``."""
        return np.maximum(np.asarray(radii, dtype=float), min_voxels * self.voxel_size)


def ellipsoid(
    grid: Grid, centre: Sequence[float], radii: Sequence[float], angle: float = 0.0, min_voxels: float = 1.6
) -> tuple[tuple[slice, ...], np.ndarray]:
    """Ellipsoid rotated by ``angle`` (radians) about the last axis.

    Args:
        grid: the voxel grid.
        centre: centre in normalised coordinates.
        radii: semi-axes in normalised coordinates (enlarged to ``min_voxels`` voxels where smaller).
        angle: in-plane rotation in radians.
        min_voxels: smallest semi-axis in voxels, so that small structures survive small array shapes.

    Returns:
        the window (tuple of slices) and the boolean mask inside that window.
    """
    r = grid.radii(radii, min_voxels)
    c = np.asarray(centre, dtype=float)
    reach = np.array([max(r[0], r[1])] * 2 + [r[2]])
    window = grid.window(c - reach, c + reach)
    x, y, z = grid.coords(window)
    dx, dy = x - c[0], y - c[1]
    cos, sin = np.cos(angle), np.sin(angle)
    a = (cos * dx + sin * dy) / r[0]
    b = (-sin * dx + cos * dy) / r[1]
    return window, (a**2 + b**2 + ((z - c[2]) / r[2]) ** 2) <= 1.0


def tube(
    grid: Grid, points: np.ndarray, radii: Sequence[float], min_voxels: float = 1.6
) -> tuple[tuple[slice, ...], np.ndarray]:
    """Tube of elliptical cross-section around the polyline through ``points``.

    Args:
        grid: the voxel grid.
        points: (n, 3) polyline vertices in normalised coordinates.
        radii: per-axis radii in normalised coordinates (enlarged to ``min_voxels`` voxels where smaller).
        min_voxels: smallest radius in voxels.

    Returns:
        the window (tuple of slices) and the boolean mask inside that window.
    """
    r = grid.radii(radii, min_voxels)
    pts = np.asarray(points, dtype=float)
    window = grid.window(pts.min(0) - r, pts.max(0) + r)
    coords = [c / r[i] for i, c in enumerate(grid.coords(window))]
    q = pts / r
    best = None
    for a, b in zip(q[:-1], q[1:]):
        e = b - a
        d = [coords[i] - a[i] for i in range(3)]
        t = np.clip((d[0] * e[0] + d[1] * e[1] + d[2] * e[2]) / max(float(e @ e), 1e-12), 0.0, 1.0)
        dist2 = sum((d[i] - t * e[i]) ** 2 for i in range(3))
        best = dist2 if best is None else np.minimum(best, dist2)
    return window, best <= 1.0


def bezier(control: np.ndarray, num: int = 12) -> np.ndarray:
    """Points on the quadratic Bezier curve through three control points."""
    t = np.linspace(0.0, 1.0, num)[:, None]
    p0, p1, p2 = control
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def paint(volume: np.ndarray, window: tuple[slice, ...], mask: np.ndarray, value: float) -> None:
    """Set ``volume[window][mask] = value`` in place."""
    volume[window][mask] = value
