"""DICOM Segmentation (SEG) objects of label maps predicted on DICOM series, written with highdicom.

A label map predicted on a DICOM series (loaded by MONAI's ``LoadImage`` from the series' folder and inverted back
to the series' voxel grid, as the segmentation bundles' inference does) becomes one DICOM SEG instance that

- references the source series: its study, series, frame of reference and, frame by frame, the SOP instance of
  each slice (matched by the slice's position in patient space, not by file order);
- holds one segment per class (label value), labelled with the bundle's class name and coded with standard
  concepts (SNOMED CT, see :data:`SEGMENT_CODES`);
- is a BINARY segmentation (the segmentation type every SEG reader supports), without the frames where a segment
  is empty.

highdicom is imported only when a SEG is built, so NIfTI output works without it. The type-2 patient and study
attributes highdicom copies from the source images (``PatientName``, ``StudyDate``, ...) are added empty to the
in-memory headers of an anonymised series that lacks them; the files of the series are only read.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..utils.atomic import atomic_open
from ..utils.errors import InputError
from .dicom_series import position_tolerance_mm, read_image_headers

__all__ = [
    "OUTPUT_FORMATS",
    "SegmentCode",
    "SEGMENT_CODES",
    "check_output_format",
    "is_dicom_series",
    "require_dicom_series",
    "segment_table",
    "segment_descriptions",
    "read_series_headers",
    "match_slices",
    "series_images",
    "label_frames",
    "build_segmentation",
    "write_segmentation",
]

OUTPUT_FORMATS = ("nifti", "dicom_seg")
"""The output formats of the segmentation bundles' inference (``--output_format``); NIfTI is the default."""

# type-2 attributes of the patient and study modules that highdicom reads from the first source image
_TYPE2_ATTRIBUTES = ("PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate",
                     "StudyTime", "ReferringPhysicianName")
# headers a slice needs to be placed in patient space
_GEOMETRY_ATTRIBUTES = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns")
_LPS = np.diag([-1.0, -1.0, 1.0])  # RAS (MONAI's affines) <-> LPS (DICOM's patient coordinates)


@dataclass(frozen=True)
class SegmentCode:
    """The coded concepts of one segment, as ``(code value, coding scheme, code meaning)`` triples.

    Attributes:
        category: segmented property category (DICOM CID 7150, e.g. anatomical structure).
        type: segmented property type (e.g. SNOMED CT "Kidney").
        modifier: segmented property type modifier, e.g. the laterality ("Right") of a paired organ.
        anatomic_region: the region the segment lies in, e.g. "Brain" for a brain tumour.
        structures: primary anatomic structures, for a segment that is the union of several (the portal and the
            splenic vein).
    """

    category: tuple[str, str, str]
    type: tuple[str, str, str]
    modifier: tuple[str, str, str] | None = None
    anatomic_region: tuple[str, str, str] | None = None
    structures: tuple[tuple[str, str, str], ...] = ()


_ANATOMY = ("91723000", "SCT", "Anatomical Structure")  # CID 7150
_ABNORMAL = ("49755003", "SCT", "Morphologically Abnormal Structure")  # CID 7150
_RIGHT, _LEFT = ("24028007", "SCT", "Right"), ("7771000", "SCT", "Left")
_KIDNEY, _ADRENAL = ("64033007", "SCT", "Kidney"), ("23451007", "SCT", "Adrenal gland")
_BRAIN = ("12738006", "SCT", "Brain")
_NECROSIS, _EDEMA = ("6574001", "SCT", "Necrosis"), ("79654002", "SCT", "Edema")
_NEOPLASM = ("108369006", "SCT", "Neoplasm")

