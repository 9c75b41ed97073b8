"""One handler for what keeps a training run's files safe: the bundle lock, resuming, atomic checkpoints.

A training run must own its ``models/`` folder before it touches anything there, resume from its checkpoint with
the best validation metric so far, and write checkpoints that a kill cannot truncate. :class:`RunSafetyHandler`
does all of it when it is attached to the trainer, in that order, with :class:`~.lock.BundleLock`,
:class:`~.checkpoint.ResumeLoader` and :class:`~.checkpoint.AtomicCheckpointSaver`, so that a config lists it once in
``train#handlers`` (as the model zoo lists MONAI's ``CheckpointSaver``). The training configs take the same lock
earlier, in their ``run`` (``$@bundle_lock.acquire()``) before the trainer and its data are built, so that a refused
job neither caches the data nor writes a datalist or log files; the handler then finds the lock held.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ignite.engine import Engine, Events

from ..utils.config import as_bool
from .checkpoint import AtomicCheckpointSaver, ResumeLoader
from .lock import BundleLock

__all__ = ["RunSafetyHandler"]


class RunSafetyHandler:
    """Lock the bundle, clear interrupted writes, resume from the checkpoint and save it atomically.

    When attached to the trainer (when the config builds it), in this order:

    1. take the bundle lock (rank 0; :class:`~.lock.BundleLock`; nothing when ``run`` took it already): a second job
       on the same ``bundle_root`` is refused here, before it has touched anything in ``models/``; the lock is
       released when the run completes;
    2. remove the ``.tmp_*`` files that killed writes left beside the checkpoint (rank 0);
    3. resume (:class:`~.checkpoint.ResumeLoader`, every rank): from the checkpoint when the engine starts, the best
       validation metric included when ``save_dict`` holds a :class:`~.checkpoint.BestMetricState`; on a fresh
       start, the files of ``keep_on_fresh_start`` are kept under a new name now;
    4. save the checkpoint (:class:`~.checkpoint.AtomicCheckpointSaver`, rank 0) every ``save_interval`` epochs and
       when the run completes.

    The savings are registered when the engine starts, after every handler the trainer was built with: the
    checkpoint of an epoch then records what the epoch's validation (``ValidationHandler``) found, and the lock is
    released after the last save, wherever this handler stands in ``train#handlers``.

    Args:
        checkpoint_file: the training checkpoint (``models/checkpoint.pt``).
        save_dict: the objects to save and restore besides the trainer, e.g. ``{"model": net, "optimizer": opt,
            "lr_scheduler": sched, "best_metric": BestMetricState(evaluator), "settings": run_settings}``.
        lock: the bundle lock (``@bundle_lock`` in the configs), or its file (``models/.lock``).
        resume: whether to resume from ``checkpoint_file`` when it exists (``--resume false`` is read as False).
        save_interval: epochs between saves; 0 saves only at the end.
        keep_on_fresh_start: files an earlier run wrote that a fresh run would replace (``models/model.pt``).
        map_location: ``torch.load``'s ``map_location`` when resuming.
        trainer_key: the checkpoint entry of the trainer the handler is attached to.
    """

    def __init__(
        self,
        checkpoint_file: str,
        save_dict: Mapping[str, Any],
        lock: BundleLock | str,
        resume: bool | str = True,
        save_interval: int = 1,
        keep_on_fresh_start: Sequence[str] = (),
        map_location: Any = None,
        trainer_key: str = "trainer",
    ) -> None:
        if trainer_key in save_dict:
            raise ValueError(f"save_dict must not hold {trainer_key!r}: the trainer this handler is attached to is "
                             "saved under that name.")
        self.checkpoint_file = checkpoint_file
        self.save_dict = dict(save_dict)
        self.lock = lock if isinstance(lock, BundleLock) else BundleLock(lock)
        self.resume = as_bool(resume, "resume")
        self.save_interval = save_interval
        self.keep_on_fresh_start = keep_on_fresh_start
        self.map_location = map_location
        self.trainer_key = trainer_key
        self.saver: AtomicCheckpointSaver | None = None

    def attach(self, engine: Engine) -> None:
        """Take the lock, clear interrupted writes and prepare the resume now; save from when ``engine`` starts.

        Raises:
            BundleLockedError: another live job holds the lock; nothing in ``models/`` was touched.
        """
        self.lock.acquire()
        objects = {**self.save_dict, self.trainer_key: engine}
        self.saver = AtomicCheckpointSaver(self.checkpoint_file, objects, save_interval=self.save_interval)
        self.saver.remove_leftovers()
        ResumeLoader(self.checkpoint_file, objects, resume=self.resume, map_location=self.map_location,
                     keep_on_fresh_start=self.keep_on_fresh_start).attach(engine)
        engine.add_event_handler(Events.STARTED, self.attach_saving)

    def attach_saving(self, engine: Engine) -> None:
        """Register the checkpoint saves, then the lock's release, after the handlers attached so far (once: a
        second ``run`` of the engine finds them registered)."""
        if self.saver is None or engine.has_event_handler(self.saver):
            return
        self.saver.attach(engine)
        self.lock.attach(engine)
