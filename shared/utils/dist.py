"""Helpers for code that runs the same way in one process and under ``torch.distributed``."""

from __future__ import annotations

from typing import Any, TypeVar

import ignite.distributed as idist
import torch.distributed as dist

__all__ = ["is_main_process", "gather_objects"]

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
