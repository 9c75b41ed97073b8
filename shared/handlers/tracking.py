"""Experiment tracking that logs one learning rate instead of one per parameter group.

With layer-wise learning-rate decay the optimiser has a parameter group per transformer block (28 for a 12-block
ViT), and MONAI's ``MLFlowHandler`` (``--tracking mlflow``) logs ``lr_group_0`` ... ``lr_group_27`` at every
iteration. :class:`TrackBaseLearningRate` makes the trackers log ``learning_rate`` instead, the base rate (of the
groups that are not decayed, e.g. UNETR's CNN decoder), once per epoch; the per-group rates stay available with
``all_groups=True`` (``--log_all_lr_groups true``).
"""

from __future__ import annotations

from ignite.engine import Engine, Events
from monai.handlers import MLFlowHandler

from ..utils.config import as_bool

__all__ = ["TrackBaseLearningRate", "attached_trackers"]


def attached_trackers(engine: Engine) -> list[MLFlowHandler]:
    """The experiment trackers (MONAI's ``MLFlowHandler``) attached to ``engine``, found by the ``start`` method each
    of them attaches at ``Events.STARTED``. ignite keeps no public list of an engine's handlers; its own profilers
    read ``Engine._event_handlers`` too."""
    owners = (getattr(handler, "__self__", None) for handler, _, _ in engine._event_handlers[Events.STARTED])
    return [owner for owner in owners if isinstance(owner, MLFlowHandler)]


class TrackBaseLearningRate:
    """Make the experiment trackers attached to a trainer log the base learning rate once per epoch instead of each
    parameter group's rate at every iteration.

    ``--tracking mlflow`` appends MONAI's ``MLFlowHandler`` to ``train#handlers`` after this handler, so the trackers
    are looked up when the run starts; at the end of each epoch the base learning rate (the largest of the optimiser's
    groups, at the epoch's last iteration) is put into ``engine.state.metrics["learning_rate"]``, where the
    epoch-level trackers find it. Put it first in ``train#handlers``, before any tracker. Without a tracker it
    changes nothing.

    Args:
        all_groups: True (or ``"true"``, as the command line passes it) leaves the trackers as they are: they log
            each group's ``lr`` at every iteration.
    """

    def __init__(self, all_groups: bool | str = False) -> None:
        self.all_groups = as_bool(all_groups, "log_all_lr_groups")
        self.trackers: list[MLFlowHandler] = []

    def attach(self, engine: Engine) -> None:
        if self.all_groups:
            return
        engine.add_event_handler(Events.STARTED, self.quiet_group_rates)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.record_base_rate)

    def quiet_group_rates(self, engine: Engine) -> None:
        """Find the trackers, all attached by now, and stop them logging each group's rate."""
        self.trackers = attached_trackers(engine)
        for tracker in self.trackers:
            tracker.optimizer_param_names = []

    def record_base_rate(self, engine: Engine) -> None:
        """Put the base learning rate into the epoch's metrics when a tracker logs them."""
        if self.trackers:
            engine.state.metrics["learning_rate"] = max(float(group["lr"]) for group in engine.optimizer.param_groups)
