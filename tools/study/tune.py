"""Choosing the fine-tuning hyper-parameters of a study on a *tuning data draw*, the same way for every arm.

Run it on a draw of its own (``--seed``: the synthetic data of another seed than the study's): its training cases are
split once (seeded), the held-out part plays the evaluation cases, the rest the training cases, and the MAE is
pre-trained on the images of the rest only. Every point of a grid (e.g. the peak learning rate) is then run as a small
study (the smallest labelled size, a few seeds, every arm, each with its recipe); each arm gets the point with its best
mean metric. The cases a study reports are never seen. Run it with ``--tune``::

    python -m tools.run_experiment btcv --tune --seed 100 --grid '{"base_learning_rate": [0.5, 1.0, 2.0]}'

and give the result to a study with ``--hyperparameters <output_dir>/tuning.json``.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from shared.data.splits import split_by_seed
from shared.utils.atomic import write_json_atomically, write_text_atomically
from shared.utils.errors import InputError
from shared.utils.files import read_json
from tools.study.arms import ARM_NAMES
from tools.study.stats import mean_sd
from tools.study.study import (
    StudyOptions,
    check_labelled_sizes,
    plan,
    replace_output_after_checks,
    run_settings,
    run_study,
    stage_overrides,
)
from tools.study.tasks import Task

__all__ = ["held_out_split", "grid_points", "check_grid", "tune", "load_tuning"]


def held_out_split(cases: list[dict], held_out: int, seed: int) -> tuple[list[dict], list[dict]]:
    """``(training, held_out)``: ``held_out`` cases drawn by :func:`shared.data.splits.split_by_seed`, both in their
    order."""
    if not 1 <= held_out < len(cases):
        raise ValueError(f"cannot hold out {held_out} of {len(cases)} training cases.")
    return split_by_seed(cases, held_out, seed)


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, as override dicts."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def check_grid(task: Task, options: StudyOptions, grid: Any) -> None:
    """Check a tuning grid against what a fine-tuning run of the study takes: every value a non-empty list, every key
    an id of the task's fine-tuning configs (with the stage's overrides) that the study does not set itself on each
    run (:func:`tools.study.study.run_settings`). A misspelled id would otherwise become a new, unused config entry.

    Raises:
        ValueError: naming ``--grid`` and the key, with what is wrong.
    """
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"--grid must be a table of config ids and lists of values, e.g. "
                         f"'{{\"base_learning_rate\": [0.5, 1.0]}}'; got {grid!r}.")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"--grid {key!r}: its values must be a non-empty list, e.g. [0.5, 1.0]; got {values!r}.")
    parser = ConfigParser()
    parser.read_config([str(c) for c in task.finetune.configs])
    parser.update(stage_overrides(task, "finetune", options))
    unknown = [key for key in grid if key not in parser]
    if unknown:
        raise ValueError(f"--grid {unknown}: not ids of the {task.name} fine-tuning config "
                         f"({', '.join(c.name for c in task.finetune.configs)} of {task.finetune.configs[0].parent}).")
    fixed = sorted(set(grid) & set(run_settings(task, Path(), Path(), 1, "", 0)))
    if fixed:
        raise ValueError(f"--grid {fixed}: the study sets these itself on every fine-tuning run; tune other ids.")


def tune(task: Task, options: StudyOptions, grid: dict[str, list[Any]], held_out: int) -> dict[str, Any]:
    """Run the grid on held-out training cases; write ``tuning.json`` and ``tuning.md`` under ``options.output_dir``.

    Returns:
        ``{"task", "grid", "held_out", "results": [{"point", "mae": [...], "scratch": [...]}], "chosen": {arm: point}}``

    Raises:
        ValueError: a grid :func:`check_grid` refuses (before anything is written or deleted).
    """
    check_grid(task, options, grid)

    def check(training: list[dict], evaluation: list[dict]) -> None:
        tune_training, _ = held_out_split(training, held_out, options.data_seed)
        check_labelled_sizes([min(plan(task, options, len(tune_training))[0])], len(tune_training))

    out, dataset_dir = replace_output_after_checks(task, options, check)
    training, _ = task.cases(dataset_dir, out / "datalists")
    tune_training, tune_evaluation = held_out_split(training, held_out, options.data_seed)
    sizes = [min(plan(task, options, len(tune_training))[0])]  # the study's smallest labelled size
    base = replace(options, dataset_dir=dataset_dir, labelled_sizes=sizes, cases=(tune_training, tune_evaluation))
    arms = list(options.arms)
    results, encoders = [], {}
    for i, point in enumerate(grid_points(grid)):
        print(f"tuning {task.name}: grid point {i + 1}: {point}", flush=True)
        study = run_study(task, replace(base, output_dir=out / f"point{i}", arm_overrides={arm: point for arm in arms},
                                        **encoders))
        # one MAE and one supervised encoder for the whole grid
        encoders = {"mae_file": study.encoders.get("mae"), "supervised_file": study.encoders.get("supervised")}
        scores = {arm: [r.scores[task.metric] for r in study.runs if r.arm == arm] for arm in arms}
        results.append({"point": point, **scores})
    chosen = {arm: max(results, key=lambda r: mean_sd(r[arm])[0])["point"] for arm in arms}
    tuning = {"task": task.name, "metric": task.metric, "grid": grid, "held_out": len(tune_evaluation),
              "training": len(tune_training), "labelled": sizes[0], "seeds": list(options.seeds), "results": results,
              "chosen": chosen}
    write_json_atomically(tuning, out / "tuning.json")
    lines = [f"# Hyper-parameters of the {task.name} study, chosen on held-out cases of data draw {options.data_seed}",
             "",
             f"{len(tune_training)} training cases ({sizes[0]} labelled), {len(tune_evaluation)} held-out training "
             f"cases scored; seeds {list(options.seeds)}; `{task.metric}` mean ± sd.", "",
             "| point | " + " | ".join(arms) + " |", "|---" * (1 + len(arms)) + "|"]
    for r in results:
        cells = [f"{mean_sd(r[arm])[0]:.3f} ± {mean_sd(r[arm])[1]:.3f}" for arm in arms]
        lines.append(f"| `{json.dumps(r['point'])}` | " + " | ".join(cells) + " |")
    lines += ["", "Chosen: " + ", ".join(f"{arm} `{json.dumps(chosen[arm])}`" for arm in arms) + ".", ""]
    write_text_atomically("\n".join(lines), out / "tuning.md")
    print("\n".join(lines))
    return tuning


def load_tuning(path: str | Path, task: Task) -> dict[str, dict[str, Any]]:
    """The per-arm hyper-parameters (``{arm: {config id: value}}``) that :func:`tune` chose, from its ``tuning.json``.

    Raises:
        InputError: naming ``path``: not valid JSON, no ``chosen`` table, another task's tuning, or unknown arms.
    """
    path = str(path)
    content = read_json(path)
    chosen = content.get("chosen") if isinstance(content, dict) else None
    if not isinstance(chosen, dict) or not all(isinstance(point, dict) for point in chosen.values()):
        raise InputError(path, "not a tuning.json written by --tune: it has no 'chosen' table of per-arm values.")
    if content.get("task") != task.name:
        raise InputError(path, f"the hyper-parameters were tuned for task {content.get('task')!r}, not {task.name!r}.")
    unknown = sorted(set(chosen) - set(ARM_NAMES))
    if unknown:
        raise InputError(path, f"unknown arms {unknown} in 'chosen'; the arms are {list(ARM_NAMES)}.")
    return chosen
