"""Helpers for code that runs the same way in one process and under ``torch.distributed``."""

from __future__ import annotations

import time
from typing import Any, TypeVar

import ignite.distributed as idist
import torch.distributed as dist

__all__ = [
    "is_main_process",
    "gather_objects",
    "broadcast_from_main",
    "end_process_group",
]

# How long the main thread waits, without the GIL, after destroying a gloo process group (see end_process_group).
GLOO_SETTLE_SECONDS = 0.2

T = TypeVar("T")


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
