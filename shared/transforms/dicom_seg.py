"""Saving predicted label maps as DICOM SEG objects that reference their source DICOM series.

:class:`SaveDicomSegd` is the DICOM counterpart of MONAI's ``SaveImaged`` in the segmentation bundles' inference
(``--output_format dicom_seg``); the building blocks are in :mod:`..data.dicom_seg`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from ..data.dicom_seg import (
    build_segmentation,
    check_outside_series,
    is_dicom_series,
    segment_table,
    series_images,
    write_segmentation,
)
from ..data.inputs import output_path
from ..utils.errors import InputError
from .checks import source_of

__all__ = ["SaveDicomSegd"]

logger = logging.getLogger(__name__)


class SaveDicomSegd(MapTransform):
    """Dictionary transform: write each label map as one DICOM SEG object referencing the DICOM series it was
    predicted on, to ``<output_dir>/<series folder name>_<output_postfix>.dcm`` (the name ``SaveImaged`` with
    ``separate_folder=False`` gives the NIfTI, with ``.dcm``). The file is written atomically, never into the series
    folder. A label map without any class gets no SEG (a warning names the series; an earlier run's SEG of the series
    is removed): a SEG holds at least one frame, and highdicom would then encode every frame of every segment.

    The label map must be in the series' voxel grid (put it after ``Invertd``): ``(1, X, Y, Z)`` with the series'
    path in its ``filename_or_obj`` metadata and its RAS ``affine``, as MONAI's ``LoadImage`` gives a series folder.
    Each class becomes a segment labelled with its name and coded with SNOMED CT concepts (see
    :func:`..data.dicom_seg.segment_descriptions`).

    Args:
        keys: label map keys.
        output_dir: folder of the SEG files (created).
        classes: ``{label value: class name}`` or the names of the label values 1, 2, ... (e.g. the bundle's
            ``class_names``); every name needs coded concepts in ``SEGMENT_CODES``.
        algorithm_name: name recorded for the segmenting algorithm (e.g. the bundle's name).
        algorithm_version: its version (e.g. the bundle's version).
        output_postfix: added to the series' name, as ``SaveImaged``'s ``output_postfix``.
        series_number: ``SeriesNumber`` of the SEG series.
        allow_missing_keys: don't raise when a key is missing.

    Raises:
        ValueError: a class name without coded concepts (when constructed).
        InputError: (when called) a label map not predicted on a DICOM series (e.g. on a NIfTI file), or not in its
            grid, or an ``output_dir`` inside the series folder; the message names the input.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | os.PathLike,
        classes: Mapping[int, str] | Sequence[str],
        algorithm_name: str,
        algorithm_version: str = "",
        output_postfix: str = "seg",
        series_number: int = 300,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.classes = segment_table(classes)
        self.algorithm_name = algorithm_name
        self.algorithm_version = str(algorithm_version)
        self.series_number = series_number
        self.output_dir = os.fspath(output_dir)
        self.output_postfix = output_postfix

    def output_path(self, series: str) -> str:
        """The SEG file of the series folder ``series``: ``<output_dir>/<folder name>_<postfix>.dcm``."""
        return output_path(series, self.output_dir, self.output_postfix, ext=".dcm")

    def remove_earlier_output(self, series: str) -> None:
        """Say that the label map of ``series`` has no class, so it gets no SEG, and remove the SEG an earlier run
        wrote for it there: it would stand for this prediction (the NIfTI output is replaced likewise)."""
        earlier = self.output_path(series)
        removed = ""
        if os.path.isfile(earlier):
            os.remove(earlier)
            removed = f"; the earlier {earlier}, which no longer describes the prediction, was removed"
        logger.warning(f"{series}: no class was found, so no DICOM SEG is written for it (a SEG holds at least one "
                       f"segment frame){removed}.")

    def save(self, label: torch.Tensor) -> str | None:
        """Write the SEG of one ``(1, X, Y, Z)`` label map; returns its path (None for a label map without any
        class)."""
        series = source_of(label)
        if not is_dicom_series(series):
            raise InputError(series, "is not a DICOM series: a DICOM SEG references its source series, so the input "
                                     "must be a DICOM series (the folder of its slice files); use --output_format "
                                     "nifti for other inputs.")
        check_outside_series(self.output_dir, series)
        array = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
        if not array.any():
            self.remove_earlier_output(series)
            return None
        affine = np.asarray(label.affine.detach().cpu().numpy() if hasattr(label, "affine") else np.eye(4))
        images = series_images(series, affine, array.shape[-3:])
        segmentation = build_segmentation(array, images, self.classes, self.algorithm_name, self.algorithm_version,
                                          self.series_number)
        return write_segmentation(segmentation, self.output_path(series), [ds.filename for ds in images])

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            self.save(d[key])
        return d