SEGMENT_CODES: dict[str, SegmentCode] = {
    # BTCV's 13 organs (codes of DICOM CID 7151/7154, as in pydicom's ``codes.SCT``)
    "spleen": SegmentCode(_ANATOMY, ("78961009", "SCT", "Spleen")),
    "right kidney": SegmentCode(_ANATOMY, _KIDNEY, modifier=_RIGHT),
    "left kidney": SegmentCode(_ANATOMY, _KIDNEY, modifier=_LEFT),
    "gallbladder": SegmentCode(_ANATOMY, ("28231008", "SCT", "Gallbladder")),
    "esophagus": SegmentCode(_ANATOMY, ("32849002", "SCT", "Esophagus")),
    "liver": SegmentCode(_ANATOMY, ("10200004", "SCT", "Liver")),
    "stomach": SegmentCode(_ANATOMY, ("69695003", "SCT", "Stomach")),
    "aorta": SegmentCode(_ANATOMY, ("15825003", "SCT", "Aorta")),
    "inferior vena cava": SegmentCode(_ANATOMY, ("64131007", "SCT", "Inferior vena cava")),
    "portal and splenic veins": SegmentCode(
        _ANATOMY, ("29092000", "SCT", "Vein"),
        structures=(("32764006", "SCT", "Portal vein"), ("35819009", "SCT", "Splenic vein")),
    ),
    "pancreas": SegmentCode(_ANATOMY, ("15776009", "SCT", "Pancreas")),
    "right adrenal gland": SegmentCode(_ANATOMY, _ADRENAL, modifier=_RIGHT),
    "left adrenal gland": SegmentCode(_ANATOMY, _ADRENAL, modifier=_LEFT),
    # brain tumour sub-regions of the BraTS 2021 and MSD Task01 label maps (see ``data.brats.LAYOUTS``)
    "necrotic tumour core": SegmentCode(_ABNORMAL, _NECROSIS, anatomic_region=_BRAIN),
    "peritumoral oedema": SegmentCode(_ABNORMAL, _EDEMA, anatomic_region=_BRAIN),
    "edema": SegmentCode(_ABNORMAL, _EDEMA, anatomic_region=_BRAIN),
    "non-enhancing tumor": SegmentCode(_ABNORMAL, _NEOPLASM, anatomic_region=_BRAIN),
    "enhancing tumour": SegmentCode(_ABNORMAL, _NEOPLASM, anatomic_region=_BRAIN),
}
"""Coded concepts of the class names of the segmentation bundles, by lower-case class name. The SNOMED CT codes are
those of pydicom's ``pydicom.sr.codedict.codes.SCT``. SNOMED CT has no concept for "enhancing" or "non-enhancing"
tumour: both are coded "Neoplasm" and told apart by their segment labels."""


def check_output_format(output_format: str) -> str:
    """``output_format`` when it is one of :data:`OUTPUT_FORMATS`.

    Raises:
        ValueError: any other value; the message lists the allowed ones.
    """
    if output_format not in OUTPUT_FORMATS:
        allowed = ", ".join(repr(f) for f in OUTPUT_FORMATS)
        raise ValueError(f"output_format must be one of {allowed} (--output_format dicom_seg writes a DICOM SEG per "
                         f"input DICOM series), got {output_format!r}.")
    return output_format


