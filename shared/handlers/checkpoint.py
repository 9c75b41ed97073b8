"""Checkpoints that are never truncated, never hold NaN weights, and resume a run as it was left.

MONAI's ``CheckpointSaver`` writes in place (``DiskSaver(atomic=False)``): a run killed while saving leaves a
corrupt checkpoint and nothing to resume from. :class:`AtomicCheckpointSaver` writes through
:func:`save_atomically`, clears the temporaries of killed writes when it starts, and refuses to replace a file with
non-finite weights. :class:`ResumeLoader` restores a run from its checkpoint (``weights_only=True``), the best
validation metric included (:class:`BestMetricState`), so that a resumed run does not take its first validation for
a new best and overwrite the best model, and compares the run with the one that wrote the checkpoint
(:class:`RunSettings`): another network definition is refused, other optimizer settings are applied with a warning.
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
from ..utils.config import as_bool, flatten_settings, plain_value
from ..utils.dist import file_exists_on_all_ranks, is_main_process

__all__ = [
    "AtomicCheckpointSaver",
    "BestMetricState",
    "describe_encoder",
    "epochs_done",
    "ModelLoader",
    "ResumeLoader",
    "RunSettings",
    "group_settings",
    "keep_previous",
    "non_finite_entries",
    "read_checkpoint_dict",
    "restore_group_settings",
    "settings_differences",
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


def read_checkpoint_dict(path: str, map_location: Any, action: str, hint: str) -> Mapping[str, Any]:
    """The dict saved in ``path``, read with ``weights_only=True``.

    Raises:
        RuntimeError: "cannot <action> <path> (<why>). <hint>" when the file cannot be read or holds no dict.
    """
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, corrupt or unsafe files raise several types
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise RuntimeError(f"cannot {action} {path} ({type(e).__name__}: {reason}). {hint}") from e
    if not isinstance(content, Mapping):
        found = type(content).__name__
        raise RuntimeError(f"cannot {action} {path} (it holds a {found}, not a checkpoint dict). {hint}")
    return content


def epochs_done(trainer_state: Any) -> tuple[int, int] | None:
    """``(epochs done, epochs asked for)`` of the run whose trainer state (ignite's ``state_dict``, as a checkpoint
    holds it) is ``trainer_state``; None when it is not one."""
    if not isinstance(trainer_state, Mapping) or not all(
            k in trainer_state for k in ("iteration", "epoch_length", "max_epochs")):
        return None
    return trainer_state["iteration"] // max(1, trainer_state["epoch_length"]), trainer_state["max_epochs"]


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


def _same(old: Any, new: Any) -> bool:
    """Equal settings; floats equal to a relative 1e-9 (a learning rate computed twice from the same values)."""
    if isinstance(old, float) or isinstance(new, float):
        return isinstance(old, (int, float)) and isinstance(new, (int, float)) and abs(old - new) <= 1e-9 * max(
            abs(old), abs(new))
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(_same(a, b) for a, b in zip(old, new))
    return old == new


def settings_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between the settings a checkpoint was written with and this run's (``{config id: settings}``),
    one phrase per key, in the config's order, e.g. ``"network_def#norm_name: 'instance' in the checkpoint, 'batch'
    now"``."""
    old, new = flatten_settings(saved), flatten_settings(current)
    problems = []
    for key in [*old, *(k for k in new if k not in old)]:
        if key not in new:
            problems.append(f"{key}: {old[key]!r} in the checkpoint, not set now")
        elif key not in old:
            problems.append(f"{key}: not set in the checkpoint, {new[key]!r} now")
        elif not _same(old[key], new[key]):
            problems.append(f"{key}: {old[key]!r} in the checkpoint, {new[key]!r} now")
    return problems


def describe_encoder(identity: Any) -> str:
    """An encoder's identity (:func:`~scripts.handlers.encoder_loader.encoder_identity`) in words, e.g. ``"no
    pretrained encoder (from scratch)"`` or ``"the encoder file of sha256 3f2a..."``."""
    if identity is None:
        return "an unrecorded encoder"
    return f"the encoder file of sha256 {identity}" if identity else "no pretrained encoder (from scratch)"


