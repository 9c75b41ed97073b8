"""ChestX-ray14: CSV parsing, image discovery, patient-wise split and datalist cache, X-ray reading (PNG, JPEG,
DICOM), the classification pieces, and the `vit_cxr14_cls` bundle's configs run end to end in-process on synthetic
ChestX-ray14 data with tiny networks."""

from __future__ import annotations

import builtins
import csv
import json
import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Engine
from monai.bundle import ConfigParser
from monai.networks.nets import ViT
from PIL import Image

from shared.data import cxr14, xray
from shared.data.cxr14 import FINDINGS, build_datalist, prepare_datalist, read_data_entry
from shared.data.xray import read_xray
from shared.handlers.classification_results import MultiLabelResultsSaver
from shared.metrics.auc import MultiLabelAUC, per_class_auc
from shared.networks.vit_classifier import ViTClassifier
from shared.transforms.crop import RandResizedCropd
from shared.transforms.xray import LoadXRayd
from shared.utils.errors import root_cause
from tests.helpers import BUNDLES, TINY_MAE, TINY_VIT, bundle_importable, bundle_run, run_workflow, workflow
from tools import synthetic

BUNDLE = BUNDLES / "vit_cxr14_cls"
CONFIGS = BUNDLE / "configs"

HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
TINY = {**TINY_VIT, "network_def#num_layers": 2, "image_size": 40, "crop_size": 32, "num_workers": 0}


def write_csv(path: Path, rows: list[str], header: str = HEADER, trailing_comma: bool = False) -> Path:
    end = ",\n" if trailing_comma else "\n"
    path.write_text(header + end + "".join(r + end for r in rows))
    return path


def row(name: str, labels: str, patient: int) -> str:
    return f"{name},{labels},0,{patient},40,M,PA,2500,2048,0.143,0.143"


