"""Reading the files a user gives a run, with errors that name the file and the place of the problem; replacing only
the folders a tool itself wrote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["read_json", "replace_marked_folder"]


def read_json(path: str, hint: str = "") -> Any:
    """The content of the JSON file ``path``.

    Args:
        path: the file.
        hint: added to the message of a parse error, e.g. what to do about it.

    Raises:
        InputError: the file is not valid JSON, naming the file, the line and the column (Python's
            ``JSONDecodeError`` names neither the file nor, in a chained traceback, its own cause).
        OSError: the file cannot be read.
    """
    with open(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}.{hint}") from None


def replace_marked_folder(folder: str | Path, marker: str, marker_text: str, refusal: str) -> Path:
    """Make ``folder`` a new, empty folder holding only the file ``marker`` (with ``marker_text``); returns it.

    A folder that exists is deleted first only when it holds ``marker`` (an earlier run of the same tool wrote it), so
    that a folder given by mistake (a data set, the repository) is never deleted or written into.

    Args:
        folder: the output folder.
        marker: the marker's file name, e.g. ``".study_output"``.
        marker_text: what the marker says, for whoever finds it.
        refusal: the message when ``folder`` holds files and no marker.

    Raises:
        FileExistsError: ``folder`` is a file, or holds files and no marker (with ``refusal``).
    """
    folder = Path(folder)
    if folder.exists():
        if not folder.is_dir():
            raise FileExistsError(f"{folder} is a file, not a folder.")
        if any(folder.iterdir()):
            if not (folder / marker).is_file():
                raise FileExistsError(refusal)
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / marker).write_text(marker_text)
    return folder
