"""BraTS 2021 / MSD Task01-layout multi-contrast brain MRI phantoms with glioma sub-regions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from .common import (
    STREAM_BRATS,
    Grid,
    as_shape,
    case_rng,
    ellipsoid,
    paint,
    prepare_output_folder,
    save_nifti,
    smooth_noise,
    write_json,
)

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


def _brain_tissues(grid: Grid, rng: np.random.Generator) -> np.ndarray:
    """Skull-stripped brain as nested ellipsoids: CSF rim, folded grey-matter cortex, white matter, ventricles."""
    full = tuple(slice(0, n) for n in grid.shape)
    x, y, z = grid.coords(full)
    axes = np.array([0.74, 0.86, 0.8]) * rng.uniform(0.93, 1.05, 3)
    centre = np.array([0.0, 0.02, -0.04]) + rng.uniform(-0.03, 0.03, 3)
    rho = np.sqrt(sum(((c - centre[i]) / axes[i]) ** 2 for i, c in enumerate((x, y, z))))
    coarse = smooth_noise(rng, grid.shape, [5, 5, 4])
    gyri = smooth_noise(rng, grid.shape, [max(6, n // 6) for n in grid.shape])
    rho = rho + 0.025 * coarse
    tissue = np.zeros(grid.shape, dtype=np.uint8)
    tissue[rho <= 1.0] = _CSF
    tissue[rho <= 0.95 + 0.02 * gyri] = _GM
    tissue[rho <= 0.78 + 0.07 * gyri] = _WM
    fissure = (np.abs(x - centre[0]) < max(0.015, 0.7 / grid.half[0])) & (z > centre[2]) & (rho > 0.35) & (rho <= 1.0)
    tissue[fissure] = _CSF
    for side in (-1.0, 1.0):
        deep = centre + np.array([0.17 * side, 0.06, -0.05])
        window, mask = ellipsoid(grid, deep, np.array([0.08, 0.12, 0.1]) * axes)
        paint(tissue, window, mask, _GM)
        horn = centre + np.array([0.1 * side, -0.04, 0.12])
        window, mask = ellipsoid(grid, horn, np.array([0.07, 0.32, 0.12]) * axes, side * rng.uniform(0.0, 0.15))
        paint(tissue, window, mask, _CSF)
    return tissue


def _tumour_centre(grid: Grid, tissue: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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
    grid = Grid(tissue.shape)
    size = float(grid.half.min())
    centre = _tumour_centre(grid, tissue, rng)
    r_core = max(rng.uniform(0.08, 0.14) * size, 2.0)
    r_rim = r_core + max(rng.uniform(0.05, 0.08) * size, 1.5)
    r_edema = r_rim + max(rng.uniform(0.15, 0.3) * size, 3.0)
    idx = np.ogrid[tuple(slice(0, n) for n in tissue.shape)]
    dist = np.sqrt(sum((i - c) ** 2 for i, c in zip(idx, centre)))
    wobble = np.clip(smooth_noise(rng, tissue.shape, [max(5, n // 5) for n in tissue.shape]), -2.0, 2.0)
    brain = tissue != _BG
    edema = brain & (dist <= r_edema * (1.0 + 0.25 * wobble)) & ((tissue == _WM) | (dist <= 0.7 * r_edema))
    tissue[edema] = _ED
    tissue[brain & (dist <= r_rim * (1.0 + 0.12 * wobble))] = _ET
    tissue[brain & (dist <= r_core * (1.0 + 0.12 * wobble))] = _NCR


def _bias_field(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    """Smooth multiplicative bias field (exponential of a random quadratic polynomial)."""
    x, y, z = Grid(shape).coords(tuple(slice(0, n) for n in shape))
    c = [float(v) for v in rng.normal(0.0, 0.12, 6)]
    return np.exp(c[0] * x + c[1] * y + c[2] * z + c[3] * x * x + c[4] * y * y + c[5] * x * y).astype(np.float32)


def _mr_contrast(tissue: np.ndarray, column: int, rng: np.random.Generator) -> np.ndarray:
    """One MR contrast: class intensities with texture, partial-volume blur, bias field and Rician noise."""
    base = _MR_INTENSITY[tissue, column]
    texture = smooth_noise(rng, tissue.shape, [max(6, n // 6) for n in tissue.shape])
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
    shape = as_shape(shape, 3)
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    tissue = _brain_tissues(Grid(shape), rng)
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
    rng = case_rng(seed, STREAM_BRATS, index)
    images, tissue = brain_tumour_phantom(shape, rng)
    case = f"BraTS2021_{index:05d}"
    affine = _brats_affine(shape)
    for name in _CONTRASTS:
        gain = rng.uniform(600.0, 2500.0)
        save_nifti(np.rint(images[name] * gain).astype(np.int16), affine, out / case / f"{case}_{name}.nii.gz")
    save_nifti(_BRATS2021_LABEL[tissue], affine, out / case / f"{case}_seg.nii.gz")


def _write_msd_case(out: Path, index: int, shape: Sequence[int], seed: int, labelled: bool) -> None:
    """Write ``imagesTr|imagesTs/BRATS_<index>.nii.gz`` (4-D float32, channel last) and, if labelled, the label."""
    rng = case_rng(seed, STREAM_BRATS, index)
    images, tissue = brain_tumour_phantom(shape, rng)
    name = f"BRATS_{index:03d}.nii.gz"
    folder = "imagesTr" if labelled else "imagesTs"
    stack = np.stack([images[c] * rng.uniform(300.0, 1500.0) for c in _MSD_CHANNELS], axis=-1).astype(np.float32)
    affine = _brats_affine(shape)
    save_nifti(stack, affine, out / folder / name)
    if labelled:
        save_nifti(_MSD_LABEL[tissue], affine, out / "labelsTr" / name)


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
    shape = as_shape(shape, 3)
    _check_layout(layout, num_test)
    out = prepare_output_folder(out_dir)  # after the checks: a bad argument leaves an earlier set as it was
    if layout == "brats2021":
        for index in range(num_cases):
            _write_brats2021_case(out, index, shape, seed)
    else:
        num_test = 2 if num_test is None else int(num_test)
        for index in range(1, num_cases + 1):
            _write_msd_case(out, index, shape, seed, labelled=True)
        for index in range(num_cases + 1, num_cases + num_test + 1):
            _write_msd_case(out, index, shape, seed, labelled=False)
        write_json(_msd_dataset_json(num_cases, num_test), out / "dataset.json")
    return str(out)


def _check_layout(layout: str, num_test: int | None) -> None:
    """Raises ValueError for a layout other than ``"brats2021"`` or ``"msd"``, or test cases in ``"brats2021"``."""
    if layout not in ("brats2021", "msd"):
        raise ValueError(f"layout must be 'brats2021' or 'msd', got {layout!r}.")
    if layout == "brats2021" and num_test:
        raise ValueError("the BraTS 2021 training layout has no unlabelled test cases; use num_test=None.")
