"""Checkpoints that are never truncated, never hold NaN weights, and resume a run as it was left.

MONAI's ``CheckpointSaver`` writes in place (``DiskSaver(atomic=False)``): a run killed while saving leaves a
corrupt checkpoint and nothing to resume from. :class:`AtomicCheckpointSaver` writes through
:func:`save_atomically`, clears the temporaries of killed writes when it starts, and refuses to replace a file with
non-finite weights. :class:`ResumeLoader` restores a run from its checkpoint (``weights_only=True``), the best
validation metric included (:class:`BestMetricState`), so that a resumed run does not take its first validation for
a new best and overwrite the best model.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from ..utils.atomic import remove_temporaries, save_atomically
from ..utils.config import as_bool
from ..utils.dist import is_main_process

__all__ = [
    "AtomicCheckpointSaver",
    "BestMetricState",
    "ModelLoader",
    "ResumeLoader",
    "keep_previous",
    "non_finite_entries",
    "state_dict_differences",
]

logger = logging.getLogger(__name__)


def non_finite_entries(state: Any, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors in a (nested) state dict that hold NaN or infinite values."""
    if isinstance(state, torch.Tensor):
        return [prefix] if state.is_floating_point() and not bool(torch.isfinite(state).all()) else []
    if isinstance(state, Mapping):
        return [n for k, v in state.items() for n in non_finite_entries(v, f"{prefix}{k}.")]
    if isinstance(state, (list, tuple)):
        return [n for i, v in enumerate(state) for n in non_finite_entries(v, f"{prefix}{i}.")]
    return []


def keep_previous(path: str) -> str | None:
    """Keep the file ``path`` under a new name beside it, ``<name>.previous-<its modification time><ext>`` (e.g.
    ``model.previous-20240131-120000.pt``), before a run replaces it: a hard link where the file system allows it
    (no copy; ``path`` itself is left in place until it is atomically replaced), else a copy.

    Returns:
        the name it is kept under; None when ``path`` does not exist.
    """
    if not os.path.isfile(path):
        return None
    stem, ext = os.path.splitext(path)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(os.path.getmtime(path)))
    kept, n = f"{stem}.previous-{stamp}{ext}", 1
    while os.path.exists(kept):
        kept, n = f"{stem}.previous-{stamp}-{n}{ext}", n + 1
    try:
        os.link(path, kept)
    except OSError:
        shutil.copy2(path, kept)
    return kept


def state_dict_differences(expected: Mapping[str, Any], saved: Mapping[str, Any]) -> list[str]:
    """What differs between a network's state dict and a saved one: missing and unexpected tensor names, and shapes.

    Returns:
        one short phrase per difference, e.g. ``"vit.norm.weight: saved (768,), network (48,)"``.
    """
    problems = []
    for name, tensor in expected.items():
        if name not in saved:
            problems.append(f"{name}: not in the file")
        elif hasattr(saved[name], "shape") and tuple(saved[name].shape) != tuple(tensor.shape):
            problems.append(f"{name}: saved {tuple(saved[name].shape)}, network {tuple(tensor.shape)}")
    problems += [f"{name}: not in the network" for name in saved if name not in expected]
    return problems


def describe_differences(problems: Sequence[str], shown: int = 5) -> str:
    """The first ``shown`` differences of :func:`state_dict_differences` on one line, and how many more there are."""
    text = "; ".join(problems[:shown])
    return text + (f"; and {len(problems) - shown} more" if len(problems) > shown else "")


def count_differences(problems: Sequence[str]) -> str:
    """How many differences of :func:`state_dict_differences` are of each kind, e.g. ``"152 tensors of the network
    not in the file, 170 of the file not in the network"``."""
    missing = sum(p.endswith(": not in the file") for p in problems)
    unexpected = sum(p.endswith(": not in the network") for p in problems)
    parts = [f"{missing} tensors of the network not in the file" if missing else "",
             f"{unexpected} of the file not in the network" if unexpected else "",
             f"{len(problems) - missing - unexpected} of other shapes" if len(problems) > missing + unexpected else ""]
    return ", ".join(p for p in parts if p)


def _learning_rates(optimizer: Any) -> list[float]:
    """The base learning rate of each parameter group (``initial_lr`` once a schedule is attached, else ``lr``)."""
    groups = getattr(optimizer, "param_groups", None) or []
    return [float(g.get("initial_lr", g.get("lr", 0.0))) for g in groups]


