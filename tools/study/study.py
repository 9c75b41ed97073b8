"""A label-efficiency study of one task: MAE self pre-training once, then fine-tuning from the MAE encoder and from
scratch at several labelled-set sizes and seeds, each run evaluated on cases that nothing was chosen on.

Both arms of a pair share everything but the encoder's initialisation: the labelled cases (nested: a smaller set is a
prefix of a larger one, drawn per seed), the seed (so the network's random initialisation, the data order and the
augmentation draws agree), the recipe and the budget (the same number of iterations at every labelled size). Each run
trains for its whole budget and the last model is evaluated: no model selection on the reported cases.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from tools.study.progress import Stage, StageProgress, StudyClock
from tools.study.tasks import Task
from tools.study.workflow import run_bundle

__all__ = ["ARMS", "StudyOptions", "Run", "labelled_subsets", "plan", "run_study"]

ARMS = ("mae", "scratch")


@dataclass
class StudyOptions:
    """How to run a study (see ``tools/run_experiment.py`` for the command line).

    Attributes:
        output_dir: where everything goes (replaced if it exists).
        dataset_dir: the data set; None generates the task's synthetic one.
        full_size: the bundles' paper configuration instead of the small one.
        seeds: fine-tuning seeds; each gives a pair of runs per labelled size.
        labelled_sizes: numbers of labelled training cases.
        data_seed: seed of the synthetic data.
        steps: fine-tuning iterations per run; the task's default when None.
        pretrain_epochs: MAE pre-training epochs; the task's default when None.
        arm_overrides: extra config overrides per arm (``{"mae": {...}, "scratch": {...}}``), e.g. hyper-parameters
            chosen by ``--tune``.
        cases: ``(training, evaluation)`` datalist items instead of the task's own (used by tuning, which evaluates on
            held-out training cases).
        mae_file: an MAE checkpoint to fine-tune from instead of pre-training one.
        synthetic: changes to the task's synthetic data set (e.g. fewer cases in tests).
        overrides: config overrides per stage (``{"pretrain": {...}, "finetune": {...}, "evaluate": {...}}``), after
            the task's (e.g. a tiny network in tests).
    """

    output_dir: Path
    dataset_dir: Path | None = None
    full_size: bool = False
    seeds: Sequence[int] = (0, 1, 2)
    labelled_sizes: Sequence[int] | None = None
    data_seed: int = 0
    steps: int | None = None
    pretrain_epochs: int | None = None
    arm_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    cases: tuple[list[dict], list[dict]] | None = None
    mae_file: str | None = None
    synthetic: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Run:
    """One fine-tuning run and its evaluation."""

    labelled: int
    seed: int
    arm: str
    root: Path
    losses: list[float] = field(default_factory=list)
    fingerprints: list[float] = field(default_factory=list)
    scores: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return f"n{self.labelled}_seed{self.seed}_{self.arm}"


def labelled_subsets(cases: Sequence[dict], sizes: Sequence[int], seed: int) -> dict[int, list[dict]]:
    """Nested labelled sets: the first ``n`` cases of one ``random.Random(seed)`` permutation, for every ``n``.

    Raises:
        ValueError: a size is not between 1 and the number of cases.
    """
    bad = [n for n in sizes if not 1 <= n <= len(cases)]
    if bad:
        raise ValueError(f"labelled sizes {bad} are not between 1 and the {len(cases)} training cases.")
    order = list(range(len(cases)))
    random.Random(seed).shuffle(order)
    return {n: [cases[i] for i in order[:n]] for n in sizes}


def _stage_overrides(task: Task, stage: str, options: StudyOptions) -> dict[str, Any]:
    """The task's overrides of ``stage`` for the chosen size (the small configuration, or the paper one), then the
    study's own."""
    task_overrides = getattr(task, f"full_{stage}") if options.full_size else getattr(task, stage).overrides
    return {**task_overrides, **options.overrides.get(stage, {})}


def _config_value(configs: Sequence[Path], key: str, overrides: dict[str, Any]) -> Any:
    if key in overrides:
        return overrides[key]
    parser = ConfigParser()
    parser.read_config([str(c) for c in configs])
    return parser[key]


def plan(task: Task, options: StudyOptions, num_training: int) -> tuple[list[int], int, int]:
    """The labelled sizes (``"all"`` is ``num_training``), the MAE epochs and the fine-tuning steps of the study."""
    sizes = options.labelled_sizes or (task.full_labelled_sizes if options.full_size else task.labelled_sizes)
    sizes = sorted({num_training if n == "all" else int(n) for n in sizes})
    overrides = _stage_overrides(task, "pretrain", options)
    if options.pretrain_epochs:
        overrides["epochs"] = options.pretrain_epochs
    epochs = int(_config_value(task.pretrain.configs, "epochs", overrides))
    steps = options.steps or (task.full_finetune_steps if options.full_size else task.finetune_steps)
    return sizes, epochs, steps


def _determinism(seed: int) -> list[str]:
    return [f"$monai.utils.set_determinism(seed={seed})"]


