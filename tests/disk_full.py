"""``python -m monai.bundle`` on a file system that is full under one folder, for tests:
``python -m tests.disk_full FOLDER run --config_file ...``.

A file opened for writing under ``FOLDER`` with Python's ``open`` (as gzip, nibabel and ``json`` writers do) or
``os.fdopen`` (as the atomic writes of checkpoints do) is created, and every write to it fails with
``OSError(ENOSPC)``, as on a full disk. Writes elsewhere are unchanged.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import runpy
import sys
from typing import Any

_real_open = builtins.open
_real_fdopen = os.fdopen


class _FullFile(io.FileIO):
    """A file on a full disk: it opens, but nothing can be written to it."""

    def write(self, data: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.name)


def _on_full_disk(file: Any, mode: str, folder: str) -> bool:
    if not isinstance(file, (str, bytes, os.PathLike)) or not any(c in mode for c in "wax+"):
        return False
    return os.path.abspath(os.fsdecode(file)).startswith(folder + os.sep)


def full_disk_open(folder: str):
    """An ``open`` that behaves like a full disk under ``folder``."""

    def _open(file: Any, mode: str = "r", buffering: int = -1, encoding: str | None = None, *args: Any, **kwargs: Any):
        if not _on_full_disk(file, mode, folder):
            return _real_open(file, mode, buffering, encoding, *args, **kwargs)
        raw = _FullFile(file, mode.replace("b", "").replace("t", ""))
        buffered = io.BufferedRandom(raw) if "+" in mode else io.BufferedWriter(raw)
        return buffered if "b" in mode else io.TextIOWrapper(buffered, encoding=encoding)

    return _open


def full_disk_fdopen(folder: str):
    """An ``os.fdopen`` that behaves like a full disk for the files under ``folder``."""

    def _fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any):
        path = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        if not _on_full_disk(path, mode, folder):
            return _real_fdopen(fd, mode, *args, **kwargs)
        os.close(fd)
        return full_disk_open(folder)(path, mode, *args, **kwargs)

    return _fdopen


def main() -> None:
    folder = os.path.abspath(sys.argv.pop(1))
    builtins.open = full_disk_open(folder)
    os.fdopen = full_disk_fdopen(folder)
    sys.argv[0] = "monai.bundle"
    runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
