"""Reading chest X-rays (PNG, JPEG, DICOM) as ``[0, 1]`` arrays, and finding them in a folder."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .inputs import as_list, image_datalist, non_empty

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = ["is_dicom", "read_xray", "xray_datalist", "list_xray_files"]

_PICTURE_EXTENSIONS = (".png", ".jpg", ".jpeg")

logger = logging.getLogger(__name__)


def is_dicom(path: str) -> bool:
    """A ``.dcm``/``.dicom`` file, or any file with the DICOM preamble magic ``DICM`` at byte 128."""
    if path.lower().endswith((".dcm", ".dicom")):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _minmax(array: np.ndarray) -> np.ndarray:
    """``array`` scaled from its own minimum and maximum to ``[0, 1]``.

    Args:
        array: image values.

    Returns:
        float32 array of ``array``'s shape; all zeros when ``array`` is constant.
    """
    low, high = float(array.min()), float(array.max())
    if high <= low:
        return np.zeros(array.shape, np.float32)
    return ((array - low) / (high - low)).astype(np.float32)


def _first(value: Any) -> float:
    """First value of a possibly multi-valued DICOM element."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def _has_voi(ds: Dataset) -> bool:
    """Whether ``ds`` has a VOI LUT table, or a first window of positive width."""
    if ds.get("VOILUTSequence"):
        return True
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    return center is not None and width is not None and _first(width) > 0


def _pydicom_luts() -> tuple[Any, Any]:
    """pydicom's ``apply_modality_lut`` and ``apply_voi_lut``: from ``pydicom.pixels`` (pydicom 3), or from
    ``pydicom.pixel_data_handlers.util`` in pydicom 2, which MONAI Label's environment needs (``pydicom<3``)."""
    try:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut
    return apply_modality_lut, apply_voi_lut


