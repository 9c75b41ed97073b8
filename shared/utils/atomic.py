"""Atomic file writes: a reader (or a crash) never sees a half-written checkpoint or datalist.

The data goes to a temporary file ``.tmp_*`` in the destination folder, is flushed to disk, and is renamed over the
destination, which POSIX makes atomic. The file gets the permissions a plain ``open()`` would give it (``0o666``
less the umask), not the ``0o600`` of a temporary file. A process killed while writing leaves its ``.tmp_*`` file
behind; :func:`remove_temporaries` clears them at the next start. (ignite's ``DiskSaver(atomic=True)`` does the
same rename, but neither flushes to disk nor respects the umask, and names its temporaries so that they cannot be
told from other files.)
"""

from __future__ import annotations

import csv
import errno
import glob
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO

import torch

__all__ = [
    "TEMPORARY_PREFIX",
    "atomic_open",
    "atomic_path",
    "naming_failures",
    "save_atomically",
    "write_json_atomically",
    "write_text_atomically",
    "write_csv_atomically",
    "remove_temporaries",
]

TEMPORARY_PREFIX = ".tmp_"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextmanager
def _replacing(path: str, suffix: str) -> Iterator[str]:
    """A temporary file beside ``path`` (folder created, umask respected) that replaces ``path`` when the block ends
    without an error, and is removed otherwise."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMPORARY_PREFIX, suffix=suffix)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", newline: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing (``newline`` as ``open``'s, e.g. ``""`` for ``csv``); when
    the block ends without an error it replaces ``path``, otherwise it is removed and ``path`` is left as it was.
    Creates the folder."""
    path = os.fspath(path)
    with _replacing(path, os.path.splitext(path)[1]) as tmp, open(tmp, mode, newline=newline) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """A temporary file name beside ``path`` for a writer that takes a file name (e.g. an image writer); when the
    block ends without an error the file is flushed to disk and replaces ``path``, otherwise it is removed and
    ``path`` is left as it was. Creates the folder.

    Args:
        path: the destination.
        suffix: the temporary's suffix, for writers that choose the format by it (e.g. ``".nii.gz"``).

    Raises:
        OSError: the temporary is empty (a writer that failed without raising), or cannot be synced or renamed.
    """
    path = os.fspath(path)
    with _replacing(path, suffix) as tmp:
        yield tmp
        if os.path.getsize(tmp) == 0:
            raise OSError(f"the writer wrote nothing (0 bytes) for {path}")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())


@contextmanager
def naming_failures(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise an ``OSError`` of the block (e.g. ``ENOSPC`` on a full disk, whose message names no file, or the
    temporary's name) as an ``OSError`` of the same ``errno`` that names ``path`` and says it was left as it was."""
    try:
        yield
    except OSError as e:
        reason = e.strerror or str(e)
        hint = ": the disk is full" if e.errno == errno.ENOSPC else ""
        raise OSError(e.errno, f"cannot write {os.fspath(path)} ({reason}){hint}; the file keeps its earlier "
                               "content, if any") from e


def save_atomically(obj: object, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)``, atomically; a failed write raises an ``OSError`` naming ``path``."""
    with naming_failures(path), atomic_open(path, "wb") as f:
        torch.save(obj, f)


def write_json_atomically(obj: object, path: str | os.PathLike) -> None:
    """Write ``obj`` as 4-space indented JSON, atomically; a failed write raises an ``OSError`` naming ``path``."""
    with naming_failures(path), atomic_open(path, "w") as f:
        json.dump(obj, f, indent=4)
        f.write("\n")


def write_text_atomically(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` to ``path``, atomically; a failed write raises an ``OSError`` naming ``path``."""
    with naming_failures(path), atomic_open(path, "w") as f:
        f.write(text)


def write_csv_atomically(rows: Iterable[Sequence[object]], path: str | os.PathLike) -> None:
    """Write ``rows`` (the header first) as CSV, atomically; a failed write raises an ``OSError`` naming ``path``."""
    with naming_failures(path), atomic_open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def remove_temporaries(folder: str | os.PathLike) -> list[str]:
    """Delete the ``.tmp_*`` files that interrupted writes left in ``folder``; returns their paths. Call it only
    where no other process is writing into ``folder`` (see :class:`BundleLock`)."""
    removed = []
    for path in glob.glob(os.path.join(os.fspath(folder), TEMPORARY_PREFIX + "*")):
        try:
            os.remove(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed
