"""Confirmatory studies: every setting fixed in a committed plan file before the run, checked against what the run
resolves, and the plan's hash printed in the report.

A plan (``tools/study/plans/<task>_confirm.json``) names the data draw, seeds, labelled sizes, budgets, arms, their
recipes and every config override of the three stages (geometry, networks): what the run resolves and
:func:`check_plan` compares; and, for the reader, the endpoint, the contrasts, the significance level, the correction
and the positive control's acceptance rule. ``python -m tools.run_experiment btcv
--confirm`` runs it; nothing else is taken from the command line.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tools.study.study import StudyOptions, arm_overrides, plan, stage_overrides
from tools.study.tasks import Task

__all__ = ["PLANS", "RESOLVED_KEYS", "load_plan", "options_from_plan", "resolved_settings", "check_plan"]

PLANS = Path(__file__).resolve().parent / "plans"
RESOLVED_KEYS = ("task", "data_seed", "seeds", "labelled_sizes", "finetune_steps", "pretrain_epochs",
                 "supervised_steps", "supervised_recipe", "arms", "recipes", "stages")
"""The settings of a plan that a run resolves from the task and its options; they must all be equal."""


def load_plan(path: str | Path) -> tuple[dict[str, Any], str, bytes]:
    """The plan, the sha256 of its file's bytes and the bytes themselves (what a confirmatory run copies into its
    output: the file the hash was taken of, even if it changes during the run).

    Raises:
        ValueError: the file is not valid JSON or lacks a setting of ``RESOLVED_KEYS``.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        content = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"plan {path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    missing = [key for key in RESOLVED_KEYS if key not in content]
    if missing:
        raise ValueError(f"plan {path} lacks the settings {missing}.")
    return content, hashlib.sha256(raw).hexdigest(), raw


def options_from_plan(content: dict[str, Any], output_dir: Path) -> StudyOptions:
    """The study options a plan fixes (synthetic data of the plan's draw; recipes come from the task, see
    :func:`check_plan`)."""
    return StudyOptions(
        output_dir=output_dir, seeds=list(content["seeds"]), labelled_sizes=list(content["labelled_sizes"]),
        data_seed=int(content["data_seed"]), steps=int(content["finetune_steps"]),
        pretrain_epochs=int(content["pretrain_epochs"]), arms=list(content["arms"]),
    )


def resolved_settings(task: Task, options: StudyOptions) -> dict[str, Any]:
    """What a study with ``options`` will run, in the plan's terms (a plan names its labelled sizes as numbers)."""
    sizes, pretrain_epochs, steps = plan(task, options, num_training=0)
    return {
        "task": task.name, "data_seed": options.data_seed, "seeds": list(options.seeds), "labelled_sizes": sizes,
        "finetune_steps": steps, "pretrain_epochs": pretrain_epochs, "supervised_steps": task.supervised_steps,
        "supervised_recipe": task.supervised_recipe, "arms": list(options.arms),
        "recipes": {arm: arm_overrides(task, options, arm) for arm in options.arms},
        "stages": {stage: stage_overrides(task, stage, options) for stage in ("pretrain", "finetune", "evaluate")},
    }


def check_plan(task: Task, options: StudyOptions, content: dict[str, Any]) -> dict[str, Any]:
    """The resolved settings, after checking that they equal the plan's.

    Raises:
        ValueError: a setting differs (the task's code changed since the plan was committed, or the options do not
            come from the plan), naming each difference.
    """
    resolved = resolved_settings(task, options)
    differences = [f"{key}: plan {content[key]!r}, run {resolved[key]!r}" for key in RESOLVED_KEYS
                   if json.loads(json.dumps(content[key])) != json.loads(json.dumps(resolved[key]))]
    if differences:
        raise ValueError("the run would not be the committed plan:\n  " + "\n  ".join(differences))
    return resolved
