# Copyright (c) MONAI Consortium
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""
Synthetic stand-ins for BTCV, BraTS 2021 / MSD Task01 and NIH ChestX-ray14, written in their public on-disk layouts.

The generated folders can be read by exactly the same loading code as the real data sets, which lets the bundles
of this repository be trained, evaluated and tested end to end without access to the (registration-only) data.
The images are phantoms, not patients: anatomy is drawn from ellipsoids, tubes and smooth random fields with
per-case jitter of position, size, shape and intensity, so that a model has something consistent to learn.

Layouts written (see ``shared/reference/dataset_layouts.md``):

- ``btcv``: ``imagesTr/img0001.nii.gz``, ``labelsTr/label0001.nii.gz``, ``imagesTs/img0061.nii.gz`` and
  ``dataset_0.json`` with the keys of the MONAI/UNETR BTCV datalist. int16 Hounsfield units, uint8 labels 0-13
  with the BTCV ids, anisotropic spacing and an LPS-like (ITK/DICOM-derived) affine with a nonzero origin.
- ``brats --layout brats2021``: ``BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz``; int16 images,
  uint8 labels 0/1/2/4 (NCR/ED/ET), 1 mm isotropic, skull-stripped (zero outside the brain).
- ``brats --layout msd``: ``imagesTr/BRATS_001.nii.gz`` (4-D, channel last: FLAIR, T1w, t1gd, T2w; float32),
  ``labelsTr/BRATS_001.nii.gz`` (uint8 0 background, 1 edema, 2 non-enhancing tumour, 3 enhancing tumour),
  ``imagesTs/`` and the Task01 ``dataset.json``.
- ``cxr14``: ``images/00000001_000.png`` (8-bit grey, square), ``Data_Entry_2017.csv`` with the real columns,
  ``train_val_list.txt`` and ``test_list.txt`` split patient-wise.

Phantom coordinates are normalised to the field of view (the body or head fills the image whatever its size),
so voxel spacings are realistic but physical sizes in millimetres are only realistic for realistic array shapes.
All randomness comes from ``numpy.random.default_rng`` seeded with ``(seed, data set, case index)``: the same
seed gives byte-identical files, and a case does not change when the number of cases changes.

Command line (python-fire)::

    python tools/synthetic_data.py btcv --out_dir /data/btcv_synth --num_train 8 --shape "[128,128,64]"
    python tools/synthetic_data.py brats --out_dir /data/brats21_synth --layout brats2021 --num_cases 8
    python tools/synthetic_data.py brats --out_dir /data/Task01_synth --layout msd --num_cases 8 --num_test 2
    python tools/synthetic_data.py cxr14 --out_dir /data/cxr14_synth --num_images 200 --size 256
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import fire
import nibabel as nib
import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

__all__ = [
    "BTCV_LABELS",
    "CXR14_COLUMNS",
    "CXR14_FINDINGS",
    "MSD_BRATS_LABELS",
    "NO_FINDING",
    "btcv_phantom",
    "brain_tumour_phantom",
    "chest_xray_phantom",
    "make_btcv",
    "make_brats",
    "make_cxr14",
]

# ----------------------------------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------------------------------

_STREAM_BTCV, _STREAM_BRATS, _STREAM_CXR14 = 1, 2, 3


def _case_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """Random generator of one case, independent of how many other cases are generated."""
    return np.random.default_rng([int(seed), stream, int(index)])


def _as_shape(shape: Sequence[int] | str, ndim: int) -> tuple[int, ...]:
    """Validate a shape given as a sequence (or a string such as "64,64,32" from the command line)."""
    if isinstance(shape, str):
        shape = [int(s) for s in shape.strip("[]() ").split(",") if s.strip()]
    out = tuple(int(s) for s in shape)
    if len(out) != ndim or min(out) < 16:
        raise ValueError(f"shape must have {ndim} entries of at least 16 voxels, got {shape}.")
    return out


def _smooth_noise(rng: np.random.Generator, shape: Sequence[int], cells: Sequence[int]) -> np.ndarray:
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


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write ``array`` (dtype kept) as a gzipped NIfTI-1 with the same qform and sform (scanner space, mm)."""
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))


def _write_json(data: dict, path: Path) -> None:
    """Write ``data`` as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4) + "\n")


class _Grid:
    """Open (broadcastable) voxel grid in normalised coordinates, each axis spanning about [-1, 1].

    Args:
        shape: array shape (3-D).
    """

    def __init__(self, shape: Sequence[int]):
        self.shape = tuple(int(s) for s in shape)
        self.half = np.array([s / 2.0 for s in self.shape])

    def coords(self, window: tuple[slice, ...]) -> list[np.ndarray]:
        """Normalised coordinates of the voxels in ``window``, one open array per axis."""
        out = []
        for axis, sl in enumerate(window):
            c = (np.arange(sl.start, sl.stop, dtype=np.float32) + 0.5) / self.half[axis] - 1.0
            view = [1] * len(self.shape)
            view[axis] = c.size
            out.append(c.reshape(view))
        return out

    def window(self, low: Sequence[float], high: Sequence[float]) -> tuple[slice, ...]:
        """Voxel slices covering the normalised box [low, high] (clipped to the array, never empty)."""
        slices = []
        for axis, n in enumerate(self.shape):
            start = int(np.floor((low[axis] + 1.0) * self.half[axis])) - 1
            stop = int(np.ceil((high[axis] + 1.0) * self.half[axis])) + 1
            start, stop = min(max(start, 0), n - 1), max(min(stop, n), 1)
            slices.append(slice(start, max(stop, start + 1)))
        return tuple(slices)

    def radii(self, radii: Sequence[float], min_voxels: float) -> np.ndarray:
        """Normalised radii enlarged where needed so that every semi-axis spans at least ``min_voxels``."""
        return np.maximum(np.asarray(radii, dtype=float), min_voxels / self.half)