def write_dicom(path, pixels, photometric="MONOCHROME2", slope=None, intercept=None, center=None, width=None,
                voi_lut=None, voi_function=None):
    """A 12-bit X-ray DICOM; ``pixels`` of shape ``(frames, H, W)`` gives a multi-frame file, ``voi_lut``
    ``(first stored value mapped, [entries])`` a VOI LUT table."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray image for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "DX", "synthetic"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    if pixels.ndim == 3:
        ds.NumberOfFrames = len(pixels)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if center is not None:
        ds.WindowCenter, ds.WindowWidth = center, width
    if voi_function is not None:
        ds.VOILUTFunction = voi_function
    if voi_lut is not None:
        first_mapped, entries = voi_lut
        table = Dataset()
        table.LUTDescriptor = [len(entries), first_mapped, 16]
        table.add_new("LUTData", "US", list(entries))
        ds.VOILUTSequence = [table]
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


# ----------------------------------------------------------------------------------------------------------------
# CSV and lists
# ----------------------------------------------------------------------------------------------------------------


def test_finding_labels_map_to_the_conventional_order():
    assert FINDINGS[:3] == ("Atelectasis", "Cardiomegaly", "Effusion") and FINDINGS[-1] == "Hernia"
    assert len(FINDINGS) == 14
    assert cxr14.parse_finding_labels("No Finding") == (0.0,) * 14
    labels = cxr14.parse_finding_labels("Effusion|Hernia|Pleural_Thickening")
    assert [FINDINGS[i] for i, v in enumerate(labels) if v] == ["Effusion", "Pleural_Thickening", "Hernia"]
    assert cxr14.parse_finding_labels("pleural thickening") == cxr14.parse_finding_labels("Pleural_Thickening")
    for bad, message in (("Infiltrate", "unknown finding 'Infiltrate'"), ("No Finding|Mass", "combined"),
                         ("Mass|", "empty finding")):
        with pytest.raises(ValueError, match=message):
            cxr14.parse_finding_labels(bad)


def test_csv_of_the_real_size_parses_correctly(tmp_path):
    rng = random.Random(0)
    combos = ["No Finding"] * 8 + list(FINDINGS) + ["Effusion|Mass", "Atelectasis|Infiltration|Nodule"]
    expected, rows = {}, []
    for i in range(112_120):
        name, patient, text = f"{i // 4 + 1:08d}_{i % 4:03d}.png", i // 4 + 1, rng.choice(combos)
        rows.append(row(name, text, patient))
        expected[name] = (str(patient), text)
    path = write_csv(tmp_path / "Data_Entry_2017.csv", rows, trailing_comma=True)
    entries = read_data_entry(str(path))
    assert len(entries) == 112_120
    for entry in entries[::997]:
        patient, text = expected[entry.image]
        assert entry.patient == patient
        assert entry.labels == cxr14.parse_finding_labels(text)
    assert len({e.patient for e in entries}) == 28_030


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ("00000003_000.png,Mass,0", "3 fields"),
        (row("00000003_000.png", "Mass|Tumour", 3), "unknown finding 'Tumour'"),
        (row("00000001_000.png", "Mass", 1), "already listed on line 2"),
        (row("00000003_000.png", "Mass", 3).replace(",3,", ",,", 1), "empty 'Patient ID'"),
        (row("", "Mass", 3), "empty 'Image Index'"),
        (row("00000003_000.png", "Mass", 3) + ",x,y", "fields, the header has 11"),
    ],
)
def test_malformed_row_is_rejected_with_its_line_number(tmp_path, bad_row, message):
    rows = [row("00000001_000.png", "No Finding", 1), row("00000002_000.png", "Edema", 2), bad_row,
            row("00000004_000.png", "Mass", 4)]
    path = write_csv(tmp_path / "Data_Entry_2017.csv", rows)
    with pytest.raises(ValueError, match=f"line 4: .*{message}"):
        read_data_entry(str(path))


def test_v2020_csv_is_preferred_and_missing_columns_are_named(tmp_path):
    write_csv(tmp_path / "Data_Entry_2017.csv", [row("a.png", "Mass", 1)])
    write_csv(tmp_path / "Data_Entry_2017_v2020.csv", [row("a.png", "Edema", 1)])
    path = cxr14.find_data_entry_csv(str(tmp_path))
    assert path.endswith("_v2020.csv") and read_data_entry(path)[0].labels[FINDINGS.index("Edema")] == 1.0
    write_csv(tmp_path / "bad.csv", ["a.png,Mass"], header="Image Index,Finding Labels")
    with pytest.raises(ValueError, match="line 1: no 'Patient ID' column"):
        read_data_entry(str(tmp_path / "bad.csv"))
    with pytest.raises(FileNotFoundError, match="Data_Entry_2017"):
        cxr14.find_data_entry_csv(str(tmp_path / "bad.csv").rsplit("/", 1)[0] + "/nowhere")


# ----------------------------------------------------------------------------------------------------------------
# Layout, split and cached datalist
# ----------------------------------------------------------------------------------------------------------------


def make_layout(root: Path, num_patients: int = 40, archives: bool = True) -> dict[str, str]:
    """A ChestX-ray14 folder with 1-3 images per patient, in images_001/images and images_002/images (or images/);
    every 5th patient in the test list. Returns {image: patient}."""
    rng = random.Random(1)
    rows, train_val, test, patients = [], [], [], {}
    for p in range(1, num_patients + 1):
        for f in range(rng.randint(1, 3)):
            name = f"{p:08d}_{f:03d}.png"
            rows.append(row(name, rng.choice(["No Finding", "Mass", "Edema|Effusion"]), p))
            (test if p % 5 == 0 else train_val).append(name)
            patients[name] = str(p)
            folder = root / (f"images_00{1 + p % 2}/images" if archives else "images")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8), p, np.uint8)).save(folder / name)
    write_csv(root / "Data_Entry_2017_v2020.csv", rows)
    (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    return patients


def test_images_are_found_in_the_archive_folders(tmp_path):
    patients = make_layout(tmp_path)
    found = cxr14.find_images(str(tmp_path))
    assert set(found) == set(patients)
    assert all(found[n].startswith(("images_001/images/", "images_002/images/")) for n in found)


def test_split_is_patient_wise_deterministic_and_follows_seed_and_fraction(tmp_path):
    patients = make_layout(tmp_path, num_patients=60)
    data = build_datalist(str(tmp_path), val_fraction=0.2, seed=3)
    groups = {s: {patients[Path(i["image"]).name] for i in data[s]} for s in ("training", "validation", "test")}
    assert not groups["training"] & groups["validation"]
    assert not (groups["training"] | groups["validation"]) & groups["test"]
    assert len(groups["validation"]) == round(0.2 * 48)  # 48 train/val patients
    assert sum(len(data[s]) for s in ("training", "validation", "test")) == len(patients)
    assert data == build_datalist(str(tmp_path), val_fraction=0.2, seed=3)
    assert data["validation"] != build_datalist(str(tmp_path), val_fraction=0.2, seed=4)["validation"]
    assert len(build_datalist(str(tmp_path), val_fraction=0.1, seed=3)["validation"]) < len(data["validation"])
    entries = {e.image: e for e in read_data_entry(str(tmp_path / "Data_Entry_2017_v2020.csv"))}
    for item in data["training"]:
        assert item["label"] == list(entries[Path(item["image"]).name].labels)


def test_an_empty_split_is_counted_as_zero_positives(tmp_path):
    """Pre-training on every image (``val_fraction`` 0) and a download without the test list's images."""
    patients = make_layout(tmp_path, num_patients=10, archives=False)
    for name in patients:
        if int(patients[name]) % 5 == 0:
            os.remove(tmp_path / "images" / name)
    data = build_datalist(str(tmp_path), val_fraction=0.0)
    assert data["validation"] == data["test"] == [] and len(data["training"]) > 0
    assert data["stats"]["validation_positives"] == data["stats"]["test_positives"] == dict.fromkeys(FINDINGS, 0)
    assert sum(data["stats"]["training_positives"].values()) > 0


def test_missing_images_and_patients_in_both_lists_are_left_out(tmp_path):
    patients = make_layout(tmp_path, archives=False)
    first_train = next(n for n in patients if int(patients[n]) % 5)
    os.remove(tmp_path / "images" / first_train)
    test_name = next(n for n in patients if int(patients[n]) % 5 == 0)
    same_patient = [n for n in patients if patients[n] == patients[test_name]]
    with open(tmp_path / "train_val_list.txt", "a") as f:  # put one of a test patient's images into train_val
        f.write(same_patient[0] + "\n")
    data = build_datalist(str(tmp_path))
    assert data["stats"]["missing_files"] == 1 and data["stats"]["patients_in_both_lists"] == 1
    names = {Path(i["image"]).name for s in ("training", "validation") for i in data[s]}
    assert first_train not in names and not names & set(same_patient)