def group_settings(optimizer: Any) -> list[dict[str, Any]]:
    """The settings of each parameter group of ``optimizer`` (everything but its parameters)."""
    return [{k: v for k, v in group.items() if k != "params"} for group in getattr(optimizer, "param_groups", [])]


def restore_group_settings(optimizer: Any, configured: Sequence[Mapping[str, Any]], scheduler: Any = None) -> list[str]:
    """Give the parameter groups of ``optimizer`` their ``configured`` settings (:func:`group_settings` before a
    checkpoint was loaded into it) again, keeping what the checkpoint holds of the training's course: with a
    learning-rate schedule, each group's current ``lr`` is scaled by the ratio of the configured to the saved
    ``initial_lr`` (the schedule's position is kept) and the schedule's ``base_lrs`` become the configured ones.

    Returns:
        what was changed, one phrase per setting (its first group that differs), e.g. ``"initial_lr: 1.7e-05 in the
        checkpoint, 3.9e-05 now (parameter group 0)"``.
    """
    changed: dict[str, str] = {}
    for index, (group, wanted) in enumerate(zip(optimizer.param_groups, configured)):
        scheduled = "initial_lr" in wanted  # then "lr" is the schedule's current value, not a setting
        for key, value in wanted.items():
            saved = group.get(key)
            if (key == "lr" and scheduled) or (key in group and _same(plain_or_none(saved), plain_or_none(value))):
                continue
            changed.setdefault(key, f"{key}: {saved!r} in the checkpoint, {value!r} now (parameter group {index})")
            if key == "initial_lr" and saved:
                group["lr"] = group["lr"] * value / saved
            group[key] = value
    if scheduler is not None and hasattr(scheduler, "base_lrs") and all(
            "initial_lr" in g for g in optimizer.param_groups):
        scheduler.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
    return list(changed.values())


def plain_or_none(value: Any) -> Any:
    """``value`` as plain data (:func:`plain_value`), or None when it is not (two such values count as the same)."""
    try:
        return plain_value(value)
    except TypeError:
        return None


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


class RunSettings:
    """The settings a training run is configured with, as an entry of its checkpoint, so that a resumed run can be
    compared with the run that wrote the checkpoint (:class:`ResumeLoader`). Only plain data is kept (numbers,
    strings, lists, dicts), which ``torch.load(weights_only=True)`` reads back.

    In a config, the values come from :func:`~scripts.utils.config.resolved_configs` (the items as the config
    resolved them, references replaced by their values)::

        "run_settings": {
            "_target_": "scripts.handlers.checkpoint.RunSettings",
            "network": {"_target_": "scripts.utils.config.resolved_configs", "ids": ["network_def"]},
            "optimizer": {"_target_": "scripts.utils.config.resolved_configs", "ids": ["optimizer", "param_groups"]},
            "encoder": {"pretrained_encoder": {"_target_": "scripts.handlers.encoder_loader.encoder_identity",
                                               "path": "@pretrained_encoder"}}
        }

    Args:
        network: ``{config id: settings}`` that define the network; resuming with others is refused.
        optimizer: ``{config id: settings}`` of the optimisation; others are applied, with a warning.
        encoder: ``{config id: identity}`` of the weights the network was initialised from before training
            (:func:`~scripts.handlers.encoder_loader.encoder_identity`: "" for none, else a hash of the file's
            content); resuming with others is refused.
    """

    KINDS = ("network", "optimizer", "encoder")

    def __init__(self, network: Mapping[str, Any] | None = None, optimizer: Mapping[str, Any] | None = None,
                 encoder: Mapping[str, str] | None = None) -> None:
        self.network = plain_value(dict(network or {}))
        self.optimizer = plain_value(dict(optimizer or {}))
        self.encoder = plain_value(dict(encoder or {}))

    def state_dict(self) -> dict[str, dict[str, Any]]:
        return {kind: getattr(self, kind) for kind in self.KINDS}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Nothing to load: a run's settings are the ones it is configured with (:meth:`differences` compares)."""

    def differences(self, saved: Mapping[str, Any]) -> dict[str, list[str] | None]:
        """``{"network": [...], "optimizer": [...], "encoder": [...]}``: :func:`settings_differences` between the
        ``saved`` settings (:meth:`state_dict` of the run that wrote a checkpoint) and these; None for a kind that
        either side did not record (nothing to compare)."""
        found: dict[str, list[str] | None] = {}
        for kind in self.KINDS:
            old, new = saved.get(kind) if isinstance(saved, Mapping) else None, getattr(self, kind)
            found[kind] = settings_differences(old, new) if isinstance(old, Mapping) and old and new else None
        return found


