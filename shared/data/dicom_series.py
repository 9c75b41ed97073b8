"""Checks, on the headers alone, that MONAI's ``ITKReader`` will read a DICOM series folder whole and in place.

``ITKReader`` reads a folder with ITK (GDCM), which, with no more than a Python warning or a note on stderr:

- reads one series of a folder that holds several (e.g. a DICOM SEG saved into the folder instead of the CT):
  :func:`check_one_series`;
- splits one series into parts by "series details" (:data:`SERIES_DETAILS`: the last slices of another slice
  thickness, series number or date) and reads the first part only: :func:`check_series_details`;
- stacks the slices, sorted along their normal, at one spacing (the first and last slices' distance over the number
  of gaps) along that normal, so that a missing slice, a slice sent twice, slices of another orientation or a gantry
  tilt put slices at the wrong place (26 slices of 4 mm, one lost, are read as 25 slices of 4.167 mm):
  :func:`check_slice_geometry`.

:func:`check_series_folder` runs the three on headers read once (no pixel data).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..utils.errors import InputError

__all__ = [
    "SERIES_DETAILS",
    "read_image_headers",
    "check_one_series",
    "series_parts",
    "check_series_details",
    "check_slice_geometry",
    "check_series_folder",
    "position_tolerance_mm",
]

SERIES_DETAILS = ("SeriesNumber", "SequenceName", "SliceThickness", "Rows", "Columns", "SeriesDate")
"""The attributes by which ITK splits one series into parts, in the order GDCM appends them to the series UID:
those of ``GDCMSeriesFileNames.SetUseSeriesDetails(True)`` and the series date MONAI's ``ITKReader`` adds
(``AddSeriesRestriction("0008|0021")``)."""

_GEOMETRY = ("ImagePositionPatient", "ImageOrientationPatient")
_HEADER_TAGS = ["SeriesInstanceUID", "Modality", *SERIES_DETAILS, *_GEOMETRY]
SAME_POSITION_MM = 0.01
"""Slices closer than this along their normal are at the same position (positions are written to 0.01 mm or finer
for slices thin enough to matter)."""
MIN_TOLERANCE_MM = 0.15
"""The smallest tolerance on slice positions (:func:`position_tolerance_mm`): series that write positions rounded to
0.1 mm put a slice up to 0.1 mm from the line ITK draws through the first and last (each off by up to 0.05 mm)."""


def position_tolerance_mm(spacing: float, fraction: float = 0.1) -> float:
    """How far a slice may lie from where ITK puts it (and a label map's slice from its image): ``fraction`` of the
    slice ``spacing``, at least :data:`MIN_TOLERANCE_MM`, and under ``0.4 * spacing`` so that a missing slice, which
    moves one by about half the spacing, is always caught (slices thinner than 0.375 mm then need positions written
    finer than to 0.1 mm)."""
    return min(max(fraction * spacing, MIN_TOLERANCE_MM), 0.4 * spacing)


def read_image_headers(folder: str, tags: Sequence[str] | None = tuple(_HEADER_TAGS)) -> list[Any]:
    """The headers of the DICOM images in ``folder`` (files with ``Rows``), in file-name order, without pixel data;
    other files (not DICOM, a DICOMDIR, a report) and sub-folders are left out, as ITK leaves them out.

    Args:
        folder: a DICOM series folder.
        tags: the attributes to read (by default those these checks use); None reads every attribute.

    Returns:
        pydicom datasets, each with its path as ``filename``.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    headers = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=None if tags is None else list(tags))
        except (InvalidDicomError, OSError, ValueError):
            continue
        if "Rows" in ds:
            ds.filename = path
            headers.append(ds)
    return headers


def check_one_series(folder: str, headers: Sequence[Any]) -> None:
    """Refuse a DICOM folder that holds images of more than one series: MONAI's reader loads one of them (the
    lowest series UID) without a word, e.g. a DICOM SEG written into the folder instead of the CT.

    Args:
        folder: the folder, for the message.
        headers: its images' headers (:func:`read_image_headers`).

    Raises:
        InputError: naming the folder and its series (UID, modality, images).
    """
    series: dict[str, list[str]] = {}
    for ds in headers:
        series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(str(ds.get("Modality", "?")))
    if len(series) > 1:
        found = "; ".join(f"{uid}: {modality[0]}, {len(modality)} of the files" for uid, modality in series.items())
        raise InputError(folder, f"holds {len(series)} DICOM series ({found}), and only one would be read, without a "
                                 "word: give each series its own folder.")