def test_every_run_says_which_list_lost_images_and_an_evaluation_without_any_is_refused(tmp_path, caplog):
    """Images of the official lists without a file are named per list at every run (also from the cache), so an
    evaluation on an incomplete test set says so; without any test image, evaluate.json stops (it exited 0, writing
    nothing); names that are no 'Image Index' of the CSV are said to be that."""
    patients = make_layout(tmp_path / "data")
    test_images = sorted((tmp_path / "data").glob("images_*/images/*.png"))
    test_images = [f for f in test_images if int(patients[f.name]) % 5 == 0]
    test_images[0].unlink()
    cache = tmp_path / "runs" / "datalist.json"
    for _ in range(2):  # built, then read from the cache
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            data = prepare_datalist(str(tmp_path / "data"), str(cache))
        assert f"1 of the {len(test_images)} images of test_list.txt have no file" in caplog.text
        assert "train_val_list.txt" not in caplog.text
    assert len(data["test"]) == len(test_images) - 1
    for image in test_images[1:]:
        image.unlink()
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "evaluate.json")])
    parser.update({"bundle_root": str(tmp_path), "dataset_dir": str(tmp_path / "data")})
    with bundle_importable(BUNDLE), pytest.raises(RuntimeError) as refused:  # MONAI's, from the ValueError
        parser.get_parsed_content("validate#dataset")
    assert f"no test images of {tmp_path / 'data'}: nothing to do" in str(refused.value.__cause__)
    for name in ("train_val_list.txt", "test_list.txt"):  # names with a folder: no CSV row matches
        listed = tmp_path / "data" / name
        listed.write_text("".join(f"images/{line}\n" for line in listed.read_text().split()))
    with pytest.raises(FileNotFoundError, match="is an 'Image Index' of .*first: 'images/0000000"):
        build_datalist(str(tmp_path / "data"))


def test_datalist_is_cached_and_rebuilt_when_inputs_change_or_when_asked(tmp_path, monkeypatch):
    make_layout(tmp_path / "data")
    cache = tmp_path / "runs" / "datalist.json"
    calls = []
    real_build = cxr14.build_datalist
    monkeypatch.setattr(cxr14, "build_datalist", lambda *a, **k: calls.append(1) or real_build(*a, **k))
    first = prepare_datalist(str(tmp_path / "data"), str(cache))
    assert cache.is_file() and len(calls) == 1
    assert all(os.path.isabs(i["image"]) and os.path.isfile(i["image"]) for i in first["training"])
    assert prepare_datalist(str(tmp_path / "data"), str(cache)) == first and len(calls) == 1
    prepare_datalist(str(tmp_path / "data"), str(cache), rebuild="false")  # as the command line gives it
    assert len(calls) == 1
    prepare_datalist(str(tmp_path / "data"), str(cache), rebuild=True)
    assert len(calls) == 2
    prepare_datalist(str(tmp_path / "data"), str(cache), val_fraction=0.3)
    assert len(calls) == 3
    test_list = tmp_path / "data" / "test_list.txt"
    test_list.write_text(test_list.read_text().splitlines()[0] + "\n")
    smaller = prepare_datalist(str(tmp_path / "data"), str(cache), val_fraction=0.3)
    assert len(calls) == 4 and len(smaller["test"]) == 1
    cached = json.loads(cache.read_text())
    assert cached["class_names"] == list(FINDINGS) and not os.path.isabs(cached["training"][0]["image"])


# ----------------------------------------------------------------------------------------------------------------
# Reading X-rays
# ----------------------------------------------------------------------------------------------------------------


def test_png_and_jpeg_are_read_as_grey_in_unit_range(tmp_path):
    pixels = np.arange(0, 240, dtype=np.uint8).reshape(12, 20)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    np.testing.assert_allclose(read_xray(str(tmp_path / "a.png")), pixels / 255.0, atol=1e-6)
    deep = (np.arange(12 * 20, dtype=np.uint16).reshape(12, 20) * 10 + 1000)
    Image.fromarray(deep).save(tmp_path / "b.png")
    np.testing.assert_allclose(read_xray(str(tmp_path / "b.png")), (deep - 1000) / (deep.max() - 1000.0), atol=1e-6)
    Image.fromarray(np.stack([pixels] * 3, -1)).save(tmp_path / "c.jpg", quality=100)
    out = read_xray(str(tmp_path / "c.jpg"))
    assert out.shape == (12, 20) and out.dtype == np.float32 and np.abs(out - pixels / 255.0).max() < 0.03