class ResumeLoader:
    """Resume a training run from its checkpoint when ``resume`` is on and the checkpoint exists.

    - Under ``torch.distributed`` every rank resumes, or none: ranks that disagree on whether the checkpoint exists
      (nodes that do not share the bundle's folder, of which rank 0 alone writes ``models/``) are refused on every
      rank, naming the file (``file_exists_on_all_ranks`` of ``utils/dist.py``).
    - ``resume`` is read with :func:`as_bool`: ``--resume false`` means False.
    - A checkpoint that cannot be read is an error naming the file and saying how to start over.
    - The run is compared with the one that wrote the checkpoint (its :class:`RunSettings` entry): another network
      definition (any value of ``network_def``, even one that keeps every tensor's shape, e.g. ``dropout_rate``) is
      refused, naming the checkpoint and each differing key with its two values; other optimizer settings
      (learning rate, weight decay, layer decay, betas) are applied, and a warning names each with its two values:
      the command line wins, as it does for ``epochs``. The optimizer's moments, the schedule's position and the
      network's weights come from the checkpoint. A checkpoint written before settings were saved resumes with a
      warning that they could not be compared (tensor names and shapes still are).
    - A checkpoint whose run was initialised from another pretrained encoder (an MAE where this run has none, none
      where it has one, or another MAE: compared by the file's content, not its path) is refused, naming both: the
      resumed run would otherwise silently continue the other one. A checkpoint written before the encoder was
      recorded resumes, saying that the encoder could not be compared.
    - A network whose tensors differ from the checkpoint's (names or shapes) is refused in a few lines, as is an
      optimizer whose parameters are grouped otherwise (e.g. ``layer_decay`` turned on or off).
    - Entries of ``load_dict`` missing from an older checkpoint are skipped with a warning.
    - A run restarted with a larger ``epochs`` continues on a learning-rate schedule for the new total: the
      schedule's length (``t_total``, ``warmup_steps``) is the one configured now, not the one saved.
    - A run is not resumed when nothing would be left to train: a checkpoint of as many epochs as this run asks for,
      or more, whether its run finished or was stopped. The run starts from scratch and says so. This is what a
      repeated training request of MONAI Label (which sets only the trainer's ``max_epochs``, 50 by default) needs,
      also after a request was stopped; a larger ``epochs`` continues the earlier run instead.
    - A run that starts from scratch (``resume`` off, no checkpoint, or nothing left to train) keeps the files of
      ``keep_on_fresh_start`` that an earlier run left (the best model) under a new name (:func:`keep_previous`)
      and says so: its first validation would otherwise replace them without a word. A checkpoint with nothing left
      to train is kept likewise (it is what a larger ``epochs`` would have continued).
    - A resumed run whose data give another number of batches per epoch (cases added or removed) continues with
      this run's epoch length; a changed warm-up is a warning (a run still warming up continues on the new one).

    Args:
        load_path: the checkpoint (``models/checkpoint.pt``).
        load_dict: the objects to restore, as saved (the ``save_dict`` of the :class:`AtomicCheckpointSaver`).
        resume: whether to resume at all.
        map_location: ``torch.load``'s ``map_location``.
        scheduler_key: the ``load_dict`` entry of the learning-rate schedule.
        keep_on_fresh_start: files an earlier run wrote that a fresh run would replace (``models/model.pt``).
        optimizer_key: the ``load_dict`` entry of the optimizer.
        settings_key: the ``load_dict`` entry of the run's :class:`RunSettings`.
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
        optimizer_key: str = "optimizer",
        settings_key: str = "settings",
    ) -> None:
        self.load_path = load_path
        self.load_dict = dict(load_dict)
        self.resume = as_bool(resume, "resume")
        self.map_location = map_location
        self.scheduler_key = scheduler_key
        self.keep_on_fresh_start = [keep_on_fresh_start] if isinstance(keep_on_fresh_start, str) else list(
            keep_on_fresh_start)
        self.optimizer_key = optimizer_key
        self.settings_key = settings_key

    def attach(self, engine: Engine) -> None:
        if not self.resume:
            engine.logger.info(f"resume is off: training starts from the beginning ({self.load_path} is overwritten)")
        elif not file_exists_on_all_ranks(self.load_path):
            engine.logger.info(f"no checkpoint at {self.load_path}: training starts from the beginning")
        else:
            engine.add_event_handler(Events.STARTED, self)
            return
        self.keep_earlier_files(engine)

    def keep_earlier_files(self, engine: Engine, also: Sequence[str] = ()) -> None:
        """Keep the files of ``keep_on_fresh_start`` and ``also`` that exist (rank 0), saying where."""
        if not is_main_process():
            return
        for path in [*self.keep_on_fresh_start, *also]:
            kept = keep_previous(path)
            if kept is not None:
                engine.logger.warning(f"this run starts from scratch: the earlier {path} is kept as {kept} (this run "
                                      f"writes its own {os.path.basename(path)})")

    def _read(self) -> Mapping[str, Any]:
        return read_checkpoint_dict(
            self.load_path, self.map_location, "resume from",
            "Delete the file, or run with --resume false, to start the training over.",
        )

    def _shape_differences(self, checkpoint: Mapping[str, Any]) -> dict[str, list[str]]:
        """``{key: state_dict_differences}`` of the networks of ``load_dict`` whose tensors differ from the
        checkpoint's (names or shapes)."""
        found = {}
        for key, obj in self.load_dict.items():
            network, saved = getattr(obj, "module", obj), checkpoint.get(key)
            if isinstance(network, torch.nn.Module) and isinstance(saved, Mapping):
                problems = state_dict_differences(network.state_dict(), saved)
                if problems:
                    found[key] = problems
        return found

    def _compare_settings(self, engine: Engine, checkpoint: Mapping[str, Any]) -> list[str]:
        """Compare this run's :class:`RunSettings` with the checkpoint's: refuse another network definition; return
        the optimizer settings that differ (empty when they could not be compared, which is logged)."""
        settings = self.load_dict.get(self.settings_key)
        if not isinstance(settings, RunSettings):
            return []
        found = settings.differences(checkpoint.get(self.settings_key) or {})
        if found["network"] is None or found["optimizer"] is None:
            engine.logger.warning(
                f"{self.load_path} does not record the settings it was trained with (written by an earlier version): "
                "this run's network definition and optimizer settings could not be compared with it (its tensor "
                "names and shapes are); the resumed run trains with this run's settings.")
        if found.get("encoder") is None and settings.encoder:
            engine.logger.warning(
                f"{self.load_path} does not record the pretrained encoder its run was initialised from (written by an "
                "earlier version): this run's pretrained_encoder could not be compared with it; the resumed run "
                "continues from the checkpoint's weights, whatever encoder they started from.")
        if found["network"]:
            self._refuse_network(found["network"], self._shape_differences(checkpoint))
        if found.get("encoder"):
            saved = checkpoint[self.settings_key]["encoder"]
            self._refuse_encoder({k: saved.get(k) for k in settings.encoder}, settings.encoder)
        return found["optimizer"] or []

    def _refuse_network(self, changes: Sequence[str], shapes: Mapping[str, Sequence[str]]) -> None:
        """Raise the error of a network definition other than the checkpoint's, naming each differing key."""
        tensors = sum(len(p) for p in shapes.values())
        also = f" ({tensors} tensors differ in name or shape)" if tensors else ""
        raise RuntimeError(
            f"{self.load_path} was trained with another network definition: {'; '.join(changes)}{also}. Its weights "
            "would be loaded into a different network. Resume with the settings it was trained with (the values "
            "'in the checkpoint' above), or run with --resume false to start over."
        )

    def _refuse_encoder(self, saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
        """Raise the error of a checkpoint whose run was initialised from another pretrained encoder than this run
        asks for, naming both (``{config id: identity}``, as :class:`RunSettings` records them)."""
        changes = "; ".join(
            f"{key}: {describe_encoder(saved.get(key))} in the checkpoint, {describe_encoder(value)} now"
            for key, value in current.items() if saved.get(key) != value)
        raise RuntimeError(
            f"{self.load_path} was initialised from another pretrained encoder than this run asks for ({changes}): "
            "resuming would silently continue that run. Give the same --pretrained_encoder as the run that wrote it, "
            f"or move {self.load_path} away to start again from this run's encoder."
        )

    def _check_shapes(self, checkpoint: Mapping[str, Any]) -> None:
        """Refuse, in a few lines, a network whose tensors differ from the checkpoint's (names or shapes)."""
        found = self._shape_differences(checkpoint)
        if found:
            key, problems = next(iter(found.items()))
            raise RuntimeError(
                f"{self.load_path} does not fit this run's {key!r}: {len(problems)} tensors differ "
                f"({describe_differences(problems)}). It was "
                "written by another network configuration: resume with the settings it was trained with, or run "
                "with --resume false to start over."
            )

    def _check_groups(self, checkpoint: Mapping[str, Any], changes: Sequence[str]) -> None:
        """Refuse an optimizer whose parameters are grouped otherwise than the checkpoint's: its state (moments)
        cannot be carried over."""
        optimizer, saved = self.load_dict.get(self.optimizer_key), checkpoint.get(self.optimizer_key)
        if not hasattr(optimizer, "param_groups") or not isinstance(saved, Mapping):
            return
        now = [len(g["params"]) for g in optimizer.param_groups]
        before = [len(g["params"]) for g in saved.get("param_groups", [])]
        if now != before:
            because = f" ({'; '.join(changes)})" if changes else ""
            raise RuntimeError(
                f"{self.load_path} holds the optimizer state of {len(before)} parameter groups ({sum(before)} "
                f"tensors), this run's optimizer has {len(now)} ({sum(now)} tensors): the state cannot be carried "
                f"over{because}. Turning layer_decay on or off (1.0) regroups the parameters. Resume with the "
                "settings it was trained with, or run with --resume false to start over."
            )

    def _apply_optimizer_settings(self, engine: Engine, configured: Sequence[Mapping[str, Any]],
                                  changes: Sequence[str]) -> None:
        """After loading the checkpoint, give the optimizer this run's settings again and say what changed."""
        optimizer = self.load_dict.get(self.optimizer_key)
        if not hasattr(optimizer, "param_groups"):
            return
        applied = restore_group_settings(optimizer, configured, self.load_dict.get(self.scheduler_key))
        changes = list(changes) or applied
        if changes:
            engine.logger.warning(
                f"this run's optimizer settings differ from those {self.load_path} was trained with: "
                f"{'; '.join(changes)}. The resumed run trains with this run's (its moments and the schedule's "
                "position come from the checkpoint); restore the settings to continue as before, or run with "
                "--resume false to start over."
            )

    def _to_load(self, engine: Engine, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of ``load_dict`` to restore: those in the checkpoint (the others start afresh, with a
        warning), the settings excepted (they are compared, not loaded)."""
        entries = {k: v for k, v in self.load_dict.items() if k != self.settings_key}
        for key in entries:
            if key not in checkpoint:
                engine.logger.warning(f"{self.load_path} has no {key!r}: it starts afresh")
        return {k: v for k, v in entries.items() if k in checkpoint}

    def _continue_schedule(self, engine: Engine, length: Mapping[str, Any], max_epochs: int | None) -> None:
        """Give the resumed trainer this run's ``max_epochs`` and the schedule the configured ``length``."""
        engine.state.max_epochs = max_epochs
        scheduler = self.load_dict.get(self.scheduler_key)
        saved_length = {k: getattr(scheduler, k) for k in length}
        for key, value in length.items():
            setattr(scheduler, key, value)
        if saved_length.get("warmup_steps") != length.get("warmup_steps"):
            engine.logger.warning(f"the learning-rate warm-up is now {length.get('warmup_steps')} iterations (was "
                                  f"{saved_length.get('warmup_steps')}): a run still warming up continues on the new "
                                  "warm-up")
        if saved_length != length:
            engine.logger.info(f"learning-rate schedule continues for the new length {length} (was {saved_length})")

    def _continue_epoch_length(self, engine: Engine, epoch_length: int | None) -> None:
        """Give the resumed trainer this run's ``epoch_length`` (the batches of its data now): the checkpoint holds the
        length of the data it was trained on, which more or fewer cases change. The iteration count (and a schedule
        stepped per iteration) is put at the start of the epoch reached, in this run's iterations."""
        saved = engine.state.epoch_length
        if epoch_length is None or saved is None or saved == epoch_length:
            return
        scheduler = self.load_dict.get(self.scheduler_key)
        if getattr(scheduler, "last_epoch", None) == engine.state.iteration:
            scheduler.last_epoch = engine.state.epoch * epoch_length
        engine.state.epoch_length = epoch_length
        engine.state.iteration = engine.state.epoch * epoch_length
        engine.logger.info(f"the data now give {epoch_length} iterations per epoch (the checkpoint's run had {saved}): "
                           f"the run continues from epoch {engine.state.epoch} at iteration {engine.state.iteration}")

    def _saved_progress(self, engine: Engine, checkpoint: Mapping[str, Any]) -> tuple[int, int] | None:
        """``(epochs done, epochs asked for)`` by the run that wrote ``checkpoint``; None when it holds no trainer
        state. ``engine``'s own entry of ``load_dict`` holds the trainer's state (ignite's ``state_dict``)."""
        key = next((k for k, v in self.load_dict.items() if v is engine), None)
        return epochs_done(checkpoint.get(key)) if key is not None else None

    def _nothing_left_to_train(self, engine: Engine, checkpoint: Mapping[str, Any]) -> bool:
        """Whether the checkpoint's run has done as many epochs as this run asks for, or more (logged)."""
        progress, max_epochs = self._saved_progress(engine, checkpoint), engine.state.max_epochs
        if progress is None or max_epochs is None or progress[0] < max_epochs:
            return False
        done, asked = progress
        how = f"finished ({done} epochs)" if done >= asked else f"stopped after {done} of its {asked} epochs"
        engine.logger.warning(
            f"the run in {self.load_path} {how}: this run of {max_epochs} epochs starts from scratch (it would have "
            "nothing left to train; a larger --epochs would continue that run instead)")
        return True

    def __call__(self, engine: Engine) -> None:
        checkpoint = self._read()
        if self._nothing_left_to_train(engine, checkpoint):
            self.keep_earlier_files(engine, also=[self.load_path])
            return
        changes = self._compare_settings(engine, checkpoint)
        to_load = self._to_load(engine, checkpoint)
        self._check_shapes({k: v for k, v in checkpoint.items() if k in to_load})
        if self.optimizer_key in to_load:
            self._check_groups(checkpoint, changes)
        scheduler = self.load_dict.get(self.scheduler_key)
        length = {k: getattr(scheduler, k) for k in self.SCHEDULE_LENGTH if hasattr(scheduler, k)}
        configured = group_settings(self.load_dict.get(self.optimizer_key))
        max_epochs, epoch_length = engine.state.max_epochs, engine.state.epoch_length
        Checkpoint.load_objects(to_load=to_load, checkpoint=checkpoint)
        if self.optimizer_key in to_load:
            self._apply_optimizer_settings(engine, configured, changes)
        self._continue_epoch_length(engine, epoch_length)
        self._continue_schedule(engine, length, max_epochs)
        engine.logger.info(f"resumed from {self.load_path} at epoch {engine.state.epoch}{self._weights_note()}")

    def _weights_note(self) -> str:
        """Said when the run records a pretrained encoder: the resumed network's weights are the checkpoint's, not
        those the encoder loader put in when the trainer was built."""
        settings = self.load_dict.get(self.settings_key)
        if not isinstance(settings, RunSettings) or not any(settings.encoder.values()):
            return ""
        return " (the network's weights are the checkpoint's, not the pretrained encoder loaded before)"


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
        return read_checkpoint_dict(
            self.load_path, self.map_location, "read the trained network",
            "An interrupted copy or download, or not a checkpoint?",
        )

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
