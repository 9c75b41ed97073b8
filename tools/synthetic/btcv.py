"""BTCV-layout abdominal CT phantoms with the 13 organ labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

from .common import (
    STREAM_BTCV,
    Grid,
    as_shape,
    bezier,
    case_rng,
    ellipsoid,
    paint,
    prepare_output_folder,
    save_nifti,
    smooth_noise,
    tube,
    write_json,
)

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

# mean Hounsfield units per BTCV label id in the two contrast phases of abdominal CT: arterial (bright aorta and renal
# cortex, unopacified IVC, patchy spleen) and portal-venous (the BTCV protocol)
_PHASE_HU = {
    "arterial": {1: 110, 2: 200, 3: 200, 4: 10, 5: 40, 6: 75, 7: 40, 8: 320, 9: 70, 10: 120, 11: 110, 12: 60, 13: 60},
    "portal_venous": {1: 120, 2: 180, 3: 180, 4: 10, 5: 40, 6: 110, 7: 40, 8: 180, 9: 130, 10: 160, 11: 100, 12: 60,
                      13: 60},
}
PHASES = tuple(_PHASE_HU)

# half-extents (mm) of the normalised anatomy: x and y of an adult abdomen (body ~300 x 210 mm in-plane at scale 1),
# z of the abdominal field of a BTCV scan; organ positions and sizes below are fractions of these
BODY_HALF_EXTENT_MM = (175.0, 175.0, 150.0)


@dataclass
class _CtCase:
    """Mutable state of one CT phantom while it is painted."""

    grid: Grid
    spacing: tuple[float, float, float]
    rng: np.random.Generator
    hu: np.ndarray
    label: np.ndarray
    scale: float
    z_shift: float
    hu_offset: float
    phase: str

    def place(self, centre: Sequence[float], jitter: Sequence[float] = (0.05, 0.05, 0.06)) -> np.ndarray:
        """Case-specific position of an anatomical centre: body scaling, craniocaudal shift and jitter."""
        c = np.asarray(centre, dtype=float) * np.array([self.scale, self.scale, 1.0])
        c[2] += self.z_shift
        return c + self.rng.uniform(-1.0, 1.0, 3) * np.asarray(jitter)

    def size(self, radii: Sequence[float], spread: float = 0.15) -> np.ndarray:
        """Case-specific semi-axes: body scaling and +-``spread`` relative jitter per axis."""
        r = np.asarray(radii, dtype=float) * np.array([self.scale, self.scale, 1.0])
        return r * self.rng.uniform(1.0 - spread, 1.0 + spread, 3)

    def organ_hu(self, label_id: int) -> float:
        """Mean HU of an organ in this case's contrast phase (global offset plus +-10 HU organ jitter)."""
        return _PHASE_HU[self.phase][label_id] + self.hu_offset + float(self.rng.uniform(-10, 10))


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
    texture = smooth_noise(rng, grid.shape, _cells(case, 32.0))
    visceral = np.where(texture > 0.4, -90.0, 30.0 + case.hu_offset)
    visceral = np.where((texture < -1.5) & (z < 0.3) & (y < 0.1), -900.0, visceral)  # bowel gas, intraperitoneal
    case.hu[cavity] = visceral[cavity]


def _btcv_lung_bases(case: _CtCase) -> None:
    """Paint the posterior lung bases that appear in the most cranial slices (image only, label 0)."""
    for side in (-1.0, 1.0):
        window, mask = ellipsoid(case.grid, case.place([0.45 * side, 0.25, 1.1]), case.size([0.3, 0.28, 0.35]))
        paint(case.hu, window, mask, -850.0)


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
    paint(case.label, window, mask, label_id)
    paint(case.hu, window, mask, case.organ_hu(label_id))