def pretrain(task: Task, options: StudyOptions, dataset_dir: Path, training: list[dict], evaluation: list[dict],
             clock: StudyClock, stage: Stage) -> dict[str, Any]:
    """The MAE self pre-training on the images of every training case (labels unused), once per study."""
    start = time.perf_counter()
    if options.mae_file:
        return {"losses": [], "mae_file": options.mae_file, "seconds": 0.0}
    out = options.output_dir.resolve()
    all_images = task.write_datalist(out / "datalists" / "all_training.json", training, evaluation)
    overrides = {**_stage_overrides(task, "pretrain", options), **task.data_overrides(dataset_dir, all_images),
                 "epochs": stage.epochs, "resume": False, "initialize": _determinism(options.data_seed)}
    progress = StageProgress(clock, stage, "MAE pre-training (labels unused)")
    workflow = run_bundle(task.pretrain.configs, out / "mae", out / "logs" / "mae_pretraining.log", overrides,
                          progress)
    mae_file = str(workflow.parser.get_parsed_content("mae_file"))
    return {"losses": progress.losses, "mae_file": mae_file, "seconds": time.perf_counter() - start}


def run_study(task: Task, options: StudyOptions) -> dict[str, Any]:
    """Run the study; returns everything the report needs (see :func:`tools.study.report.write_report`)."""
    start = time.perf_counter()
    out = options.output_dir.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    logs = out / "logs"
    if options.dataset_dir is None:
        print(f"generating the synthetic {task.name} data set (seed {options.data_seed})", flush=True)
        dataset_dir = task.make_synthetic(out / "data", options.data_seed, **options.synthetic)
    else:
        dataset_dir = options.dataset_dir.resolve()
    training, evaluation = options.cases or task.cases(dataset_dir, out / "datalists")
    sizes, pretrain_epochs, steps = plan(task, options, len(training))
    subsets = {seed: labelled_subsets(training, sizes, seed) for seed in options.seeds}
    runs = [Run(n, seed, arm, out / "runs" / f"n{n}_seed{seed}_{arm}")
            for n in sizes for seed in options.seeds for arm in ARMS]
    pretrain_batch = int(task.pretrain.overrides.get("batch_size", 1))
    pretrain_stage = Stage("pretrain", "MAE pre-training", 0 if options.mae_file else pretrain_epochs,
                           math.ceil(len(training) / pretrain_batch))
    finetune_stages = {r.name: Stage("finetune", r.name, task.epochs_for(r.labelled, steps),
                                     math.ceil(r.labelled / task.batch_size)) for r in runs}
    evaluate_stages = {r.name: Stage("evaluate", r.name, 1) for r in runs}
    clock = StudyClock([pretrain_stage, *finetune_stages.values(), *evaluate_stages.values()])
    print(f"{task.name}: {len(training)} training cases (labelled sizes {sizes}), {len(evaluation)} evaluation cases, "
          f"seeds {list(options.seeds)}; MAE {pretrain_epochs} epochs, fine-tuning {steps} iterations per run",
          flush=True)

    pretraining = pretrain(task, options, dataset_dir, training, evaluation, clock, pretrain_stage)

    for run in runs:
        run_start = time.perf_counter()
        datalist = task.write_datalist(out / "datalists" / f"n{run.labelled}_seed{run.seed}.json",
                                       subsets[run.seed][run.labelled], evaluation)
        epochs = finetune_stages[run.name].epochs
        overrides = {
            **_stage_overrides(task, "finetune", options), **options.arm_overrides.get(run.arm, {}),
            **task.data_overrides(dataset_dir, datalist), "epochs": epochs, "warmup_epochs": max(1, epochs // 10),
            "val_interval": epochs + 1, "resume": False,
            "pretrained_encoder": pretraining["mae_file"] if run.arm == "mae" else "",
            "initialize": _determinism(run.seed),
        }
        progress = StageProgress(clock, finetune_stages[run.name], f"fine-tuning {run.name}")
        run_bundle(task.finetune.configs, run.root, logs / f"{run.name}.log", overrides, progress)
        run.losses, run.fingerprints = progress.losses, progress.fingerprints
        evaluate_overrides = {
            **_stage_overrides(task, "evaluate", options), **task.data_overrides(dataset_dir, datalist),
            "model_file": str(run.root / "models" / "checkpoint.pt"), "eval_dir": str(run.root / "eval"),
            "initialize": _determinism(run.seed),
        }
        evaluate_start = time.perf_counter()
        run_bundle(task.evaluate.configs, run.root, logs / f"{run.name}.log", evaluate_overrides)
        clock.record(evaluate_stages[run.name], time.perf_counter() - evaluate_start)
        run.scores = task.scores(run.root / "eval")
        run.seconds = time.perf_counter() - run_start
        print(clock.line(f"evaluated {run.name}: {task.metric} {run.scores[task.metric]:.4f}"), flush=True)

    return {
        "task": task, "options": options, "dataset_dir": dataset_dir, "sizes": sizes, "steps": steps,
        "num_training": len(training), "num_evaluation": len(evaluation), "pretraining": pretraining, "runs": runs,
        "output_dir": out, "wall_seconds": time.perf_counter() - start,
    }


def save_runs(result: dict[str, Any], path: Path) -> None:
    """Every run's scores and losses as JSON (the raw material of the report)."""
    rows = [{"labelled": r.labelled, "seed": r.seed, "arm": r.arm, "scores": r.scores, "losses": r.losses,
             "seconds": r.seconds} for r in result["runs"]]
    path.write_text(json.dumps(rows, indent=1))
