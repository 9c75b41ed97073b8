"""DICOM SEG output of the segmentation bundles (``--output_format dicom_seg``).

- The BTCV bundle's inference, run from the command line on a synthetic CT written as a DICOM series, writes a SEG
  whose frames equal the NIfTI label map of the default output voxel for voxel, in the series' geometry, that
  references the series, and whose segments carry the class names and SNOMED CT codes.
- Inputs that are not DICOM series, and unknown output formats, are refused before any work.
- The writer (:class:`SaveDicomSegd`) on known label maps: every BTCV class, the BraTS sub-regions of both label
  layouts (the BraTS bundle reads NIfTI only, so its DICOM SEG path is tested here, on an MR series), label maps off
  the series' grid, and an output that would overwrite a slice of the series.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.networks.nets import UNETR

from shared.data.brats import get_layout
from shared.data.dicom_seg import (
    SEGMENT_CODES,
    check_output_format,
    match_slices,
    read_series_headers,
    require_dicom_series,
    write_segmentation,
)
from shared.transforms.dicom_seg import SaveDicomSegd
from shared.transforms.io import LoadImaged
from shared.utils.errors import InputError, root_cause
from tests.helpers import (
    BRATS,
    SEG,
    SMALL,
    TINY_ENCODER,
    TINY_UNETR,
    bundle_importable,
    bundle_run,
    write_dicom_series,
)
from tools import synthetic
from tools.zoo import package_bundles

hd = pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")

CLASS_NAMES = json.loads((SEG / "inference.json").read_text())["class_names"]


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> tuple[Path, Path]:
    """A synthetic abdominal CT (48 x 40 x 24, anisotropic LPS-like affine) as a NIfTI file and as a DICOM series."""
    btcv = Path(synthetic.make_btcv(str(tmp_path_factory.mktemp("btcv")), num_train=0, num_val=0, num_test=1,
                                    shape=(48, 40, 24), body_scale=0.1))
    source = btcv / "imagesTs" / "img0061.nii.gz"
    image = nib.load(source)
    folder = tmp_path_factory.mktemp("dicom") / "series_1"
    write_dicom_series(np.asanyarray(image.dataobj), image.affine, folder)
    return folder, source


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A bundle root with tiny untrained UNETR weights (seeded: its predictions hold several organs)."""
    root = tmp_path_factory.mktemp("bundle")
    (root / "models").mkdir()
    torch.manual_seed(0)
    torch.save(UNETR(1, 14, 32, feature_size=8, **TINY_ENCODER).state_dict(), root / "models" / "model.pt")
    return root


def _headers(folder: Path) -> list:
    """The series' slice headers in slice order (the helper writes slice k as instance k + 1)."""
    return sorted((pydicom.dcmread(p, stop_before_pixels=True) for p in folder.glob("*.dcm")),
                  key=lambda ds: int(ds.InstanceNumber))


def _seg_label_map(path: Path, headers: list, values: list[int] | None = None) -> np.ndarray:
    """The SEG at ``path`` as a ``(X, Y, Z)`` label map on the series' grid: its frames by source instance, segment
    numbers mapped back to label ``values`` (segment ``i`` = ``values[i - 1]``; identity when None)."""
    seg = hd.seg.segread(str(path))
    frames = seg.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in headers], combine_segments=True,
                                               skip_overlap_checks=True)  # (Z, rows, columns)
    if values is not None:
        frames = np.asarray([0, *values])[frames]
    return np.asarray(frames).transpose(2, 1, 0)


def _assert_references(seg, headers: list) -> None:
    """``seg`` is in the series' study and frame of reference and references its series and only its images."""
    first = headers[0]
    assert seg.Modality == "SEG" and seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
    assert seg.StudyInstanceUID == first.StudyInstanceUID and seg.PatientID == first.PatientID
    assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert seg.SeriesInstanceUID != first.SeriesInstanceUID
    (referenced,) = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == first.SeriesInstanceUID
    instances = {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence}
    assert instances <= {ds.SOPInstanceUID for ds in headers}


def _segments(seg) -> list[tuple[int, str, str]]:
    return [(int(s.SegmentNumber), str(s.SegmentLabel), str(s.SegmentedPropertyTypeCodeSequence[0].CodeValue))
            for s in seg.SegmentSequence]


