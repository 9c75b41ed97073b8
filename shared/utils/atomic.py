"""Atomic file writes: a reader (or a crash) never sees a half-written checkpoint or datalist.

The data goes to a temporary file in the destination folder, is flushed to disk, and is renamed over the
destination, which POSIX makes atomic.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import torch

__all__ = ["atomic_open", "save_atomically", "write_json_atomically"]


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; when the block ends without an error it replaces ``path``,
    otherwise it is removed and ``path`` is left as it was. Creates the folder."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_atomically(obj: object, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)``, atomically."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def write_json_atomically(obj: object, path: str | os.PathLike) -> None:
    """Write ``obj`` as 4-space indented JSON, atomically."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=4)
        f.write("\n")