def _ellipsoid(
    grid: _Grid, centre: Sequence[float], radii: Sequence[float], angle: float = 0.0, min_voxels: float = 1.6
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


def _tube(
    grid: _Grid, points: np.ndarray, radii: Sequence[float], min_voxels: float = 1.6
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


def _bezier(control: np.ndarray, num: int = 12) -> np.ndarray:
    """Points on the quadratic Bezier curve through three control points."""
    t = np.linspace(0.0, 1.0, num)[:, None]
    p0, p1, p2 = control
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _paint(volume: np.ndarray, window: tuple[slice, ...], mask: np.ndarray, value: float) -> None:
    """Set ``volume[window][mask] = value`` in place."""
    volume[window][mask] = value


# ----------------------------------------------------------------------------------------------------------------
# BTCV: abdominal CT
# ----------------------------------------------------------------------------------------------------------------

BTCV_LABELS = {
    "0": "background",
    "1": "spleen",
    "2": "rkid",
    "3": "lkid",
    "4": "gall",
    "5": "eso",
    "6": "liver",
    "7": "sto",
    "8": "aorta",
    "9": "IVC",
    "10": "veins",
    "11": "pancreas",
    "12": "rad",
    "13": "lad",
}

# portal-venous Hounsfield units per BTCV label id
_BTCV_HU = {1: 120, 2: 180, 3: 180, 4: 10, 5: 40, 6: 110, 7: 40, 8: 180, 9: 130, 10: 160, 11: 100, 12: 60, 13: 60}


@dataclass
class _CtCase:
    """Mutable state of one CT phantom while it is painted."""

    grid: _Grid
    rng: np.random.Generator
    hu: np.ndarray
    label: np.ndarray
    scale: float
    z_shift: float
    hu_offset: float

    def place(self, centre: Sequence[float], jitter: Sequence[float] = (0.04, 0.04, 0.06)) -> np.ndarray:
        """Case-specific position of an anatomical centre: body scaling, craniocaudal shift and jitter."""
        c = np.asarray(centre, dtype=float) * np.array([self.scale, self.scale, 1.0])
        c[2] += self.z_shift
        return c + self.rng.uniform(-1.0, 1.0, 3) * np.asarray(jitter)

    def size(self, radii: Sequence[float], spread: float = 0.15) -> np.ndarray:
        """Case-specific semi-axes: body scaling and +-``spread`` relative jitter per axis."""
        r = np.asarray(radii, dtype=float) * np.array([self.scale, self.scale, 1.0])
        return r * self.rng.uniform(1.0 - spread, 1.0 + spread, 3)

    def organ_hu(self, label_id: int) -> float:
        """Mean HU of an organ for this case (global offset plus +-10 HU organ jitter)."""
        return _BTCV_HU[label_id] + self.hu_offset + float(self.rng.uniform(-10, 10))


def _btcv_body(case: _CtCase) -> None:
    """Paint the table, subcutaneous fat, the muscular body wall and the visceral cavity (fat, bowel, gas)."""
    grid, rng = case.grid, case.rng
    full = tuple(slice(0, n) for n in grid.shape)
    x, y, z = grid.coords(full)
    a, b, cy = 0.86 * case.scale, 0.6 * case.scale, 0.04
    rho = np.sqrt((x / a) ** 2 + ((y - cy) / b) ** 2) + 0.02 * np.sin(3.0 * z + rng.uniform(0, 6.3))
    rho = np.broadcast_to(rho, grid.shape)
    fat = rng.uniform(0.06, 0.12)
    muscle = 0.05
    table = (y > cy + b + 0.12) & (y < cy + b + 0.16) & (np.abs(x) < 0.95)
    case.hu[np.broadcast_to(table, grid.shape)] = 100.0
    case.hu[rho <= 1.0] = -100.0 + rng.uniform(-20, 20)
    case.hu[rho <= 1.0 - fat] = 45.0 + case.hu_offset
    cavity = rho <= 1.0 - fat - muscle
    texture = _smooth_noise(rng, grid.shape, [max(4, n // 12) for n in grid.shape])
    visceral = np.where(texture > 0.4, -90.0, 30.0 + case.hu_offset)
    visceral = np.where((texture < -1.5) & (z < 0.3) & (y < 0.1), -900.0, visceral)  # bowel gas, intraperitoneal
    case.hu[cavity] = visceral[cavity]


def _btcv_lung_bases(case: _CtCase) -> None:
    """Paint the posterior lung bases that appear in the most cranial slices (image only, label 0)."""
    for side in (-1.0, 1.0):
        window, mask = _ellipsoid(case.grid, case.place([0.45 * side, 0.25, 1.1]), case.size([0.3, 0.28, 0.35]))
        _paint(case.hu, window, mask, -850.0)


def _btcv_spine(case: _CtCase) -> None:
    """Paint the vertebral column: cortical ring, cancellous body, discs, spinal canal and posterior elements."""
    grid, s = case.grid, case.scale
    full = tuple(slice(0, n) for n in grid.shape)
    x, y, z = grid.coords(full)
    x0 = case.rng.uniform(-0.02, 0.02)
    cancellous, cortex = case.rng.uniform(300, 450), case.rng.uniform(700, 1000)
    disc = np.broadcast_to(np.cos((z - case.z_shift) * np.pi / 0.14) > 0.85, grid.shape)
    body = ((x - x0) / (0.11 * s)) ** 2 + ((y - 0.42 * s) / (0.095 * s)) ** 2
    arch = ((x - x0) / (0.085 * s)) ** 2 + ((y - 0.57 * s) / (0.075 * s)) ** 2
    canal = ((x - x0) / (0.045 * s)) ** 2 + ((y - 0.56 * s) / (0.04 * s)) ** 2
    spinous = ((x - x0) / (0.025 * s)) ** 2 + ((y - 0.66 * s) / (0.05 * s)) ** 2
    bone = np.broadcast_to((body <= 1.0) | (arch <= 1.0) | (spinous <= 1.0), grid.shape)
    case.hu[bone] = cortex
    inner = np.broadcast_to(body <= 0.7, grid.shape)
    case.hu[inner] = cancellous
    case.hu[np.broadcast_to(body <= 1.0, grid.shape) & disc] = 80.0
    case.hu[np.broadcast_to(canal <= 1.0, grid.shape)] = 15.0


def _btcv_organ(case: _CtCase, label_id: int, window: tuple[slice, ...], mask: np.ndarray) -> None:
    """Paint one organ into the label map and, at its case-specific HU, into the image."""
    _paint(case.label, window, mask, label_id)
    _paint(case.hu, window, mask, case.organ_hu(label_id))


def _btcv_solid_organs(case: _CtCase) -> None:
    """Paint perirenal fat (image only), liver, spleen, stomach (wall, content, gas), kidneys and gallbladder.

    Coordinates: first axis towards the patient's left, second posterior, third superior (the voxel order of an
    LPS-oriented scan), normalised to the field of view.
    """
    grid, rng = case.grid, case.rng
    for side in (-1.0, 1.0):
        window, mask = _ellipsoid(grid, case.place([0.3 * side, 0.34, 0.05], [0.0] * 3), case.size([0.2, 0.2, 0.5]))
        _paint(case.hu, window, mask, -95.0)

    liver = _ellipsoid(grid, case.place([-0.36, -0.08, 0.5]), case.size([0.42, 0.4, 0.48]), rng.uniform(-0.2, 0.2))
    _btcv_organ(case, 6, *liver)
    spleen = _ellipsoid(grid, case.place([0.56, 0.26, 0.45]), case.size([0.13, 0.2, 0.25]), rng.uniform(-0.5, 0.0))
    _btcv_organ(case, 1, *spleen)

    centre, radii = case.place([0.3, -0.18, 0.5]), case.size([0.22, 0.2, 0.3])
    _btcv_organ(case, 7, *_ellipsoid(grid, centre, radii, rng.uniform(-0.4, 0.0)))
    window, lumen = _ellipsoid(grid, centre, radii * 0.7)
    _paint(case.hu, window, lumen, 10.0 + case.hu_offset)
    if rng.random() < 0.5:  # gas rises anteriorly in a supine patient
        gas = lumen & (grid.coords(window)[1] < centre[1] - 0.3 * radii[1])
        _paint(case.hu, window, gas, -900.0)

    for label_id, side, height in ((2, -1.0, -0.12), (3, 1.0, -0.02)):
        centre, radii = case.place([0.32 * side, 0.35, height]), case.size([0.1, 0.12, 0.28])
        angle = side * rng.uniform(0.2, 0.5)
        _btcv_organ(case, label_id, *_ellipsoid(grid, centre, radii, angle))
        window, medulla = _ellipsoid(grid, centre, radii * 0.55, angle)
        _paint(case.hu, window, medulla, case.organ_hu(label_id) - 70.0)

    gall = _ellipsoid(grid, case.place([-0.26, -0.34, 0.12]), case.size([0.08, 0.08, 0.16]), rng.uniform(-0.5, 0.5))
    _btcv_organ(case, 4, *gall)


def _btcv_tubular_organs(case: _CtCase) -> None:
    """Paint pancreas, portal/splenic veins, aorta, IVC and oesophagus as tubes along polylines."""
    grid = case.grid
    pancreas = np.stack([case.place(p) for p in ([-0.12, -0.02, 0.02], [0.1, 0.05, 0.08], [0.4, 0.14, 0.16])])
    _btcv_organ(case, 11, *_tube(grid, _bezier(pancreas), case.size([0.065, 0.065, 0.09], 0.1)))

    veins = np.stack([case.place(p) for p in ([-0.22, -0.02, 0.22], [0.05, 0.13, 0.23], [0.44, 0.22, 0.3])])
    _btcv_organ(case, 10, *_tube(grid, _bezier(veins), case.size([0.035, 0.035, 0.05], 0.1)))

    aorta = case.place([0.08, 0.22, 0.0], [0.02, 0.02, 0.0])
    path = np.array([[aorta[0], aorta[1], -1.2], [aorta[0] - 0.01, aorta[1] - 0.02, 1.2]])
    _btcv_organ(case, 8, *_tube(grid, path, case.size([0.07, 0.07, 1.0], 0.1)))
    ivc = case.place([-0.12, 0.2, 0.0], [0.02, 0.02, 0.0])
    path = np.array([[ivc[0], ivc[1], -1.2], [ivc[0] - 0.03, ivc[1] - 0.04, 0.75 + case.z_shift]])
    _btcv_organ(case, 9, *_tube(grid, path, case.size([0.07, 0.055, 1.0], 0.1)))

    cardia = case.place([0.14, 0.02, 0.6], [0.02, 0.02, 0.04])
    path = np.array([cardia, [0.04, 0.1, 0.9], [0.02, 0.12, 1.2]])
    _btcv_organ(case, 5, *_tube(grid, path, case.size([0.045, 0.045, 1.0], 0.1)))


def _btcv_adrenals(case: _CtCase) -> None:
    """Paint the small, flat adrenal glands superomedial to the kidneys (last, so nothing covers them)."""
    for label_id, side, height in ((12, -1.0, 0.3), (13, 1.0, 0.38)):
        centre, radii = case.place([0.22 * side, 0.3, height]), case.size([0.06, 0.04, 0.13])
        _btcv_organ(case, label_id, *_ellipsoid(case.grid, centre, radii, side * case.rng.uniform(0.3, 0.8)))


def _btcv_affine(rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """LPS-like affine as in ITK/DICOM-derived NIfTI: negative x/y diagonal and a nonzero origin."""
    sx, sy, sz = spacing
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[:3, 3] = [
        sx * (shape[0] - 1) / 2.0 + rng.uniform(-20, 20),
        sy * (shape[1] - 1) / 2.0 + rng.uniform(100, 250),
        -rng.uniform(100, 400),
    ]
    return affine


def btcv_phantom(
    shape: Sequence[int] = (128, 128, 64),
    rng: np.random.Generator | int = 0,
    inplane_spacing: Sequence[float] = (0.7, 0.9),
    slice_spacing: Sequence[float] = (2.5, 5.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One abdominal CT phantom with the 13 BTCV organ labels.

    Voxel axes point to the patient's left, posterior and superior (LPS voxel order), hence the negative x/y
    diagonal of the RAS affine. Organs are ellipsoids and tubes at anatomically plausible places (liver
    right-anterior, spleen left-posterior, paravertebral kidneys, aorta left-anterior of the vertebra, IVC to its
    right, pancreas and splenic/portal vein across the midline, adrenals above the kidneys, ...) with per-case
    jitter of positions (+-0.04 of the half field of view), sizes (+-15 %), orientation and intensity (+-20 HU
    global, +-10 HU per organ). Every semi-axis spans at least 1.6 voxels so all labels survive small shapes.

    Args:
        shape: array shape (x, y, z), at least 16 per axis (all 13 organs appear from about (32, 32, 24)).
        rng: random generator or integer seed.
        inplane_spacing: range of the in-plane voxel size in mm (drawn per case, same for x and y).
        slice_spacing: range of the slice spacing in mm (drawn per case).

    Returns:
        int16 image in HU, uint8 label map and the 4x4 affine (RAS world, mm).
    """
    shape = _as_shape(shape, 3)
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    inplane = round(float(rng.uniform(*inplane_spacing)), 3)
    spacing = (inplane, inplane, round(float(rng.uniform(*slice_spacing)), 2))
    case = _CtCase(
        grid=_Grid(shape),
        rng=rng,
        hu=np.full(shape, -1000.0, dtype=np.float32),
        label=np.zeros(shape, dtype=np.uint8),
        scale=float(rng.uniform(0.9, 1.05)),
        z_shift=float(rng.uniform(-0.08, 0.08)),
        hu_offset=float(rng.uniform(-20, 20)),
    )
    _btcv_body(case)
    _btcv_lung_bases(case)
    _btcv_spine(case)
    _btcv_solid_organs(case)  # organs are painted in a fixed order, later ones overwrite (labels never overlap)
    _btcv_tubular_organs(case)
    _btcv_adrenals(case)
    hu = gaussian_filter(case.hu, sigma=(0.7, 0.7, 0.35))
    hu += rng.normal(0.0, rng.uniform(5.0, 20.0), shape).astype(np.float32)
    image = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return image, case.label, _btcv_affine(rng, shape, spacing)


def _btcv_ids(num_labelled: int, num_test: int) -> tuple[list[int], list[int]]:
    """BTCV-like case numbers: labelled cases from 1, unlabelled test cases from 61 (after the labelled ones)."""
    labelled = list(range(1, num_labelled + 1))
    first_test = max(61, num_labelled + 1)
    return labelled, list(range(first_test, first_test + num_test))


def make_btcv(
    out_dir: str,
    num_train: int = 8,
    num_val: int = 2,
    num_test: int = 2,
    shape: Sequence[int] = (128, 128, 64),
    seed: int = 0,
    inplane_spacing: Sequence[float] = (0.7, 0.9),
    slice_spacing: Sequence[float] = (2.5, 5.0),
) -> str:
    """Write a synthetic abdominal CT data set in the MONAI/UNETR BTCV layout.

    ``imagesTr/img0001.nii.gz`` ... with ``labelsTr/label0001.nii.gz`` (training then validation cases),
    ``imagesTs/img0061.nii.gz`` ... (unlabelled) and ``dataset_0.json`` with the keys of the BTCV datalist
    (``training``/``validation`` lists of image/label dicts, ``test`` list of bare strings). Read it with
    ``monai.data.load_decathlon_datalist(json, True, "training", base_dir=out_dir)``.

    Args:
        out_dir: output folder (created).
        num_train: labelled cases in ``training``.
        num_val: labelled cases in ``validation``.
        num_test: unlabelled cases in ``test`` (numbered from 61 like BTCV, or after the labelled ones).
        shape: array shape (x, y, z) of every case.
        seed: random seed; the same seed gives byte-identical files.
        inplane_spacing: range of the in-plane voxel size in mm, drawn per case.
        slice_spacing: range of the slice spacing in mm, drawn per case.

    Returns:
        ``out_dir`` as a string.
    """
    out = Path(out_dir)
    labelled, test = _btcv_ids(num_train + num_val, num_test)
    entries = []
    for case_id in labelled:
        rng = _case_rng(seed, _STREAM_BTCV, case_id)
        image, label, affine = btcv_phantom(shape, rng, inplane_spacing, slice_spacing)
        entry = {"image": f"imagesTr/img{case_id:04d}.nii.gz", "label": f"labelsTr/label{case_id:04d}.nii.gz"}
        _save_nifti(image, affine, out / entry["image"])
        _save_nifti(label, affine, out / entry["label"])
        entries.append(entry)
    test_entries = []
    for case_id in test:
        rng = _case_rng(seed, _STREAM_BTCV, case_id)
        image, _, affine = btcv_phantom(shape, rng, inplane_spacing, slice_spacing)
        test_entries.append(f"imagesTs/img{case_id:04d}.nii.gz")
        _save_nifti(image, affine, out / test_entries[-1])
    datalist = {
        "description": f"synthetic btcv-like abdominal CT phantoms (tools/synthetic_data.py, seed {seed})",
        "labels": dict(BTCV_LABELS),
        "licence": "synthetic data, no restrictions",
        "modality": {"0": "CT"},
        "name": "btcv",
        "numTest": len(test_entries),
        "numTraining": len(entries),
        "reference": "synthetic stand-in for the Vanderbilt University BTCV data",
        "release": "synthetic 1.0",
        "tensorImageSize": "3D",
        "test": test_entries,
        "training": entries[:num_train],
        "validation": entries[num_train:],
    }
    _write_json(datalist, out / "dataset_0.json")
    return str(out)


# ----------------------------------------------------------------------------------------------------------------
# BraTS 2021 / MSD Task01: multi-contrast brain MRI with glioma sub-regions
# ----------------------------------------------------------------------------------------------------------------

# internal tissue classes
_BG, _CSF, _GM, _WM, _ED, _NCR, _ET = range(7)
_CONTRASTS = ("t1", "t1ce", "t2", "flair")
# relative intensity of each class in each contrast (rows: classes above; columns: t1, t1ce, t2, flair)
_MR_INTENSITY = np.array(
    [
        [0.0, 0.0, 0.0, 0.0],  # background
        [0.2, 0.2, 1.0, 0.1],  # CSF
        [0.55, 0.55, 0.6, 0.6],  # grey matter
        [0.8, 0.8, 0.45, 0.45],  # white matter
        [0.45, 0.45, 0.85, 0.9],  # oedema
        [0.15, 0.2, 0.95, 0.4],  # necrotic core
        [0.5, 1.0, 0.7, 0.7],  # enhancing tumour
    ],
    dtype=np.float32,
)
_BRATS2021_LABEL = np.array([0, 0, 0, 0, 2, 1, 4], dtype=np.uint8)  # NCR 1, ED 2, ET 4
_MSD_LABEL = np.array([0, 0, 0, 0, 1, 2, 3], dtype=np.uint8)  # edema 1, non-enhancing 2, enhancing 3
_MSD_CHANNELS = ("flair", "t1", "t1ce", "t2")  # FLAIR, T1w, t1gd, T2w

MSD_BRATS_LABELS = {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}


def _brain_tissues(grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    """Skull-stripped brain as nested ellipsoids: CSF rim, folded grey-matter cortex, white matter, ventricles."""
    full = tuple(slice(0, n) for n in grid.shape)
    x, y, z = grid.coords(full)
    axes = np.array([0.74, 0.86, 0.8]) * rng.uniform(0.93, 1.05, 3)
    centre = np.array([0.0, 0.02, -0.04]) + rng.uniform(-0.03, 0.03, 3)
    rho = np.sqrt(sum(((c - centre[i]) / axes[i]) ** 2 for i, c in enumerate((x, y, z))))
    coarse = _smooth_noise(rng, grid.shape, [5, 5, 4])
    gyri = _smooth_noise(rng, grid.shape, [max(6, n // 6) for n in grid.shape])
    rho = rho + 0.025 * coarse
    tissue = np.zeros(grid.shape, dtype=np.uint8)
    tissue[rho <= 1.0] = _CSF
    tissue[rho <= 0.95 + 0.02 * gyri] = _GM
    tissue[rho <= 0.78 + 0.07 * gyri] = _WM
    fissure = (np.abs(x - centre[0]) < max(0.015, 0.7 / grid.half[0])) & (z > centre[2]) & (rho > 0.35) & (rho <= 1.0)
    tissue[fissure] = _CSF
    for side in (-1.0, 1.0):
        deep = centre + np.array([0.17 * side, 0.06, -0.05])
        window, mask = _ellipsoid(grid, deep, np.array([0.08, 0.12, 0.1]) * axes)
        _paint(tissue, window, mask, _GM)
        horn = centre + np.array([0.1 * side, -0.04, 0.12])
        window, mask = _ellipsoid(grid, horn, np.array([0.07, 0.32, 0.12]) * axes, side * rng.uniform(0.0, 0.15))
        _paint(tissue, window, mask, _CSF)
    return tissue


def _tumour_centre(grid: _Grid, tissue: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random tumour centre (in voxels) in the white matter of one hemisphere, in its central part."""
    side = rng.choice([-1.0, 1.0])
    for _ in range(100):
        c = np.array([side * rng.uniform(0.15, 0.4), rng.uniform(-0.45, 0.45), rng.uniform(-0.3, 0.35)])
        voxel = np.clip(((c + 1.0) * grid.half).astype(int), 0, np.array(grid.shape) - 1)
        if tissue[tuple(voxel)] == _WM:
            return (c + 1.0) * grid.half - 0.5
    return (np.array(grid.shape) - 1) / 2.0 + np.array([side * 0.25 * grid.half[0], 0.0, 0.0])


def _add_tumour(tissue: np.ndarray, rng: np.random.Generator) -> None:
    """Paint a glioma in place: necrotic core, enhancing rim and an oedema halo favouring white matter.

    Sub-region boundaries are spheres (1 mm isotropic voxels) deformed by smooth noise; radii scale with the
    brain so the sub-regions are present at small shapes (core radius at least 2 voxels, rim at least 1.5).
    """
    grid = _Grid(tissue.shape)
    size = float(grid.half.min())
    centre = _tumour_centre(grid, tissue, rng)
    r_core = max(rng.uniform(0.08, 0.14) * size, 2.0)
    r_rim = r_core + max(rng.uniform(0.05, 0.08) * size, 1.5)
    r_edema = r_rim + max(rng.uniform(0.15, 0.3) * size, 3.0)
    idx = np.ogrid[tuple(slice(0, n) for n in tissue.shape)]
    dist = np.sqrt(sum((i - c) ** 2 for i, c in zip(idx, centre)))
    wobble = np.clip(_smooth_noise(rng, tissue.shape, [max(5, n // 5) for n in tissue.shape]), -2.0, 2.0)
    brain = tissue != _BG
    edema = brain & (dist <= r_edema * (1.0 + 0.25 * wobble)) & ((tissue == _WM) | (dist <= 0.7 * r_edema))
    tissue[edema] = _ED
    tissue[brain & (dist <= r_rim * (1.0 + 0.12 * wobble))] = _ET
    tissue[brain & (dist <= r_core * (1.0 + 0.12 * wobble))] = _NCR


def _bias_field(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    """Smooth multiplicative bias field (exponential of a random quadratic polynomial)."""
    x, y, z = _Grid(shape).coords(tuple(slice(0, n) for n in shape))
    c = [float(v) for v in rng.normal(0.0, 0.12, 6)]
    return np.exp(c[0] * x + c[1] * y + c[2] * z + c[3] * x * x + c[4] * y * y + c[5] * x * y).astype(np.float32)


def _mr_contrast(tissue: np.ndarray, column: int, rng: np.random.Generator) -> np.ndarray:
    """One MR contrast: class intensities with texture, partial-volume blur, bias field and Rician noise."""
    base = _MR_INTENSITY[tissue, column]
    texture = _smooth_noise(rng, tissue.shape, [max(6, n // 6) for n in tissue.shape])
    signal = gaussian_filter(base * (1.0 + 0.04 * texture), sigma=0.6) * _bias_field(rng, tissue.shape)
    sigma = np.float32(rng.uniform(0.015, 0.035))
    real = signal + sigma * rng.standard_normal(tissue.shape, dtype=np.float32)
    noisy = np.hypot(real, sigma * rng.standard_normal(tissue.shape, dtype=np.float32))
    noisy[tissue == _BG] = 0.0
    return noisy


def brain_tumour_phantom(
    shape: Sequence[int] = (96, 96, 64), rng: np.random.Generator | int = 0
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One skull-stripped brain with a glioma, in four co-registered contrasts.

    Relative intensities follow ``_MR_INTENSITY`` (T1 CSF 0.2 / GM 0.55 / WM 0.8; T2 1.0/0.6/0.45; FLAIR
    0.1/0.6/0.45; tumour T1/T1ce/T2/FLAIR: necrosis 0.15/0.2/0.95/0.4, enhancing 0.5/1.0/0.7/0.7, oedema
    0.45/0.45/0.85/0.9), so the enhancing rim is bright only in T1ce and the oedema is bright in T2 and FLAIR.

    Args:
        shape: array shape (x, y, z), at least 16 per axis (the three sub-regions appear from about 32 per axis).
        rng: random generator or integer seed.

    Returns:
        dict of float32 images (keys ``t1``, ``t1ce``, ``t2``, ``flair``, about 0-1.2, zero outside the brain) and
        the uint8 class map (0 background, 1 CSF, 2 GM, 3 WM, 4 oedema, 5 necrotic core, 6 enhancing tumour).
    """
    shape = _as_shape(shape, 3)
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    tissue = _brain_tissues(_Grid(shape), rng)
    _add_tumour(tissue, rng)
    images = {name: _mr_contrast(tissue, column, rng) for column, name in enumerate(_CONTRASTS)}
    return images, tissue


def _brats_affine(shape: Sequence[int]) -> np.ndarray:
    """1 mm isotropic LPS-like affine (negative x/y diagonal) as in ITK-written brain MRI."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[:3, 3] = [0.0, float(shape[1] - 1), 0.0]
    return affine


def _write_brats2021_case(out: Path, index: int, shape: Sequence[int], seed: int) -> None:
    """Write ``BraTS2021_<index>/BraTS2021_<index>_{t1,t1ce,t2,flair,seg}.nii.gz`` (int16 images, uint8 labels)."""
    rng = _case_rng(seed, _STREAM_BRATS, index)
    images, tissue = brain_tumour_phantom(shape, rng)
    case = f"BraTS2021_{index:05d}"
    affine = _brats_affine(shape)
    for name in _CONTRASTS:
        gain = rng.uniform(600.0, 2500.0)
        _save_nifti(np.rint(images[name] * gain).astype(np.int16), affine, out / case / f"{case}_{name}.nii.gz")
    _save_nifti(_BRATS2021_LABEL[tissue], affine, out / case / f"{case}_seg.nii.gz")


def _write_msd_case(out: Path, index: int, shape: Sequence[int], seed: int, labelled: bool) -> None:
    """Write ``imagesTr|imagesTs/BRATS_<index>.nii.gz`` (4-D float32, channel last) and, if labelled, the label."""
    rng = _case_rng(seed, _STREAM_BRATS, index)
    images, tissue = brain_tumour_phantom(shape, rng)
    name = f"BRATS_{index:03d}.nii.gz"
    folder = "imagesTr" if labelled else "imagesTs"
    stack = np.stack([images[c] * rng.uniform(300.0, 1500.0) for c in _MSD_CHANNELS], axis=-1).astype(np.float32)
    affine = _brats_affine(shape)
    _save_nifti(stack, affine, out / folder / name)
    if labelled:
        _save_nifti(_MSD_LABEL[tissue], affine, out / "labelsTr" / name)


def _msd_dataset_json(num_training: int, num_test: int) -> dict:
    """The Task01_BrainTumour ``dataset.json`` for BRATS_001 ... (training) and the following ids (test)."""
    training = [
        {"image": f"./imagesTr/BRATS_{i:03d}.nii.gz", "label": f"./labelsTr/BRATS_{i:03d}.nii.gz"}
        for i in range(1, num_training + 1)
    ]
    test = [f"./imagesTs/BRATS_{i:03d}.nii.gz" for i in range(num_training + 1, num_training + num_test + 1)]
    return {
        "name": "BRATS",
        "description": "Gliomas segmentation tumour and oedema in on brain images (synthetic stand-in)",
        "reference": "synthetic stand-in for https://www.med.upenn.edu/sbia/brats2017.html",
        "licence": "synthetic data, no restrictions",
        "release": "synthetic 1.0",
        "tensorImageSize": "4D",
        "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": dict(MSD_BRATS_LABELS),
        "numTraining": num_training,
        "numTest": num_test,
        "training": training,
        "test": test,
    }


def make_brats(
    out_dir: str,
    layout: str = "brats2021",
    num_cases: int = 8,
    num_test: int | None = None,
    shape: Sequence[int] = (96, 96, 64),
    seed: int = 0,
) -> str:
    """Write a synthetic multi-contrast brain tumour data set in the BraTS 2021 or the MSD Task01 layout.

    - ``layout="brats2021"``: ``out_dir/BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz`` ...
      (the content of ``TrainingData``); int16 images, uint8 labels 1 NCR, 2 ED, 4 ET.
    - ``layout="msd"``: the content of ``Task01_BrainTumour``: ``imagesTr/BRATS_001.nii.gz`` (4-D float32,
      channel last: FLAIR, T1w, t1gd, T2w), ``labelsTr/BRATS_001.nii.gz`` (1 edema, 2 non-enhancing tumour,
      3 enhancing tumour), ``imagesTs/`` and ``dataset.json``.

    Args:
        out_dir: output folder (created).
        layout: ``"brats2021"`` or ``"msd"``.
        num_cases: labelled cases.
        num_test: unlabelled test cases, MSD only (default 2); must be None or 0 for ``brats2021``.
        shape: array shape (x, y, z) of every case (real data: 240 x 240 x 155), 1 mm isotropic.
        seed: random seed; the same seed gives byte-identical files.

    Returns:
        ``out_dir`` as a string.
    """
    out = Path(out_dir)
    shape = _as_shape(shape, 3)
    if layout == "brats2021":
        if num_test:
            raise ValueError("the BraTS 2021 training layout has no unlabelled test cases; use num_test=None.")
        for index in range(num_cases):
            _write_brats2021_case(out, index, shape, seed)
    elif layout == "msd":
        num_test = 2 if num_test is None else int(num_test)
        for index in range(1, num_cases + 1):
            _write_msd_case(out, index, shape, seed, labelled=True)
        for index in range(num_cases + 1, num_cases + num_test + 1):
            _write_msd_case(out, index, shape, seed, labelled=False)
        _write_json(_msd_dataset_json(num_cases, num_test), out / "dataset.json")
    else:
        raise ValueError(f"layout must be 'brats2021' or 'msd', got {layout!r}.")
    return str(out)


# ----------------------------------------------------------------------------------------------------------------
# NIH ChestX-ray14: frontal chest radiographs with 14 findings
# ----------------------------------------------------------------------------------------------------------------

CXR14_FINDINGS = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Hernia",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pleural_Thickening",
    "Pneumonia",
    "Pneumothorax",
)
NO_FINDING = "No Finding"
# number of images per finding in Data_Entry_2017 (used when balanced=False)
_CXR14_COUNTS = {
    "Atelectasis": 11559,
    "Cardiomegaly": 2776,
    "Consolidation": 4667,
    "Edema": 2303,
    "Effusion": 13317,
    "Emphysema": 2516,
    "Fibrosis": 1686,
    "Hernia": 227,
    "Infiltration": 19894,
    "Mass": 5782,
    "Nodule": 6331,
    "Pleural_Thickening": 3385,
    "Pneumonia": 1431,
    "Pneumothorax": 5302,
}
CXR14_COLUMNS = (
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
)


@dataclass
class _Chest:
    """Grids, anatomy parameters and the image of one radiograph while it is drawn (intensities 0-255).

    ``x`` runs from the image left (patient right in a PA view) to the image right, ``y`` from top to bottom,
    both in [-1, 1].
    """

    x: np.ndarray
    y: np.ndarray
    image: np.ndarray
    lungs: list[tuple[np.ndarray, float, float, float, float]]  # (mask, cx, cy, ax, ay) for image left, right
    heart_scale: float = 1.0
    lung_height: float = 1.0
    lung_shift: float = 0.0
    lung_darkening: float = 0.0

    def lung_mask(self) -> np.ndarray:
        """Union of both lung fields."""
        return self.lungs[0][0] | self.lungs[1][0]

    def lung_values(self) -> np.ndarray:
        """1 inside the lungs, 0 outside (float)."""
        return self.lung_mask().astype(np.float32)


def _ellipse(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0
) -> np.ndarray:
    """Normalised elliptic radius (<= 1 inside) of a rotated ellipse on 2-D open grids."""
    dx, dy = x - cx, y - cy
    cos, sin = np.cos(angle), np.sin(angle)
    return np.sqrt(((cos * dx + sin * dy) / ax) ** 2 + ((-sin * dx + cos * dy) / ay) ** 2)


def _draw_lungs(chest: _Chest, rng: np.random.Generator, ap: bool) -> None:
    """Draw both lung fields with vascular markings brightening towards the hila; record them in ``chest.lungs``."""
    x, y, size = chest.x, chest.y, chest.image.shape[0]
    markings = _smooth_noise(rng, (size, size), (24, 24))
    height = chest.lung_height * (0.93 if ap else 1.0)
    lung_value = rng.uniform(55, 75) - chest.lung_darkening
    chest.lungs = []
    for side in (-1.0, 1.0):
        cx, cy = side * rng.uniform(0.38, 0.42), -0.08 + chest.lung_shift + (1.0 - height) * 0.3
        ax, ay = rng.uniform(0.28, 0.31) * (1.0 + 0.6 * (chest.lung_height - 1.0)), 0.62 * height
        mask = _ellipse(x, y, cx, cy, ax, ay, -side * 0.14) <= 1.0
        hilum = np.exp(-((x - side * 0.17) ** 2 + (y - 0.0) ** 2) / 0.06)
        chest.image[mask] = (lung_value + 6.0 * markings + 30.0 * hilum)[mask]
        chest.lungs.append((mask, cx, cy, ax, ay))


def _draw_heart(chest: _Chest, rng: np.random.Generator, trunk: np.ndarray, ap: bool) -> np.ndarray:
    """Draw mediastinum and heart (left of the patient's midline, larger in AP views); return their mask."""
    x, y = chest.x, chest.y
    mediastinum = (np.abs(x - 0.02) < 0.1) & (y < 0.25) & trunk
    chest.image[mediastinum] = 170.0
    scale = chest.heart_scale * (1.1 if ap else 1.0)
    heart = _ellipse(x, y, 0.1, 0.26, 0.3 * scale, 0.24 * scale, -0.35) <= 1.0
    chest.image[heart] = rng.uniform(180, 200)
    return mediastinum | heart


def _draw_bones(chest: _Chest, trunk: np.ndarray) -> None:
    """Add spine, posterior rib arcs and clavicles."""
    x, y = chest.x, chest.y
    spine = np.abs(x) < 0.065
    chest.image += 30.0 * (spine & trunk) * (0.8 + 0.2 * np.cos(y * np.pi / 0.09))
    rib_phase = (y + 0.62 - 0.55 * (np.abs(x) - 0.05) ** 2) / 0.13
    ribs = (np.abs(x) > 0.05) & (np.abs(x) < 0.8) & (rib_phase >= 0) & (rib_phase < 9) & (rib_phase % 1.0 < 0.25)
    chest.image += 22.0 * (ribs & trunk)
    clavicles = (np.abs(y + 0.74 - 0.12 * (np.abs(x) - 0.1)) < 0.03) & (np.abs(x) > 0.08) & (np.abs(x) < 0.62)
    chest.image += 40.0 * clavicles


def _cxr_anatomy(chest: _Chest, rng: np.random.Generator, view: str) -> None:
    """Draw a normal chest: trunk, lungs, mediastinum and heart, bones and (sometimes) the gastric bubble.

    The lung masks kept in ``chest.lungs`` exclude the heart and mediastinum, so lung findings stay in the lungs.
    """
    x, y = chest.x, chest.y
    ap = view == "AP"
    chest.image[:] = rng.uniform(15, 35)
    trunk = _ellipse(x, y, 0.0, 0.35, rng.uniform(0.9, 0.98), 1.8) <= 1.0
    chest.image[trunk] = rng.uniform(120, 145)
    _draw_lungs(chest, rng, ap)
    central = _draw_heart(chest, rng, trunk, ap)
    chest.lungs = [(mask & ~central, *geometry) for mask, *geometry in chest.lungs]
    _draw_bones(chest, trunk)
    if rng.random() < 0.6:
        chest.image[_ellipse(x, y, 0.4, 0.7, 0.09, 0.05) <= 1.0] = 60.0


def _lesion_site(
    chest: _Chest, rng: np.random.Generator, low: float = -0.6, high: float = 0.6
) -> tuple[float, float, int]:
    """A random point in the lateral part of one lung (clear of the heart): (x, y, side index).

    ``y`` lies between ``low`` and ``high`` times the lung's vertical semi-axis from its centre.
    """
    side = int(rng.integers(2))
    _, cx, cy, ax, ay = chest.lungs[side]
    px = cx + (1.0 if side else -1.0) * rng.uniform(-0.2, 0.5) * ax
    py = cy + rng.uniform(low, high) * ay
    return px, py, side


def _disc(chest: _Chest, rng: np.random.Generator, radius: tuple[float, float], brightness: float) -> None:
    """Add a bright, soft-edged disc centred inside a lung (nodule or mass)."""
    px, py, _ = _lesion_site(chest, rng)
    r = rng.uniform(*radius)
    d = np.sqrt((chest.x - px) ** 2 + (chest.y - py) ** 2) / r
    chest.image += brightness * np.clip(1.5 - d, 0.0, 1.0) ** 0.5


def _patchy(
    chest: _Chest,
    rng: np.random.Generator,
    centre: tuple[float, float],
    radius: float,
    cells: int,
    fill: float,
    brightness: float,
) -> None:
    """Add an opacity with an irregular outline around ``centre``, restricted to the lungs.

    Args:
        chest: the radiograph being drawn.
        rng: random generator.
        centre: centre (x, y) in normalised image coordinates.
        radius: mean radius of the outline.
        cells: coarseness of the patch texture (more cells, smaller patches).
        fill: fraction of the outline that is opaque (1 homogeneous, lower values patchier).
        brightness: grey levels added.
    """
    size = chest.image.shape[0]
    d = np.sqrt((chest.x - centre[0]) ** 2 + (chest.y - centre[1]) ** 2) / radius
    outline = (1.0 - d + 0.3 * _smooth_noise(rng, (size, size), (8, 8))) > 0.0
    texture = _smooth_noise(rng, (size, size), (cells, cells))
    patches = texture >= np.quantile(texture[outline], 1.0 - fill) if outline.any() else outline
    chest.image += brightness * (outline & patches) * chest.lung_values()


def _nodule(chest: _Chest, rng: np.random.Generator) -> None:
    """Nodule: small bright disc (about 2-3 cm at the nominal 0.35 mm pixel of a 1024 image)."""
    _disc(chest, rng, (0.065, 0.09), 100.0)


def _mass(chest: _Chest, rng: np.random.Generator) -> None:
    """Mass: larger bright disc (about 4.5-6.5 cm)."""
    _disc(chest, rng, (0.13, 0.18), 80.0)


def _effusion(chest: _Chest, rng: np.random.Generator) -> None:
    """Effusion: homogeneous basal opacity with a meniscus rising laterally, one or both sides."""
    sides = [0, 1] if rng.random() < 0.4 else [int(rng.integers(2))]
    for side in sides:
        mask, cx, cy, ax, ay = chest.lungs[side]
        level = cy + ay * rng.uniform(0.35, 0.55) - 0.5 * (np.abs(chest.x - cx) / ax) ** 2 * ay * 0.35
        fluid = mask & (chest.y > level) & ((chest.x - cx) * (1 if side else -1) > -ax)
        chest.image[fluid] = np.maximum(chest.image[fluid], 165.0)


def _pneumothorax(chest: _Chest, rng: np.random.Generator) -> None:
    """Pneumothorax: apico-lateral lucent rim without markings, bounded by a thin bright pleural line."""
    side = int(rng.integers(2))
    mask, cx, cy, ax, ay = chest.lungs[side]
    sign = 1.0 if side else -1.0
    shrink = rng.uniform(0.7, 0.8)
    inner = _ellipse(chest.x, chest.y, cx - sign * ax * (1 - shrink), cy + ay * (1 - shrink), ax * shrink, ay * shrink)
    rim = mask & (inner > 1.0)
    chest.image[rim] = 12.0
    line = mask & (np.abs(inner - 1.0) < 0.025)
    chest.image[line] = 150.0


def _pleural_thickening(chest: _Chest, rng: np.random.Generator) -> None:
    """Pleural thickening: a bright band along the lateral and apical pleura."""
    side = int(rng.integers(2))
    mask, cx, cy, ax, ay = chest.lungs[side]
    sign = 1.0 if side else -1.0
    r = _ellipse(chest.x, chest.y, cx, cy, ax, ay, -sign * 0.14)
    band = mask & (r > 0.78) & ((chest.x - cx) * sign > -0.2 * ax) & (chest.y < cy + 0.5 * ay)
    chest.image[band] = 165.0


def _atelectasis(chest: _Chest, rng: np.random.Generator) -> None:
    """Atelectasis: wedge-like linear opacity in a lower zone (the volume loss is drawn by ``_cxr_modifiers``)."""
    px, py, _ = _lesion_site(chest, rng, 0.1, 0.5)
    angle = rng.uniform(-0.5, 0.5)
    plate = _ellipse(chest.x, chest.y, px, py, rng.uniform(0.16, 0.22), 0.045, angle) <= 1.0
    chest.image[plate & chest.lung_mask()] = 150.0


def _consolidation(chest: _Chest, rng: np.random.Generator) -> None:
    """Consolidation: dense, nearly homogeneous lobar opacity."""
    px, py, _ = _lesion_site(chest, rng, -0.4, 0.4)
    _patchy(chest, rng, (px, py), rng.uniform(0.2, 0.26), 6, 0.95, 85.0)


def _pneumonia(chest: _Chest, rng: np.random.Generator) -> None:
    """Pneumonia: patchy lower-zone opacity with air bronchograms."""
    px, py, _ = _lesion_site(chest, rng, 0.1, 0.5)
    radius = rng.uniform(0.18, 0.24)
    _patchy(chest, rng, (px, py), radius, 10, 0.6, 75.0)
    d = np.sqrt((chest.x - px) ** 2 + (chest.y - py) ** 2) / radius
    bronchi = (np.abs(np.sin((chest.x - px) * 40.0 + (chest.y - py) * 12.0)) < 0.15) & (d < 0.8)
    chest.image[bronchi & chest.lung_mask()] -= 35.0


def _infiltration(chest: _Chest, rng: np.random.Generator) -> None:
    """Infiltration: faint, ill-defined opacities scattered over both lungs."""
    size = chest.image.shape[0]
    blobs = _smooth_noise(rng, (size, size), (14, 14))
    chest.image += 50.0 * np.clip(blobs - 0.2, 0.0, 1.0) * chest.lung_values()


def _edema(chest: _Chest, rng: np.random.Generator) -> None:
    """Edema: bilateral perihilar ("bat-wing") haze."""
    haze = sum(np.exp(-((chest.x - s * 0.25) ** 2 / 0.05 + (chest.y - 0.05) ** 2 / 0.12)) for s in (-1.0, 1.0))
    chest.image += rng.uniform(55, 65) * haze * chest.lung_values()


def _fibrosis(chest: _Chest, rng: np.random.Generator) -> None:
    """Fibrosis: coarse reticular texture at both bases."""
    size = chest.image.shape[0]
    mesh = np.abs(_smooth_noise(rng, (size, size), (28, 28))) < 0.35
    basal = np.clip((chest.y + 0.05) / 0.35, 0.0, 1.0)
    chest.image += 55.0 * mesh * basal * chest.lung_values()


def _hernia(chest: _Chest, rng: np.random.Generator) -> None:
    """Hiatus hernia: round retrocardiac density with an air-fluid level."""
    cx, cy, r = rng.uniform(-0.02, 0.08), rng.uniform(0.22, 0.3), rng.uniform(0.11, 0.14)
    inside = _ellipse(chest.x, chest.y, cx, cy, r, r) <= 1.0
    chest.image[inside] = 235.0
    chest.image[inside & (chest.y < cy - 0.1 * r)] = 40.0


_FINDING_PAINTERS: dict[str, Callable[[_Chest, np.random.Generator], None]] = {
    "Atelectasis": _atelectasis,
    "Cardiomegaly": lambda chest, rng: None,  # drawn by _cxr_modifiers (enlarged heart)
    "Consolidation": _consolidation,
    "Edema": _edema,
    "Effusion": _effusion,
    "Emphysema": lambda chest, rng: None,  # drawn by _cxr_modifiers (large, dark lungs)
    "Fibrosis": _fibrosis,
    "Hernia": _hernia,
    "Infiltration": _infiltration,
    "Mass": _mass,
    "Nodule": _nodule,
    "Pleural_Thickening": _pleural_thickening,
    "Pneumonia": _pneumonia,
    "Pneumothorax": _pneumothorax,
}


def _cxr_modifiers(chest: _Chest, findings: Sequence[str], rng: np.random.Generator) -> None:
    """Anatomy changes of findings that act before drawing: enlarged heart, hyperinflation, volume loss."""
    if "Cardiomegaly" in findings:
        chest.heart_scale = rng.uniform(1.4, 1.55)
    if "Emphysema" in findings:
        chest.lung_height, chest.lung_darkening = rng.uniform(1.12, 1.18), 28.0
        chest.lung_shift = 0.04
    if "Atelectasis" in findings:
        chest.lung_height *= rng.uniform(0.88, 0.92)


def chest_xray_phantom(
    size: int = 1024, findings: Sequence[str] = (), view: str = "PA", seed: int | Sequence[int] = 0
) -> np.ndarray:
    """One frontal chest radiograph with the given ChestX-ray14 findings.

    The normal anatomy depends only on ``seed`` and ``view``; each finding draws from its own random stream, so
    an image with a finding differs from the same seed's normal image only by that finding's trace:
    Cardiomegaly enlarged heart, Emphysema larger darker lungs, Atelectasis linear opacity and volume loss,
    Effusion basal opacity with meniscus, Pneumothorax lucent apico-lateral rim with pleural line, Nodule small
    bright disc, Mass large disc, Consolidation dense patch, Pneumonia patchy basal opacity with air
    bronchograms, Infiltration faint scattered opacities, Edema perihilar haze, Fibrosis basal reticulation,
    Pleural_Thickening lateral pleural band, Hernia retrocardiac density with an air-fluid level.

    Args:
        size: image side in pixels.
        findings: finding names from ``CXR14_FINDINGS`` (empty or ``["No Finding"]`` for a normal image).
        view: ``"PA"`` or ``"AP"`` (AP: larger heart, lower inspiration).
        seed: integer or sequence of integers seeding the anatomy.

    Returns:
        uint8 array of shape (size, size).
    """
    findings = [f for f in findings if f != NO_FINDING]
    unknown = set(findings) - set(CXR14_FINDINGS)
    if unknown:
        raise ValueError(f"unknown findings {sorted(unknown)}.")
    seq = [int(s) for s in np.atleast_1d(seed)]
    rng = np.random.default_rng(seq)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / (size / 2.0) - 1.0
    chest = _Chest(x=coords[None, :], y=coords[:, None], image=np.zeros((size, size), np.float32), lungs=[])
    _cxr_modifiers(chest, findings, np.random.default_rng(seq + [99]))
    _cxr_anatomy(chest, rng, view)
    for finding in sorted(findings):
        _FINDING_PAINTERS[finding](chest, np.random.default_rng(seq + [CXR14_FINDINGS.index(finding)]))
    image = chest.image * (1.0 + 0.08 * chest.y)  # mild vertical exposure gradient
    if size >= 256:
        image = gaussian_filter(image, sigma=size / 512.0)
    image += rng.normal(0.0, rng.uniform(2.0, 4.0), image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _draw_findings(rng: np.random.Generator, no_finding_fraction: float, balanced: bool) -> list[str]:
    """Finding list of one image: ``["No Finding"]`` or 1-3 distinct findings (uniform or real prevalence)."""
    if rng.random() < no_finding_fraction:
        return [NO_FINDING]
    weights = np.ones(len(CXR14_FINDINGS)) if balanced else np.array([_CXR14_COUNTS[f] for f in CXR14_FINDINGS], float)
    count = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    chosen = rng.choice(len(CXR14_FINDINGS), size=count, replace=False, p=weights / weights.sum())
    return [CXR14_FINDINGS[i] for i in sorted(chosen)]


def _assign_follow_ups(rng: np.random.Generator, num_images: int, num_patients: int) -> list[tuple[int, int]]:
    """(patient id, follow-up number) per image: every patient has at least one image, the rest are spread randomly."""
    extra = rng.multinomial(num_images - num_patients, rng.dirichlet(np.full(num_patients, 0.5)))
    return [(patient + 1, follow_up) for patient in range(num_patients) for follow_up in range(1 + extra[patient])]


def _split_patients(rng: np.random.Generator, num_patients: int, test_fraction: float) -> set[int]:
    """Patient ids of the test split (at least one patient, and at least one left for train/val, if possible)."""
    num_test = int(round(num_patients * test_fraction))
    if num_patients >= 2:
        num_test = min(max(num_test, 1), num_patients - 1)
    return {int(p) + 1 for p in rng.permutation(num_patients)[:num_test]}


def _patient_metadata(rng: np.random.Generator) -> tuple[int, str, int, float]:
    """Age at the first study, gender, original image width (pixels) and pixel spacing (mm) of one patient."""
    age = int(rng.integers(18, 86))
    gender = str(rng.choice(["M", "F"]))
    return age, gender, int(rng.integers(2000, 3057)), float(rng.choice([0.139, 0.143, 0.168]))


def make_cxr14(
    out_dir: str,
    num_images: int = 100,
    num_patients: int | None = None,
    size: int = 1024,
    seed: int = 0,
    no_finding_fraction: float = 0.5,
    test_fraction: float = 0.25,
    balanced: bool = True,
) -> str:
    """Write a synthetic chest radiograph data set in the NIH ChestX-ray14 layout.

    ``images/00000001_000.png`` ... (8-bit grey, ``size`` x ``size``), ``Data_Entry_2017.csv`` with the real
    11-field header, ``train_val_list.txt`` and ``test_list.txt`` (patient-wise split). Patient metadata (age,
    gender, view, original size and pixel spacing) is random but plausible and constant per patient where it
    should be.

    Args:
        out_dir: output folder (created).
        num_images: number of images.
        num_patients: number of patients (default: about num_images / 1.6, so several have follow-ups).
        size: image side in pixels (real data: 1024).
        seed: random seed; the same seed gives byte-identical files.
        no_finding_fraction: probability of an image being ``No Finding`` (real data: 0.54).
        test_fraction: fraction of patients in ``test_list.txt``.
        balanced: draw findings uniformly (True, learnable from few images) or with the real prevalence (False).

    Returns:
        ``out_dir`` as a string.
    """
    if num_patients is None:
        num_patients = max(1, int(round(num_images / 1.6)))
    if not 1 <= num_patients <= num_images:
        raise ValueError(f"need 1 <= num_patients <= num_images, got {num_patients} and {num_images}.")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = _case_rng(seed, _STREAM_CXR14, 0)
    cases = _assign_follow_ups(rng, num_images, num_patients)
    test_patients = _split_patients(rng, num_patients, test_fraction)
    patients = {p: _patient_metadata(rng) for p in range(1, num_patients + 1)}
    rows, train_val, test = [], [], []
    for patient, follow_up in cases:
        case_seed = [int(seed), _STREAM_CXR14, patient, follow_up]
        case_rng = np.random.default_rng(case_seed + [0])
        findings = _draw_findings(case_rng, no_finding_fraction, balanced)
        view = "PA" if case_rng.random() < 0.6 else "AP"
        name = f"{patient:08d}_{follow_up:03d}.png"
        pixels = chest_xray_phantom(size, findings, view, case_seed + [1])
        Image.fromarray(pixels).save(out / "images" / name)
        age, gender, width, spacing = patients[patient]
        height = width + int(case_rng.integers(-60, 61))
        age = min(age + follow_up // 3, 95)
        rows.append([name, "|".join(findings), follow_up, patient, age, gender, view, width, height, spacing, spacing])
        (test if patient in test_patients else train_val).append(name)
    with open(out / "Data_Entry_2017.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(CXR14_COLUMNS)
        writer.writerows(rows)
    (out / "train_val_list.txt").write_text("".join(n + "\n" for n in train_val))
    (out / "test_list.txt").write_text("".join(n + "\n" for n in test))
    return str(out)


if __name__ == "__main__":
    fire.Fire({"btcv": make_btcv, "brats": make_brats, "cxr14": make_cxr14})