def test_dicom_rescale_window_and_monochrome1(tmp_path):
    stored = np.arange(0, 4000, 20, dtype=np.uint16).reshape(10, 20)
    # rescaled = 2 * stored - 100; window centre 3000, width 4000 -> [1000, 5000] maps to [0, 1]
    write_dicom(tmp_path / "m2.dcm", stored, "MONOCHROME2", 2.0, -100.0, 3000.0, 4000.0)
    expected = np.clip((2.0 * stored - 100.0 - 1000.0) / 4000.0, 0, 1)
    np.testing.assert_allclose(read_xray(str(tmp_path / "m2.dcm")), expected, atol=1e-6)
    write_dicom(tmp_path / "m1", stored, "MONOCHROME1", 2.0, -100.0, 3000.0, 4000.0)  # no extension
    assert xray.is_dicom(str(tmp_path / "m1"))
    np.testing.assert_allclose(read_xray(str(tmp_path / "m1")), 1.0 - expected, atol=1e-6)
    write_dicom(tmp_path / "plain.dcm", stored, "MONOCHROME1")  # no window: own range, then inverted
    np.testing.assert_allclose(read_xray(str(tmp_path / "plain.dcm")), 1.0 - stored / stored.max(), atol=1e-6)
    np.testing.assert_allclose(
        read_xray(str(tmp_path / "m2.dcm"), use_dicom_window=False), (stored - 0.0) / stored.max(), atol=1e-6
    )
    files = [Path(f["image"]).name for f in xray.list_xray_files(str(tmp_path))]
    assert files == ["m1", "m2.dcm", "plain.dcm"]
    loaded = LoadXRayd("image")({"image": str(tmp_path / "m1")})["image"]
    assert tuple(loaded.shape) == (1, 10, 20) and loaded.meta["filename_or_obj"].endswith("m1")


def test_a_folder_search_finds_dicom_files_named_by_their_uid_and_follows_linked_folders(tmp_path):
    """PACS exports name DICOM files by their UID (dots, no DICOM extension): found by their header, those without an
    image (a presentation state) left out; a linked folder is searched once, also when a link points back up."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    stored = np.arange(200, dtype=np.uint16).reshape(10, 20)
    inputs, elsewhere = tmp_path / "inputs", tmp_path / "elsewhere"
    inputs.mkdir(), elsewhere.mkdir()
    write_dicom(inputs / "CR.1.2.840.113619.2.55", stored, "MONOCHROME2")
    state = Dataset()
    state.file_meta = FileMetaDataset()
    state.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.11.1"  # grayscale softcopy presentation state
    state.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    state.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    state.SOPClassUID, state.Modality = state.file_meta.MediaStorageSOPClassUID, "PR"
    state.save_as(str(inputs / "PR.1.2.840.113619.2.56"), enforce_file_format=True)
    state.save_as(str(inputs / "state.dcm"), enforce_file_format=True)
    (inputs / "notes.v1.txt").write_text("not an image")
    Image.fromarray(stored.astype(np.uint8)).save(elsewhere / "linked.png")
    (inputs / "linked").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "back").symlink_to(inputs, target_is_directory=True)
    files = [os.path.relpath(f["image"], inputs) for f in xray.list_xray_files(str(inputs))]
    assert files == ["CR.1.2.840.113619.2.55", os.path.join("linked", "linked.png")]


def test_inference_takes_chosen_files_or_every_xray_of_the_folder(tmp_path):
    for name in ("a.png", "b.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.update({"dataset_dir": str(tmp_path)})
    with bundle_importable(BUNDLE):
        assert [Path(i["image"]).name for i in parser.get_parsed_content("datalist")] == ["a.png", "b.png"]
        parser.update({"input_files": [str(tmp_path / "b.png")]})
        assert parser.get_parsed_content("datalist") == [{"image": str(tmp_path / "b.png")}]
        parser.update({"input_files": str(tmp_path / "c.png")})
        with pytest.raises(RuntimeError) as failure:
            parser.get_parsed_content("datalist")
    assert str(root_cause(failure.value)) == f"input images not found: {tmp_path / 'c.png'}"
    with pytest.raises(FileNotFoundError, match=f"takes X-ray files, not folders \\({tmp_path}\\); give a folder as"):
        xray.xray_datalist("/unused", [str(tmp_path)])


def test_dicom_voi_lut_table_first_frame_and_window_functions(tmp_path):
    stored = np.arange(0, 4000, 20, dtype=np.uint16).reshape(10, 20)
    # a table of 256 entries from stored value 1000, 0 to 1020: below 1000 its first entry, from 1255 its last
    table = (1000, [4 * i for i in range(256)])
    write_dicom(tmp_path / "lut.dcm", stored, center=3000.0, width=4000.0, voi_lut=table)  # the table wins
    np.testing.assert_allclose(read_xray(str(tmp_path / "lut.dcm")), np.clip((stored - 1000.0) / 255, 0, 1),
                               atol=1e-6)
    np.testing.assert_allclose(read_xray(str(tmp_path / "lut.dcm"), use_dicom_window=False), stored / stored.max(),
                               atol=1e-6)
    frames = np.stack([stored, stored.max() - stored])
    write_dicom(tmp_path / "frames.dcm", frames, "MONOCHROME2", 2.0, -100.0, 3000.0, 4000.0)
    expected = np.clip((2.0 * stored - 100.0 - 1000.0) / 4000.0, 0, 1)
    np.testing.assert_allclose(read_xray(str(tmp_path / "frames.dcm")), expected, atol=1e-6)
    # the standard's LINEAR window: centre - 0.5, width - 1
    write_dicom(tmp_path / "linear.dcm", stored, center=2000.0, width=1001.0, voi_function="LINEAR")
    linear = np.clip((stored - 1999.5) / 1000.0 + 0.5, 0, 1)
    np.testing.assert_allclose(read_xray(str(tmp_path / "linear.dcm")), linear, atol=1e-6)
    write_dicom(tmp_path / "bogus.dcm", stored, center=2000.0, width=1000.0, voi_function="BOGUS")
    with pytest.raises(ValueError, match=r"bogus\.dcm.*BOGUS"):
        read_xray(str(tmp_path / "bogus.dcm"))


def test_dicom_is_read_the_same_without_pydicom_3_s_pixels_module(tmp_path, monkeypatch):
    """MONAI Label's environment needs ``pydicom<3``, which has the LUT functions in ``pixel_data_handlers.util``
    only (checked by hand with pydicom 2.4.4: the same values as below)."""
    stored = np.arange(0, 4000, 20, dtype=np.uint16).reshape(10, 20)
    write_dicom(tmp_path / "m1.dcm", stored, "MONOCHROME1", 2.0, -100.0, 3000.0, 4000.0)
    write_dicom(tmp_path / "lut.dcm", stored, center=3000.0, width=4000.0, voi_lut=(1000, [4 * i for i in range(256)]))
    expected = [read_xray(str(tmp_path / name)) for name in ("m1.dcm", "lut.dcm")]
    real_import = builtins.__import__

    def pydicom_2_import(name, globals=None, *args, **kwargs):  # what the reader's import meets under pydicom 2
        if name == "pydicom.pixels" and (globals or {}).get("__name__") == xray.__name__:
            raise ImportError("No module named 'pydicom.pixels'")
        return real_import(name, globals, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", pydicom_2_import)
    with pytest.warns(DeprecationWarning, match="pixel_data_handlers"):
        got = [read_xray(str(tmp_path / name)) for name in ("m1.dcm", "lut.dcm")]
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------------------------------------
# Classification pieces
# ----------------------------------------------------------------------------------------------------------------


def test_vit_classifier_returns_logits_and_is_a_plain_vit():
    kwargs = dict(in_channels=1, img_size=(32, 32), patch_size=16, hidden_size=48, mlp_dim=96, num_layers=2,
                  num_heads=4, spatial_dims=2)
    net = ViTClassifier(num_classes=14, **kwargs).eval()
    vit = ViT(classification=True, num_classes=14, post_activation=None, **kwargs).eval()
    assert net.state_dict().keys() == vit.state_dict().keys()
    vit.load_state_dict(net.state_dict())
    x = torch.randn(3, 1, 32, 32)
    logits = net(x)
    assert logits.shape == (3, 14)
    torch.testing.assert_close(logits, vit(x)[0])
    torch.testing.assert_close(torch.jit.script(net)(x), logits)
    flash = ViTClassifier(num_classes=14, use_flash_attention=True, **kwargs).eval()
    flash.load_state_dict(net.state_dict())
    torch.testing.assert_close(flash(x), logits, atol=1e-5, rtol=1e-4)
    with_dropout = ViTClassifier(num_classes=14, use_flash_attention=True, dropout_rate=0.3, **kwargs).eval()
    torch.testing.assert_close(with_dropout(x), with_dropout(x), rtol=0, atol=0)  # fused attention drops in eval
    with pytest.raises(ValueError, match="save_attn"):
        ViTClassifier(num_classes=14, use_flash_attention=True, save_attn=True, **kwargs)


def test_vit_classifier_head_runs_in_float32_under_autocast_in_eval_only():
    """Under bfloat16 autocast (AutocastInferer) the head's Linear gave logits of ~3 significant digits: ties and
    coarse ROC curves over a large test set. In eval it now runs in float32 on the same features; training keeps
    autocast's bfloat16 head."""
    torch.manual_seed(0)
    net = ViTClassifier(1, (32, 32), 16, num_classes=14, hidden_size=48, mlp_dim=96, num_layers=2, num_heads=4,
                        spatial_dims=2)
    features = []
    net.norm.register_forward_hook(lambda module, args, output: features.append(output[:, 0]))
    x = torch.randn(8, 1, 32, 32)
    net.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(x)
    head = net.classification_head
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, torch.nn.functional.linear(features[-1].float(), head.weight, head.bias),
                               rtol=0, atol=0)
    assert not torch.equal(logits, logits.bfloat16().float())  # finer than bfloat16
    net.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        trained = net(x)
        assert trained.dtype == torch.bfloat16
        torch.testing.assert_close(trained, head(features[-1]), rtol=0, atol=0)


