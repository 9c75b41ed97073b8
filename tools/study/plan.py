"""Confirmatory studies: every setting fixed in a committed plan file before the run, checked against what the run
resolves, and the plan's hash printed in the report.

A plan (``tools/study/plans/<task>_confirm.json``) names the data draw, seeds, labelled sizes, budgets, arms, their
recipes and every config override of the three stages (geometry, networks): what the run resolves and
:func:`check_plan` compares; and, for the reader, the endpoint, the contrasts, the significance level, the correction
and the positive control's acceptance rule (checked against what ``tools/study/report.py`` computes). ``python -m
tools.run_experiment btcv --confirm`` runs it; nothing else is taken from the command line. A confirmatory run needs
the plan committed to git and unmodified (:func:`committed_plan_state`), and runs once (:func:`check_first_run`): a
plan whose result a bundle's ``docs/confirmatory_study/summary.json`` records is refused, as is an output folder that
holds a confirmatory result.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.study import report
from tools.study.arms import CONTRASTS
from tools.study.study import StudyOptions, arm_overrides, plan, stage_overrides
from tools.study.tasks import Task

__all__ = ["PLANS", "REPO", "PUBLISHED_RESULTS", "RESOLVED_KEYS", "load_plan", "options_from_plan",
           "resolved_settings", "reading_differences", "check_plan", "committed_plan_state", "published_results",
           "check_first_run"]

PLANS = Path(__file__).resolve().parent / "plans"
REPO = PLANS.parents[2]
"""The repository's root, where the published confirmatory results are looked for."""
PUBLISHED_RESULTS = "bundles/*/docs/confirmatory_study/summary.json"
"""Where (under :data:`REPO`) the confirmatory results that were run and committed lie."""
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
    """The resolved settings, after checking that they equal the plan's, and that the plan's reading is the report's
    (see :func:`reading_differences`).

    Raises:
        ValueError: a setting differs (the task's code changed since the plan was committed, or the options do not
            come from the plan), or the plan reads the results otherwise than the report, naming each difference.
    """
    resolved = resolved_settings(task, options)
    differences = [f"{key}: plan {content[key]!r}, run {resolved[key]!r}" for key in RESOLVED_KEYS
                   if json.loads(json.dumps(content[key])) != json.loads(json.dumps(resolved[key]))]
    differences += reading_differences(task, content)
    if differences:
        raise ValueError("the run would not be the committed plan:\n  " + "\n  ".join(differences))
    return resolved


def reading_differences(task: Task, content: dict[str, Any]) -> list[str]:
    """How the reader-facing settings of a plan that it has (``endpoint``, ``contrasts``, ``alpha``, ``correction``,
    ``positive_control_rule``) differ from what ``tools/study/report.py`` computes.

    The endpoint must name the task's metric before its first ``:``; the contrasts are those of
    ``tools.study.arms.CONTRASTS`` whose two arms the plan runs, in that order; alpha and the correction are the
    report's :data:`~tools.study.report.ALPHA` and :data:`~tools.study.report.CORRECTION`; the positive control's rule
    is free text, so it is only checked to name the report's reading: the control contrast
    (:data:`~tools.study.report.POSITIVE_CONTROL`), its interval ``above 0`` and the smallest labelled size.

    Args:
        task: the task of the plan.
        content: the plan.

    Returns:
        one line per difference, ``"key: plan ..., report ..."`` (none when the plan reads the results as the report).
    """
    arms = content.get("arms", [])
    computed = {
        "alpha": report.ALPHA,
        "correction": report.CORRECTION,
        "contrasts": [c.name for c in CONTRASTS if c.first in arms and c.second in arms],
    }
    differences = [f"{key}: plan {content[key]!r}, report {value!r}" for key, value in computed.items()
                   if key in content and content[key] != value]
    endpoint = content.get("endpoint")
    if endpoint is not None and str(endpoint).split(":")[0].strip() != task.metric:
        differences.append(f"endpoint: plan {endpoint!r}, report {task.metric!r} (the task's metric)")
    rule = content.get("positive_control_rule")
    if rule is not None:
        smallest = min((int(n) for n in content.get("labelled_sizes", []) if n != "all"), default=None)
        phrases = [report.POSITIVE_CONTROL, "above 0", f"at {smallest} labelled"]
        missing = [phrase for phrase in phrases if phrase not in rule]
        if missing:
            differences.append(f"positive_control_rule: plan {rule!r} does not name {missing}; report: the "
                               f"{report.POSITIVE_CONTROL} 95% interval above 0 at the smallest labelled size "
                               f"({smallest})")
    return differences