def _detail_text(ds: Any, keyword: str) -> str:
    """The value of ``keyword`` in ``ds`` as GDCM appends it to the series identifier: its text with only letters,
    digits and dots kept (``" 2.0"`` and ``"2.0"`` are one value, ``"2"`` another); empty when absent."""
    value = ds.get(keyword)
    return "" if value is None else re.sub(r"[^A-Za-z0-9.]", "", str(value))


def series_parts(headers: Sequence[Any]) -> list[list[Any]]:
    """The headers of one series grouped into the parts ITK reads as separate series: by the series identifier
    GDCM builds, the values of :data:`SERIES_DETAILS` run together (so ``SeriesNumber`` 1 with ``SliceThickness``
    23 is one part with 12 and 3, as in ITK).

    Args:
        headers: the images' headers (:func:`read_image_headers`), of one series.

    Returns:
        the parts, each in file order, in the order of their first file.
    """
    parts: dict[str, list[Any]] = {}
    for ds in headers:
        parts.setdefault("".join(_detail_text(ds, k) for k in SERIES_DETAILS), []).append(ds)
    return list(parts.values())


def check_series_details(folder: str, headers: Sequence[Any]) -> None:
    """Refuse a series that ITK splits into parts (:func:`series_parts`): MONAI's ``ITKReader`` reads the first
    part only, with a warning that says the folder holds several series (e.g. 20 slices of a 26-slice CT).

    Args:
        folder: the folder, for the message.
        headers: its images' headers (:func:`read_image_headers`), of one series (:func:`check_one_series`).

    Raises:
        InputError: naming the folder, the attributes that differ and each part's values and number of files.
    """
    parts = series_parts(headers)
    if len(parts) < 2:
        return
    differing = [k for k in SERIES_DETAILS if len({_detail_text(part[0], k) for part in parts}) > 1]
    found = "; ".join(", ".join(f"{k} {part[0].get(k, 'absent')}" for k in differing) + f": {len(part)} of the files"
                      for part in parts)
    raise InputError(folder, f"holds one DICOM series whose files differ in {', '.join(differing)} ({found}): ITK "
                             f"reads these as {len(parts)} series and only one would be read, without a word. Give "
                             "each part its own folder.")


def _slice_normal(folder: str, orientations: np.ndarray) -> np.ndarray:
    """The unit normal of slices whose ``ImageOrientationPatient`` are the rows of ``orientations``.

    Raises:
        InputError: the slices do not share one orientation (within 0.001).
    """
    differs = np.any(np.abs(orientations - orientations[0]) > 1e-3, axis=1)
    if differs.any():
        other = orientations[np.flatnonzero(differs)[0]]
        raise InputError(folder, f"its slices do not share one orientation: ImageOrientationPatient "
                                 f"{np.round(orientations[0], 4).tolist()} in {int((~differs).sum())} files, "
                                 f"another ({np.round(other, 4).tolist()}) in {int(differs.sum())}; ITK would stack "
                                 "them as one volume of the first orientation.")
    normal = np.cross(orientations[0, :3], orientations[0, 3:])
    return normal / np.linalg.norm(normal)