def test_vit_classifier_with_half_precision_weights_runs_its_head_in_their_dtype():
    """A network converted to bfloat16 (``net.to(torch.bfloat16)``) keeps working in eval: its head gets features of
    its weights' dtype, not float32 ones (a dtype mismatch in the Linear)."""
    torch.manual_seed(0)
    net = ViTClassifier(1, (32, 32), 16, num_classes=14, hidden_size=48, mlp_dim=96, num_layers=2, num_heads=4,
                        spatial_dims=2).eval().to(torch.bfloat16)
    logits = net(torch.randn(2, 1, 32, 32, dtype=torch.bfloat16))
    assert logits.shape == (2, 14) and logits.dtype == torch.bfloat16


def test_random_resized_crop_covers_the_scale_range():
    crop = RandResizedCropd("image", size=24, scale=(0.25, 0.5))
    crop.set_random_state(0)
    image = torch.arange(100 * 80, dtype=torch.float32).reshape(1, 100, 80)
    for _ in range(20):
        out = crop({"image": image})["image"]
        assert out.shape == (1, 24, 24)
        top, left, h, w = crop._box
        assert 0.25 * 8000 * 0.9 <= h * w <= 0.5 * 8000 * 1.1 and top + h <= 100 and left + w <= 80
        region = image[None, :, top : top + h, left : left + w]  # the output shows the drawn box, nothing else
        expected = F.interpolate(region, size=(24, 24), mode="bilinear", align_corners=False, antialias=True)[0]
        torch.testing.assert_close(out, expected)
    boxes = set()
    wide = RandResizedCropd("image", size=24, scale=(0.1, 0.3), ratio=(2.0, 2.0))
    for _ in range(10):
        wide({"image": torch.zeros(1, 90, 90)})
        top, left, h, w = wide._box
        assert w / h == pytest.approx(2.0, rel=0.1)  # ratio is width / height
        boxes.add((top, left))
    assert len(boxes) > 5  # at random positions
    full = RandResizedCropd("image", size=(100, 80), scale=(1.0, 1.0), ratio=(0.8, 0.8))({"image": image})["image"]
    torch.testing.assert_close(full, image)