def _btcv_solid_organs(case: _CtCase) -> None:
    """Paint perirenal fat (image only), liver, spleen, stomach (wall, content, gas), kidneys and gallbladder.

    Coordinates: first axis towards the patient's left, second posterior, third superior (the voxel order of an
    LPS-oriented scan), normalised to the field of view.
    """
    grid, rng = case.grid, case.rng
    for side in (-1.0, 1.0):
        window, mask = ellipsoid(grid, case.place([0.3 * side, 0.34, 0.05], [0.0] * 3), case.size([0.2, 0.2, 0.5]))
        paint(case.hu, window, mask, -95.0)

    liver = ellipsoid(grid, case.place([-0.36, -0.08, 0.5]), case.size([0.42, 0.4, 0.48]), rng.uniform(-0.2, 0.2))
    _btcv_organ(case, 6, *liver)
    spleen = ellipsoid(grid, case.place([0.56, 0.26, 0.45]), case.size([0.14, 0.22, 0.3]), rng.uniform(-0.5, 0.0))
    _btcv_organ(case, 1, *spleen)

    centre, radii = case.place([0.3, -0.18, 0.5]), case.size([0.22, 0.2, 0.3])
    _btcv_organ(case, 7, *ellipsoid(grid, centre, radii, rng.uniform(-0.4, 0.0)))
    window, lumen = ellipsoid(grid, centre, radii * 0.7)
    paint(case.hu, window, lumen, 10.0 + case.hu_offset)
    if rng.random() < 0.5:  # gas rises anteriorly in a supine patient
        gas = lumen & (grid.coords(window)[1] < centre[1] - 0.3 * radii[1])
        paint(case.hu, window, gas, -900.0)

    for label_id, side, height in ((2, -1.0, -0.12), (3, 1.0, -0.02)):
        centre, radii = case.place([0.32 * side, 0.35, height]), case.size([0.13, 0.15, 0.36])
        angle = side * rng.uniform(0.2, 0.5)
        _btcv_organ(case, label_id, *ellipsoid(grid, centre, radii, angle))
        window, medulla = ellipsoid(grid, centre, radii * 0.55, angle)
        paint(case.hu, window, medulla, case.organ_hu(label_id) - 70.0)

    gall = ellipsoid(grid, case.place([-0.26, -0.34, 0.12]), case.size([0.09, 0.09, 0.2]), rng.uniform(-0.5, 0.5))
    _btcv_organ(case, 4, *gall)


def _btcv_tubular_organs(case: _CtCase) -> None:
    """Paint pancreas, portal/splenic veins, aorta, IVC and oesophagus as tubes along polylines."""
    grid = case.grid
    pancreas = np.stack([case.place(p) for p in ([-0.12, -0.02, 0.02], [0.1, 0.05, 0.08], [0.4, 0.14, 0.16])])
    _btcv_organ(case, 11, *tube(grid, bezier(pancreas), case.size([0.075, 0.075, 0.1], 0.1)))

    veins = np.stack([case.place(p) for p in ([-0.22, -0.02, 0.22], [0.05, 0.13, 0.23], [0.44, 0.22, 0.3])])
    _btcv_organ(case, 10, *tube(grid, bezier(veins), case.size([0.035, 0.035, 0.05], 0.1)))

    aorta = case.place([0.08, 0.22, 0.0], [0.02, 0.02, 0.0])
    path = np.array([[aorta[0], aorta[1], -1.2], [aorta[0] - 0.01, aorta[1] - 0.02, 1.2]])
    _btcv_organ(case, 8, *tube(grid, path, case.size([0.07, 0.07, 1.0], 0.1)))
    ivc = case.place([-0.12, 0.2, 0.0], [0.02, 0.02, 0.0])
    path = np.array([[ivc[0], ivc[1], -1.2], [ivc[0] - 0.03, ivc[1] - 0.04, 0.75 + case.z_shift]])
    _btcv_organ(case, 9, *tube(grid, path, case.size([0.07, 0.055, 1.0], 0.1)))

    cardia = case.place([0.14, 0.02, 0.6], [0.02, 0.02, 0.04])
    path = np.array([cardia, [0.04, 0.1, 0.9], [0.02, 0.12, 1.2]])
    _btcv_organ(case, 5, *tube(grid, path, case.size([0.045, 0.045, 1.0], 0.1)))


def _btcv_adrenals(case: _CtCase) -> None:
    """Paint the small, flat adrenal glands superomedial to the kidneys (last, so nothing covers them)."""
    for label_id, side, height in ((12, -1.0, 0.34), (13, 1.0, 0.42)):
        centre, radii = case.place([0.22 * side, 0.3, height]), case.size([0.06, 0.04, 0.13])
        _btcv_organ(case, label_id, *ellipsoid(case.grid, centre, radii, side * case.rng.uniform(0.3, 0.8)))


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


