"""Handler that initialises a fine-tuning network's encoder from an MAE checkpoint when the trainer is built."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping

import torch
import torch.nn as nn

from ..networks.encoder_transfer import TransferReport, load_mae_encoder
from ..utils.dist import file_exists_on_all_ranks, is_main_process
from .checkpoint import epochs_done

__all__ = ["MAEEncoderLoader", "encoder_identity"]

logger = logging.getLogger(__name__)


def encoder_identity(path: str, digits: int = 16) -> str:
    """The identity of a pretrained encoder file, as a training checkpoint records it (``RunSettings``'s ``encoder``)
    so that a resumed run can tell whether it starts from the same weights: the first ``digits`` hex digits of the
    sha256 of the file's content (a moved or renamed copy is the same encoder), "" for none.

    Args:
        path: the encoder (an MAE checkpoint), or "" for none (training from scratch).
        digits: how many hex digits of the sha256 to keep.

    Returns:
        "" when ``path`` is empty, else the hash prefix.

    Raises:
        FileNotFoundError: ``path`` is given but is no file.
        RanksDisagreeError: under ``torch.distributed``, on every rank, when some ranks see the file and others do
            not (nodes that do not share it): checked before any rank raises alone (a collective).
    """
    if not path:
        return ""
    if not file_exists_on_all_ranks(path):
        raise FileNotFoundError(f"pretrained_encoder {path}: no such file (give an MAE checkpoint, or \"\" to train "
                                "from scratch)")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:digits]


class MAEEncoderLoader:
    """Ignite-style handler that initialises a network's encoder from an MAE checkpoint.

    The weights are loaded when the handler is attached (i.e. when the trainer is built), so any resume
    ``CheckpointLoader`` that fires later at ``Events.STARTED`` still wins. Use it in a bundle's ``train#handlers``::

        {"_target_": "scripts.handlers.encoder_loader.MAEEncoderLoader", "load_path": "@pretrained_encoder",
         "network": "@network"}

    An empty ``load_path`` means training from scratch: nothing is loaded and a warning says so. Under
    ``torch.distributed`` ranks that disagree on whether ``load_path`` exists (nodes that do not share it) are refused
    on every rank, naming the file.

    The pre-training writes its MAE every epoch, so the file may be that of a pre-training that was stopped; given
    the pre-training's own checkpoint (``pretraining_checkpoint``, e.g. the ``mae_checkpoint.pt`` beside a bundle's
    ``mae.pt``), the handler says how many of its epochs the MAE had, with a warning when it had not finished.

    Args:
        load_path: the MAE checkpoint, or "" for none.
        network: the ``UNETR`` or ``ViT`` (a DDP-wrapped one works too).
        strict: see :func:`load_mae_encoder`.
        source_grid: see :func:`load_mae_encoder`.
        pretraining_checkpoint: the training checkpoint of the pre-training that wrote ``load_path``; "" or a
            missing file: not checked.
    """

    def __init__(
        self,
        load_path: str,
        network: nn.Module,
        strict: bool = True,
        source_grid: tuple[int, ...] | None = None,
        pretraining_checkpoint: str = "",
    ) -> None:
        self.load_path = load_path
        self.network = network
        self.strict = strict
        self.source_grid = source_grid
        self.pretraining_checkpoint = pretraining_checkpoint
        self.report: TransferReport | None = None

    def attach(self, engine) -> None:
        """Load the encoder now; ``engine`` is only used for its logger."""
        log = getattr(engine, "logger", logger)
        if not self.load_path:
            if is_main_process():
                log.warning("no pretrained encoder (pretrained_encoder is empty): the encoder starts from scratch")
            return
        file_exists_on_all_ranks(self.load_path)  # refuses ranks that disagree: their encoders would differ
        network = getattr(self.network, "module", self.network)  # unwrap DistributedDataParallel
        self.report = load_mae_encoder(network, self.load_path, strict=self.strict, source_grid=self.source_grid)
        log.info(f"MAE encoder from {self.load_path}: {self.report.summary()}")
        if is_main_process():
            self.say_how_far_pretrained(log)

    def say_how_far_pretrained(self, log: logging.Logger) -> None:
        """Log the epochs of the pre-training (``pretraining_checkpoint``), warning when it had not finished."""
        if not self.pretraining_checkpoint or not os.path.isfile(self.pretraining_checkpoint):
            return
        try:
            checkpoint = torch.load(self.pretraining_checkpoint, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:  # the encoder is loaded already: an unreadable checkpoint only means no check
            log.warning(f"could not read {self.pretraining_checkpoint} to tell how far the MAE was pre-trained "
                        f"({type(e).__name__})")
            return
        progress = epochs_done(checkpoint.get("trainer")) if isinstance(checkpoint, Mapping) else None
        if progress is None:
            return
        done, asked = progress
        if done < asked:
            log.warning(
                f"{self.load_path} is the MAE of a pre-training that stopped after {done} of its {asked} epochs "
                f"({self.pretraining_checkpoint}): this fine-tuning starts from an unfinished pre-training. Run the "
                "pre-training again with the same command to finish it first, or go on knowingly.")
        else:
            log.info(f"{self.load_path}: the MAE of a finished pre-training ({done} epochs)")