def _git(args: Sequence[str], folder: Path) -> subprocess.CompletedProcess:
    """``git args`` run in ``folder``, its output captured (a failure is the caller's to read).

    Raises:
        OSError: git cannot be run.
    """
    return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=False)


def committed_plan_state(path: str | Path) -> dict[str, Any]:
    """Check that the plan file is tracked by git and unmodified at ``HEAD`` of its repository: what a confirmatory
    run ("the committed plan") needs.

    Args:
        path: the plan file.

    Returns:
        ``{"commit": HEAD's hash, "uncommitted_changes": whether the work tree has any other change, untracked files
        that git does not ignore included}``.

    Raises:
        ValueError: git cannot be run, the file lies in no git repository, is not tracked, or differs from ``HEAD``.
    """
    path = Path(path).resolve()
    need = "a confirmatory run needs a plan committed to git: commit it, or write and commit a new plan."
    try:
        tracked = _git(["ls-files", "--error-unmatch", "--", path.name], path.parent)
    except OSError as e:
        raise ValueError(f"plan {path}: git cannot be run ({e}), so the plan cannot be shown to be committed; "
                         f"{need}") from None
    if tracked.returncode != 0:
        reason = (tracked.stderr.strip().splitlines() or ["not tracked"])[0]
        raise ValueError(f"plan {path} is not a file tracked by git ({reason}); {need}")
    unchanged = _git(["diff", "--quiet", "HEAD", "--", path.name], path.parent)
    if unchanged.returncode != 0:
        raise ValueError(f"plan {path} differs from its committed version at HEAD (or HEAD cannot be read); {need}")
    commit = _git(["rev-parse", "HEAD"], path.parent).stdout.strip()
    changes = _git(["status", "--porcelain"], path.parent).stdout.strip()
    return {"commit": commit, "uncommitted_changes": bool(changes)}


def _recorded_plan(summary_file: Path) -> str | None:
    """The ``plan_sha256`` that a ``summary.json`` records (``None``: none, not a confirmatory result).

    Raises:
        ValueError: the file is not valid JSON.
    """
    try:
        summary = json.loads(summary_file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{summary_file} is not valid JSON: {e.msg} at line {e.lineno}") from None
    return summary.get("plan_sha256") if isinstance(summary, dict) else None


def published_results(digest: str, root: Path | None = None) -> list[Path]:
    """The committed confirmatory results (:data:`PUBLISHED_RESULTS` under ``root``, default :data:`REPO`) that
    record the plan of sha256 ``digest``.

    Args:
        digest: the plan file's sha256.
        root: the repository to look in.

    Returns:
        their ``summary.json`` files, sorted.
    """
    return [f for f in sorted((root or REPO).glob(PUBLISHED_RESULTS)) if _recorded_plan(f) == digest]


def check_first_run(digest: str, output_dir: Path, root: Path | None = None) -> None:
    """Check that the plan of sha256 ``digest`` has not run: a plan runs once as a confirmatory study.

    Args:
        digest: the plan file's sha256.
        output_dir: the run's output folder, which must not hold a confirmatory result (a study replaces it).
        root: the repository whose published results are looked at (default :data:`REPO`).

    Raises:
        ValueError: a published result records this plan, naming its file.
        FileExistsError: ``output_dir`` holds a confirmatory result (a ``summary.json`` with a ``plan_sha256``, or a
            ``resolved_plan.json``).
    """
    published = published_results(digest, root)
    if published:
        raise ValueError(f"this plan (sha256 {digest}) has run; results in {', '.join(map(str, published))}; a "
                         "re-run is not confirmatory: write and commit a new plan.")
    summary = output_dir / "summary.json"
    if (output_dir / "resolved_plan.json").is_file() or (summary.is_file() and _recorded_plan(summary)):
        raise FileExistsError(f"the output folder {output_dir} holds a confirmatory result, which a run would "
                              "replace: keep it, and choose another --output_dir.")
