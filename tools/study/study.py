"""A label-efficiency study of one task with controls: the encoder files of the arms are made once (MAE self
pre-training on the training images, the untrained MAE initialisation, a supervised encoder trained on a disjoint
stream of labelled cases), then every arm is fine-tuned at several labelled-set sizes and seeds, and each run is
evaluated on cases that nothing was chosen on (see ``tools/study/arms.py`` for the arms and their contrasts).

The arms of one seed share everything but the encoder's initialisation and the arm's recipe: the labelled cases
(nested: a smaller set is a prefix of a larger one, drawn per seed), the seed (so the decoder's random initialisation,
the data order and the augmentation draws agree) and the budget (the same number of iterations at every labelled
size). Each run trains for its whole budget and the last model is evaluated: no model selection on the reported cases.
That the arms of one labelled size and seed saw the same batches is checked in every study: each run records a digest
of its batch fingerprints (``runs.json``), and :func:`check_same_data` compares them before the report is written.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.utils import set_determinism

from shared.data.splits import seeded_order
from shared.utils.atomic import write_text_atomically
from shared.utils.files import replace_marked_folder
from tools.bundle_runner import bundle_importable, run_bundle
from tools.measure.mae_health import check_checkpoint
from tools.study.arms import ARM_NAMES
from tools.study.progress import PlannedStage, StageProgress, StudyClock, format_seconds
from tools.study.tasks import Task
from tools.study.workers import default_workers, study_executor

__all__ = ["StudyOptions", "Run", "Pretraining", "PositiveControl", "StudyResult", "labelled_subsets",
           "check_labelled_sizes", "plan", "run_study", "score_network", "stage_overrides", "finetune_and_score",
           "run_settings", "positive_control", "pretrain", "SUPERVISED_DATA_SEED_OFFSET", "OUTPUT_MARKER",
           "check_output_folder", "replace_output_folder", "replace_output_after_checks", "data_digest",
           "check_same_data", "save_runs", "load_runs"]

OUTPUT_MARKER = ".study_output"
"""The file that marks a folder as a study's (or a tuning's) output, which the next run into it may replace."""

SUPERVISED_DATA_SEED_OFFSET = 1_000_000
"""The positive control's labelled cases are synthetic cases of data seed ``data_seed + SUPERVISED_DATA_SEED_OFFSET``:
a stream disjoint from every study's draw."""


@dataclass
class StudyOptions:
    """How to run a study (see ``tools/run_experiment.py`` for the command line).

    Attributes:
        output_dir: where everything goes; an earlier study's output there is replaced, any other content refused
            (see :func:`replace_output_folder`).
        dataset_dir: the data set; None generates the task's synthetic one.
        full_size: the bundles' paper configuration instead of the small one.
        seeds: fine-tuning seeds; each gives a pair of runs per labelled size.
        labelled_sizes: numbers of labelled training cases.
        data_seed: seed of the synthetic data.
        steps: fine-tuning iterations per run; the task's default when None.
        pretrain_epochs: MAE pre-training epochs; the task's default when None.
        arms: the arms to run (names of ``tools.study.arms.ARMS``).
        arm_overrides: extra config overrides per arm (``{"mae": {...}, "scratch": {...}}``) after the task's recipe,
            e.g. hyper-parameters chosen by ``--tune``.
        cases: ``(training, evaluation)`` datalist items instead of the task's own (used by tuning, which evaluates on
            held-out training cases).
        mae_file: an MAE checkpoint to fine-tune from instead of pre-training one.
        supervised_file: the positive control's encoder file instead of training one.
        synthetic: changes to the task's synthetic data set (e.g. fewer cases in tests).
        overrides: config overrides per stage (``{"pretrain": {...}, "finetune": {...}, "evaluate": {...}}``), after
            the task's (e.g. a tiny network in tests).
        threads_per_run: torch threads of every job (a run's figures depend on it, see ``tools/study/workers.py``);
            ``None`` keeps torch's default (every core, one job at a time), as the paper configuration needs.
        workers: jobs run at once, each in a process of its own; ``None``: as many as ``threads_per_run`` fills the
            cores (``tools.study.workers.default_workers``). The figures do not depend on it.
    """

    output_dir: Path
    dataset_dir: Path | None = None
    full_size: bool = False
    seeds: Sequence[int] = (0, 1, 2)
    labelled_sizes: Sequence[int] | None = None
    data_seed: int = 0
    steps: int | None = None
    pretrain_epochs: int | None = None
    arms: Sequence[str] = ARM_NAMES
    arm_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    cases: tuple[list[dict], list[dict]] | None = None
    mae_file: str | None = None
    supervised_file: str | None = None
    synthetic: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    threads_per_run: int | None = 1
    workers: int | None = None


