"""Handler logging the label-free MAE health check (:mod:`shared.metrics.mae_health`) during pre-training."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from ignite.engine import Engine, Events

from ..metrics.mae_health import (
    MAEHealth,
    baseline_loss,
    fixed_masks,
    held_out_crops,
    nearest_visible_patch_baseline,
    reconstruction_loss,
    visible_mean_baseline,
)

__all__ = ["MAEHealthHandler"]

logger = logging.getLogger(__name__)


class MAEHealthHandler:
    """Every ``interval`` epochs and when the training ends, score the MAE on fixed held-out crops and log::

        MAE health (epoch 10): held-out loss 0.41 (untrained 1.02, nearest-visible-patch 0.63, visible-mean 1.00):
        learning

    or, as a WARNING, which references it does not beat. The references (see :class:`MAEHealth`) are computed once,
    at ``Events.STARTED``: the untrained one from the network's weights as they were when this handler was built,
    i.e. its initialisation with the run's seed (before any resume loads a checkpoint). The crops are made once by
    the pre-training's own preprocessing with a fixed random state, the masks drawn once from ``seed``.

    Use it in ``train#handlers`` on rank 0 only (``"_disabled_": "$not @rank_zero"``): it evaluates the unwrapped
    network without any collective operation.

    Args:
        network: the :class:`~shared.networks.mae.MaskedAutoencoderViT` being trained (a DDP-wrapped one works too).
        items: held-out datalist items, e.g. the validation split; empty turns the check off (with a warning).
        transform: the pre-training preprocessing, which makes crops of the network's input size.
        interval: epochs between checks; 0 checks only at the end.
        num_images: number of held-out crops.
        seed: random state of the crops and the masks.
        batch_size: crops per forward pass.
        summary_writer: optional ``SummaryWriter``; the losses go to ``mae_health/<name>``.
    """

    def __init__(
        self,
        network: nn.Module,
        items: Sequence[Mapping[str, Any]],
        transform: Callable,
        interval: int = 10,
        num_images: int = 8,
        seed: int = 0,
        batch_size: int = 4,
        summary_writer: Any = None,
    ) -> None:
        self.network = network
        self.items = list(items)
        self.transform = transform
        self.interval = interval
        self.num_images = num_images
        self.seed = seed
        self.batch_size = batch_size
        self.summary_writer = summary_writer
        self.initial_state: dict[str, torch.Tensor] | None = {
            k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()
        }
        self.images = torch.empty(0)
        self.masks = torch.empty(0, dtype=torch.bool)
        self.references: dict[str, float] = {}
        self.last_epoch = -1
        self.history: list[tuple[int, MAEHealth]] = []

    @property
    def model(self) -> nn.Module:
        """The MAE without its DDP wrapper."""
        return getattr(self.network, "module", self.network)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.prepare)
        if self.interval > 0:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)
        engine.add_event_handler(Events.COMPLETED, self)

    def untrained_model(self) -> nn.Module:
        """A copy of the network with the weights it had when this handler was built."""
        untrained = copy.deepcopy(self.model)
        untrained.load_state_dict(self.initial_state)
        return untrained

    def prepare(self, engine: Engine | None = None) -> None:
        """Make the held-out crops and masks and score the references (once)."""
        if self.references or self.initial_state is None:
            return
        log = getattr(engine, "logger", logger)
        self.images = held_out_crops(self.items, self.transform, self.num_images, self.seed)
        if len(self.images) == 0:
            log.warning("MAE health: no held-out images, the check is off.")
            self.initial_state = None
            return
        model = self.model
        self.masks = fixed_masks(len(self.images), model.num_patches, model.num_masked, self.seed)
        self.references = {
            "untrained": reconstruction_loss(self.untrained_model(), self.images, self.masks, self.batch_size),
            "nearest_visible": baseline_loss(model, self.images, self.masks, nearest_visible_patch_baseline),
            "visible_mean": baseline_loss(model, self.images, self.masks, visible_mean_baseline),
        }
        self.initial_state = None  # the references are all it was kept for
        log.info(f"MAE health: {len(self.images)} held-out crops, references "
                 + ", ".join(f"{k} {v:.4g}" for k, v in self.references.items()))

    def check(self) -> MAEHealth:
        """The health of the network now."""
        trained = reconstruction_loss(self.model, self.images, self.masks, self.batch_size)
        return MAEHealth(trained=trained, **self.references)

    def __call__(self, engine: Engine) -> None:
        self.prepare(engine)
        epoch = engine.state.epoch
        if not self.references or epoch == self.last_epoch:
            return
        self.last_epoch = epoch
        health = self.check()
        self.history.append((epoch, health))
        log = getattr(engine, "logger", logger)
        message = f"MAE health (epoch {epoch}): {health.summary()}"
        if health.learning:
            log.info(message)
        else:
            log.warning(message)
        if self.summary_writer is not None:
            for name in ("trained", "untrained", "nearest_visible", "visible_mean"):
                self.summary_writer.add_scalar(f"mae_health/{name}", getattr(health, name), epoch)
            self.summary_writer.flush()
