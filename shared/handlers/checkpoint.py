"""Atomic checkpoint writing, so that an interrupted run never leaves a truncated file behind.

MONAI's ``CheckpointSaver`` writes in place (``DiskSaver(atomic=False)``): a run killed while saving leaves a
corrupt checkpoint and nothing to resume from. :class:`AtomicCheckpointSaver` writes through
:func:`save_atomically` instead. Resuming uses MONAI's ``CheckpointLoader``
(``weights_only=True``), which restores the trainer's epoch and iteration too.
"""

from __future__ import annotations

from collections.abc import Mapping

from ignite.engine import Engine, Events

from ..utils.atomic import save_atomically
from ..utils.dist import is_main_process

__all__ = ["AtomicCheckpointSaver"]


class AtomicCheckpointSaver:
    """Save the state dicts of ``save_dict`` every ``save_interval`` epochs and when training completes.

    With one entry the file holds that object's state dict itself (as MONAI's ``CheckpointSaver`` does, and as
    MONAI Label and ``ckpt_export`` expect for ``models/model.pt``); with several it holds ``{name: state_dict}``,
    which MONAI's ``CheckpointLoader`` restores.

    Under ``torch.distributed`` only rank 0 writes.

    Args:
        save_path: the checkpoint file, overwritten each time.
        save_dict: objects with ``state_dict()``, e.g. ``{"model": net, "optimizer": opt, "trainer": trainer}``.
            A ``DistributedDataParallel`` model is saved unwrapped.
        save_interval: epochs between saves; 0 saves only at the end.
        on_completed: also save when the run completes.
        only_best: attached to an evaluator, save only when its key metric has just improved (MONAI's
            ``engine.state.best_metric_epoch``), as ``CheckpointSaver(save_key_metric=True)`` does.
    """

    def __init__(
        self,
        save_path: str,
        save_dict: Mapping[str, object],
        save_interval: int = 1,
        on_completed: bool = True,
        only_best: bool = False,
    ) -> None:
        if not save_dict:
            raise ValueError("save_dict must name at least one object to save.")
        self.save_path = save_path
        self.save_dict = dict(save_dict)
        self.save_interval = save_interval
        self.on_completed = on_completed
        self.only_best = only_best

    def attach(self, engine: Engine) -> None:
        if self.save_interval > 0:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self)
        if self.on_completed:
            engine.add_event_handler(Events.COMPLETED, self)

    def state(self) -> dict:
        states = {name: getattr(obj, "module", obj).state_dict() for name, obj in self.save_dict.items()}
        return next(iter(states.values())) if len(states) == 1 else states

    def __call__(self, engine: Engine) -> None:
        if not is_main_process():
            return
        if self.only_best and getattr(engine.state, "best_metric_epoch", -1) != engine.state.epoch:
            return
        save_atomically(self.state(), self.save_path)
        engine.logger.info(f"epoch {engine.state.epoch}: saved {self.save_path}")