def _apply_voi(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """The first VOI transform of ``ds`` (its VOI LUT table, else its first window) applied to modality ``values``,
    scaled from the transform's output range to ``[0, 1]``.

    A file that does not name its ``VOILUTFunction`` is windowed as ``LINEAR_EXACT`` (``center ± width / 2`` maps to
    ``[0, 1]``), the reading this module has always given; the standard's ``LINEAR`` would shift it by at most half
    a stored value over the window's width.
    """
    _, apply_voi_lut = _pydicom_luts()
    if "VOILUTFunction" not in ds:
        ds.VOILUTFunction = "LINEAR_EXACT"
    if ds.get("VOILUTSequence"):  # the output range of a table: its own smallest and largest entries
        descriptor = ds.VOILUTSequence[0].LUTDescriptor
        first_mapped, entries = int(descriptor[1]), int(descriptor[0]) or 2**16
        table = apply_voi_lut(np.arange(first_mapped, first_mapped + entries), ds)
        low, high = float(table.min()), float(table.max())
    else:  # the output range of a window: what it gives far below and far above the window
        low, high = (float(v) for v in apply_voi_lut(np.array([-np.inf, np.inf]), ds))
    mapped = apply_voi_lut(values, ds).astype(np.float64)
    if high == low:  # a constant table
        return np.zeros(mapped.shape, np.float32)
    return ((mapped - low) / (high - low)).astype(np.float32)


def _read_dicom(path: str, use_window: bool) -> np.ndarray:
    """A grey DICOM X-ray in ``[0, 1]``, bright = dense: its modality LUT, then its first VOI transform (or its
    own minimum and maximum), inverted for ``MONOCHROME1``; a colour DICOM is averaged over its channels and the
    first frame of a multi-frame file is read.

    Args:
        path: the DICOM file.
        use_window: apply the file's VOI LUT or window when it has one.

    Returns:
        ``(H, W)`` float32 array.

    Raises:
        RuntimeError: the pixels cannot be decoded (naming the file and its transfer syntax).
        ValueError: the VOI transform cannot be applied (naming the file).
    """
    import pydicom

    apply_modality_lut, _ = _pydicom_luts()
    ds = pydicom.dcmread(path)
    try:
        pixels = ds.pixel_array
    except Exception as e:  # compressed data without a decoder plugin, no pixel data, ...
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise RuntimeError(f"Cannot decode the pixels of DICOM {path} (transfer syntax {syntax}): {e}") from e
    samples = int(ds.get("SamplesPerPixel", 1))
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    if samples > 1:  # colour DICOM (pydicom returns RGB): luminance-like average; the LUTs are for grey images
        return _minmax(pixels.mean(axis=-1))
    values = apply_modality_lut(pixels, ds)
    try:
        image = _apply_voi(values, ds) if use_window and _has_voi(ds) else _minmax(values.astype(np.float64))
    except (ValueError, NotImplementedError) as e:  # an unknown VOI LUT function, a table of unsupported depth, ...
        raise ValueError(f"Cannot apply the VOI transform of DICOM {path}: {e}") from e
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        image = 1.0 - image  # MONOCHROME1: low values are bright
    return image


def _read_picture(path: str) -> np.ndarray:
    """A PNG or JPEG X-ray in ``[0, 1]``, EXIF orientation applied: 8-bit (colour converted to grey) divided by
    255, 16-bit, 32-bit or float scaled from its own minimum and maximum.

    Args:
        path: the picture file.

    Returns:
        ``(H, W)`` float32 array.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as picture:
        picture = ImageOps.exif_transpose(picture)
        if picture.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
            return _minmax(np.asarray(picture, dtype=np.float64))
        if picture.mode != "L":
            picture = picture.convert("L")
        return np.asarray(picture, dtype=np.float32) / 255.0


def read_xray(path: str, use_dicom_window: bool = True) -> np.ndarray:
    """Read a chest X-ray as a ``(H, W)`` float32 array in [0, 1], bright = dense (bone), as in ChestX-ray14.

    - PNG/JPEG, 8-bit: ``value / 255`` (colour images are converted to grey; EXIF orientation is applied).
    - PNG, 16-bit (or 32-bit / float): scaled from the image's own minimum and maximum to [0, 1].
    - DICOM: the modality LUT (rescale slope and intercept, or a modality LUT table) applied with pydicom's
      ``apply_modality_lut``; then, when ``use_dicom_window``, the first VOI transform (a VOI LUT table, else the
      first ``WindowCenter``/``WindowWidth`` window, with its ``VOILUTFunction``) with pydicom's ``apply_voi_lut``,
      scaled from its output range to [0, 1]; without one, the image's own minimum and maximum give [0, 1].
      ``MONOCHROME1`` is inverted. The first frame of a multi-frame file is read; a colour file is averaged over its
      channels and scaled by its own minimum and maximum.
    """
    return _read_dicom(path, use_dicom_window) if is_dicom(path) else _read_picture(path)


def xray_datalist(input_dir: str, input_files: str | Sequence[str] | None = None) -> list[dict[str, str]]:
    """``[{"image": path}]`` for inference: ``input_files`` when given (one path or a list), else every X-ray under
    ``input_dir`` (:func:`list_xray_files`).

    Raises:
        FileNotFoundError: a given file does not exist, or there is no X-ray at all.
    """
    if input_files:
        files = as_list(input_files)
        folders = [os.fspath(f) for f in files if os.path.isdir(f)]
        if folders:
            raise FileNotFoundError(f"input_files takes X-ray files, not folders ({', '.join(folders[:5])}); give a "
                                    "folder as --dataset_dir.")
        # the outputs are rows of one table, which keep each file's path: only the same file given twice clashes
        return image_datalist(files, name_of=os.path.realpath)
    return non_empty(list_xray_files(input_dir), f"PNG, JPEG or DICOM files under {input_dir}")


def _walk_following_links(input_dir: str) -> Iterator[tuple[str, list[str]]]:
    """``(folder, file names)`` for ``input_dir`` and every folder under it, linked folders included, each real
    folder once (a link back up the tree is not followed again)."""
    seen = set()
    for root, dirs, names in os.walk(input_dir, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        yield root, names


def _dicom_without_image(path: str) -> bool:
    """A DICOM file whose header reads and holds no image (no ``Rows``): a presentation state, a structured report,
    a ``DICOMDIR``. An unreadable file is not one: it is listed, and its failure reported."""
    import pydicom

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Rows"])
    except Exception:  # pydicom raises several types for files it cannot parse
        return False
    return "Rows" not in header


def list_xray_files(input_dir: str) -> list[dict[str, str]]:
    """``[{"image": path}]`` for every PNG, JPEG and DICOM image under ``input_dir`` (searched recursively, linked
    folders included), sorted. PNG and JPEG are found by their extension; DICOM by ``.dcm``/``.dicom`` or, whatever
    the name, by its header (PACS exports often name files by their UID, e.g. ``CR.1.2.840.113619.2.55``); DICOM
    files that hold no image (presentation states, reports, ``DICOMDIR``) are left out, and counted in the log."""
    found, without_image = [], 0
    for root, names in _walk_following_links(input_dir):
        for name in names:
            path = os.path.join(root, name)
            if name.lower().endswith(_PICTURE_EXTENSIONS):
                found.append(path)
            elif is_dicom(path):
                if _dicom_without_image(path):
                    without_image += 1
                else:
                    found.append(path)
    if without_image:
        logger.info(f"{without_image} DICOM files under {input_dir} hold no image (e.g. presentation states, reports): "
                    "left out")
    return [{"image": p} for p in sorted(found)]