# ---------------------------------------------------------------------------------------------------------------
# the BTCV bundle from the command line
# ---------------------------------------------------------------------------------------------------------------


def test_dicom_seg_of_a_series_equals_the_nifti_label_map(series, bundle, tmp_path):
    folder, source = series
    files_before = sorted(p.name for p in folder.iterdir())
    overrides = {"bundle_root": str(bundle), "input_files": str(folder), **SMALL, **TINY_UNETR}
    bundle_run([SEG / "inference.json"], {**overrides, "output_dir": str(tmp_path / "nifti")})
    bundle_run([SEG / "inference.json"], {**overrides, "output_dir": str(tmp_path / "dicom"),
                                          "output_format": "dicom_seg"})

    assert sorted(p.name for p in (tmp_path / "dicom").iterdir()) == ["series_1_seg.dcm"]  # no temporary left
    assert sorted(p.name for p in folder.iterdir()) == files_before
    nifti = nib.load(tmp_path / "nifti" / "series_1_seg.nii.gz")
    label = np.asarray(nifti.dataobj)
    np.testing.assert_allclose(nifti.affine, nib.load(source).affine, atol=1e-3)  # the series' geometry
    present = set(np.unique(label).tolist()) - {0}
    assert len(present) >= 3, f"the comparison needs several organs predicted, got {present}"

    headers = _headers(folder)
    path = tmp_path / "dicom" / "series_1_seg.dcm"
    np.testing.assert_array_equal(_seg_label_map(path, headers), label)
    seg = hd.seg.segread(str(path))
    _assert_references(seg, headers)
    assert [name for _, name, _ in _segments(seg)] == CLASS_NAMES
    assert [n for n, _, _ in _segments(seg)] == list(range(1, 14))
    assert seg.SegmentationType == "BINARY" and seg.ManufacturerModelName == "unetr_btcv_seg"
    version = json.loads((SEG / "metadata.json").read_text())["version"]
    assert seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == version


def test_dicom_seg_of_a_nifti_input_fails_naming_the_file(series, bundle, tmp_path):
    _, source = series
    output = bundle_run([SEG / "inference.json"], {
        "bundle_root": str(bundle), "input_files": str(source), "output_dir": str(tmp_path / "out"),
        "output_format": "dicom_seg", **SMALL, **TINY_UNETR}, expect_failure=True)
    last = output.strip().splitlines()[-1]
    assert str(source) in last and "is not a DICOM series" in last, output[-2000:]
    assert not (tmp_path / "out").exists()


