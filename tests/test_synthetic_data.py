"""Tests of the synthetic data sets (``tools/synthetic``, command line ``python -m tools.synthetic``): layouts,
datalists, MONAI loading, label sets, affines, determinism, CLI."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from monai.transforms import LoadImaged
from PIL import Image

from tools import synthetic as sd

REPO = Path(__file__).resolve().parents[1]

BTCV_SHAPE = (64, 64, 32)
BRAIN_SHAPE = (48, 48, 32)
CXR_SIZE = 64
BTCV_KEYS = {
    "description",
    "labels",
    "licence",
    "modality",
    "name",
    "numTest",
    "numTraining",
    "reference",
    "release",
    "tensorImageSize",
    "test",
    "training",
    "validation",
}
MSD_KEYS = {
    "name",
    "description",
    "reference",
    "licence",
    "release",
    "tensorImageSize",
    "modality",
    "labels",
    "numTraining",
    "numTest",
    "training",
    "test",
}
CXR_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)


def _files(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every file of the data set under ``root`` (not the generator's marker)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != sd.SYNTHETIC_MARKER}


def _make_btcv(out: Path, seed: int = 0) -> str:
    return sd.make_btcv(str(out), num_train=2, num_val=1, num_test=1, shape=BTCV_SHAPE, seed=seed)


def _make_brats(out: Path, layout: str, seed: int = 0) -> str:
    num_test = 1 if layout == "msd" else None
    return sd.make_brats(str(out), layout=layout, num_cases=2, num_test=num_test, shape=BRAIN_SHAPE, seed=seed)


def _make_cxr14(out: Path, seed: int = 0) -> str:
    return sd.make_cxr14(str(out), num_images=24, num_patients=10, size=CXR_SIZE, seed=seed)


@pytest.fixture(scope="module")
def btcv_dir(tmp_path_factory) -> Path:
    return Path(_make_btcv(tmp_path_factory.mktemp("btcv")))


@pytest.fixture(scope="module")
def brats_dir(tmp_path_factory) -> Path:
    return Path(_make_brats(tmp_path_factory.mktemp("brats2021"), "brats2021"))


@pytest.fixture(scope="module")
def msd_dir(tmp_path_factory) -> Path:
    return Path(_make_brats(tmp_path_factory.mktemp("msd"), "msd"))


@pytest.fixture(scope="module")
def cxr_dir(tmp_path_factory) -> Path:
    return Path(_make_cxr14(tmp_path_factory.mktemp("cxr14")))


# ------------------------------------------------------------------------------------------------ BTCV


def test_btcv_layout_and_datalist(btcv_dir):
    assert sorted(_files(btcv_dir)) == [
        "dataset_0.json",
        "imagesTr/img0001.nii.gz",
        "imagesTr/img0002.nii.gz",
        "imagesTr/img0003.nii.gz",
        "imagesTs/img0061.nii.gz",
        "labelsTr/label0001.nii.gz",
        "labelsTr/label0002.nii.gz",
        "labelsTr/label0003.nii.gz",
    ]
    meta = json.loads((btcv_dir / "dataset_0.json").read_text())
    assert set(meta) == BTCV_KEYS
    assert meta["labels"] == sd.BTCV_LABELS and list(meta["labels"].values())[1:4] == ["spleen", "rkid", "lkid"]
    assert meta["modality"] == {"0": "CT"} and meta["tensorImageSize"] == "3D" and meta["name"] == "btcv"
    assert meta["training"][0] == {"image": "imagesTr/img0001.nii.gz", "label": "labelsTr/label0001.nii.gz"}
    assert meta["validation"] == [{"image": "imagesTr/img0003.nii.gz", "label": "labelsTr/label0003.nii.gz"}]
    assert meta["test"] == ["imagesTs/img0061.nii.gz"]
    assert (meta["numTraining"], meta["numTest"]) == (3, 1)
    for split, count in (("training", 2), ("validation", 1)):
        items = load_decathlon_datalist(str(btcv_dir / "dataset_0.json"), True, split, base_dir=str(btcv_dir))
        assert len(items) == count
        assert all(Path(item[key]).is_file() for item in items for key in ("image", "label"))


def test_btcv_images_labels_and_affine(btcv_dir):
    items = load_decathlon_datalist(str(btcv_dir / "dataset_0.json"), True, "training", base_dir=str(btcv_dir))
    loader = LoadImaged(keys=["image", "label"], ensure_channel_first=True)
    for item in items:
        data = loader(item)
        assert tuple(data["image"].shape) == (1, *BTCV_SHAPE) and tuple(data["label"].shape) == (1, *BTCV_SHAPE)
        assert set(np.unique(data["label"].numpy()).tolist()) == set(range(14))
        image, label = nib.load(item["image"]), nib.load(item["label"])
        assert image.get_data_dtype() == np.int16 and label.get_data_dtype() == np.uint8
        np.testing.assert_allclose(image.affine, label.affine)
        affine = image.affine
        assert not np.allclose(affine, np.eye(4))
        assert affine[0, 0] < 0 and affine[1, 1] < 0 and affine[2, 2] > 0 and np.abs(affine[:3, 3]).min() > 0
        spacing = image.header.get_zooms()  # an adult abdominal field of view (the generator's default)
        assert spacing[0] == spacing[1] and 339 <= spacing[0] * BTCV_SHAPE[0] <= 421
        assert 249 <= spacing[2] * BTCV_SHAPE[2] <= 311
        hu, lab = np.asarray(image.dataobj), np.asarray(label.dataobj)
        assert hu.min() <= -950 and hu.max() >= 300  # air and bone
        assert 40 < np.median(hu[lab == 6]) < 160  # liver, arterial or portal-venous
        # anatomy in world (RAS+: x to the patient's right, y anterior): liver right of and anterior to the spleen
        liver, spleen = (affine[:3, :3] @ np.argwhere(lab == i).mean(0) + affine[:3, 3] for i in (6, 1))
        assert liver[0] > spleen[0] and liver[1] > spleen[1]


@pytest.mark.parametrize("shape, seeds", [((128, 128, 64), (0, 1)), ((64, 64, 32), range(6))])
def test_btcv_all_organs_present(shape, seeds):
    for seed in seeds:
        _, label, _ = sd.btcv_phantom(shape, seed)
        assert set(np.unique(label).tolist()) == set(range(14)), (shape, seed)


# adult reference ranges (ml, mm), generous enough for the generator's per-case variation; the liver is cut by the
# field of view in some cases, like in real scans
ADULT_VOLUMES_ML = {"liver": (800, 2200), "spleen": (100, 300), "rkid": (65, 230), "lkid": (65, 230),
                    "gall": (15, 60), "pancreas": (30, 110), "rad": (2, 15), "lad": (2, 15)}


def _volumes_ml(label: np.ndarray, affine: np.ndarray) -> dict[str, float]:
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    return {name: float((label == int(i)).sum()) * voxel_ml for i, name in sd.BTCV_LABELS.items() if i != "0"}


@pytest.mark.parametrize("seed", range(4))
def test_btcv_phantoms_are_adult_sized(seed):
    image, label, affine = sd.btcv_phantom((128, 128, 64), seed)
    spacing = np.abs(np.diag(affine)[:3])
    volumes = _volumes_ml(label, affine)
    for organ, (low, high) in ADULT_VOLUMES_ML.items():
        assert low <= volumes[organ] <= high, (organ, volumes[organ])
    aorta_area_mm2 = np.median([a for a in (label == 8).sum((0, 1)) if a > 0]) * spacing[0] * spacing[1]
    assert 18 <= 2 * np.sqrt(aorta_area_mm2 / np.pi) <= 30  # diameter in mm
    soft_tissue = np.argwhere(image[:, :, image.shape[2] // 2] > -500)  # body and table at mid-height
    width_mm = (soft_tissue[:, 0].max() - soft_tissue[:, 0].min()) * spacing[0]
    assert 280 <= width_mm <= 380
    body = label > 0
    assert np.ptp(np.argwhere(body)[:, 2]) * spacing[2] >= 150  # organs span the craniocaudal field, in mm


def test_btcv_anatomy_is_in_millimetres_whatever_the_shape():
    volumes = [_volumes_ml(*sd.btcv_phantom(shape, 3)[1:]) for shape in ((128, 128, 64), (96, 96, 48))]
    for organ in ("liver", "spleen", "rkid", "lkid"):
        assert volumes[1][organ] == pytest.approx(volumes[0][organ], rel=0.15), organ


def test_btcv_cases_differ_in_contrast_phase_and_the_liver_is_textured():
    """The contrast phase varies per case (the aorta is bright in the arterial phase only) and the liver is not of
    one intensity."""
    aorta = {}
    for seed in range(12):
        rng = np.random.default_rng(seed)
        image, label, _ = sd.btcv_phantom((96, 96, 48), rng)
        aorta.setdefault(float(image[label == 8].mean()) > 250, []).append(seed)
    assert len(aorta) == 2, aorta  # both phases occur in 12 cases
    liver_hu_sd = [float(sd.btcv_phantom((96, 96, 48), s)[0][sd.btcv_phantom((96, 96, 48), s)[1] == 6].std())
                   for s in range(2)]
    assert min(liver_hu_sd) > 5  # parenchymal texture plus noise, not a flat disc


def test_btcv_miniature_for_fast_tests():
    _, label, affine = sd.btcv_phantom((32, 32, 24), 0, body_scale=0.1)
    assert set(np.unique(label).tolist()) == set(range(14))
    assert np.abs(np.diag(affine)[:3]).max() < 2.0  # mm: resampled at the bundles' pixdim, it stays small


# ------------------------------------------------------------------------------------------------ BraTS


def test_brats2021_layout_and_loading(brats_dir):
    names = sorted(_files(brats_dir))
    assert names == [
        f"BraTS2021_{i:05d}/BraTS2021_{i:05d}_{m}.nii.gz" for i in (0, 1) for m in ("flair", "seg", "t1", "t1ce", "t2")
    ]
    loader = LoadImaged(keys=["image", "label"], ensure_channel_first=True)
    for case in ("BraTS2021_00000", "BraTS2021_00001"):
        folder = brats_dir / case
        item = {
            "image": [str(folder / f"{case}_{m}.nii.gz") for m in ("flair", "t1ce", "t1", "t2")],
            "label": str(folder / f"{case}_seg.nii.gz"),
        }
        data = loader(item)
        assert tuple(data["image"].shape) == (4, *BRAIN_SHAPE) and tuple(data["label"].shape) == (1, *BRAIN_SHAPE)
        image, label = data["image"].numpy(), data["label"].numpy()[0]
        assert set(np.unique(label).tolist()) == {0, 1, 2, 4}
        assert np.all(image[:, 0, 0, 0] == 0)  # skull-stripped background
        flair, t1ce, t1 = image[0], image[1], image[2]
        normal = (label == 0) & (t1 > 0)
        assert t1ce[label == 4].mean() > 1.1 * t1ce[normal].mean()  # enhancing rim bright on T1ce
        assert flair[label == 2].mean() > 1.2 * flair[normal].mean()  # oedema bright on FLAIR
        assert t1[label == 1].mean() < 0.7 * t1[normal].mean()  # necrosis dark on T1
        seg = nib.load(item["label"])
        assert seg.get_data_dtype() == np.uint8 and seg.header.get_zooms() == (1.0, 1.0, 1.0)


def test_msd_layout_and_loading(msd_dir):
    assert sorted(_files(msd_dir)) == [
        "dataset.json",
        "imagesTr/BRATS_001.nii.gz",
        "imagesTr/BRATS_002.nii.gz",
        "imagesTs/BRATS_003.nii.gz",
        "labelsTr/BRATS_001.nii.gz",
        "labelsTr/BRATS_002.nii.gz",
    ]
    meta = json.loads((msd_dir / "dataset.json").read_text())
    assert set(meta) == MSD_KEYS
    assert meta["name"] == "BRATS" and meta["tensorImageSize"] == "4D"
    assert meta["modality"] == {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
    assert meta["labels"] == {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}
    assert meta["training"][0] == {"image": "./imagesTr/BRATS_001.nii.gz", "label": "./labelsTr/BRATS_001.nii.gz"}
    assert meta["test"] == ["./imagesTs/BRATS_003.nii.gz"] and (meta["numTraining"], meta["numTest"]) == (2, 1)
    assert nib.load(str(msd_dir / "imagesTr/BRATS_001.nii.gz")).shape == (*BRAIN_SHAPE, 4)
    items = load_decathlon_datalist(str(msd_dir / "dataset.json"), True, "training", base_dir=str(msd_dir))
    loader = LoadImaged(keys=["image", "label"], ensure_channel_first=True)
    for item in items:
        data = loader(item)
        assert tuple(data["image"].shape) == (4, *BRAIN_SHAPE) and tuple(data["label"].shape) == (1, *BRAIN_SHAPE)
        image, label = data["image"].numpy(), data["label"].numpy()[0]
        assert set(np.unique(label).tolist()) == {0, 1, 2, 3}
        normal = (label == 0) & (image[1] > 0)
        assert image[0][label == 1].mean() > 1.2 * image[0][normal].mean()  # FLAIR: edema bright
        assert image[2][label == 3].mean() > image[2][label == 2].mean()  # t1gd: enhancing > necrotic core


def test_brats_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        sd.make_brats(str(tmp_path), layout="brats2023")
    with pytest.raises(ValueError):
        sd.make_brats(str(tmp_path), layout="brats2021", num_test=1)


# ------------------------------------------------------------------------------------------------ ChestX-ray14


def test_cxr14_layout_csv_and_split(cxr_dir):
    assert sorted(p.name for p in cxr_dir.iterdir() if p.name != sd.SYNTHETIC_MARKER) == [
        "Data_Entry_2017.csv",
        "images",
        "test_list.txt",
        "train_val_list.txt",
    ]
    lines = (cxr_dir / "Data_Entry_2017.csv").read_text().splitlines()
    assert lines[0] == CXR_HEADER
    rows = list(csv.reader(lines[1:]))
    assert len(rows) == 24 and all(len(row) == 11 for row in rows)
    assert sorted(p.name for p in (cxr_dir / "images").iterdir()) == sorted(row[0] for row in rows)
    valid = set(sd.CXR14_FINDINGS)
    for name, findings, follow_up, patient, age, gender, view, *_ in rows:
        assert re.fullmatch(r"\d{8}_\d{3}\.png", name)
        assert name == f"{int(patient):08d}_{int(follow_up):03d}.png"
        labels = findings.split("|")
        assert labels == ["No Finding"] or (set(labels) <= valid and len(set(labels)) == len(labels))
        assert 0 <= int(age) <= 95 and gender in ("M", "F") and view in ("PA", "AP")
        with Image.open(cxr_dir / "images" / name) as image:
            assert image.mode == "L" and image.size == (CXR_SIZE, CXR_SIZE)
    patients = [int(row[3]) for row in rows]
    assert max(patients.count(p) for p in set(patients)) > 1  # follow-ups
    train_val = (cxr_dir / "train_val_list.txt").read_text().split()
    test = (cxr_dir / "test_list.txt").read_text().split()
    assert train_val and test and sorted(train_val + test) == sorted(row[0] for row in rows)
    assert not {n[:8] for n in train_val} & {n[:8] for n in test}


def test_cxr14_findings_leave_a_trace():
    normal = sd.chest_xray_phantom(CXR_SIZE, ["No Finding"], "PA", 3).astype(float)
    assert normal.shape == (CXR_SIZE, CXR_SIZE)
    for finding in sd.CXR14_FINDINGS:
        diff = np.abs(sd.chest_xray_phantom(CXR_SIZE, [finding], "PA", 3).astype(float) - normal)
        assert (diff > 25).sum() >= 4, finding
    with pytest.raises(ValueError):
        sd.chest_xray_phantom(CXR_SIZE, ["Infiltrate"])


# ------------------------------------------------------------------------------------------------ determinism, CLI


@pytest.mark.parametrize(
    "make, fixture",
    [(_make_btcv, "btcv_dir"), (lambda out, seed: _make_brats(out, "msd", seed), "msd_dir"), (_make_cxr14, "cxr_dir")],
)
def test_determinism(make, fixture, request, tmp_path):
    reference = _files(request.getfixturevalue(fixture))
    assert _files(Path(make(tmp_path / "same", seed=0))) == reference
    other = _files(Path(make(tmp_path / "other", seed=1)))
    images = {content for name, content in reference.items() if name.endswith((".nii.gz", ".png"))}
    assert images.isdisjoint(content for name, content in other.items() if name.endswith((".nii.gz", ".png")))


@pytest.mark.parametrize("make", [_make_btcv, lambda out, seed=0: _make_brats(out, "msd", seed), _make_cxr14])
def test_a_generator_writes_only_into_an_empty_folder_or_one_it_wrote(make, tmp_path):
    """The generators write the real data sets' file names: a real data set given as ``out_dir`` stays as it was; a
    folder an earlier generation wrote is replaced whole (no stale case of a larger set is left behind)."""
    real = tmp_path / "real"
    (real / "imagesTr").mkdir(parents=True)
    (real / "imagesTr" / "img0001.nii.gz").write_text("a real scan")
    with pytest.raises(FileExistsError, match=f"{real} is not an empty folder and holds no synthetic data set"):
        make(real)
    assert [p.name for p in real.rglob("*")] == ["imagesTr", "img0001.nii.gz"]
    assert (real / "imagesTr" / "img0001.nii.gz").read_text() == "a real scan"
    (tmp_path / "empty").mkdir()
    first = _files(Path(make(tmp_path / "empty")))
    assert (tmp_path / "empty" / sd.SYNTHETIC_MARKER).is_file()
    (tmp_path / "empty" / "stale_case.nii.gz").write_text("from an earlier, larger set")
    assert _files(Path(make(tmp_path / "empty"))) == first


@pytest.mark.parametrize("make, bad_argument", [
    (sd.make_btcv, {"shape": (8, 8, 8)}),
    (sd.make_brats, {"layout": "MSD"}),
    (sd.make_brats, {"layout": "brats2021", "num_test": 1}),
    (sd.make_cxr14, {"size": 0}),
])
def test_a_bad_argument_leaves_an_earlier_set_as_it_was(make, bad_argument, tmp_path):
    """The arguments are checked before an earlier generation's folder is emptied."""
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / sd.SYNTHETIC_MARKER).write_text("an earlier generation")
    (earlier / "dataset.json").write_text("{}")
    with pytest.raises(ValueError):
        make(str(earlier), **bad_argument)
    assert sorted(p.name for p in earlier.iterdir()) == [sd.SYNTHETIC_MARKER, "dataset.json"]


def test_btcv_case_independent_of_set_size(btcv_dir, tmp_path):
    single = sd.make_btcv(str(tmp_path), num_train=1, num_val=0, num_test=0, shape=BTCV_SHAPE, seed=0)
    for name in ("imagesTr/img0001.nii.gz", "labelsTr/label0001.nii.gz"):
        assert (Path(single) / name).read_bytes() == (btcv_dir / name).read_bytes()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["btcv", "--num_train", "1", "--num_val", "1", "--num_test", "0", "--shape", "[48,48,24]"], "dataset_0.json"),
        (["brats", "--layout", "msd", "--num_cases", "1", "--num_test", "0", "--shape", "[32,32,24]"], "dataset.json"),
        (["cxr14", "--num_images", "3", "--size", "32"], "Data_Entry_2017.csv"),
    ],
)
def test_command_line(args, expected, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "tools.synthetic", args[0], "--out_dir", str(out), *args[1:]], capture_output=True,
        text=True, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert (out / expected).is_file()
