"""Experiment tracking that logs one learning rate instead of one per parameter group.

With layer-wise learning-rate decay the optimiser has a parameter group per transformer block (28 for a 12-block
ViT), and MONAI's ``MLFlowHandler`` (``--tracking mlflow``) logs ``lr_group_0`` ... ``lr_group_27`` at every
iteration. :func:`track_base_learning_rate` gives the trainer's handlers instead: the trackers log ``learning_rate``,
the base rate (of the groups that are not decayed, e.g. UNETR's CNN decoder), once per epoch; the per-group rates
stay available with ``all_groups=True`` (``--log_all_lr_groups true``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ignite.engine import Engine, Events

from ..utils.config import as_bool

__all__ = ["BaseLearningRate", "track_base_learning_rate"]


class BaseLearningRate:
    """At the end of each epoch, put the base learning rate (the largest of the optimiser's groups, at the epoch's
    last iteration) into ``engine.state.metrics["learning_rate"]``, where the epoch-level loggers (MLflow,
    TensorBoard, the log) find it. Attach it before them."""

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        engine.state.metrics["learning_rate"] = max(float(group["lr"]) for group in engine.optimizer.param_groups)


def track_base_learning_rate(handlers: Sequence[object], all_groups: bool | str = False) -> list[object]:
    """The trainer's ``handlers``, with every experiment tracker among them (MONAI's ``MLFlowHandler``, added by
    ``--tracking mlflow``) set to log ``learning_rate`` per epoch instead of each group's ``lr`` per iteration.

    In a config: ``"tracked_handlers": {"_target_": "scripts.handlers.tracking.track_base_learning_rate", "handlers":
    "@train#handlers", "all_groups": "@log_all_lr_groups"}`` and the trainer's ``"train_handlers":
    "$@train#tracked_handlers"`` (an expression, which MONAI's property check of ``train_handlers`` accepts).
    """
    handlers = list(handlers)
    if as_bool(all_groups, "log_all_lr_groups"):
        return handlers
    trackers = [h for h in handlers if type(h).__name__ == "MLFlowHandler"]
    for tracker in trackers:
        tracker.optimizer_param_names = []
    return [BaseLearningRate(), *handlers] if trackers else handlers
