"""Reading chest X-rays (PNG, JPEG, DICOM) as ``[0, 1]`` arrays, and finding them in a folder."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["is_dicom", "read_xray", "list_xray_files"]

_XRAY_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")


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
    low, high = float(array.min()), float(array.max())
    if high <= low:
        return np.zeros(array.shape, np.float32)
    return ((array - low) / (high - low)).astype(np.float32)


def _first(value) -> float:
    """First value of a possibly multi-valued DICOM element."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def _read_dicom(path: str, use_window: bool) -> np.ndarray:
    import pydicom

    ds = pydicom.dcmread(path)
    try:
        pixels = ds.pixel_array
    except Exception as e:  # compressed data without a decoder plugin, no pixel data, ...
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise RuntimeError(f"Cannot decode the pixels of DICOM {path} (transfer syntax {syntax}): {e}") from e
    samples = int(ds.get("SamplesPerPixel", 1))
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    if samples > 1:  # colour DICOM (pydicom returns RGB): luminance-like average
        pixels = pixels.mean(axis=-1)
    values = pixels.astype(np.float64)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    slope = _first(slope) if slope is not None else 1.0
    intercept = _first(intercept) if intercept is not None else 0.0
    values = values * slope + intercept
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if use_window and center is not None and width is not None and _first(width) > 0:
        low = _first(center) - _first(width) / 2.0
        image = np.clip((values - low) / _first(width), 0.0, 1.0).astype(np.float32)
    else:
        image = _minmax(values)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        image = 1.0 - image  # MONOCHROME1: low values are bright
    return image


def _read_picture(path: str) -> np.ndarray:
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
    - DICOM: rescale slope and intercept applied; then the first VOI window (``WindowCenter``/``WindowWidth``) when
      present and ``use_dicom_window``, else the image's own minimum and maximum, gives [0, 1]; ``MONOCHROME1`` is
      inverted. The first frame of a multi-frame file is read. A VOI LUT table is not applied.
    """
    return _read_dicom(path, use_dicom_window) if is_dicom(path) else _read_picture(path)


def list_xray_files(input_dir: str, recursive: bool = True) -> list[dict[str, str]]:
    """``[{"image": path}]`` for every PNG, JPEG and DICOM file (by extension, or by the DICOM magic for files
    without an extension) under ``input_dir``, sorted."""
    found = []
    if recursive:
        walker = ((root, names) for root, _, names in os.walk(input_dir))
    else:
        walker = [(input_dir, [n for n in os.listdir(input_dir) if os.path.isfile(os.path.join(input_dir, n))])]
    for root, names in walker:
        for name in names:
            path = os.path.join(root, name)
            lower = name.lower()
            if lower.endswith(_XRAY_EXTENSIONS) or ("." not in name and is_dicom(path)):
                found.append(path)
    return [{"image": p} for p in sorted(found)]