def test_per_class_auc_and_the_key_metric_name_every_finding():
    y = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0]], dtype=torch.float32)
    scores = torch.tensor([[0.1, 0.9, 0.5], [0.8, 0.2, 0.5], [0.3, 0.6, 0.5], [0.7, 0.4, 0.5]])
    assert per_class_auc(scores, y)[:2] == [1.0, 1.0] and np.isnan(per_class_auc(scores, y)[2])
    assert per_class_auc(-scores, y)[:2] == [0.0, 0.0]
    metric = MultiLabelAUC(["A", "B", "C"], output_transform=lambda out: (out["pred"], out["label"]))
    engine = Engine(lambda e, batch: {"pred": list(scores[batch]), "label": list(y[batch])})
    metric.attach(engine, "val_mean_auc")
    state = engine.run([[0, 1], [2, 3]], max_epochs=1)
    assert state.metrics["val_mean_auc"] == 1.0
    assert state.metrics["val_auc_A"] == 1.0 and np.isnan(state.metrics["val_auc_C"])


# ----------------------------------------------------------------------------------------------------------------
# The bundle, end to end on synthetic ChestX-ray14
# ----------------------------------------------------------------------------------------------------------------


def configs(*names: str) -> list[Path]:
    return [CONFIGS / n for n in names]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return Path(synthetic.make_cxr14(str(tmp_path_factory.mktemp("cxr14")), num_images=64, size=64, seed=0))


