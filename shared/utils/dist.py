"""Helpers for code that runs the same way in one process and under ``torch.distributed``."""

from __future__ import annotations

import os
import socket
import time
from typing import Any, TypeVar

import ignite.distributed as idist
import torch.distributed as dist

__all__ = [
    "RanksDisagreeError",
    "is_main_process",
    "gather_objects",
    "broadcast_from_main",
    "file_exists_on_all_ranks",
    "end_process_group",
]

# How long the main thread waits, without the GIL, after destroying a gloo process group (see end_process_group).
GLOO_SETTLE_SECONDS = 0.2

T = TypeVar("T")


class RanksDisagreeError(RuntimeError):
    """The ranks of a distributed run see different files where they must see the same ones."""


def is_main_process() -> bool:
    """True in a single process and on rank 0 of a distributed run: the process that writes files and logs."""
    return idist.get_rank() == 0


def gather_objects(obj: T) -> list[T]:
    """Every rank's ``obj`` (any picklable object), in rank order; ``[obj]`` in a single process."""
    if idist.get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * idist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_from_main(obj: T) -> T:
    """Rank 0's ``obj`` (any picklable object) on every rank; ``obj`` in a single process.

    A collective: every rank calls it at the same point of the run (the ranks that do wait for any that does not)."""
    if idist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def file_exists_on_all_ranks(path: str) -> bool:
    """Whether ``path`` is a file, on every rank alike: what a run decides on it (resume from a checkpoint, load a
    pre-trained encoder) it decides the same way on every rank. In a single process, ``os.path.isfile(path)``.

    Only rank 0 writes ``models/``: on nodes that do not share the bundle's folder, rank 0 would resume while the
    others start afresh, and their replicas would differ without a word. Every rank calls it at the same point of
    the run (a collective).

    Raises:
        RanksDisagreeError: on every rank, when some ranks see the file and others do not, naming the file and the
            ranks (with their hosts) on each side.
    """
    seen = gather_objects((os.path.isfile(path), socket.gethostname()))
    found = [exists for exists, _ in seen]
    if all(found) or not any(found):
        return found[0]
    have, lack = (", ".join(f"{rank} (host {host})" for rank, (exists, host) in enumerate(seen) if exists is side)
                  for side in (True, False))
    raise RanksDisagreeError(
        f"the ranks disagree on whether {path} is a file: rank(s) {have} see one, rank(s) {lack} do not; they would "
        "start from different weights. A multi-node run needs its bundle_root (and any file it is given to load) on "
        "a file system that every node shares."
    )


def end_process_group() -> None:
    """Destroy the default process group at the end of a run (the multi-GPU configs' ``finalize``); nothing when
    there is none.

    Under gloo (CPU runs), a collective's worker thread frees the collective a moment after ``wait()`` has returned
    in Python, and freeing a tensor whose Python object is gone takes the GIL. If the interpreter has begun to shut
    down by then, the thread is ended inside a destructor and the process aborts ("terminate called without an
    active exception", SIGABRT) after the run has finished and written everything, so torchrun reports a failure.
    ``destroy_process_group`` does not stop gloo's threads (the group lives on while anything holds it, DDP for
    one), so the main thread then waits ``GLOO_SETTLE_SECONDS`` without the GIL for them to finish. No ``barrier``
    first: a gloo barrier holds on to every collective still in flight when it was issued until the barrier itself
    is freed (the core dump of an aborted process showed a barrier freeing an ``all_gather``'s tensors).
    """
    if not dist.is_initialized():
        return
    gloo = dist.get_backend() == "gloo"
    dist.destroy_process_group()
    idist.sync()  # is_main_process and gather_objects see a single process again
    if gloo:
        time.sleep(GLOO_SETTLE_SECONDS)
