"""DICOM series folders that MONAI's ``ITKReader`` would read in part, or with slices out of place, are refused by
``LoadImaged`` before they are read, the error naming the folder and the problem (``shared.data.dicom_series``):

- one series that ITK splits into parts by its series details (the last slices of another slice thickness, series
  number, date or sequence name), which ITK reads the first part of; the parts are grouped as ITK groups them;
- a missing slice, slices sent twice, slices of another orientation, a gantry-tilted series, which ITK reads at one
  spacing along the slices' normal;
- while series whose positions are written rounded (to 0.1 mm), and folders of one or two slices, are still read.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from shared.data.dicom_series import read_image_headers, series_parts
from shared.transforms.io import LoadImaged
from shared.utils.errors import InputError
from tests.helpers import write_dicom_series

pydicom = pytest.importorskip("pydicom")
itk = pytest.importorskip("itk")

# 8 columns of 3 mm, 6 rows of 3.2 mm; slice k at -50 + 4k mm (LPS z)
AFFINE = np.array([[-3.0, 0, 0, 60], [0, -3.2, 0, 57], [0, 0, 4.0, -50], [0, 0, 0, 1]])


def _series(folder: Path, slices: int = 26, affine: np.ndarray = AFFINE) -> Path:
    """A CT series of ``slices`` 8 x 6 images, ``slice<k>.dcm`` for slice ``k``."""
    write_dicom_series(np.zeros((8, 6, slices), np.int16), affine, folder)
    return folder


def _edit(folder: Path, edit: Callable[[object, int], None]) -> None:
    """Rewrite every file of ``folder`` after ``edit(dataset, slice index)``."""
    for k, path in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(path)
        edit(ds, k)
        ds.save_as(path)


def _load(folder: Path) -> tuple[int, ...]:
    """The shape of the image ``LoadImaged`` reads from ``folder``."""
    return tuple(LoadImaged("image", image_only=True)({"image": str(folder)})["image"].shape)


def _itk_parts(folder: Path) -> list[int]:
    """The number of files of each series ITK finds in ``folder`` when MONAI's ``ITKReader`` asks, sorted."""
    names = itk.GDCMSeriesFileNames.New()
    names.SetUseSeriesDetails(True)
    names.AddSeriesRestriction("0008|0021")
    names.SetDirectory(str(folder))
    return sorted(len(names.GetFileNames(uid)) for uid in names.GetSeriesUIDs())


def _round_positions(decimals: int) -> Callable[[object, int], None]:
    def edit(ds, k: int) -> None:
        ds.ImagePositionPatient = [round(float(v), decimals) for v in ds.ImagePositionPatient]
    return edit


@pytest.mark.parametrize("spacing", [3.125, 0.75, 0.625])
def test_thin_slices_with_positions_rounded_to_a_tenth_of_a_mm_are_read(spacing, tmp_path):
    """Rounded to 0.1 mm, 0.625 mm slices have gaps of 0.6 and 0.7 mm (a gap 0.1 mm from the median was refused for
    most first positions); a slice lost from them is still refused."""
    for start in (-50.03, -50.01, -49.96, -49.92, -50.08):
        affine = AFFINE.copy()
        affine[2, 2:] = spacing, start
        folder = _series(tmp_path / f"from{start}", slices=40, affine=affine)
        _edit(folder, _round_positions(1))
        assert _load(folder) == (8, 6, 40)
    (folder / "slice020.dcm").unlink()
    with pytest.raises(InputError, match="a missing slice?"):
        _load(folder)


@pytest.mark.parametrize("spacing", [0.25, 0.3])
def test_a_slice_lost_from_very_thin_slices_is_refused(spacing, tmp_path):
    """A lost slice moves one by about half the spacing, under 0.15 mm here: the tolerance stays below it."""
    affine = AFFINE.copy()
    affine[2, 2:] = spacing, -50.0
    folder = _series(tmp_path / "case", slices=100, affine=affine)
    assert _load(folder) == (8, 6, 100)
    (folder / "slice050.dcm").unlink()
    with pytest.raises(InputError, match="a missing slice?"):
        _load(folder)


def test_a_series_with_a_missing_slice_is_refused(tmp_path):
    """ITK reads 25 slices of 26 at 4.167 mm, one slice lost, with only a note on stderr."""
    thin = AFFINE.copy()
    thin[2, 2:] = 3.125, -50.03
    rounded = _series(tmp_path / "rounded", affine=thin)
    _edit(rounded, _round_positions(1))  # gaps of 3.1 and 3.2 mm: read
    assert _load(rounded) == (8, 6, 26)

    folder = _series(tmp_path / "case")
    (folder / "slice005.dcm").unlink()
    message = (f"{folder}: uneven slice spacing: gaps of 4 and 8 mm (between -34 and -26 mm along the slice normal): "
               "a missing slice? ITK would read it at one spacing of 4.167 mm")
    with pytest.raises(InputError, match=re.escape(message)):
        _load(folder)


def test_slices_sent_twice_are_refused(tmp_path):
    assert _load(_series(tmp_path / "one", slices=1)) == (8, 6, 1)
    assert _load(_series(tmp_path / "two", slices=2)) == (8, 6, 2)

    folder = _series(tmp_path / "case")
    for path in sorted(folder.iterdir())[:3]:  # sent again, with new SOP instance UIDs
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(folder / f"again_{path.name}", enforce_file_format=True)
    message = f"{folder}: slice positions repeat at -50, -46, -42 mm along the slice normal (29 files at 26 positions)"
    with pytest.raises(InputError, match=re.escape(message)):
        _load(folder)


def test_slices_of_another_orientation_are_refused(tmp_path):
    folder = _series(tmp_path / "case")
    tilted = [1.0, 0.0, 0.0, 0.0, 0.995, 0.0998749]  # rows tilted by 5.7 degrees about the columns' axis

    def edit(ds, k: int) -> None:
        if k >= 20:
            ds.ImageOrientationPatient = tilted

    _edit(folder, edit)
    with pytest.raises(InputError, match=re.escape(f"{folder}: its slices do not share one orientation")) as error:
        _load(folder)
    assert "in 20 files, another ([1.0, 0.0, 0.0, 0.0, 0.995, 0.0999]) in 6" in str(error.value)


def test_a_gantry_tilted_series_is_refused(tmp_path):
    """Each slice 0.3 mm further along y: ITK reads an untilted volume, its last slice 7.5 mm from its place."""
    folder = _series(tmp_path / "case")

    def edit(ds, k: int) -> None:
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.3 * k, z]

    _edit(folder, edit)
    message = (f"{folder}: its slices are not stacked along their normal: their positions drift 7.5 mm sideways (a "
               "gantry tilt of about 4.3 degrees?)")
    with pytest.raises(InputError, match=re.escape(message)):
        _load(folder)


@pytest.mark.parametrize("attribute, value", [("SliceThickness", 2.0), ("SeriesNumber", 2), ("SeriesDate", "20240102"),
                                              ("SequenceName", "helical")])
def test_a_series_that_itk_splits_is_refused_naming_its_parts(attribute, value, tmp_path):
    """The last 6 of 26 slices differ in one of ITK's series details: ITK (as MONAI asks it) reads 20 or 6 of them."""
    folder = _series(tmp_path / "case")

    def edit(ds, k: int) -> None:
        if k >= 20:
            setattr(ds, attribute, value)

    _edit(folder, edit)
    assert _itk_parts(folder) == [6, 20]
    with pytest.raises(InputError, match=re.escape(f"{folder}: holds one DICOM series whose files differ in "
                                                   f"{attribute} (")) as error:
        _load(folder)
    assert f"{attribute} {value}: 6 of the files" in str(error.value)
    assert ": 20 of the files" in str(error.value) and "ITK reads these as 2 series" in str(error.value)


def test_series_parts_are_the_series_itk_finds(tmp_path):
    """Whatever ITK splits by is split, the rest is not: padding and other dates do not split a series, and the
    values run together as in GDCM's series identifier (series number 1 with thickness 23 is series 12 with 3)."""

    def last_slices(**values) -> Callable[[object, int], None]:
        def edit(ds, k: int) -> None:
            if k >= 4:
                for attribute, value in values.items():
                    setattr(ds, attribute, value)
        return edit

    def run_together(ds, k: int) -> None:
        ds.SeriesNumber, ds.SliceThickness = (1, "23") if k < 4 else (12, "3")

    edits = {
        "thickness": last_slices(SliceThickness="3"),  # 4.0 elsewhere
        "padded thickness": last_slices(SliceThickness=" 4.0"),
        "series number": last_slices(SeriesNumber=7),
        "acquisition date": last_slices(AcquisitionDate="20240102"),
        "series time": last_slices(SeriesTime="120102"),
        "run together": run_together,
    }
    for name, edit in edits.items():
        folder = _series(tmp_path / name.replace(" ", "_"), slices=6)
        _edit(folder, edit)
        parts = sorted(len(part) for part in series_parts(read_image_headers(str(folder))))
        assert parts == _itk_parts(folder), name
        shutil.rmtree(folder)
