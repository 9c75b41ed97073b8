"""Handlers that stop a training run before it writes something wrong."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from ignite.engine import Engine, Events

__all__ = ["NonFiniteLossGuard", "batch_sources"]


def batch_sources(batch: object, source_key: str = "source") -> list[str]:
    """The source files of a collated batch: the strings under ``source_key`` (written by ``LoadImaged``'s
    ``source_key``), else the images' ``filename_or_obj`` metadata."""
    if isinstance(batch, list):
        return [s for item in batch for s in batch_sources(item, source_key)]
    if not isinstance(batch, dict):
        return []
    sources = batch.get(source_key)
    if sources is None:
        meta = getattr(batch.get("image"), "meta", None) or batch.get("image_meta_dict") or {}
        sources = meta.get("filename_or_obj")
    if sources is None:
        return []
    return [str(s) for s in sources] if isinstance(sources, (list, tuple)) else [str(sources)]


class NonFiniteLossGuard:
    """Stop training at the first NaN or infinite loss, naming the files of the batch.

    The iteration's optimiser step has already run when the loss is seen, so the network in memory is spoiled;
    the guard raises before the epoch ends, so no checkpoint saver (they save at epoch ends) writes it, and the
    files on disk keep the last finite state.

    Args:
        source_key: batch key holding the source file names (see :func:`batch_sources`).
        checkpoint: the checkpoint file, named in the message.
    """

    def __init__(self, source_key: str = "source", checkpoint: str | None = None) -> None:
        self.source_key = source_key
        self.checkpoint = checkpoint

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        output = engine.state.output
        output = output[0] if isinstance(output, Sequence) and not isinstance(output, dict) else output
        loss = output["loss"] if isinstance(output, dict) else output
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        if math.isfinite(value):
            return
        files = sorted(set(batch_sources(engine.state.batch, self.source_key)))
        kept = ""
        if self.checkpoint and os.path.isfile(self.checkpoint):  # none before the first epoch's end
            kept = f" {self.checkpoint} keeps the last finite state."
        raise FloatingPointError(
            f"the training loss is {value} at epoch {engine.state.epoch}, iteration {engine.state.iteration}; "
            f"training stopped before saving anything.{kept} Files of this batch: "
            + (", ".join(files) if files else "(unknown)")
        )
