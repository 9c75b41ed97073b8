"""A datalist built once from a data set folder and cached as JSON beside a fingerprint of what it was built from.

Both BraTS and ChestX-ray14 need a split that the data sets do not ship; building it means listing thousands of
files. :func:`cached_datalist` builds it once, stores it with a *fingerprint* (the split settings and the sizes and
modification times of the inputs) and reuses the file while the fingerprint matches. A datalist file without a
fingerprint was written by hand and is used as it is; a file that is not valid JSON is an error naming the file,
the line and the column, and is never rewritten.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from ..utils.atomic import atomic_open
from ..utils.dist import is_main_process
from ..utils.errors import InputError
from ..utils.files import read_json

__all__ = ["FINGERPRINT_KEY", "file_stamp", "cached_datalist"]

FINGERPRINT_KEY = "fingerprint"

logger = logging.getLogger(__name__)


def file_stamp(path: str) -> list:
    """``[absolute path, size, modification time in ns]`` of a file or folder: part of a fingerprint. A folder's
    modification time changes when entries are added to or removed from it."""
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size if os.path.isfile(path) else 0, st.st_mtime_ns]


def _read(datalist_file: str) -> dict:
    """The datalist in ``datalist_file``; a file that cannot be parsed is an error, never a reason to rewrite it
    (this module writes atomically, so such a file was written by someone else)."""
    data = read_json(datalist_file, hint=" The file is not rewritten: correct it, or delete it to have the datalist "
                                         "made again from the data set.")
    if not isinstance(data, dict):
        raise InputError(datalist_file, f"a datalist is a JSON object with 'training' and 'validation' lists, not a "
                                        f"{type(data).__name__}. The file is not rewritten.")
    return data


def cached_datalist(
    datalist_file: str | None,
    fingerprint: Mapping[str, Any],
    build: Callable[[], dict],
    rebuild: bool = False,
    indent: int | None = 4,
) -> dict:
    """The datalist in ``datalist_file`` when it was built from ``fingerprint``, else ``build()``, then written to
    ``datalist_file`` with the fingerprint, atomically (a reader never sees half a file).

    Under ``torch.distributed`` only rank 0 writes the file: every rank builds the same datalist (the split is seeded),
    and the other ranks use theirs without writing it.

    Args:
        datalist_file: the cache (JSON); None builds without caching.
        fingerprint: JSON-able description of the inputs and settings the datalist depends on.
        build: makes the datalist (a JSON-able dict) from the data set.
        rebuild: build even when the cache matches (a hand-made file is still kept).
        indent: JSON indentation of the file; None writes it compact (large lists).

    Returns:
        the datalist, with the fingerprint under :data:`FINGERPRINT_KEY` unless the file was hand-made.

    Raises:
        InputError: ``datalist_file`` exists but is not a JSON object (it is left as it is).
    """
    fingerprint = json.loads(json.dumps(fingerprint))  # the form it has after a round trip through the file
    cached = _read(datalist_file) if datalist_file and os.path.isfile(datalist_file) else None
    if cached is not None and FINGERPRINT_KEY not in cached:
        logger.info(f"using the hand-made datalist {datalist_file}")
        return cached
    if cached is not None and not rebuild and cached[FINGERPRINT_KEY] == fingerprint:
        return cached
    data = {**build(), FINGERPRINT_KEY: fingerprint}
    if datalist_file and is_main_process():
        if cached is not None:
            if cached[FINGERPRINT_KEY] == fingerprint:
                logger.info(f"rebuilding {datalist_file} as asked (rebuild)")
            else:
                logger.warning(f"{datalist_file} was made from other settings or files; rebuilding it.")
            _warn_of_cases_moved_to_validation(datalist_file, cached, data)
        with atomic_open(datalist_file, "w") as f:
            json.dump(data, f, indent=indent)
            f.write("\n")
    return data


def _warn_of_cases_moved_to_validation(datalist_file: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """Name the validation items of the rebuilt datalist whose images were training images of the one it replaces:
    a network trained (or pre-trained) on the earlier split has seen them."""
    trained = {_image_key(item) for item in before.get("training", [])}
    moved = [key for key in map(_image_key, after.get("validation", [])) if key in trained]
    if moved:
        shown = ", ".join(moved[:5]) + (f" and {len(moved) - 5} more" if len(moved) > 5 else "")
        were = "was a training item" if len(moved) == 1 else "were training items"
        logger.warning(
            f"{datalist_file}: {len(moved)} of the rebuilt split's validation items {were} before ({shown}); a "
            "network trained or pre-trained on the earlier split has seen them, so its validation scores on them are "
            f"not held out. To keep a split while cases change, delete the {FINGERPRINT_KEY!r} entry of the "
            "datalist file: a file without it is used as it is."
        )


def _image_key(item: Any) -> str:
    """What identifies a datalist item across rebuilds: its image (a path, or the list of a case's paths)."""
    image = item.get("image", item) if isinstance(item, Mapping) else item
    return image if isinstance(image, str) else json.dumps(image)
