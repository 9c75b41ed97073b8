"""NIH ChestX-ray14-layout frontal chest radiographs with the 14 findings."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from .common import STREAM_CXR14, case_rng, prepare_output_folder, smooth_noise

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
    markings = smooth_noise(rng, (size, size), (24, 24))
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
    outline = (1.0 - d + 0.3 * smooth_noise(rng, (size, size), (8, 8))) > 0.0
    texture = smooth_noise(rng, (size, size), (cells, cells))
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
    blobs = smooth_noise(rng, (size, size), (14, 14))
    chest.image += 50.0 * np.clip(blobs - 0.2, 0.0, 1.0) * chest.lung_values()


def _edema(chest: _Chest, rng: np.random.Generator) -> None:
    """Edema: bilateral perihilar ("bat-wing") haze."""
    haze = sum(np.exp(-((chest.x - s * 0.25) ** 2 / 0.05 + (chest.y - 0.05) ** 2 / 0.12)) for s in (-1.0, 1.0))
    chest.image += rng.uniform(55, 65) * haze * chest.lung_values()


def _fibrosis(chest: _Chest, rng: np.random.Generator) -> None:
    """Fibrosis: coarse reticular texture at both bases."""
    size = chest.image.shape[0]
    mesh = np.abs(smooth_noise(rng, (size, size), (28, 28))) < 0.35
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
    if isinstance(size, bool) or int(size) != size or size < 1:
        raise ValueError(f"size must be a whole number of pixels, at least 1, got {size!r}.")
    out = prepare_output_folder(out_dir)  # after the checks: a bad argument leaves an earlier set as it was
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = case_rng(seed, STREAM_CXR14, 0)
    cases = _assign_follow_ups(rng, num_images, num_patients)
    test_patients = _split_patients(rng, num_patients, test_fraction)
    patients = {p: _patient_metadata(rng) for p in range(1, num_patients + 1)}
    rows, train_val, test = [], [], []
    for patient, follow_up in cases:
        case_seed = [int(seed), STREAM_CXR14, patient, follow_up]
        image_rng = np.random.default_rng(case_seed + [0])
        findings = _draw_findings(image_rng, no_finding_fraction, balanced)
        view = "PA" if image_rng.random() < 0.6 else "AP"
        name = f"{patient:08d}_{follow_up:03d}.png"
        pixels = chest_xray_phantom(size, findings, view, case_seed + [1])
        Image.fromarray(pixels).save(out / "images" / name)
        age, gender, width, spacing = patients[patient]
        height = width + int(image_rng.integers(-60, 61))
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