def test_a_series_whose_seg_cannot_be_made_does_not_stop_the_others(series, bundle, tmp_path):
    """A series without FrameOfReferenceUID fails after the network (its SEG cannot reference one): it is reported
    and the run goes on to the next series, then exits non-zero naming it."""
    folder, _ = series
    unreferenced = tmp_path / "no_frame_of_reference"
    shutil.copytree(folder, unreferenced)
    for path in unreferenced.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        del ds.FrameOfReferenceUID
        ds.save_as(path)
    output = bundle_run([SEG / "inference.json"], {
        "bundle_root": str(bundle), "input_files": [str(unreferenced), str(folder)],
        "output_dir": str(tmp_path / "out"), "output_format": "dicom_seg", **SMALL, **TINY_UNETR}, expect_failure=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["series_1_seg.dcm"]
    tail = output[output.rindex("error: InputFailures"):]
    assert "1 of 2 inputs failed (1 done)" in tail
    assert f"{unreferenced}: the series has no FrameOfReferenceUID" in tail


# ---------------------------------------------------------------------------------------------------------------
# the configs: output_format checked before any work, in both bundles
# ---------------------------------------------------------------------------------------------------------------


def _datalist(configs: Path, **overrides) -> list:
    """The data of the dataset of a bundle's inference config (its ``datalist``, checked against the output
    format), resolved with ``overrides``."""
    with bundle_importable(configs.parent):
        parser = ConfigParser()
        parser.read_config(str(configs / "inference.json"))
        parser.update(overrides)
        return parser.get_parsed_content("dataset#data")


def _datalist_error(configs: Path, **overrides) -> str:
    """The cause (see ``shared.utils.errors.root_cause``) of the failure of :func:`_datalist`, as a string."""
    with pytest.raises(RuntimeError) as failure:  # MONAI wraps the error of a component it instantiates
        _datalist(configs, **overrides)
    return str(root_cause(failure.value))


@pytest.mark.parametrize("configs", [SEG, BRATS], ids=["btcv", "brats"])
def test_an_unknown_output_format_is_refused(configs, series, tmp_path):
    folder, _ = series
    brats = Path(synthetic.make_brats(str(tmp_path / "brats"), layout="msd", num_cases=1, num_test=1,
                                      shape=(16, 16, 16)))
    inputs = {"input_files": str(folder)} if configs == SEG else {"dataset_dir": str(brats)}
    error = _datalist_error(configs, output_format="dicom", **inputs)
    assert re.search("output_format must be one of 'nifti', 'dicom_seg'.*got 'dicom'", error), error
    with pytest.raises(ValueError, match="got 'DICOM_SEG'"):
        check_output_format("DICOM_SEG")


def test_brats_inference_refuses_dicom_seg_for_its_nifti_inputs(tmp_path):
    brats = Path(synthetic.make_brats(str(tmp_path / "brats"), layout="msd", num_cases=1, num_test=1,
                                      shape=(16, 16, 16)))
    assert len(_datalist(BRATS, dataset_dir=str(brats))) == 1  # NIfTI, the default, is fine
    error = _datalist_error(BRATS, dataset_dir=str(brats), output_format="dicom_seg")
    assert re.search(r"imagesTs/BRATS_\d+\.nii\.gz: is not a DICOM series", error), error


def test_require_dicom_series_takes_series_folders_only(series):
    folder, source = series
    assert require_dicom_series([{"image": str(folder)}], "dicom_seg") == [{"image": str(folder)}]
    for bad in (str(source), [str(folder), str(folder)], str(folder.parent)):
        with pytest.raises(InputError, match="is not a DICOM series"):
            require_dicom_series([{"image": bad}], "dicom_seg")


def test_packaged_segmentation_bundles_carry_the_dicom_seg_modules():
    for name in ("unetr_btcv_seg", "unetr_brats_seg"):
        files = package_bundles.scripts_files(package_bundles.BUNDLES_DIR / name)
        assert {"scripts/data/dicom_seg.py", "scripts/data/dicom_series.py", "scripts/transforms/dicom_seg.py",
                "scripts/transforms/checks.py", "scripts/utils/atomic.py",
                "scripts/utils/errors.py"} <= set(files), name


# ---------------------------------------------------------------------------------------------------------------
# the writer on known label maps
# ---------------------------------------------------------------------------------------------------------------


def _label(array: np.ndarray, affine: np.ndarray, source: Path) -> MetaTensor:
    """``(1, X, Y, Z)`` label map as ``Invertd`` leaves it: RAS affine, source path in the metadata."""
    return MetaTensor(torch.as_tensor(array[None]), affine=torch.as_tensor(affine, dtype=torch.float64),
                      meta={"filename_or_obj": str(source)})


def _every_class(shape: tuple[int, int, int], values: list[int]) -> np.ndarray:
    """A label map with each of ``values`` in its own slab (along axis 0) and background in between."""
    label = np.zeros(shape, dtype=np.uint8)
    width = shape[0] // (len(values) + 1)
    for i, value in enumerate(values):
        label[i * width + 1:(i + 1) * width, 2:-2, i % shape[2]:] = value
    return label


def test_writer_writes_every_btcv_class(series, tmp_path):
    folder, source = series
    affine = nib.load(source).affine
    label = _every_class((48, 40, 24), list(range(1, 14)))
    saver = SaveDicomSegd("pred", tmp_path, CLASS_NAMES, "unetr_btcv_seg", "0.0.0")
    saver({"pred": _label(label, affine, folder)})
    headers = _headers(folder)
    path = tmp_path / "series_1_seg.dcm"
    np.testing.assert_array_equal(_seg_label_map(path, headers), label)
    seg = hd.seg.segread(str(path))
    _assert_references(seg, headers)
    assert [(n, name) for n, name, _ in _segments(seg)] == list(enumerate(CLASS_NAMES, start=1))
    segments = {str(s.SegmentLabel): s for s in seg.SegmentSequence}
    for name, item in segments.items():
        code = SEGMENT_CODES[name]
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == code.category[0] == "91723000"
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == code.type[0]
    assert segments["right kidney"].SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning == "Right"
    assert segments["left adrenal gland"].SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning == "Left"
    veins = segments["portal and splenic veins"].PrimaryAnatomicStructureSequence
    assert [c.CodeMeaning for c in veins] == ["Portal vein", "Splenic vein"]


@pytest.mark.parametrize("layout", ["brats2021", "msd"])
def test_writer_writes_the_brats_sub_regions(layout, tmp_path):
    affine = np.array([[-1.0, 0, 0, 90], [0, -1.0, 0, 120], [0, 0, 1.0, -70], [0, 0, 0, 1]])
    folder = tmp_path / "flair"
    write_dicom_series(np.zeros((20, 16, 12), np.int16), affine, folder, modality="MR")
    labels = get_layout(layout).labels  # e.g. {1: necrotic tumour core, 2: peritumoral oedema, 4: enhancing tumour}
    values = sorted(labels)
    label = _every_class((20, 16, 12), values)
    SaveDicomSegd("pred", tmp_path / "out", labels, "unetr_brats_seg")({"pred": _label(label, affine, folder)})
    path = tmp_path / "out" / "flair_seg.dcm"
    headers = _headers(folder)
    np.testing.assert_array_equal(_seg_label_map(path, headers, values), label)
    seg = hd.seg.segread(str(path))
    _assert_references(seg, headers)
    assert [name for _, name, _ in _segments(seg)] == [labels[v] for v in values]
    for item in seg.SegmentSequence:
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Morphologically Abnormal Structure"
        assert item.AnatomicRegionSequence[0].CodeMeaning == "Brain"


def test_writer_refuses_what_it_cannot_write(series, tmp_path):
    folder, source = series
    affine = nib.load(source).affine
    label = _every_class((48, 40, 24), [1, 6])
    saver = SaveDicomSegd("pred", tmp_path / "out", CLASS_NAMES, "unetr_btcv_seg")
    with pytest.raises(InputError, match=f"{source}: is not a DICOM series"):
        saver({"pred": _label(label, affine, source)})
    shifted = affine.copy()
    shifted[2, 3] += 1.0
    with pytest.raises(InputError, match="not on the grid of the DICOM series"):
        saver({"pred": _label(label, shifted, folder)})
    with pytest.raises(InputError, match="not on the grid of the DICOM series"):
        saver({"pred": _label(label[:, :, :-1], affine, folder)})
    with pytest.raises(InputError, match=r"label values \[20\]"):
        saver({"pred": _label(np.where(label == 6, 20, label).astype(np.uint8), affine, folder)})
    with pytest.raises(ValueError, match="no coded concepts for the class names \\['kidneys'\\]"):
        SaveDicomSegd("pred", tmp_path, ["liver", "kidneys"], "x")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_no_seg_is_written_into_the_series_folder(tmp_path):
    """A SEG in the series folder would be loaded as the series by the next run (the lowest series UID wins): the
    output folder is refused, by the datalist check before any work and by the writer; no slice is ever overwritten."""
    affine = np.diag([-2.0, -2.0, 3.0, 1.0])
    folder = tmp_path / "case"
    write_dicom_series(np.zeros((8, 6, 4), np.int16), affine, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    label = _label(_every_class((8, 6, 4), [1]), affine, folder)
    for output_dir in (folder, folder / "segmentations"):
        with pytest.raises(InputError, match="would receive the DICOM SEG"):
            require_dicom_series([{"image": str(folder)}], "dicom_seg", output_dir=str(output_dir))
        with pytest.raises(InputError, match="would receive the DICOM SEG"):
            SaveDicomSegd("pred", output_dir, ["spleen"], "x")({"pred": label})
    assert require_dicom_series([{"image": str(folder)}], "dicom_seg", output_dir=str(tmp_path / "out"))
    slice_file = folder / "slice000.dcm"
    with pytest.raises(InputError, match="is an input of the run"):
        write_segmentation(pydicom.Dataset(), slice_file, [str(slice_file)])
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_folder_of_two_series_is_refused_when_read(tmp_path):
    """A SEG copied into its series folder (or any second series there) would be read instead of the CT."""
    affine = np.diag([-2.0, -2.0, 3.0, 1.0])
    folder = tmp_path / "case"
    write_dicom_series(np.zeros((8, 6, 4), np.int16), affine, folder)
    assert LoadImaged("image", image_only=True)({"image": str(folder)})["image"].shape == (8, 6, 4)
    seg = SaveDicomSegd("pred", tmp_path / "out", ["spleen"], "x").save(_label(_every_class((8, 6, 4), [1]), affine,
                                                                               folder))
    shutil.copy(seg, folder / "case_seg.dcm")
    with pytest.raises(InputError, match=r"case: holds 2 DICOM series .*give each series its own folder") as error:
        LoadImaged("image", image_only=True)({"image": str(folder)})
    assert ": CT, 4 of the files" in str(error.value) and ": SEG, 1 of the files" in str(error.value)


def test_a_label_map_without_any_class_gets_no_seg(tmp_path, caplog):
    """highdicom would encode every frame of every segment (13 x the slices of a CT, about 128 MB at 300 slices)."""
    affine = np.diag([-2.0, -2.0, 3.0, 1.0])
    folder = tmp_path / "case"
    write_dicom_series(np.zeros((8, 6, 4), np.int16), affine, folder)
    saver = SaveDicomSegd("pred", tmp_path / "out", CLASS_NAMES, "x")
    assert saver.save(_label(np.zeros((8, 6, 4), np.uint8), affine, folder)) is None
    assert not (tmp_path / "out").exists() and f"{folder}: no class was found" in caplog.text
    earlier = saver.save(_label(_every_class((8, 6, 4), [1]), affine, folder))  # an earlier run found the spleen
    assert saver.save(_label(np.zeros((8, 6, 4), np.uint8), affine, folder)) is None
    assert not os.path.exists(earlier) and f"the earlier {earlier}, which no longer describes" in caplog.text


def test_slices_are_matched_by_position_not_by_file_name_or_instance_number(tmp_path):
    """Files named and numbered in another order than their positions: each frame still references the image at
    its slice's position (a writer that followed the names or the instance numbers fails this)."""
    affine = np.diag([-2.0, -2.0, 3.0, 1.0])
    folder = tmp_path / "case"
    write_dicom_series(np.zeros((8, 6, 5), np.int16), affine, folder)
    order = [3, 0, 4, 1, 2]  # slice k becomes file name order[k] and instance number 5 - k
    for k, path in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = 5 - k
        ds.save_as(str(folder / f"image{order[k]}.tmp"), enforce_file_format=True)
        path.unlink()
    for path in folder.iterdir():
        path.rename(path.with_suffix(".dcm"))
    label = _every_class((8, 6, 5), [1, 2])  # differs from slice to slice
    SaveDicomSegd("pred", tmp_path / "out", ["spleen", "right kidney"], "x")({"pred": _label(label, affine, folder)})
    by_position = sorted((pydicom.dcmread(p, stop_before_pixels=True) for p in folder.glob("*.dcm")),
                         key=lambda ds: float(ds.ImagePositionPatient[2]))
    np.testing.assert_array_equal(_seg_label_map(tmp_path / "out" / "case_seg.dcm", by_position), label)


@pytest.mark.parametrize("spacing", [3.125, 0.625])
def test_a_series_with_positions_rounded_to_a_tenth_of_a_mm_gets_its_seg(spacing, tmp_path):
    """Positions written to 0.1 mm: on the grid ITK reads, the label map's slices lie up to 0.1 mm from their images
    (0.01 mm was refused: "no image at the position of slice 1"; a tenth of 0.625 mm too), each at its own image."""
    affine = np.array([[-2.0, 0, 0, 0], [0, -2.0, 0, 0], [0, 0, spacing, -50.03], [0, 0, 0, 1]])
    folder = tmp_path / "case"
    write_dicom_series(np.zeros((8, 6, 6), np.int16), affine, folder)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [round(float(v), 1) for v in ds.ImagePositionPatient]
        ds.save_as(path)
    image = LoadImaged("image", image_only=True)({"image": str(folder)})["image"]
    label = _every_class((8, 6, 6), [1, 2])  # differs from slice to slice
    path = SaveDicomSegd("pred", tmp_path / "out", ["spleen", "right kidney"], "x").save(
        _label(label, image.affine, folder))
    np.testing.assert_array_equal(_seg_label_map(path, _headers(folder)), label)


def test_two_slices_never_reference_one_image(tmp_path):
    """With a tolerance of 2.4 mm, images at 0, 6, 12 and 20 mm would serve the slices at 0, 4, 8 and 12 mm with
    the image at 6 mm twice (and the one at 20 mm never): refused."""
    affine = np.diag([-2.0, -2.0, 4.0, 1.0])
    folder = tmp_path / "case"
    write_dicom_series(np.zeros((8, 6, 4), np.int16), affine, folder)
    for path, z in zip(sorted(folder.iterdir()), (0.0, 6.0, 12.0, 20.0)):
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], z]
        ds.save_as(path)
    with pytest.raises(InputError, match=r"slices \[1, 2\] all lie at the image at \[-?0.0, -?0.0, 6.0\] mm"):
        match_slices(read_series_headers(folder), affine, (8, 6, 4), str(folder), tolerance_mm=2.4)