def is_dicom_series(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding at least one DICOM file (by the ``DICM`` magic at byte 128)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return False
    for name in sorted(os.listdir(path)):
        file = os.path.join(path, name)
        if os.path.isfile(file):
            with open(file, "rb") as f:
                if f.read(132)[128:] == b"DICM":
                    return True
    return False


def check_outside_series(output_dir: str | os.PathLike, series: str | os.PathLike) -> None:
    """Refuse an ``output_dir`` that is the series folder ``series`` or lies inside it: a SEG written there would
    be read as a second series of the folder by the next run (ITK loads the series of the lowest UID, often the
    SEG's), which would then segment the previous segmentation.

    Raises:
        InputError: naming the series folder.
    """
    folder, out = os.path.realpath(series), os.path.realpath(output_dir)
    if os.path.commonpath([folder, out]) == folder:
        raise InputError(os.fspath(series), f"would receive the DICOM SEG (output_dir {os.fspath(output_dir)}): a "
                                            "later run reading this folder would load the SEG as the series. Choose "
                                            "an output_dir outside the series folder.")


def require_dicom_series(datalist: Sequence[Mapping[str, Any]], output_format: str,
                         key: str = "image", output_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The inference datalist ``datalist``, after checking that ``output_format`` is known and that, for
    ``"dicom_seg"``, every input is a DICOM series outside which the SEG files go: refused before any work, not after
    the network ran.

    Args:
        datalist: ``[{key: path or list of paths}, ...]``.
        output_format: one of :data:`OUTPUT_FORMATS`.
        key: the datalist key of the input images.
        output_dir: where the SEG files go (:func:`check_outside_series`); not checked when None.

    Returns:
        ``datalist`` as a list of dicts.

    Raises:
        ValueError: an unknown ``output_format``.
        InputError: with ``"dicom_seg"``, an input that is not a DICOM series folder (a NIfTI file, or the several
            files of a multi-channel case), or ``output_dir`` inside one; the message names it.
    """
    items = [dict(item) for item in datalist]
    if check_output_format(output_format) != "dicom_seg":
        return items
    for item in items:
        source = item.get(key)
        if isinstance(source, (list, tuple)) or not is_dicom_series(source):
            raise InputError(source, "is not a DICOM series. --output_format dicom_seg writes a DICOM SEG that "
                                     "references its source series, so each input must be a DICOM series (the folder "
                                     "of its slice files); use the default --output_format nifti for other inputs.")
        if output_dir is not None:
            check_outside_series(output_dir, source)
    return items


def segment_table(classes: Mapping[int, str] | Sequence[str]) -> dict[int, str]:
    """``{label value: class name}`` of the foreground classes; a sequence of names gives the values 1, 2, ...

    Raises:
        ValueError: no class, a label value below 1, or a class name without coded concepts in
            :data:`SEGMENT_CODES`.
    """
    table = {int(k): str(v) for k, v in classes.items()} if isinstance(classes, Mapping) else {
        i + 1: str(name) for i, name in enumerate(classes)}
    if not table or min(table) < 1:
        raise ValueError(f"segments need foreground label values 1, 2, ... and a name each, got {table}.")
    unknown = [name for name in table.values() if name.lower() not in SEGMENT_CODES]
    if unknown:
        raise ValueError(f"no coded concepts for the class names {unknown}; the known ones are "
                         f"{sorted(SEGMENT_CODES)} (shared/data/dicom_seg.py, SEGMENT_CODES).")
    return dict(sorted(table.items()))


def segment_descriptions(classes: Mapping[int, str], algorithm_name: str, algorithm_version: str) -> list[Any]:
    """One highdicom ``SegmentDescription`` per class, numbered 1, 2, ... in label-value order.

    Args:
        classes: ``{label value: class name}`` (see :func:`segment_table`).
        algorithm_name: the algorithm that segmented (e.g. the bundle's name).
        algorithm_version: its version (e.g. the bundle's version).

    Returns:
        ``SegmentDescription`` list, segment ``i`` being the ``i``-th class by label value.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    def concept(triple: tuple[str, str, str]) -> Any:
        return hd.sr.CodedConcept(*triple)

    algorithm = hd.AlgorithmIdentificationSequence(algorithm_name, codes.cid7162.ArtificialIntelligence,
                                                   algorithm_version)
    descriptions = []
    for number, name in enumerate(segment_table(classes).values(), start=1):
        code = SEGMENT_CODES[name.lower()]
        description = hd.seg.SegmentDescription(
            segment_number=number, segment_label=name, segmented_property_category=concept(code.category),
            segmented_property_type=concept(code.type), algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            anatomic_regions=[concept(code.anatomic_region)] if code.anatomic_region else None,
            primary_anatomic_structures=[concept(s) for s in code.structures] or None,
        )
        if code.modifier is not None:  # highdicom has no argument for (0062,0011); the attribute is standard
            description.SegmentedPropertyTypeModifierCodeSequence = [concept(code.modifier)]
        descriptions.append(description)
    return descriptions


def read_series_headers(folder: str | os.PathLike) -> list[Any]:
    """The headers (no pixel data) of the DICOM images in ``folder`` that can be placed in patient space.

    Files that are not DICOM, and DICOM objects without a plane geometry (a SEG written beside the series, a
    report), are left out. Sub-folders are not read (as MONAI's series reader does not).

    Raises:
        InputError: ``folder`` holds no such image; the message names it.
    """
    folder = os.fspath(folder)
    images = read_image_headers(folder, tags=None) if os.path.isdir(folder) else []
    headers = [ds for ds in images if all(a in ds for a in _GEOMETRY_ATTRIBUTES)]
    if not headers:
        raise InputError(folder, "holds no DICOM image with a plane geometry (ImagePositionPatient, ...): a DICOM SEG "
                                 "needs the source series' slices.")
    return headers


def _slice_geometry(affine: np.ndarray, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From a RAS ``affine`` of a ``(X, Y, Z)`` grid: the LPS positions of the ``Z`` slices' first voxel
    ``(Z, 3)``, the DICOM ``ImageOrientationPatient`` ``(6,)`` and the spacing ``(3,)``."""
    lps = _LPS @ np.asarray(affine, dtype=np.float64)[:3]
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    orientation = np.concatenate([lps[:, 0] / spacing[0], lps[:, 1] / spacing[1]])
    positions = lps[:, 3][None] + np.arange(shape[2])[:, None] * lps[:, 2][None]
    return positions, orientation, spacing


def _fit_series(instances: Sequence[Any], positions: np.ndarray, orientation: np.ndarray, spacing: np.ndarray,
                shape: Sequence[int], tolerance_mm: float) -> list[Any] | str:
    """The images of one series under the slices at ``positions`` (slice order), or why they do not fit."""
    fitting = [ds for ds in instances if (int(ds.Columns), int(ds.Rows)) == tuple(shape[:2])
               and np.allclose(np.asarray(ds.ImageOrientationPatient, float), orientation, atol=1e-3)
               and np.allclose(np.asarray(ds.PixelSpacing, float)[::-1], spacing[:2], atol=1e-3)]
    if not fitting:
        return (f"no image of {shape[0]} columns x {shape[1]} rows with orientation "
                f"{np.round(orientation, 4).tolist()} and pixel spacing {np.round(spacing[1::-1], 4).tolist()} mm "
                "(rows, columns)")
    if len(fitting) != len(positions):
        return f"{len(fitting)} images of this size and orientation, the label map has {len(positions)} slices"
    stack = np.asarray([ds.ImagePositionPatient for ds in fitting], dtype=np.float64)
    distance = np.linalg.norm(positions[:, None] - stack[None], axis=2)  # (slices, images)
    nearest = distance.argmin(axis=1)
    missed = np.flatnonzero(distance[np.arange(len(positions)), nearest] > tolerance_mm)
    if missed.size:
        return f"no image at the position of slice {int(missed[0])} ({np.round(positions[missed[0]], 3).tolist()} mm)"
    reused = np.flatnonzero(np.bincount(nearest, minlength=len(fitting)) > 1)
    if reused.size:
        slices = np.flatnonzero(nearest == reused[0]).tolist()
        return f"slices {slices} all lie at the image at {np.round(stack[reused[0]], 3).tolist()} mm"
    return [fitting[i] for i in nearest]


def match_slices(headers: Sequence[Any], affine: np.ndarray, shape: Sequence[int], source: str,
                 tolerance_mm: float | None = None) -> list[Any]:
    """The source image of every slice of a ``(X, Y, Z)`` label map on a DICOM series' grid.

    The label map must cover the whole series: slice ``k`` (array axis 2) must be an image of the series at the
    slice's position, with the label map's orientation (DICOM columns along array axis 0, rows along axis 1), ``X``
    columns and ``Y`` rows, and every image of that size and orientation must be one of the ``Z`` slices.

    Args:
        headers: the DICOM headers of the series' folder (:func:`read_series_headers`); when the folder holds
            several series, the one that fits is used.
        affine: the label map's RAS affine (``4 x 4``).
        shape: the label map's spatial shape ``(X, Y, Z)``.
        source: the series' path, for messages.
        tolerance_mm: largest distance between a slice and its image's ``ImagePositionPatient``; None: as the
            series check allows (``dicom_series.position_tolerance_mm``: series that write positions rounded to
            0.1 mm still match); two slices never match one image.

    Returns:
        the ``Z`` headers, in slice order.

    Raises:
        InputError: no series of the folder has the label map's grid (not inverted to the source geometry, or a
            series of several orientations), or several have; two slices would reference one image.
    """
    positions, orientation, spacing = _slice_geometry(affine, shape)
    if tolerance_mm is None:
        tolerance_mm = position_tolerance_mm(float(spacing[2]))
    by_series: dict[str, list[Any]] = {}
    for ds in headers:
        by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    fits = {uid: _fit_series(instances, positions, orientation, spacing, shape, tolerance_mm)
            for uid, instances in by_series.items()}
    matches = {uid: images for uid, images in fits.items() if isinstance(images, list)}
    if len(matches) == 1:
        return next(iter(matches.values()))
    if matches:
        raise InputError(source, f"holds several DICOM series on the label map's grid ({', '.join(matches)}), so the "
                                 "one it was predicted on is not known: give each series its own folder.")
    problems = "; ".join(f"series {uid}: {problem}" for uid, problem in fits.items())
    raise InputError(source, f"the label map (shape {tuple(shape)}, spacing {np.round(spacing, 4).tolist()}) is not "
                             f"on the grid of the DICOM series: {problems}")


def series_images(folder: str | os.PathLike, affine: np.ndarray, shape: Sequence[int]) -> list[Any]:
    """The headers of the DICOM series in ``folder`` whose slices a ``(X, Y, Z)`` label map with RAS ``affine``
    covers, in slice order (:func:`read_series_headers`, then :func:`match_slices`).

    Raises:
        InputError: no usable series in ``folder``, the label map is not on its grid, or the series has no
            ``FrameOfReferenceUID``.
    """
    source = os.fspath(folder)
    images = match_slices(read_series_headers(source), affine, shape, source)
    if "FrameOfReferenceUID" not in images[0]:
        raise InputError(source, "the series has no FrameOfReferenceUID, which a DICOM SEG must reference.")
    return images


def label_frames(label: np.ndarray, classes: Mapping[int, str], source: str) -> np.ndarray:
    """The ``(Z, Y, X)`` frames of segment numbers of a ``(X, Y, Z)`` label map: frame ``k`` is slice ``k``
    transposed (DICOM rows along array axis 1), label values replaced by segment numbers 1, 2, ... in value order.

    Raises:
        InputError: the label map holds values that are not ``0`` or a class; the message names the source.
    """
    table = segment_table(classes)
    values = np.unique(label)
    unknown = [int(v) for v in values if v != 0 and int(v) not in table]
    if unknown or not np.all(np.equal(np.mod(values, 1), 0)):
        raise InputError(source, f"label values {unknown or values.tolist()} are not among the segments' values "
                                 f"{sorted(table)} (and 0, background).")
    lookup = np.zeros(max(table) + 1, dtype=np.uint8 if len(table) < 256 else np.uint16)
    for number, value in enumerate(table, start=1):
        lookup[value] = number
    return np.ascontiguousarray(lookup[label.astype(np.int64)].transpose(2, 1, 0))


def _with_type2_attributes(ds: Any) -> Any:
    """A copy of the header ``ds`` with the type-2 patient and study attributes highdicom copies, empty when
    missing (anonymised series)."""
    ds = copy.deepcopy(ds)
    for attribute in _TYPE2_ATTRIBUTES:
        if attribute not in ds:
            setattr(ds, attribute, "")
    return ds


def build_segmentation(
    label: np.ndarray,
    images: Sequence[Any],
    classes: Mapping[int, str] | Sequence[str],
    algorithm_name: str,
    algorithm_version: str,
    series_number: int = 300,
    series_description: str | None = None,
) -> Any:
    """The DICOM SEG of a label map on the grid of a DICOM series.

    Args:
        label: ``(X, Y, Z)`` (or ``(1, X, Y, Z)``) integer label map in the series' voxel grid, as MONAI loads the
            series (array axis 0 along the DICOM columns, axis 2 across the slices).
        images: the headers of the series' images under the ``Z`` slices, in slice order (:func:`series_images`).
        classes: ``{label value: class name}``, or the class names of the values 1, 2, ...
        algorithm_name: name recorded as the segmenting algorithm, and as the manufacturer's model name.
        algorithm_version: version recorded for the algorithm and as the software version.
        series_number: ``SeriesNumber`` of the SEG.
        series_description: ``SeriesDescription`` of the SEG; ``"<algorithm_name> segmentation"`` when None.

    Returns:
        a ``highdicom.seg.Segmentation`` (a pydicom ``Dataset``) with new UIDs, in the study and frame of reference
        of ``images``.

    Raises:
        InputError: the label map is not 3-D, does not have one slice per image, or has values that are not classes.
    """
    import highdicom as hd

    source = os.path.dirname(str(getattr(images[0], "filename", ""))) if images else "<no source image>"
    label = np.asarray(label)
    if label.ndim == 4 and label.shape[0] == 1:
        label = label[0]
    if label.ndim != 3 or label.shape[2] != len(images):
        raise InputError(source, f"a DICOM SEG of {len(images)} source images needs a 3-D label map of as many slices, "
                                 f"got shape {label.shape}.")
    classes = segment_table(classes)
    return hd.seg.Segmentation(
        source_images=[_with_type2_attributes(ds) for ds in images],
        pixel_array=label_frames(label, classes, source),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(classes, algorithm_name, algorithm_version),
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="MONAI",
        manufacturer_model_name=algorithm_name,
        software_versions=algorithm_version,
        device_serial_number="none",
        series_description=series_description or f"{algorithm_name} segmentation",
    )


def write_segmentation(segmentation: Any, path: str | os.PathLike, inputs: Sequence[str] = ()) -> str:
    """Write ``segmentation`` to ``path`` atomically (a temporary file renamed over ``path``).

    Args:
        segmentation: a pydicom ``Dataset`` (e.g. from :func:`build_segmentation`).
        path: the ``.dcm`` file to write; its folder is created.
        inputs: files that must not be overwritten (the series' slices).

    Returns:
        ``path`` as a string.

    Raises:
        InputError: ``path`` is one of ``inputs``.
    """
    path = os.fspath(path)
    if os.path.exists(path) and any(os.path.exists(f) and os.path.samefile(f, path) for f in inputs):
        raise InputError(path, "is an input of the run; the DICOM SEG would overwrite it. Choose another output_dir.")
    with atomic_open(path, "wb") as f:
        segmentation.save_as(f, enforce_file_format=True)
    return path
