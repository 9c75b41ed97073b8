"""MONAI's ``LoadImaged`` with errors that name the file at fault.

MONAI reports a truncated ``.nii.gz`` as ``EOFError: Compressed file ended before the end-of-stream marker was
reached`` without saying which file, and stacks the files of a multi-file input (the four contrasts of a BraTS 2021
case) without checking that they share one voxel grid. This ``LoadImaged`` (same arguments, same output) raises an
:class:`InputError` naming the file and the problem in both cases.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.transforms import LoadImaged as MonaiLoadImaged

from ..utils.errors import InputError, describe_source

__all__ = ["LoadImaged", "check_same_grid"]

_NIFTI = (".nii", ".nii.gz")


def check_same_grid(files: Sequence[str], atol: float = 1e-3) -> None:
    """Raise :class:`InputError` unless the NIfTI files ``files`` (stacked as the channels of one image) have the
    same shape and affine (within ``atol`` mm); files of other formats are not checked."""
    import nibabel as nib

    paths = [os.fspath(f) for f in files]
    if len(paths) < 2 or not all(p.endswith(_NIFTI) for p in paths):
        return
    headers = []
    for path in paths:
        try:
            image = nib.load(path)
        except Exception as e:  # nibabel raises several types for unreadable headers
            raise InputError(path, f"cannot be read ({type(e).__name__}: {e})") from e
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