@dataclass
class Run:
    """One fine-tuning run and its evaluation.

    Attributes:
        fingerprints: one number per training batch (the sum of its images), in order.
        data_fingerprint: :func:`data_digest` of ``fingerprints``, kept in ``runs.json``; "" when not recorded (a run
            that saw no image batch, or one loaded from a ``runs.json`` written before digests were kept).
    """

    labelled: int
    seed: int
    arm: str
    root: Path
    losses: list[float] = field(default_factory=list)
    fingerprints: list[float] = field(default_factory=list)
    data_fingerprint: str = ""
    scores: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    evaluation_seconds: float = 0.0

    @property
    def name(self) -> str:
        """The run's name in file and log names and progress lines, e.g. ``n2_seed0_mae``."""
        return f"n{self.labelled}_seed{self.seed}_{self.arm}"


@dataclass
class Pretraining:
    """The study's MAE self pre-training (a job, see :func:`pretrain`).

    Attributes:
        losses: mean training loss per epoch (none when the study was given its MAE file).
        mae_file: the MAE checkpoint the ``mae`` arm fine-tunes from ("" when that arm does not run).
        seconds: wall time of the pre-training and its health check.
        health: the MAE health check on the evaluation images, in words ("" when it did not run).
    """

    losses: list[float] = field(default_factory=list)
    mae_file: str = ""
    seconds: float = 0.0
    health: str = ""


@dataclass
class PositiveControl:
    """The positive control's encoder and the strength of the supervised network it comes from (a job, see
    :func:`positive_control`).

    Attributes:
        file: the encoder checkpoint the ``supervised`` arm fine-tunes from ("" when that arm does not run).
        cases: labelled cases its network was trained on (None for a given file).
        scores: that whole network's scores on the study's evaluation cases (empty when the arm does not run).
        seconds: wall time of training and scoring it.
    """

    file: str = ""
    cases: int | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class StudyResult:
    """Everything a study produced: what its report and ``summary.json`` are made of (see ``tools/study/report.py``).

    Attributes:
        task: the task studied.
        options: the options it ran with.
        dataset_dir: the data set's folder (generated, or given).
        sizes: the labelled-set sizes, ascending.
        steps: fine-tuning iterations per run.
        arms: the arms that ran, in the order of ``tools.study.arms.ARM_NAMES``.
        num_training: training cases (the labelled sets are drawn from them).
        num_evaluation: evaluation cases (every run is scored on them).
        pretraining: the MAE self pre-training.
        encoders: the encoder file each arm fine-tuned from (``""`` for scratch).
        control: the positive control's encoder and its network's scores.
        runs: every fine-tuning run, scored, in the order sizes, seeds, arms.
        output_dir: where the study wrote everything.
        wall_seconds: wall time of the whole study.
    """

    task: Task
    options: StudyOptions
    dataset_dir: Path
    sizes: list[int]
    steps: int
    arms: list[str]
    num_training: int
    num_evaluation: int
    pretraining: Pretraining
    encoders: dict[str, str]
    control: PositiveControl
    runs: list[Run]
    output_dir: Path
    wall_seconds: float


def check_labelled_sizes(sizes: Sequence[int], num_cases: int) -> None:
    """Raises ValueError when a labelled size is not between 1 and the ``num_cases`` training cases."""
    bad = [n for n in sizes if not 1 <= n <= num_cases]
    if bad:
        raise ValueError(f"labelled sizes {bad} are not between 1 and the {num_cases} training cases.")