def test_a_series_of_another_pixel_spacing_is_refused(tmp_path):
    """Columns 2 mm apart, rows 3 mm: the label map of that grid is taken, the same grid with the two spacings
    swapped (the same origin, size and orientation) is refused."""
    affine = np.diag([-2.0, -3.0, 3.0, 1.0])
    folder = tmp_path / "case"
    write_dicom_series(np.zeros((8, 6, 4), np.int16), affine, folder)
    label = _every_class((8, 6, 4), [1])
    saver = SaveDicomSegd("pred", tmp_path / "out", ["spleen"], "x")
    np.testing.assert_array_equal(_seg_label_map(saver.save(_label(label, affine, folder)), _headers(folder)), label)
    with pytest.raises(InputError, match=r"pixel spacing \[2.0, 3.0\] mm"):
        saver({"pred": _label(label, np.diag([-3.0, -2.0, 3.0, 1.0]), folder)})


def test_writer_takes_an_anonymised_series_and_refuses_two_series_on_one_grid(tmp_path):
    affine = np.diag([-2.0, -2.0, 3.0, 1.0])
    folder = tmp_path / "case"
    write_dicom_series(np.zeros((8, 6, 4), np.int16), affine, folder)
    for path in folder.iterdir():  # type-2 attributes removed, as some anonymisers do
        ds = pydicom.dcmread(path)
        for attribute in ("PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                          "AccessionNumber"):
            delattr(ds, attribute)
        ds.save_as(path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    label = _every_class((8, 6, 4), [1])
    saver = SaveDicomSegd("pred", tmp_path / "out", ["spleen"], "x")
    saver({"pred": _label(label, affine, folder)})
    np.testing.assert_array_equal(_seg_label_map(tmp_path / "out" / "case_seg.dcm", _headers(folder)), label)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

    write_dicom_series(np.zeros((8, 6, 4), np.int16), affine, tmp_path / "other")
    for path in (tmp_path / "other").iterdir():
        path.rename(folder / f"other_{path.name}")
    with pytest.raises(InputError, match="holds several DICOM series on the label map's grid"):
        saver({"pred": _label(label, affine, folder)})


def test_series_folders_named_by_their_uid_keep_their_whole_name(tmp_path):
    """Exports often name a series' folder by its SeriesInstanceUID: its dots are not an extension, so two series
    whose UIDs differ in the last part get two outputs, named by the whole UID."""
    from shared.data.inputs import image_datalist, output_stem

    affine = np.diag([-2.0, -2.0, 3.0, 1.0])
    folders = [tmp_path / "1.2.840.113619.2.55.3.5", tmp_path / "1.2.840.113619.2.55.3.6"]
    for folder in folders:
        write_dicom_series(np.zeros((8, 6, 4), np.int16), affine, folder)
    assert [output_stem(str(f)) for f in folders] == [f.name for f in folders]
    assert output_stem(str(folders[0]) + "/") == folders[0].name
    assert output_stem(str(tmp_path / "ct.v2.nii.gz")) == "ct.v2"  # a file keeps the rule of before
    assert image_datalist([str(f) for f in folders]) == [{"image": str(f)} for f in folders]
    saver = SaveDicomSegd("pred", tmp_path / "out", ["spleen"], "x")
    label = _every_class((8, 6, 4), [1])
    for folder in folders:
        saver({"pred": _label(label, affine, folder)})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{f.name}_seg.dcm" for f in folders]
