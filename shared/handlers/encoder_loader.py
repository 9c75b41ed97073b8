"""Handler that initialises a fine-tuning network's encoder from an MAE checkpoint when the trainer is built."""

from __future__ import annotations

import logging

import torch.nn as nn

from ..networks.encoder_transfer import TransferReport, load_mae_encoder
from ..utils.dist import is_main_process

__all__ = ["MAEEncoderLoader"]

logger = logging.getLogger(__name__)


class MAEEncoderLoader:
    """Ignite-style handler that initialises a network's encoder from an MAE checkpoint.

    The weights are loaded when the handler is attached (i.e. when the trainer is built), so any resume
    ``CheckpointLoader`` that fires later at ``Events.STARTED`` still wins. Use it in a bundle's ``train#handlers``::

        {"_target_": "scripts.handlers.encoder_loader.MAEEncoderLoader", "load_path": "@pretrained_encoder",
         "network": "@network"}

    An empty ``load_path`` means training from scratch: nothing is loaded and a warning says so.

    Args:
        load_path: the MAE checkpoint, or "" for none.
        network: the ``UNETR`` or ``ViT`` (a DDP-wrapped one works too).
        strict: see :func:`load_mae_encoder`.
        source_grid: see :func:`load_mae_encoder`.
    """

    def __init__(
        self,
        load_path: str,
        network: nn.Module,
        strict: bool = True,
        source_grid: tuple[int, ...] | None = None,
    ) -> None:
        self.load_path = load_path
        self.network = network
        self.strict = strict
        self.source_grid = source_grid
        self.report: TransferReport | None = None

    def attach(self, engine) -> None:
        """Load the encoder now; ``engine`` is only used for its logger."""
        log = getattr(engine, "logger", logger)
        if not self.load_path:
            if is_main_process():
                log.warning("no pretrained encoder (pretrained_encoder is empty): the encoder starts from scratch")
            return
        network = getattr(self.network, "module", self.network)  # unwrap DistributedDataParallel
        self.report = load_mae_encoder(network, self.load_path, strict=self.strict, source_grid=self.source_grid)
        log.info(f"MAE encoder from {self.load_path}: {self.report.summary()}")