def _case_spacing(
    rng: np.random.Generator,
    shape: Sequence[int],
    field_of_view: Sequence[Sequence[float]],
    inplane_spacing: Sequence[float] | None,
    slice_spacing: Sequence[float] | None,
) -> tuple[float, float, float]:
    """Voxel spacing (mm) of one case: drawn from the given spacing ranges, else from the field-of-view ranges (mm,
    in-plane and craniocaudal) divided by the shape."""
    inplane_fov, axial_fov = field_of_view
    if inplane_spacing is None:
        inplane_spacing = (inplane_fov[0] / shape[0], inplane_fov[1] / shape[0])
    if slice_spacing is None:
        slice_spacing = (axial_fov[0] / shape[2], axial_fov[1] / shape[2])
    inplane = round(float(rng.uniform(*inplane_spacing)), 3)
    return inplane, inplane, round(float(rng.uniform(*slice_spacing)), 3)


def _organ_texture(case: _CtCase, amplitude: float) -> None:
    """Add smooth parenchymal heterogeneity (about ``amplitude`` HU) inside the labelled organs."""
    texture = smooth_noise(case.rng, case.grid.shape, _cells(case, 24.0)) * amplitude
    organs = case.label > 0
    case.hu[organs] += texture[organs]


def _cells(case: _CtCase, wavelength_mm: float, minimum: int = 4) -> list[int]:
    """Coarse nodes per axis of a smooth random field that varies over about ``wavelength_mm`` (physical, so that a
    case's random draws do not depend on its array shape)."""
    return [max(minimum, round(n * s / wavelength_mm)) for n, s in zip(case.grid.shape, case.spacing)]


def _deform(case: _CtCase, amplitude_mm: float, wavelength_mm: float) -> None:
    """Warp image and labels with one smooth random displacement field (about ``amplitude_mm`` per axis, varying over
    about ``wavelength_mm``): organ shapes and contacts differ from case to case beyond the ellipsoids' jitter."""
    shape = case.grid.shape
    cells = _cells(case, wavelength_mm, minimum=3)
    axes = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    source = [a + smooth_noise(case.rng, shape, cells) * (amplitude_mm / s) for a, s in zip(axes, case.spacing)]
    case.hu = map_coordinates(case.hu, source, order=1, mode="nearest").astype(np.float32)
    case.label = map_coordinates(case.label, source, order=0, mode="nearest").astype(np.uint8)