class AtomicCheckpointSaver:
    """Save the state dicts of ``save_dict`` every ``save_interval`` epochs and when training completes.

    With one entry the file holds that object's state dict itself (as MONAI's ``CheckpointSaver`` does, and as
    MONAI Label and ``ckpt_export`` expect for ``models/model.pt``); with several it holds ``{name: state_dict}``,
    which :class:`ResumeLoader` (or MONAI's ``CheckpointLoader``) restores.

    Under ``torch.distributed`` only rank 0 writes. When the engine it is attached to starts, leftovers of
    interrupted writes (``.tmp_*``) in the file's folder are removed.

    Args:
        save_path: the checkpoint file, overwritten each time.
        save_dict: objects with ``state_dict()``, e.g. ``{"model": net, "optimizer": opt, "trainer": trainer}``.
            A ``DistributedDataParallel`` model is saved unwrapped.
        save_interval: epochs between saves; 0 saves only at the end.
        on_completed: also save when the run completes.
        only_best: attached to an evaluator, save only when its key metric has just improved (MONAI's
            ``engine.state.best_metric_epoch``), as ``CheckpointSaver(save_key_metric=True)`` does.

    Raises:
        FloatingPointError: when saving, if any weight is NaN or infinite; the file keeps its last finite content.
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
        self._leftovers_removed = False

    def attach(self, engine: Engine) -> None:
        """Save on ``engine``'s events; clear the leftovers of interrupted writes when it first starts running (not
        now: attaching happens when a config is instantiated, possibly before the bundle lock is taken)."""
        engine.add_event_handler(Events.STARTED, self.remove_leftovers)
        if self.save_interval > 0:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self)
        if self.on_completed:
            engine.add_event_handler(Events.COMPLETED, self)

    def remove_leftovers(self, engine: Engine | None = None) -> None:
        """Remove the ``.tmp_*`` files of interrupted writes beside :attr:`save_path`, once per process (rank 0)."""
        if self._leftovers_removed or not is_main_process():
            return
        self._leftovers_removed = True
        for path in remove_temporaries(os.path.dirname(os.path.abspath(self.save_path))):
            logger.warning(f"removed {path}, left by an interrupted write")

    def state(self) -> dict:
        states = {name: getattr(obj, "module", obj).state_dict() for name, obj in self.save_dict.items()}
        return next(iter(states.values())) if len(states) == 1 else states

    def __call__(self, engine: Engine) -> None:
        if not is_main_process():
            return
        if self.only_best and getattr(engine.state, "best_metric_epoch", -1) != engine.state.epoch:
            return
        state = self.state()
        bad = non_finite_entries(state)
        if bad:
            raise FloatingPointError(
                f"refusing to write {self.save_path} at epoch {engine.state.epoch}: {len(bad)} tensors hold NaN or "
                f"infinite values (e.g. {bad[0].rstrip('.')}); the file keeps its last finite content."
            )
        save_atomically(state, self.save_path)
        engine.logger.info(f"epoch {engine.state.epoch}: saved {self.save_path}")


class BestMetricState:
    """The best key metric of an evaluator, and its epoch, as a checkpoint entry: put it in the training
    checkpoint's ``save_dict`` so that a resumed run knows which model is the best so far.

    Args:
        engine: the evaluator (``SupervisedEvaluator``).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def state_dict(self) -> dict[str, float]:
        return {"best_metric": float(self.engine.state.best_metric),
                "best_metric_epoch": int(self.engine.state.best_metric_epoch)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.engine.state.best_metric = float(state["best_metric"])
        self.engine.state.best_metric_epoch = int(state["best_metric_epoch"])


class ResumeLoader:
    """Resume a training run from its checkpoint when ``resume`` is on and the checkpoint exists.

    - ``resume`` is read with :func:`as_bool`: ``--resume false`` means False.
    - A checkpoint that cannot be read is an error naming the file and saying how to start over.
    - Entries of ``load_dict`` missing from an older checkpoint are skipped with a warning.
    - A run restarted with a larger ``epochs`` continues on a learning-rate schedule for the new total: the
      schedule's length (``t_total``, ``warmup_steps``) is the one configured now, not the one saved.
    - A run that had already finished says so instead of silently training nothing.
    - A run that starts from scratch (``resume`` off, or no checkpoint) keeps the files of ``keep_on_fresh_start``
      that an earlier run left (the best model) under a new name (:func:`keep_previous`) and says so: its first
      validation would otherwise replace them without a word.

    Args:
        load_path: the checkpoint (``models/checkpoint.pt``).
        load_dict: the objects to restore, as saved (e.g. ``@checkpoint_saver#save_dict``).
        resume: whether to resume at all.
        map_location: ``torch.load``'s ``map_location``.
        scheduler_key: the ``load_dict`` entry of the learning-rate schedule.
        keep_on_fresh_start: files an earlier run wrote that a fresh run would replace (``models/model.pt``).
    """

    SCHEDULE_LENGTH = ("t_total", "warmup_steps", "warmup_multiplier")

    def __init__(
        self,
        load_path: str,
        load_dict: Mapping[str, Any],
        resume: bool | str = True,
        map_location: Any = None,
        scheduler_key: str = "lr_scheduler",
        keep_on_fresh_start: Sequence[str] = (),
    ) -> None:
        self.load_path = load_path
        self.load_dict = dict(load_dict)
        self.resume = as_bool(resume, "resume")
        self.map_location = map_location
        self.scheduler_key = scheduler_key
        self.keep_on_fresh_start = [keep_on_fresh_start] if isinstance(keep_on_fresh_start, str) else list(
            keep_on_fresh_start)

    def attach(self, engine: Engine) -> None:
        if not self.resume:
            engine.logger.info(f"resume is off: training starts from the beginning ({self.load_path} is overwritten)")
        elif not os.path.isfile(self.load_path):
            engine.logger.info(f"no checkpoint at {self.load_path}: training starts from the beginning")
        else:
            engine.add_event_handler(Events.STARTED, self)
            return
        self.keep_earlier_files(engine)

    def keep_earlier_files(self, engine: Engine) -> None:
        """Keep the files of ``keep_on_fresh_start`` that exist (rank 0), saying where."""
        if not is_main_process():
            return
        for path in self.keep_on_fresh_start:
            kept = keep_previous(path)
            if kept is not None:
                engine.logger.warning(f"this run starts from scratch: the earlier {path} is kept as {kept} (this run "
                                      f"writes its own {os.path.basename(path)})")

    def _read(self) -> Mapping[str, Any]:
        try:
            checkpoint = torch.load(self.load_path, map_location=self.map_location, weights_only=True)
        except Exception as e:  # truncated, corrupt or unsafe files raise several types
            reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise RuntimeError(
                f"cannot resume from {self.load_path} ({type(e).__name__}: {reason}). Delete the file, or run with "
                "--resume false, to start the training over."
            ) from e
        if not isinstance(checkpoint, Mapping):
            raise RuntimeError(f"{self.load_path} holds no checkpoint dict; delete it or run with --resume false.")
        return checkpoint

    def _check_shapes(self, key: str, obj: Any, saved: Any) -> None:
        """Refuse, in a few lines, a network whose tensors differ from the checkpoint's (names or shapes)."""
        if not isinstance(obj, torch.nn.Module) or not isinstance(saved, Mapping):
            return
        problems = state_dict_differences(obj.state_dict(), saved)
        if problems:
            raise RuntimeError(
                f"{self.load_path} does not fit this run's {key!r}: {len(problems)} tensors differ "
                f"({describe_differences(problems)}). It was "
                "written by another network configuration: resume with the settings it was trained with, or run "
                "with --resume false to start over."
            )

    def __call__(self, engine: Engine) -> None:
        checkpoint = self._read()
        scheduler = self.load_dict.get(self.scheduler_key)
        length = {k: getattr(scheduler, k) for k in self.SCHEDULE_LENGTH if hasattr(scheduler, k)}
        missing = [k for k in self.load_dict if k not in checkpoint]
        for key in missing:
            engine.logger.warning(f"{self.load_path} has no {key!r}: it starts afresh")
        to_load = {k: v for k, v in self.load_dict.items() if k in checkpoint}
        for key, obj in to_load.items():
            self._check_shapes(key, getattr(obj, "module", obj), checkpoint[key])
        configured_lr = _learning_rates(self.load_dict.get("optimizer"))
        max_epochs = engine.state.max_epochs
        Checkpoint.load_objects(to_load=to_load, checkpoint=checkpoint)
        saved_lr = _learning_rates(self.load_dict.get("optimizer"))
        if configured_lr and saved_lr and not all(
                abs(a - b) <= 1e-9 * max(abs(a), abs(b)) for a, b in zip(configured_lr, saved_lr)):
            engine.logger.warning(
                f"this run asks for learning rate {configured_lr[0]:.6g}, {self.load_path} was trained with "
                f"{saved_lr[0]:.6g}: the resumed run continues with the checkpoint's. Run with --resume false to "
                "train with the new one."
            )
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise RuntimeError(
                f"{self.load_path} is at epoch {engine.state.epoch}, beyond the {max_epochs} epochs asked for: run "
                "with a larger --epochs to continue, or --resume false to start over."
            )
        engine.state.max_epochs = max_epochs
        saved_length = {k: getattr(scheduler, k) for k in length}
        for key, value in length.items():
            setattr(scheduler, key, value)
        if saved_length != length:
            engine.logger.info(f"learning-rate schedule continues for the new length {length} (was {saved_length})")
        engine.logger.info(f"resumed from {self.load_path} at epoch {engine.state.epoch}")
        if max_epochs is not None and engine.state.epoch >= max_epochs:
            engine.logger.warning(
                f"this run is already complete ({engine.state.epoch} of {max_epochs} epochs in {self.load_path}): "
                "nothing to train. Pass a larger --epochs to continue, or --resume false to start over."
            )


class ModelLoader:
    """Load a trained network (``models/model.pt``, or the ``--model_file`` of an inference or evaluation run) when
    the engine starts, in place of MONAI's ``CheckpointLoader`` (same ``load_path``, ``load_dict`` and
    ``map_location``).

    A file that cannot be read (truncated, not a checkpoint) or that does not fit the network (another bundle's
    model, another network configuration) is refused with a ``RuntimeError`` that names the file and, in a few
    lines, the first differences (:func:`state_dict_differences`), instead of ``load_state_dict``'s list of every
    tensor. The file may hold the network's state dict itself (what :class:`AtomicCheckpointSaver` writes for
    ``model.pt``) or ``{name: state_dict}`` (a training checkpoint).

    Args:
        load_path: the file of the trained network.
        load_dict: ``{name: network}``, e.g. ``{"model": "@network"}``.
        map_location: ``torch.load``'s ``map_location``.
    """

    def __init__(self, load_path: str, load_dict: Mapping[str, torch.nn.Module], map_location: Any = None) -> None:
        if not load_dict:
            raise ValueError("load_dict must name at least one network to load.")
        self.load_path = load_path
        self.load_dict = dict(load_dict)
        self.map_location = map_location

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def read(self) -> Mapping[str, Any]:
        """The file's content (``weights_only=True``); a ``RuntimeError`` naming the file when it cannot be read."""
        if not os.path.isfile(self.load_path):
            raise RuntimeError(f"{self.load_path} does not exist: train the bundle first, or pass the trained "
                               "network's file as --model_file.")
        try:
            content = torch.load(self.load_path, map_location=self.map_location, weights_only=True)
        except Exception as e:  # truncated, corrupt or unsafe files raise several types
            reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise RuntimeError(f"cannot read the trained network {self.load_path} ({type(e).__name__}: {reason}): "
                               "an interrupted copy or download, or not a checkpoint?") from None
        if not isinstance(content, Mapping):
            raise RuntimeError(f"{self.load_path} holds a {type(content).__name__}, not the state dict of a network.")
        return content

    def state_of(self, key: str, content: Mapping[str, Any]) -> Mapping[str, Any]:
        """The state dict for ``load_dict[key]`` in the file: its entry ``key``, or the whole file when it holds one
        network's state dict."""
        if isinstance(content.get(key), Mapping):
            return content[key]
        if len(self.load_dict) == 1:
            return content
        raise RuntimeError(f"{self.load_path} has no {key!r} (it holds {sorted(map(str, content))[:5]}).")

    def __call__(self, engine: Engine | None = None) -> None:
        content = self.read()
        for key, obj in self.load_dict.items():
            network = getattr(obj, "module", obj)
            state = self.state_of(key, content)
            problems = state_dict_differences(network.state_dict(), state)
            if problems:
                raise RuntimeError(
                    f"{self.load_path} does not fit this run's network: {count_differences(problems)} (e.g. "
                    f"{describe_differences(problems, shown=3)}). Is it another bundle's model, or one trained "
                    "with other network settings (network_def)? Run with the settings it was trained with, or pass "
                    "the right --model_file."
                )
            network.load_state_dict(state)
            if engine is not None:
                engine.logger.info(f"loaded {key!r} from {self.load_path}")
