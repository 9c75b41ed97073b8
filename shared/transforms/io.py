"""MONAI's ``LoadImaged`` with errors that name the file at fault, and ``SaveImaged`` whose writes never fail silently.

MONAI reports a truncated ``.nii.gz`` as ``EOFError: Compressed file ended before the end-of-stream marker was
reached`` without saying which file, stacks the files of a multi-file input (the four contrasts of a BraTS 2021
case) without checking that they share one voxel grid, and allocates whatever a NIfTI header declares (a corrupt one
can declare terabytes, or a zero voxel size that resampling divides by). This ``LoadImaged`` (same arguments, same
output) checks NIfTI headers first (:func:`check_nifti_header`), refuses a DICOM folder that ITK would read in part
or with slices out of place (several series, one series ITK splits, a missing or repeated slice, a gantry tilt:
:func:`..data.dicom_series.check_series_folder`; MONAI reads them with a warning at most), and raises an
:class:`InputError` naming the file and the problem in each case.

MONAI's ``SaveImaged`` writes in place (a killed write leaves a truncated file under the final name), falls back to
the next writer when one fails (ITK, on a full disk, writes an empty file and raises nothing), and squeezes trailing
singleton dimensions (a 1-slice volume becomes a 2-D image). This ``SaveImaged`` names the file with
:func:`output_path` (the rule :func:`check_outputs` applies before the run), writes it atomically with the format's
first writer only, keeps the input's number of spatial dimensions, and raises an :class:`InputError` naming the input
and the output when the write fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from monai.data import MetaTensor
from monai.transforms import LoadImaged as MonaiLoadImaged
from monai.transforms import SaveImaged as MonaiSaveImaged
from monai.utils import ImageMetaKey

from ..data.dicom_series import check_series_folder
from ..data.inputs import output_path, output_stem
from ..utils.atomic import atomic_path
from ..utils.errors import InputError, describe_source

__all__ = ["LoadImaged", "SaveImaged", "check_nifti_header", "check_same_grid"]

_NIFTI = (".nii", ".nii.gz")
MAX_VOXELS = 2**31  # a 1290^3 volume, 8 GiB as float32: far beyond any CT or MRI, and far below a corrupt header


def _read_header(path: str) -> Any:
    """The NIfTI image of ``path`` with its data not read (nibabel reads the header only)."""
    import nibabel as nib

    try:
        return nib.load(path)
    except Exception as e:  # nibabel raises several types for unreadable headers
        raise InputError(path, f"cannot be read ({type(e).__name__}: {e})") from e


def check_nifti_header(path: str, max_voxels: int = MAX_VOXELS) -> None:
    """Refuse, before any voxel is read or memory allocated, a NIfTI file whose header declares more than
    ``max_voxels`` values (a corrupt or hostile header can declare terabytes) or a zero, negative, non-finite or
    degenerate voxel size (resampling to a spacing would then divide by zero or allocate without bound).

    Raises:
        InputError: naming the file, the declared size or the voxel size.
    """
    image = _read_header(path)
    shape = tuple(int(n) for n in image.shape)
    count = int(np.prod(shape, dtype=np.float64))
    if count > max_voxels:
        raise InputError(path, f"its header declares an image of {' x '.join(map(str, shape))} = {count:.3g} values, "
                               f"more than the {max_voxels:.3g} this bundle loads: a corrupt header?")
    axes = np.asarray(image.affine, dtype=np.float64)[:3, :3]
    sizes = np.linalg.norm(axes, axis=0)
    if not np.all(np.isfinite(sizes)) or np.any(sizes < 1e-6):
        raise InputError(path, f"its header declares a voxel size of {np.round(sizes, 6).tolist()} mm: every axis "
                               "needs a finite size above zero (a corrupt header?)")
    if abs(np.linalg.det(axes)) < 1e-6 * float(np.prod(sizes)):
        raise InputError(path, "its header declares a degenerate voxel grid (two axes point the same way: the "
                               f"affine's axes are {np.round(axes, 4).tolist()}), a corrupt header?")


def check_same_grid(files: Sequence[str], atol: float = 1e-3) -> None:
    """Raise :class:`InputError` unless the NIfTI files ``files`` (stacked as the channels of one image) have the
    same shape and affine (within ``atol`` mm); files of other formats are not checked."""
    paths = [os.fspath(f) for f in files]
    if len(paths) < 2 or not all(p.endswith(_NIFTI) for p in paths):
        return
    headers = []
    for path in paths:
        image = _read_header(path)
        headers.append((path, tuple(image.shape), np.asarray(image.affine)))
    _, shape, affine = headers[0]
    for path, other_shape, other_affine in headers[1:]:
        if other_shape != shape or not np.allclose(other_affine, affine, atol=atol):
            grids = "; ".join(f"{os.path.basename(p)} shape {s}, origin {np.round(a[:3, 3], 2).tolist()}"
                              for p, s, a in headers)
            raise InputError(paths, f"the channels of this case do not share one voxel grid ({grids})")


class _NamingLoader:
    """Wraps MONAI's ``LoadImage`` so that any failure names the file(s) it was loading."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> Any:
        if name == "_loader":  # not set yet: a copy or an unpickled object being built
            raise AttributeError(name)
        return getattr(self._loader, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # settings such as ``image_only`` (MONAI Label sets it to False) belong to the wrapped loader
        if name == "_loader":
            super().__setattr__(name, value)
        else:
            setattr(self._loader, name, value)

    def __call__(self, filename: Any, reader: Any = None) -> Any:
        files = filename if isinstance(filename, (list, tuple)) else [filename]
        for path in files:
            if isinstance(path, (str, os.PathLike)) and os.fspath(path).endswith(_NIFTI):
                check_nifti_header(os.fspath(path))
            elif isinstance(path, (str, os.PathLike)) and os.path.isdir(path):
                check_series_folder(os.fspath(path))
        if isinstance(filename, (list, tuple)):
            check_same_grid(filename)
        try:
            return self._loader(filename, reader)
        except InputError:
            raise
        except Exception as e:  # readers raise many types (EOFError, OSError, RuntimeError, ...)
            raise InputError(filename, f"cannot be read ({type(e).__name__}: {e})") from e


class LoadImaged(MonaiLoadImaged):
    """``monai.transforms.LoadImaged`` whose errors name the file; see the module docstring.

    Args:
        args: the arguments of ``monai.transforms.LoadImaged``.
        source_key: when given, the path(s) of the first key are also stored as a string under this key, which
            survives ``EnsureTyped(track_meta=False)`` and random crops, so that a training guard can name the
            files of a batch.
        kwargs: the keyword arguments of ``monai.transforms.LoadImaged``.
    """

    def __init__(self, *args: Any, source_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loader = _NamingLoader(self._loader)
        self.source_key = source_key

    def __call__(self, data: Any, reader: Any = None) -> dict:
        source = next((data[k] for k in self.keys if k in data), None)
        d = super().__call__(data, reader)
        if self.source_key is not None and source is not None:
            d[self.source_key] = describe_source(source)
        return d


class _AtomicSaver:
    """Wraps MONAI's ``SaveImage``: the path from :func:`output_path`, an atomic write with the format's first writer,
    the input's spatial dimensions kept, and failures raised as :class:`InputError`."""

    def __init__(self, saver: Any, output_dir: str, postfix: str, name_of: Callable[[str], str]) -> None:
        self._saver = saver
        self.output_dir = output_dir
        self.postfix = postfix
        self.name_of = name_of

    def __getattr__(self, name: str) -> Any:
        if name == "_saver":  # not set yet: a copy or an unpickled object being built
            raise AttributeError(name)
        return getattr(self._saver, name)

    def __call__(self, img: Any, meta_data: dict | None = None, filename: Any = None) -> Any:
        meta = img.meta if isinstance(img, MetaTensor) else (meta_data or {})
        source = str(meta.get(ImageMetaKey.FILENAME_OR_OBJ, ""))
        ext = self._saver.output_ext
        path = output_path(source, self.output_dir, self.postfix, ext, self.name_of)
        try:
            with atomic_path(path, suffix=ext) as tmp:
                self._write(img, meta, tmp)
        except Exception as e:  # writers raise many types (OSError, RuntimeError, ...)
            raise InputError(source, f"its output {path} could not be written ({type(e).__name__}: {e}); nothing "
                                     "was written under that name") from e
        return img

    def _write(self, img: Any, meta: dict, path: str) -> None:
        saver = self._saver
        channel_dim = saver.data_kwargs.get("channel_dim", 0)
        spatial_ndim = len(img.shape) - (0 if channel_dim is None else 1)
        writer = saver.writers[0](**saver.init_kwargs)
        writer.set_data_array(img, channel_dim=channel_dim, squeeze_end_dims=False, spatial_ndim=spatial_ndim)
        if channel_dim is not None and writer.data_obj.shape[-1] == 1:  # one channel: a plain (H, W, D) volume
            writer.data_obj = writer.data_obj[..., 0]
        writer.set_metadata(meta_dict=meta, **saver.meta_kwargs)
        writer.write(path, **saver.write_kwargs)


_OTHER_PATH_ARGUMENTS = {"output_name_formatter": None, "folder_layout": None, "data_root_dir": "",
                         "separate_folder": False, "savepath_in_metadict": False}
"""Arguments of MONAI's ``SaveImaged`` that choose the output's path otherwise, at the values that do not."""


class SaveImaged(MonaiSaveImaged):
    """``monai.transforms.SaveImaged`` (``separate_folder=False``) whose writes are atomic and never fail silently;
    see the module docstring.

    Args:
        keys: the keys of the images to save.
        output_dir: the output folder.
        output_postfix: appended to the input's name, e.g. ``"seg"``.
        output_ext: the output format's extension.
        name_of: the output name of an input file (:func:`output_stem`; a BraTS 2021 case is named after the case).
        kwargs: the other keyword arguments of ``monai.transforms.SaveImaged``, except those that choose the output's
            path another way (``output_name_formatter``, ``folder_layout``, ``data_root_dir``,
            ``separate_folder=True``, ``savepath_in_metadict=True``): the path is ``output_path``'s.

    Raises:
        ValueError: one of the refused keyword arguments.
        InputError: when writing, naming the input and the output that could not be written.
    """

    def __init__(
        self,
        keys: Any,
        output_dir: str = "./",
        output_postfix: str = "trans",
        output_ext: str = ".nii.gz",
        name_of: Callable[[str], str] = output_stem,
        **kwargs: Any,
    ) -> None:
        refused = [name for name, default in _OTHER_PATH_ARGUMENTS.items() if kwargs.get(name, default) != default]
        if refused:
            raise ValueError(f"SaveImaged names its outputs <output_dir>/<name>_<output_postfix><output_ext> (name_of "
                             f"gives the name) and does not take {refused}.")
        super().__init__(keys, output_dir=output_dir, output_postfix=output_postfix, output_ext=output_ext, **kwargs)
        self.saver = _AtomicSaver(self.saver, output_dir, output_postfix, name_of)