def btcv_phantom(
    shape: Sequence[int] = (128, 128, 64),
    rng: np.random.Generator | int = 0,
    inplane_spacing: Sequence[float] | None = None,
    slice_spacing: Sequence[float] | None = None,
    field_of_view: Sequence[Sequence[float]] = ((340.0, 420.0), (250.0, 310.0)),
    body_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One adult-sized abdominal CT phantom with the 13 BTCV organ labels.

    The anatomy is laid out in millimetres (``BODY_HALF_EXTENT_MM``), so the voxel spacing decides how much of it the
    array shows, not how large the organs are: body about 300 x 210 mm in-plane, liver about 1.5 l, spleen about
    180 ml, kidneys about 130 ml each, aorta about 24 mm wide (``tests/test_synthetic_data.py`` pins the ranges).
    Voxel axes point to the patient's left, posterior and superior (LPS voxel order), hence the negative x/y diagonal
    of the RAS affine. Organs are ellipsoids and tubes at anatomically plausible places (liver right-anterior, spleen
    left-posterior, paravertebral kidneys, aorta left-anterior of the vertebra, IVC to its right, pancreas and
    splenic/portal vein across the midline, adrenals above the kidneys, ...). What varies per case, as in real
    abdomens: body size (+-8 %), organ positions (+-9 mm), sizes (+-15 %) and orientation, a smooth random
    deformation of up to about 10 mm, the contrast phase (arterial or portal-venous), intensities (+-20 HU global,
    +-10 HU per organ), parenchymal texture and noise (5-25 HU). Every semi-axis spans at least 1.6 voxels so all
    labels survive small shapes.

    Args:
        shape: array shape (x, y, z), at least 16 per axis.
        rng: random generator or integer seed.
        inplane_spacing: range of the in-plane voxel size in mm (drawn per case, same for x and y); by default the
            in-plane field of view divided by the shape.
        slice_spacing: range of the slice spacing in mm (drawn per case); by default the craniocaudal field of view
            divided by the number of slices.
        field_of_view: ranges (mm) of the in-plane and the craniocaudal field of view, used where no spacing range
            is given; the default shows the whole abdomen like a BTCV scan.
        body_scale: size of the anatomy and of the field of view relative to an adult's (1). Smaller values give
            miniature phantoms whose resampled volumes stay small (fast tests of the bundles' plumbing); the study
            and the demo use adult phantoms.

    Returns:
        int16 image in HU, uint8 label map and the 4x4 affine (RAS world, mm).
    """
    shape = as_shape(shape, 3)
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    field_of_view = [[body_scale * mm for mm in axis] for axis in field_of_view]
    spacing = _case_spacing(rng, shape, field_of_view, inplane_spacing, slice_spacing)
    case = _CtCase(
        grid=Grid(shape, [s / (body_scale * h) for s, h in zip(spacing, BODY_HALF_EXTENT_MM)]),
        spacing=spacing,
        rng=rng,
        hu=np.full(shape, -1000.0, dtype=np.float32),
        label=np.zeros(shape, dtype=np.uint8),
        scale=float(rng.uniform(0.92, 1.08)),
        z_shift=float(rng.uniform(-0.38, -0.22)),  # the scan's centre lies some 45 mm above the kidneys
        hu_offset=float(rng.uniform(-20, 20)),
        phase=str(rng.choice(PHASES)),
    )
    _btcv_body(case)
    _btcv_lung_bases(case)
    _btcv_spine(case)
    _btcv_solid_organs(case)  # organs are painted in a fixed order, later ones overwrite (labels never overlap)
    _btcv_tubular_organs(case)
    _btcv_adrenals(case)
    _organ_texture(case, float(rng.uniform(4.0, 12.0)))
    _deform(case, body_scale * float(rng.uniform(4.0, 10.0)), body_scale * 60.0)
    sigma = [min(0.7, 0.7 * 3.0 * body_scale / s) for s in spacing]  # scanner blur of ~2 mm, at most 0.7 voxels
    hu = gaussian_filter(case.hu, sigma=sigma)
    hu += rng.normal(0.0, rng.uniform(5.0, 25.0), shape).astype(np.float32)
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
    inplane_spacing: Sequence[float] | None = None,
    slice_spacing: Sequence[float] | None = None,
    field_of_view: Sequence[Sequence[float]] = ((340.0, 420.0), (250.0, 310.0)),
    body_scale: float = 1.0,
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
        inplane_spacing: range of the in-plane voxel size in mm, drawn per case (see :func:`btcv_phantom`).
        slice_spacing: range of the slice spacing in mm, drawn per case.
        field_of_view: ranges of the in-plane and craniocaudal field of view in mm, where no spacing is given.
        body_scale: 1 for adult phantoms; smaller for miniature ones (fast tests), see :func:`btcv_phantom`.

    Returns:
        ``out_dir`` as a string.
    """
    shape = as_shape(shape, 3)
    out = prepare_output_folder(out_dir)  # after the checks: a bad argument leaves an earlier set as it was
    labelled, test = _btcv_ids(num_train + num_val, num_test)
    entries = []
    for case_id in labelled:
        rng = case_rng(seed, STREAM_BTCV, case_id)
        image, label, affine = btcv_phantom(shape, rng, inplane_spacing, slice_spacing, field_of_view, body_scale)
        entry = {"image": f"imagesTr/img{case_id:04d}.nii.gz", "label": f"labelsTr/label{case_id:04d}.nii.gz"}
        save_nifti(image, affine, out / entry["image"])
        save_nifti(label, affine, out / entry["label"])
        entries.append(entry)
    test_entries = []
    for case_id in test:
        rng = case_rng(seed, STREAM_BTCV, case_id)
        image, _, affine = btcv_phantom(shape, rng, inplane_spacing, slice_spacing, field_of_view, body_scale)
        test_entries.append(f"imagesTs/img{case_id:04d}.nii.gz")
        save_nifti(image, affine, out / test_entries[-1])
    datalist = {
        "description": f"synthetic btcv-like abdominal CT phantoms (python -m tools.synthetic, seed {seed})",
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
    write_json(datalist, out / "dataset_0.json")
    return str(out)
