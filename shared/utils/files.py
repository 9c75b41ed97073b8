"""Reading the files a user gives a run, with errors that name the file and the place of the problem."""

from __future__ import annotations

import json
from typing import Any

from .errors import InputError

__all__ = ["read_json"]


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