def labelled_subsets(cases: Sequence[dict], sizes: Sequence[int], seed: int) -> dict[int, list[dict]]:
    """Nested labelled sets: the first ``n`` cases of one :func:`shared.data.splits.seeded_order`, for every ``n``.

    Raises:
        ValueError: a size is not between 1 and the number of cases.
    """
    check_labelled_sizes(sizes, len(cases))
    order = seeded_order(len(cases), seed)
    return {n: [cases[i] for i in order[:n]] for n in sizes}


def stage_overrides(task: Task, stage: str, options: StudyOptions) -> dict[str, Any]:
    """The task's overrides of ``stage`` for the chosen size (the small configuration, or the paper one), then the
    study's own."""
    return {**task.stage_overrides(stage, options.full_size), **options.overrides.get(stage, {})}


def _config_value(configs: Sequence[Path], key: str, overrides: dict[str, Any]) -> Any:
    """The value of ``key`` in a stage: its override when given, else the bundle configs' (unparsed).

    Args:
        configs: the stage's config files, read in order.
        key: a config id, e.g. ``epochs``.
        overrides: the stage's overrides.

    Returns:
        the value.
    """
    if key in overrides:
        return overrides[key]
    parser = ConfigParser()
    parser.read_config([str(c) for c in configs])
    return parser[key]


def plan(task: Task, options: StudyOptions, num_training: int) -> tuple[list[int], int, int]:
    """The labelled sizes (``"all"`` is ``num_training``), the MAE epochs and the fine-tuning steps of the study."""
    sizes = options.labelled_sizes or (task.full_labelled_sizes if options.full_size else task.labelled_sizes)
    sizes = sorted({num_training if n == "all" else int(n) for n in sizes})
    overrides = stage_overrides(task, "pretrain", options)
    if options.pretrain_epochs:
        overrides["epochs"] = options.pretrain_epochs
    epochs = int(_config_value(task.pretrain.configs, "epochs", overrides))
    steps = options.steps or (task.full_finetune_steps if options.full_size else task.finetune_steps)
    return sizes, epochs, steps


def _determinism(seed: int) -> list[str]:
    """A bundle config's ``initialize`` expressions that seed MONAI, torch, numpy and random with ``seed``."""
    return [f"$monai.utils.set_determinism(seed={seed})"]


def arm_overrides(task: Task, options: StudyOptions, arm: str) -> dict[str, Any]:
    """The overrides that make a fine-tuning run one of ``arm``: the task's recipe, then the study's own."""
    return {**task.recipes.get(arm, {}), **options.arm_overrides.get(arm, {})}


def pretrain(task: Task, options: StudyOptions, dataset_dir: Path, training: list[dict], evaluation: list[dict],
             stage: PlannedStage) -> Pretraining:
    """The MAE self pre-training on the images of every training case (labels unused), once per study; then the MAE
    health check on the evaluation images (labels unused). A job of the study (see :func:`run_study`)."""
    start = time.perf_counter()
    out = options.output_dir.resolve()
    all_images = task.write_datalist(out / "datalists" / "all_training.json", training, evaluation)
    overrides = {**stage_overrides(task, "pretrain", options), **task.data_overrides(dataset_dir, all_images),
                 "epochs": stage.epochs, "resume": False, "initialize": _determinism(options.data_seed)}
    progress = StageProgress(StudyClock([stage]), stage, "MAE pre-training (labels unused)")
    workflow = run_bundle(task.pretrain.configs, out / "mae", out / "logs" / "mae_pretraining.log", overrides,
                          progress)
    mae_file = str(workflow.parser.get_parsed_content("mae_file"))
    health = check_checkpoint(mae_file, [_image_files(dataset_dir, case["image"]) for case in evaluation],
                              task.pretrain.configs[0], stage_overrides(task, "pretrain", options),
                              seed=options.data_seed)
    print(f"MAE health check on the {len(evaluation)} evaluation images (labels unused): {health.summary()}",
          flush=True)
    return Pretraining(progress.losses, mae_file, time.perf_counter() - start, health.summary())