def _mm(values: Sequence[float], limit: int = 5) -> str:
    """``values`` in mm for a message: at most ``limit`` of them, rounded to 0.001 mm."""
    shown = ", ".join(f"{round(float(v), 3):g}" for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _check_no_repeats(folder: str, heights: np.ndarray) -> None:
    """Refuse sorted slice ``heights`` (mm along the slice normal) of which two are the same position."""
    repeated = heights[1:][np.diff(heights) < SAME_POSITION_MM]
    if repeated.size:
        raise InputError(folder, f"slice positions repeat at {_mm(np.unique(repeated))} mm along the slice normal "
                                 f"({len(heights)} files at {len(heights) - repeated.size} positions): slices "
                                 "sent twice? ITK would stack every file, putting slices at the wrong positions. "
                                 "Remove the copies.")


def _check_even_spacing(folder: str, heights: np.ndarray, tolerance_mm: float) -> None:
    """Refuse sorted slice ``heights`` (mm along the slice normal) that ITK would misplace by more than
    ``tolerance_mm``: it puts slice ``k`` at ``first + k * (last - first) / (n - 1)``."""
    gaps = np.diff(heights)
    spacing = (heights[-1] - heights[0]) / len(gaps)
    misplaced = np.abs(heights - (heights[0] + spacing * np.arange(len(heights))))
    if misplaced.max() > tolerance_mm:
        median = float(np.median(gaps))
        i = int(np.argmax(np.abs(gaps - median)))
        hint = ": a missing slice?" if gaps[i] > median else "."
        between = f"between {_mm([heights[i]])} and {_mm([heights[i + 1]])} mm along the slice normal"
        raise InputError(folder, f"uneven slice spacing: gaps of {_mm([median])} and {_mm([gaps[i]])} mm ({between})"
                                 f"{hint} ITK would read it at one spacing of {_mm([spacing])} mm, putting a slice "
                                 f"{_mm([misplaced.max()])} mm from its position.")


def _check_stacked_along_normal(folder: str, positions: np.ndarray, normal: np.ndarray, tolerance_mm: float) -> None:
    """Refuse slices (``positions`` sorted along ``normal``) that lie more than ``tolerance_mm`` beside the line
    through the first along the normal: a gantry tilt, which ITK reads as an untilted volume."""
    offsets = positions - positions[0]
    sideways = offsets - np.outer(offsets @ normal, normal)
    drift = np.linalg.norm(sideways, axis=1)
    if drift.max() > tolerance_mm:
        tilt = np.degrees(np.arctan2(drift[-1], offsets[-1] @ normal))
        raise InputError(folder, f"its slices are not stacked along their normal: their positions drift "
                                 f"{_mm([drift.max()])} mm sideways (a gantry tilt of about {tilt:.1f} degrees?). "
                                 "ITK would read it as an untilted volume, putting slices up to that far from their "
                                 "positions; resample the series onto an untilted grid first.")


def check_slice_geometry(folder: str, headers: Sequence[Any], tolerance: float = 0.1) -> None:
    """Refuse a series whose slices ITK would put at the wrong place: slices of different orientations, two slices
    at one position, uneven spacing along the slice normal (a missing slice), or slices not stacked along their
    normal (a gantry tilt). A folder of one image, or with an image lacking ``ImagePositionPatient`` or
    ``ImageOrientationPatient``, is not checked.

    Args:
        folder: the folder, for the messages.
        headers: its images' headers (:func:`read_image_headers`), of one series part (:func:`series_parts`).
        tolerance: the largest distance of a slice from where ITK puts it, and from the normal through the first,
            as a fraction of the median gap (see :func:`position_tolerance_mm`).

    Raises:
        InputError: naming the folder and what is wrong, with the positions (mm along the slice normal) or sizes.
    """
    if len(headers) < 2 or not all(a in ds for ds in headers for a in _GEOMETRY):
        return
    normal = _slice_normal(folder, np.asarray([ds.ImageOrientationPatient for ds in headers], dtype=np.float64))
    positions = np.asarray([ds.ImagePositionPatient for ds in headers], dtype=np.float64)
    positions = positions[np.argsort(positions @ normal, kind="stable")]
    heights = positions @ normal
    _check_no_repeats(folder, heights)
    tolerance_mm = position_tolerance_mm(float(np.median(np.diff(heights))), tolerance)
    _check_even_spacing(folder, heights, tolerance_mm)
    _check_stacked_along_normal(folder, positions, normal, tolerance_mm)


def check_series_folder(folder: str) -> None:
    """Refuse a DICOM folder that MONAI's ``ITKReader`` would read in part or misplaced: several series
    (:func:`check_one_series`), one series ITK splits (:func:`check_series_details`), or slices it would put at the
    wrong place (:func:`check_slice_geometry`). Reads the headers only.

    Args:
        folder: the DICOM series folder.

    Raises:
        InputError: naming the folder and the problem.
    """
    headers = read_image_headers(folder)
    check_one_series(folder, headers)
    check_series_details(folder, headers)
    check_slice_geometry(folder, headers)