@pytest.fixture(scope="module")
def pretrained(data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bundle")
    run_workflow(configs("pretrain.json"), root, dataset_dir=str(data), epochs=2, batch_size=8, warmup_epochs=1,
                 snapshot_interval=1, **{**TINY, **TINY_MAE})
    return root


@pytest.fixture(scope="module")
def trained(pretrained, data, tmp_path_factory) -> Path:
    """Fine-tuning in a copy of the pre-training's bundle root (whose ``models/mae.pt`` is the default encoder), so
    that ``pretrained`` stays as pre-training left it."""
    root = tmp_path_factory.mktemp("trained") / "bundle"
    shutil.copytree(pretrained, root)
    run_workflow(configs("train.json"), root, dataset_dir=str(data), epochs=2, batch_size=8, val_batch_size=16,
                 warmup_epochs=1, val_fraction=0.3, **TINY)
    return root


def test_pretraining_writes_mae_weights_checkpoint_pictures_and_datalist(pretrained):
    assert (pretrained / "models" / "mae.pt").is_file() and (pretrained / "models" / "mae_checkpoint.pt").is_file()
    assert len(list((pretrained / "runs" / "pretrain").glob("reconstruction_epoch*.png"))) == 2
    cached = json.loads((pretrained / "runs" / "datalist.json").read_text())
    assert cached["stats"]["training_images"] > 0 and cached["class_names"] == list(FINDINGS)
    state = torch.load(pretrained / "models" / "mae.pt", weights_only=True)
    assert state["cls_token"].shape == (1, 1, 48)
    assert state["encoder.patch_embedding.patch_embeddings.weight"].shape == (48, 1, 16, 16)  # one grey channel


def test_classifier_gets_every_encoder_tensor_position_embedding_and_class_token(pretrained, data):
    with bundle_importable(BUNDLE):
        wf = workflow(configs("train.json"), pretrained, dataset_dir=str(data), **TINY)
        assert wf.parser.get_parsed_content("pretrained_encoder") == str(pretrained / "models" / "mae.pt")
        wf.parser.get_parsed_content("train#trainer")  # attaching the handlers loads the MAE encoder
        network = wf.parser.get_parsed_content("network")
        mae = torch.load(pretrained / "models" / "mae.pt", weights_only=True)
        encoder = {k[len("encoder."):]: v for k, v in mae.items() if k.startswith("encoder.")}
        assert "patch_embedding.position_embeddings" in encoder
        state = network.state_dict()
        for key, value in encoder.items():
            assert torch.equal(state[key], value), key
        assert torch.equal(state["cls_token"], mae["cls_token"])
        assert set(state) - set(encoder) == {"cls_token", "classification_head.weight", "classification_head.bias"}
        cached = wf.parser.get_parsed_content("train#dataset")._cache[0]["image"]
        assert cached.dtype == torch.uint8 and tuple(cached.shape) == (1, 40, 40)  # the training cache holds 8 bits


def test_training_writes_the_classifier_and_an_end_of_run_checkpoint(trained):
    assert (trained / "models" / "model.pt").is_file() and (trained / "models" / "checkpoint.pt").is_file()
    state = torch.load(trained / "models" / "model.pt", weights_only=True)
    assert state["classification_head.weight"].shape == (14, 48)
    checkpoint = torch.load(trained / "models" / "checkpoint.pt", weights_only=True)
    assert checkpoint["trainer"]["iteration"] // checkpoint["trainer"]["epoch_length"] == 2


def test_training_from_scratch_warns_and_logs_every_finding_by_name(data, tmp_path, capsys):
    wf = run_workflow(configs("train.json"), tmp_path, dataset_dir=str(data), epochs=1, batch_size=16,
                      val_fraction=0.3, **TINY)
    assert "starts from scratch" in capsys.readouterr().out  # the bundle's logging.conf logs to stdout
    metrics = wf.parser.get_parsed_content("validate#evaluator").state.metrics  # what StatsHandler logs
    assert {f"val_auc_{name}" for name in FINDINGS} | {"val_mean_auc"} <= set(metrics)
    assert (tmp_path / "models" / "checkpoint.pt").is_file()


def test_evaluate_writes_per_finding_auc_with_names(trained, data):
    run_workflow(configs("train.json", "evaluate.json"), trained, dataset_dir=str(data), val_batch_size=16, **TINY)
    with open(trained / "eval" / "auc.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["finding"] for r in table] == [*FINDINGS, "mean"]
    summary = json.loads((trained / "eval" / "auc.json").read_text())
    test_items = json.loads((trained / "runs" / "datalist.json").read_text())["test"]
    assert summary["num_images"] == len(test_items) and list(summary["auc"]) == list(FINDINGS)
    assert summary["listed_images"] == len((data / "test_list.txt").read_text().split())  # every listed image found
    with open(trained / "eval" / "predictions.csv") as f:
        predictions = list(csv.DictReader(f))
    assert len(predictions) == len(test_items) and list(predictions[0])[2:] == list(FINDINGS)


def test_inference_reads_png_jpeg_and_dicom_of_any_size(trained, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((70, 50)) * 255).astype(np.uint8)).save(inputs / "a.png")
    Image.fromarray((rng.random((50, 90)) * 60000).astype(np.uint16)).save(inputs / "b16.png")
    Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(inputs / "c.jpg")
    write_dicom(inputs / "d.dcm", (rng.random((64, 48)) * 4095).astype(np.uint16), "MONOCHROME1", 1.0, -1024.0)
    out = tmp_path / "out"
    run_workflow(configs("inference.json"), trained, "infer", dataset_dir=str(inputs), output_dir=str(out), **TINY)
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["a.png", "b16.png", "c.jpg", "d.dcm"]
    probabilities = np.array([[float(r[name]) for name in FINDINGS] for r in rows])
    assert probabilities.shape == (4, 14) and ((probabilities > 0) & (probabilities < 1)).all()
    saved = json.loads((out / "predictions.json").read_text())
    assert list(saved[0]["probabilities"]) == list(FINDINGS)


def stretched(pixels: np.ndarray) -> np.ndarray:
    """An 8-bit image stretched to span 0-255, as reading its 16-bit version does."""
    low, high = int(pixels.min()), int(pixels.max())
    return np.rint((pixels.astype(np.float64) - low) * 255.0 / (high - low)).astype(np.uint8)


def test_the_bit_depth_measurement_writes_only_into_a_folder_of_its_own(tmp_path):
    """It replaces its output folder whole (stale held-out images of other settings were reused): a folder it did not
    write is refused before any work, naming it and keeping its files."""
    from tools.measure import measure_bit_depth

    (tmp_path / "notes.txt").write_text("a user's file")
    with pytest.raises(FileExistsError, match=f"{tmp_path} is not empty and this tool did not write it"):
        measure_bit_depth.measure(str(tmp_path))
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_a_16_bit_png_is_scored_as_its_8_bit_version_stretched_to_its_own_minimum_and_maximum(tmp_path):
    """What the bundle's docs state (section "Bit depth"): an 8-bit PNG is read as value / 255, a 16-bit PNG by its
    own minimum and maximum. The same picture at 16 bits (value x 257) therefore scores as its 8-bit version
    stretched to 0-255, not as the 8-bit version itself, unless that spans 0-255; then both depths score alike.
    ``tools/measure/measure_bit_depth.py`` measures the difference with a trained classifier."""
    pixels = synthetic.cxr14.chest_xray_phantom(40, ["Cardiomegaly"], seed=3)
    assert 0 < pixels.min() and pixels.max() < 255  # as the synthetic (and many real) radiographs
    inputs, root = tmp_path / "inputs", tmp_path / "bundle"
    inputs.mkdir()
    (root / "models").mkdir(parents=True)
    for name, image in {"a8.png": pixels, "a16.png": pixels.astype(np.uint16) * 257, "s8.png": stretched(pixels),
                        "s16.png": stretched(pixels).astype(np.uint16) * 257}.items():
        Image.fromarray(image).save(inputs / name)
    torch.save(ViTClassifier(1, (32, 32), 16, 14, hidden_size=48, mlp_dim=96, num_heads=4, num_layers=2,
                             spatial_dims=2).state_dict(), root / "models" / "model.pt")
    bundle_run([CONFIGS / "inference.json"], {**TINY, "bundle_root": str(root), "dataset_dir": str(inputs),
                                              "output_dir": str(tmp_path / "out"), "amp": False})
    with open(tmp_path / "out" / "predictions.csv") as f:
        scores = {r["image"]: np.array([float(r[name]) for name in FINDINGS]) for r in csv.DictReader(f)}
    assert np.abs(scores["a16.png"] - scores["s8.png"]).max() < 1e-4  # the 16-bit file is read stretched
    assert np.abs(scores["s16.png"] - scores["s8.png"]).max() < 1e-6  # spanning 0-255: both depths alike
    assert np.abs(scores["a16.png"] - scores["a8.png"]).max() > 1e-3  # otherwise the depths score differently


def test_results_saver_without_labels_writes_only_predictions(tmp_path):
    saver = MultiLabelResultsSaver(str(tmp_path), ["A", "B"])
    engine = Engine(lambda e, b: [{"pred": torch.tensor([0.2, 0.7])}])
    saver.attach(engine)
    engine.run([0], max_epochs=1)
    assert (tmp_path / "predictions.csv").read_text().splitlines()[1].endswith("0.200000,0.700000")
    assert not (tmp_path / "auc.csv").exists()


def test_results_saver_records_the_listed_images_and_warns_when_some_were_not_evaluated(tmp_path, caplog):
    """evaluate.json gives the official test list's length: auc.json records it beside the images scored."""
    saver = MultiLabelResultsSaver(str(tmp_path), ["A", "B"], listed_images=3)
    outputs = [{"pred": torch.tensor([0.2, 0.7]), "label": torch.tensor([0.0, 1.0])},
               {"pred": torch.tensor([0.6, 0.1]), "label": torch.tensor([1.0, 0.0])}]
    engine = Engine(lambda e, b: outputs)
    saver.attach(engine)
    with caplog.at_level(logging.WARNING):
        engine.run([0], max_epochs=1)
    summary = json.loads((tmp_path / "auc.json").read_text())
    assert (summary["num_images"], summary["listed_images"]) == (2, 3)
    assert "the AUCs are over 2 of the 3 listed images" in caplog.text
    assert cxr14.listed_images({"stats": {"lists": {"test": {"listed": 3}}}}, "test") == 3
    assert cxr14.listed_images({"stats": {"lists": {"test": {"listed": 3}}}}, "validation") is None
    assert cxr14.listed_images({"test": []}, "test") is None  # a hand-made datalist


def test_metadata_names_the_findings_and_the_input_channels():
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert list(meta["network_data_format"]["outputs"]["pred"]["channel_def"].values()) == list(FINDINGS)
    for name in ("train.json", "pretrain.json", "inference.json"):
        config = json.loads((CONFIGS / name).read_text())
        assert config["in_channels"] == meta["network_data_format"]["inputs"]["image"]["num_channels"]


@pytest.mark.slow
def test_multi_gpu_training_runs_on_cpu_with_gloo(pretrained, data, tmp_path):
    """Two processes with torchrun (gloo on CPU): the validation AUC is gathered from both ranks."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mae.pt").write_bytes((pretrained / "models" / "mae.pt").read_bytes())
    log = bundle_run(configs("train.json", "multi_gpu_train.json"),
                     {**TINY, "dataset_dir": str(data), "epochs": 1, "batch_size": 8, "val_batch_size": 8,
                      "val_fraction": 0.3, "bundle_root": str(tmp_path)}, cwd=tmp_path, torchrun=True)
    assert (tmp_path / "models" / "model.pt").is_file() and (tmp_path / "models" / "checkpoint.pt").is_file()
    assert "MAE encoder from" in log and "val_mean_auc" in log
    # the evaluation overlay: two processes score the test images as one does (every image once)
    evaluate = {**TINY, "dataset_dir": str(data), "val_batch_size": 8, "val_fraction": 0.3,
                "bundle_root": str(tmp_path)}
    bundle_run(configs("train.json", "evaluate.json"), {**evaluate, "eval_dir": str(tmp_path / "one")}, cwd=tmp_path)
    bundle_run(configs("train.json", "evaluate.json", "multi_gpu_evaluate.json"),
               {**evaluate, "eval_dir": str(tmp_path / "two")}, cwd=tmp_path, torchrun=True)
    one, two = (json.loads((tmp_path / folder / "auc.json").read_text()) for folder in ("one", "two"))
    assert one["num_images"] == two["num_images"] > 0
    assert one["mean_auc"] == pytest.approx(two["mean_auc"], abs=1e-6)


def test_csv_errors_are_reported_on_the_right_line(tmp_path):
    header = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,x,y,z,w\n"
    rows = ["a.png,Mass,0,1,40,M,PA,1,1,1,1", 'b.png,"Mass,0,2,40,M,PA,1,1,1,1', "c.png,Mass,0,3,40,M,PA,1,1,1,1"]
    csv_file = tmp_path / "Data_Entry_2017.csv"
    csv_file.write_text(header + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match="line 3: a quoted field that starts on this line is not closed"):
        read_data_entry(str(csv_file))
    csv_file.write_text(header)
    for name in ("train_val_list.txt", "test_list.txt"):
        (tmp_path / name).write_text("")
    with pytest.raises(ValueError, match="lists no images .it has a header but no rows."):
        build_datalist(str(tmp_path))