def _image_files(dataset_dir: Path, image: str | list[str]) -> str | list[str]:
    """A datalist item's image file(s), relative to the data set's folder (or absolute)."""
    return [str(dataset_dir / f) for f in image] if isinstance(image, list) else str(dataset_dir / image)


def untrained_mae(task: Task, options: StudyOptions) -> str:
    """The negative control's encoder file: the study's MAE network at its initialisation (seeded with the data seed,
    as the pre-training is), never trained."""
    configs = [str(c) for c in task.pretrain.configs]
    parser = ConfigParser()
    parser.read_config(configs)
    for key, value in stage_overrides(task, "pretrain", options).items():
        parser[key] = value
    with bundle_importable(Path(configs[0]).parents[1]):
        set_determinism(seed=options.data_seed)
        network = parser.get_parsed_content("network_def")
    path = options.output_dir.resolve() / "untrained_mae" / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path)
    return str(path)


def supervised_encoder(task: Task, options: StudyOptions, stage: PlannedStage) -> tuple[str, int]:
    """The positive control's encoder: the task's network trained *with labels* on cases of a stream disjoint from
    the study's data (``SUPERVISED_DATA_SEED_OFFSET``), with the task's scratch recipe updated by its
    ``supervised_recipe``; its checkpoint is given to the fine-tuning runs as ``pretrained_encoder`` like any other
    encoder. The study's own arm overrides (a tuning grid's point, ``--hyperparameters``) do not reach it: the control
    is one fixed network, whichever point of a grid happens to train it.

    Returns:
        ``(checkpoint file, number of labelled cases it was trained on)``.
    """
    out = options.output_dir.resolve()
    data_seed = options.data_seed + SUPERVISED_DATA_SEED_OFFSET
    dataset_dir = task.make_synthetic(out / "data_supervised", data_seed,
                                      **{**options.synthetic, **task.supervised_synthetic})
    training, evaluation = task.cases(dataset_dir, out / "datalists_supervised")
    # the budget is in iterations: the epochs follow from the training cases the data set turned out to have
    stage.epochs = task.epochs_for(len(training), task.supervised_steps)
    stage.iterations_per_epoch = math.ceil(len(training) / task.batch_size)
    datalist = task.write_datalist(out / "datalists" / "supervised.json", training, evaluation)
    overrides = {
        **stage_overrides(task, "finetune", options), **task.recipes.get("scratch", {}), **task.supervised_recipe,
        **task.data_overrides(dataset_dir, datalist), "epochs": stage.epochs,
        "warmup_epochs": max(1, stage.epochs // 10), "val_interval": stage.epochs + 1, "resume": False,
        "pretrained_encoder": "", "initialize": _determinism(data_seed),
    }
    root = out / "supervised_encoder"
    progress = StageProgress(StudyClock([stage]), stage,
                             f"supervised encoder (positive control, {len(training)} labelled cases)")
    run_bundle(task.finetune.configs, root, out / "logs" / "supervised_encoder.log", overrides, progress)
    return str(root / "models" / "checkpoint.pt"), len(training)


def positive_control(task: Task, options: StudyOptions, dataset_dir: Path, training: list[dict],
                     evaluation: list[dict], stage: PlannedStage) -> PositiveControl:
    """The positive control's encoder file (trained, or ``options.supervised_file``) and the scores of its whole
    supervised network on the study's evaluation cases (how strong the encoder it hands over is). A job of the study.
    """
    start, out = time.perf_counter(), options.output_dir.resolve()
    if options.supervised_file:
        encoder, cases = options.supervised_file, None
    else:
        encoder, cases = supervised_encoder(task, options, stage)
    datalist = task.write_datalist(out / "datalists" / "supervised_scoring.json", training, evaluation)
    scores = score_network(task, options, dataset_dir, datalist, encoder, out / "supervised_encoder",
                           out / "logs" / "supervised_encoder.log", options.data_seed)
    print(f"the positive control's supervised network itself on the {len(evaluation)} evaluation cases: "
          f"{task.metric} {format_score(scores[task.metric])}", flush=True)
    return PositiveControl(encoder, cases, scores, time.perf_counter() - start)


def score_network(task: Task, options: StudyOptions, dataset_dir: Path, datalist: Path, checkpoint: str,
                  root: Path, log_file: Path, seed: int) -> dict[str, Any]:
    """The scores of a whole trained network (``checkpoint``) on the evaluation cases of ``datalist``, through the
    task's evaluation stage, written under ``root / "eval"``: every fine-tuned run, and the positive control's
    supervised network (how strong the encoder it hands over is)."""
    overrides = {
        **stage_overrides(task, "evaluate", options), **task.data_overrides(dataset_dir, datalist),
        "model_file": checkpoint, "eval_dir": str(root / "eval"), "initialize": _determinism(seed),
    }
    run_bundle(task.evaluate.configs, root, log_file, overrides)
    return task.scores(root / "eval")


def run_settings(task: Task, dataset_dir: Path, datalist: Path, epochs: int, encoder: str,
                 seed: int) -> dict[str, Any]:
    """The overrides the study sets on every fine-tuning run after the stage's and the arm's (so an arm override of
    one of these ids, from ``--hyperparameters`` or a tuning grid, would never reach the run): the data, the budget,
    the encoder and the seed."""
    return {
        **task.data_overrides(dataset_dir, datalist), "epochs": epochs, "warmup_epochs": max(1, epochs // 10),
        "val_interval": epochs + 1, "resume": False, "pretrained_encoder": encoder, "initialize": _determinism(seed),
    }


def finetune_and_score(task: Task, options: StudyOptions, run: Run, dataset_dir: Path, datalist: Path,
                       encoder: str, stage: PlannedStage) -> Run:
    """Fine-tune one run of the study from ``encoder`` ("" for scratch) for its whole budget and score its last model
    on the evaluation cases of ``datalist``. A job of the study.

    Returns:
        ``run`` with its losses, batch fingerprints, scores and seconds.
    """
    start = time.perf_counter()
    overrides = {
        **stage_overrides(task, "finetune", options), **arm_overrides(task, options, run.arm),
        **run_settings(task, dataset_dir, datalist, stage.epochs, encoder, run.seed),
    }
    log_file = options.output_dir.resolve() / "logs" / f"{run.name}.log"
    progress = StageProgress(StudyClock([stage]), stage, f"fine-tuning {run.name}", max_lines=0)
    run_bundle(task.finetune.configs, run.root, log_file, overrides, progress)
    run.losses, run.fingerprints = progress.losses, progress.fingerprints
    run.data_fingerprint = data_digest(progress.fingerprints)
    evaluate_start = time.perf_counter()
    run.scores = score_network(task, options, dataset_dir, datalist, str(run.root / "models" / "checkpoint.pt"),
                               run.root, log_file, run.seed)
    run.evaluation_seconds = time.perf_counter() - evaluate_start
    run.seconds = time.perf_counter() - start
    return run


def format_score(value: float | None, digits: int = 4) -> str:
    """A score for a progress line: ``"n/a"`` for a missing one (``None``: the evaluation wrote NaN as null) or NaN.

    Args:
        value: the score.
        digits: decimals shown.

    Returns:
        the score as text.
    """
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _foreign_output_message(out: Path) -> str:
    return (f"the output folder {out} is not empty and no study wrote it (it has no {OUTPUT_MARKER}): a study "
            "replaces its output folder, so it writes only into a new or empty folder or an earlier study's; choose "
            "another --output_dir or empty it.")


def check_output_folder(out: Path, dataset_dir: Path | None = None) -> Path:
    """Check, deleting nothing, that :func:`replace_output_folder` may replace ``out``; returns it resolved.

    Raises:
        FileExistsError: ``out`` is a file, or holds files and no :data:`OUTPUT_MARKER`, naming the folder.
        ValueError: ``dataset_dir`` lies inside ``out``, which replacing it would delete.
    """
    out = out.resolve()
    if dataset_dir is not None and dataset_dir.resolve().is_relative_to(out):
        raise ValueError(f"the output folder {out} holds the data set {dataset_dir.resolve()}, which the study would "
                         "delete when it replaces its output folder: choose another --output_dir.")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"the output folder {out} is a file, not a folder: choose another --output_dir.")
    if out.is_dir() and any(out.iterdir()) and not (out / OUTPUT_MARKER).is_file():
        raise FileExistsError(_foreign_output_message(out))
    return out


def replace_output_folder(out: Path, dataset_dir: Path | None = None) -> Path:
    """Make ``out`` an empty output folder holding only :data:`OUTPUT_MARKER`; returns it resolved.

    A folder that already exists is replaced only when an earlier study or tuning marked it as its output, so that a
    mistyped ``--output_dir`` (a data set, the repository, a home folder) is never deleted.

    Raises:
        FileExistsError: ``out`` holds files and no marker, naming the folder.
        ValueError: ``dataset_dir`` lies inside ``out``, which replacing it would delete.
    """
    out = check_output_folder(out, dataset_dir)
    return replace_marked_folder(
        out, OUTPUT_MARKER, "written by python -m tools.run_experiment; the next study or tuning run into this "
        "folder replaces it.\n", _foreign_output_message(out))


def replace_output_after_checks(task: Task, options: StudyOptions,
                                check: Callable[[list[dict], list[dict]], Any]) -> tuple[Path, Path]:
    """Check a study's (or a tuning's) options on its data, and only then replace its output folder, so that a
    mistyped option never deletes an earlier study's report.

    The data set is ``options.dataset_dir``, or the task's synthetic one, generated first in a staging folder beside
    the output folder and moved to ``<output_dir>/data`` once the checks passed. The cases ``check`` gets are
    ``options.cases`` or the task's, listed into the staging folder (the caller lists them again into its output).

    Args:
        task: the task studied.
        options: the study's options.
        check: called with ``(training, evaluation)`` cases; raises when the options do not fit them.

    Returns:
        ``(output folder, dataset_dir)``, both resolved.

    Raises:
        FileExistsError, ValueError: the output folder cannot be replaced (see :func:`check_output_folder`).
        FileNotFoundError: ``options.dataset_dir`` is not a folder.
    """
    out = check_output_folder(options.output_dir, options.dataset_dir)
    if options.dataset_dir is not None and not options.dataset_dir.is_dir():
        raise FileNotFoundError(f"--dataset_dir {options.dataset_dir} is not a folder.")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.staging-", dir=out.parent) as staging:
        staging = Path(staging)
        if options.dataset_dir is None:
            print(f"generating the synthetic {task.name} data set (seed {options.data_seed})", flush=True)
            dataset_dir = task.make_synthetic(staging / "data", options.data_seed, **options.synthetic).resolve()
        else:
            dataset_dir = options.dataset_dir.resolve()
        check(*(options.cases or task.cases(dataset_dir, staging / "datalists")))
        replace_output_folder(out, options.dataset_dir)
        if options.dataset_dir is None:
            (staging / "data").rename(out / "data")
            dataset_dir = out / "data" / dataset_dir.relative_to(staging / "data")
    return out, dataset_dir


def _check_seeds(seeds: Sequence[int]) -> None:
    """Check that no seed is given twice.

    Raises:
        ValueError: a seed is repeated, naming those that are.
    """
    repeated = sorted({seed for seed in seeds if list(seeds).count(seed) > 1})
    if repeated:
        raise ValueError(f"the seeds {repeated} are given more than once: each seed is one independent pair of runs.")


def _workers(options: StudyOptions, jobs: int) -> int:
    """Workers to start: ``options.workers`` (default: see :func:`tools.study.workers.default_workers`), at least one
    and no more than there are ``jobs``."""
    return max(1, min(options.workers or default_workers(options.threads_per_run), jobs))


def run_study(task: Task, options: StudyOptions) -> StudyResult:
    """Run the study; returns everything the report needs (see :func:`tools.study.report.write_report`).

    Its jobs (the MAE pre-training, the positive control, one per fine-tuning run) run ``options.workers`` at a time:
    the two encoders first, a run as soon as its arm's encoder exists. With more than one worker the jobs run in
    processes started by ``spawn``, which import the calling script again: a script that calls this needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    start = time.perf_counter()
    _check_seeds(options.seeds)

    def check(training: list[dict], evaluation: list[dict]) -> None:
        check_labelled_sizes(plan(task, options, len(training))[0], len(training))

    out, dataset_dir = replace_output_after_checks(task, options, check)
    training, evaluation = options.cases or task.cases(dataset_dir, out / "datalists")
    sizes, pretrain_epochs, steps = plan(task, options, len(training))
    arms = [arm for arm in ARM_NAMES if arm in options.arms]
    subsets = {seed: labelled_subsets(training, sizes, seed) for seed in options.seeds}
    runs = [Run(n, seed, arm, out / "runs" / f"n{n}_seed{seed}_{arm}")
            for n in sizes for seed in options.seeds for arm in arms]
    datalists = {(n, seed): task.write_datalist(out / "datalists" / f"n{n}_seed{seed}.json", subsets[seed][n],
                                                evaluation) for n in sizes for seed in options.seeds}
    pretrain_batch = int(task.pretrain.overrides.get("batch_size", 1))
    needs_mae = "mae" in arms and not options.mae_file
    pretrain_stage = PlannedStage("pretrain", "MAE pre-training", pretrain_epochs if needs_mae else 0,
                           math.ceil(len(training) / pretrain_batch))
    # the clock's estimate: supervised_steps iterations (supervised_encoder sets the epochs once its data exist)
    supervised_stage = PlannedStage("finetune", "supervised encoder",
                             int("supervised" in arms and not options.supervised_file), task.supervised_steps)
    finetune_stages = {r.name: PlannedStage("finetune", r.name, task.epochs_for(r.labelled, steps),
                                     math.ceil(r.labelled / task.batch_size)) for r in runs}
    evaluate_stages = {r.name: PlannedStage("evaluate", r.name, 1) for r in runs}
    workers = _workers(options, len(runs) + needs_mae + ("supervised" in arms))
    clock = StudyClock([pretrain_stage, supervised_stage, *finetune_stages.values(), *evaluate_stages.values()],
                       workers=workers)
    print(f"{task.name}: {len(training)} training cases (labelled sizes {sizes}), {len(evaluation)} evaluation cases, "
          f"seeds {list(options.seeds)}, arms {arms}; MAE {pretrain_epochs} epochs, fine-tuning {steps} iterations "
          f"per run; {workers} job(s) at a time, {options.threads_per_run or 'all'} thread(s) each", flush=True)

    pretraining, control = Pretraining(mae_file=options.mae_file or ""), PositiveControl()
    encoders = {"scratch": ""}
    if "untrained" in arms:
        encoders["untrained"] = untrained_mae(task, options)
    if "mae" in arms and options.mae_file:
        encoders["mae"] = options.mae_file
    position = {run.name: i for i, run in enumerate(runs)}
    executor = study_executor(workers, options.threads_per_run)
    try:
        jobs: dict[Future, str] = {}  # job -> "mae", "supervised" or a run's name
        if needs_mae:
            jobs[executor.submit(pretrain, task, options, dataset_dir, training, evaluation, pretrain_stage)] = "mae"
        if "supervised" in arms:
            jobs[executor.submit(positive_control, task, options, dataset_dir, training, evaluation,
                                 supervised_stage)] = "supervised"
        pending = list(runs)  # runs not submitted yet, in the study's order
        while jobs or pending:
            for run in [run for run in pending if run.arm in encoders]:
                job = executor.submit(finetune_and_score, task, options, run, dataset_dir,
                                      datalists[run.labelled, run.seed], encoders[run.arm], finetune_stages[run.name])
                jobs[job] = run.name
            pending = [run for run in pending if run.arm not in encoders]
            done, _ = wait(jobs, return_when=FIRST_COMPLETED)
            for job in done:
                name, result = jobs.pop(job), job.result()
                if name == "mae":
                    pretraining, encoders["mae"] = result, result.mae_file
                    clock.finish(pretrain_stage, result.seconds)
                elif name == "supervised":
                    control, encoders["supervised"] = result, result.file
                    clock.finish(supervised_stage, result.seconds)
                else:
                    runs[position[name]] = run = result
                    clock.finish(finetune_stages[name], run.seconds - run.evaluation_seconds)
                    clock.finish(evaluate_stages[name], run.evaluation_seconds)
                    print(clock.line(f"evaluated {name}: {task.metric} {format_score(run.scores[task.metric])} "
                                     f"({format_seconds(run.seconds)})"), flush=True)
    finally:  # after an error, the jobs not started yet are dropped instead of awaited
        executor.shutdown(cancel_futures=True)

    return StudyResult(
        task=task, options=options, dataset_dir=dataset_dir, sizes=sizes, steps=steps, arms=arms,
        num_training=len(training), num_evaluation=len(evaluation), pretraining=pretraining, encoders=encoders,
        control=control, runs=runs, output_dir=out, wall_seconds=time.perf_counter() - start,
    )


def data_digest(fingerprints: Sequence[float]) -> str:
    """A short digest of a run's batch fingerprints: two runs that saw the same batches in the same order agree.

    Args:
        fingerprints: one number per batch (see :class:`Run`), compared bit for bit.

    Returns:
        16 hex digits of the sha256 of the numbers as 64-bit floats; "" for no batch.
    """
    if not fingerprints:
        return ""
    return hashlib.sha256(struct.pack(f">{len(fingerprints)}d", *fingerprints)).hexdigest()[:16]


def check_same_data(runs: Sequence[Run]) -> bool:
    """Check that the arms of each labelled size and seed saw the same data: the same labelled cases, order and
    augmentation draws give the same batches, hence the same :attr:`Run.data_fingerprint`. Runs without one are
    left out of the comparison.

    Args:
        runs: the study's runs.

    Returns:
        whether every run had a fingerprint, so that the claim was checked for every run.

    Raises:
        RuntimeError: the arms of a labelled size and seed saw different batches (named in the message): their
            paired comparison would not be the one the report describes.
    """
    groups: dict[tuple[int, int], dict[str, list[str]]] = {}
    for run in runs:
        if run.data_fingerprint:
            arms = groups.setdefault((run.labelled, run.seed), {}).setdefault(run.data_fingerprint, [])
            arms.append(run.arm)
    differing = [
        f"labelled size {n}, seed {seed}: " + " vs ".join(f"{', '.join(arms)} (data fingerprint {digest})"
                                                          for digest, arms in by_digest.items())
        for (n, seed), by_digest in sorted(groups.items()) if len(by_digest) > 1
    ]
    if differing:
        raise RuntimeError("the arms of a labelled size and seed must see the same batches (labelled cases, order and "
                           "augmentation), but their runs' batch fingerprints differ, so the paired comparisons are "
                           f"not valid and no report is written: {'; '.join(differing)}. Every run's scores and "
                           "fingerprint are in runs.json.")
    return all(run.data_fingerprint for run in runs)


def save_runs(result: StudyResult, path: Path) -> None:
    """Every run's scores, losses and data fingerprint as JSON (the raw material of the report).

    Args:
        result: the study's result.
        path: the file written (``runs.json``).
    """
    rows = [{"labelled": r.labelled, "seed": r.seed, "arm": r.arm, "scores": r.scores, "losses": r.losses,
             "seconds": r.seconds, "data_fingerprint": r.data_fingerprint} for r in result.runs]
    write_text_atomically(json.dumps(rows, indent=1), path)


def load_runs(path: Path) -> list[Run]:
    """The runs of a ``runs.json`` written by :func:`save_runs`, each with its root in the study's ``runs/`` folder.
    A file written before data fingerprints were kept loads with ``data_fingerprint`` "" (not checked).

    Args:
        path: the ``runs.json`` file.

    Returns:
        the runs, in the file's order, without their per-batch fingerprints (only the digest is kept).
    """
    path = Path(path)
    runs = []
    for row in json.loads(path.read_text()):
        run = Run(row["labelled"], row["seed"], row["arm"], Path(), losses=row.get("losses", []),
                  scores=row.get("scores", {}), seconds=row.get("seconds", 0.0),
                  data_fingerprint=row.get("data_fingerprint") or "")
        run.root = path.parent / "runs" / run.name
        runs.append(run)
    return runs
