"""The paper's experiments as label-efficiency studies, one command per task (the repository's main job).

For a task (``btcv``, the default, ``brats`` or ``cxr14``) it pre-trains an MAE once on the training images (labels
unused) through the task's bundle config, fine-tunes from the MAE encoder and from scratch at several labelled-set
sizes with several seeds (the arms of a pair share budget, seed and data; each has its recipe, see
``tools/study/tasks.py``), evaluates every run through the bundle's evaluate config on cases that nothing was chosen
on, and writes ``report.md``, ``summary.json``, ``metric_vs_labelled.png``, ``loss_curves.png`` and
``reconstruction.png`` under ``--output_dir``::

    python -m tools.run_experiment                         # btcv on built-in synthetic data, about 11 min on 2 cores
    python -m tools.run_experiment brats                   # brain tumours (MSD Task01 layout), 8 seeds, 2 labelled
    python -m tools.run_experiment cxr14                   # likewise for chest X-ray findings
    python -m tools.run_experiment btcv --dataset_dir /data/BTCV --full_size --output_dir runs/btcv_full
    python -m tools.run_experiment btcv --seed 10          # seeds 10, 11, 12 and synthetic data of seed 10

Options: ``--output_dir`` (default ``runs/study_<task>``; a folder an earlier study wrote is replaced, any other
non-empty folder refused), ``--dataset_dir`` (a data set in the task's public layout, for brats the MSD Task01 layout
only; synthetic data is generated when absent), ``--full_size`` (the bundles' paper configuration), ``--num_seeds`` (the
task's: 3, 8 for brats) or ``--seeds "[0,1,2]"``, ``--seed`` (shifts the seeds and the synthetic data),
``--labelled_sizes "[2,8]"`` (``all``: every training case), ``--steps`` (fine-tuning iterations per run),
``--pretrain_epochs``, ``--hyperparameters tuning.json`` (per-arm overrides chosen by ``--tune``), ``--workers`` and
``--threads_per_run`` (how many jobs run at once, and their threads; see ``tools/study/workers.py``). With ``--tune
--grid '{"layer_decay": [0.5, 0.75]}'`` it chooses hyper-parameters on held-out training cases instead (see
``tools/study/tune.py``).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import fire

from shared.utils.atomic import write_text_atomically
from tools.study import report
from tools.study.arms import ARM_NAMES
from tools.study.plan import PLANS, check_first_run, check_plan, committed_plan_state, load_plan, options_from_plan
from tools.study.study import StudyOptions, StudyResult, check_same_data, run_study, save_runs
from tools.study.tasks import TASKS, Task
from tools.study.tune import load_tuning
from tools.study.tune import tune as run_tuning

CONFIRM_OPTIONS = ("task", "output_dir", "confirm", "plan_file", "workers", "threads_per_run")
"""The options a confirmatory run takes besides its plan: where it writes and how its jobs run."""


def _items(value: Any) -> list | None:
    """A list given on the command line: fire's list or tuple, or a string such as ``"[2,all]"`` (an int: one item);
    ``None`` when not given."""
    if value is None:
        return None
    if isinstance(value, (int, str)):
        value = [v.strip(" '\"") for v in str(value).strip("[]() ").split(",") if v.strip()]
    return list(value)


def _ints(value: Any) -> list[int] | None:
    """Integers given on the command line (see :func:`_items`), e.g. the seeds; ``None`` when not given."""
    items = _items(value)
    return None if items is None else [int(v) for v in items]


def _sizes(value: Any) -> list[int | str] | None:
    """Labelled-set sizes: numbers, or ``all`` (every training case)."""
    items = _items(value)
    return None if items is None else [v if v == "all" else int(v) for v in items]


def study(
    task: str = "btcv",
    output_dir: str | None = None,
    dataset_dir: str | None = None,
    full_size: bool = False,
    seeds=None,
    num_seeds: int | None = None,
    seed: int = 0,
    labelled_sizes=None,
    steps: int | None = None,
    pretrain_epochs: int | None = None,
    hyperparameters: str | None = None,
    tune: bool = False,
    grid: dict | None = None,
    held_out: int = 3,
    arms=None,
    confirm: bool = False,
    plan_file: str | None = None,
    workers: int | None = None,
    threads_per_run: int | None = None,
) -> None:
    """Run the study of ``task`` and write its report (``summary.json`` holds the figures); with ``tune``, choose its
    fine-tuning hyper-parameters on held-out training cases instead.

    Args:
        task: ``btcv``, ``brats`` or ``cxr14``.
        output_dir: where the report goes (default ``runs/study_<task>``, ``runs/tuning_<task>`` with ``tune``).
        dataset_dir: a data set in the task's public layout (brats: the MSD Task01 layout only); synthetic data is
            generated when absent.
        full_size: the bundles' paper configuration instead of the CPU-sized one.
        seeds: the seeds, e.g. ``"[0,1,2]"``; default ``seed, seed + 1, ...`` (``num_seeds`` of them).
        num_seeds: how many seeds when ``seeds`` is not given (default: the task's, ``Task.num_seeds``).
        seed: first seed, and the seed of the synthetic data.
        labelled_sizes: labelled training cases per fine-tuning run, e.g. ``"[2,8]"`` (the task's default otherwise).
        steps: fine-tuning iterations per run.
        pretrain_epochs: MAE pre-training epochs.
        hyperparameters: a ``tuning.json`` written by ``tune``: its chosen values override the task's defaults.
        tune: choose hyper-parameters on held-out training cases instead of running the study.
        grid: with ``tune``, ``{config id: [values]}``.
        held_out: with ``tune``, training cases held out for validation.
        arms: the arms to run, e.g. ``"[scratch,supervised]"`` (default: all four, see ``tools/study/arms.py``).
        confirm: run the task's committed confirmatory plan (``tools/study/plans/<task>_confirm.json``) instead;
            every other study option but ``CONFIRM_OPTIONS`` is refused.
        plan_file: with ``confirm``, another plan file.
        workers: jobs (MAE pre-training, the positive control, fine-tuning runs) run at once, each in a process of its
            own; default: as many as fill the CPU cores, at most 8. The figures do not depend on it.
        threads_per_run: torch threads of each job: default 1 (0 with ``full_size``: every core, one job at a time).
            The figures depend on it (the order of a product's sums): earlier reports were made with 0 (two threads
            on a 2-core CPU, one job at a time). Both are recorded in ``summary.json``'s ``configuration``.
    """
    # the options given away from their defaults (the first statement: locals() holds the arguments only)
    given = {name: value for name, value in locals().items() if value != _DEFAULTS[name]}
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)}.")
    chosen = TASKS[task]
    if threads_per_run is None:
        threads_per_run = 0 if full_size else 1
    parallel = {"workers": workers, "threads_per_run": threads_per_run or None}
    if confirm:
        refused = sorted(set(given) - set(CONFIRM_OPTIONS))
        if refused:
            raise ValueError(f"--confirm runs the committed plan's settings only; remove {refused} (it takes only "
                             f"{list(CONFIRM_OPTIONS)}).")
        _run_plan(chosen, Path(plan_file) if plan_file else PLANS / f"{task}_confirm.json",
                  Path(output_dir or f"runs/confirm_{task}"), parallel)
        return
    arm_overrides = load_tuning(hyperparameters, chosen) if hyperparameters else {}
    options = StudyOptions(
        output_dir=Path(output_dir or f"runs/{'tuning' if tune else 'study'}_{task}"),
        dataset_dir=Path(dataset_dir) if dataset_dir else None,
        full_size=full_size,
        seeds=_ints(seeds) or [seed + i for i in range(num_seeds or chosen.num_seeds)],
        labelled_sizes=_sizes(labelled_sizes),
        data_seed=seed,
        steps=steps,
        pretrain_epochs=pretrain_epochs,
        arms=_names(arms) or ARM_NAMES,
        arm_overrides=arm_overrides,
        **parallel,
    )
    if tune:
        if not grid:
            raise ValueError('--tune needs a --grid, e.g. \'{"base_learning_rate": [0.5, 1.0]}\'.')
        run_tuning(chosen, options, grid, held_out)
        return
    _write_outputs(chosen, run_study(chosen, options))


_DEFAULTS = {name: parameter.default for name, parameter in inspect.signature(study).parameters.items()}


def _names(value: Any) -> list[str] | None:
    """Arm names given on the command line (see :func:`_items`); ``None`` when not given.

    Raises:
        ValueError: a name is not an arm's, naming it and the arms.
    """
    value = _items(value)
    if value is None:
        return None
    unknown = sorted(set(value) - set(ARM_NAMES))
    if unknown:
        raise ValueError(f"unknown arms {unknown}; choose from {list(ARM_NAMES)}.")
    return list(value)


def _run_plan(task: Task, plan_path: Path, output_dir: Path, parallel: dict) -> None:
    """The confirmatory run: the plan's settings only, checked against what the run resolves, its hash reported;
    ``parallel``: how its jobs run (``workers``, ``threads_per_run``).

    The plan must be committed to git and unmodified (see :func:`tools.study.plan.committed_plan_state`; the commit,
    and whether the work tree had other changes, go into ``summary.json`` and ``resolved_plan.json`` as ``git``), and
    must not have run before (see :func:`tools.study.plan.check_first_run`).

    Raises:
        FileNotFoundError: no plan file ``plan_path`` (e.g. a task without a committed plan), listing those there are.
        ValueError: the plan file lies inside the output folder (the study replaces that folder), is another task's
            plan, is not committed, has run (a published result records it) or is not what the run resolves.
        FileExistsError: the output folder holds a confirmatory result.
    """
    if not plan_path.is_file():
        committed = sorted(p.name for p in PLANS.glob("*.json"))
        raise FileNotFoundError(f"no plan file {plan_path}: the committed confirmatory plans are {committed} (in "
                                f"{PLANS}); give another plan with --plan_file.")
    if plan_path.resolve().is_relative_to(output_dir.resolve()):
        raise ValueError(f"the plan file {plan_path} lies inside the output folder {output_dir}, which the study "
                         "replaces before it runs: keep the plan elsewhere (it is copied into the output as plan.json) "
                         "or choose another --output_dir.")
    content, digest, raw = load_plan(plan_path)
    if content["task"] != task.name:
        raise ValueError(f"plan {plan_path} is for task {content['task']!r}, not {task.name!r}.")
    git = committed_plan_state(plan_path)
    check_first_run(digest, output_dir)
    options = replace(options_from_plan(content, output_dir), **parallel)
    resolved = {**check_plan(task, options, content), **report.parallel_settings(options), "git": git}
    print(f"confirmatory run of {plan_path} (sha256 {digest}, commit {git['commit']})", flush=True)
    result = run_study(task, options)
    (result.output_dir / "plan.json").write_bytes(raw)
    write_text_atomically(json.dumps(resolved, indent=2) + "\n", result.output_dir / "resolved_plan.json")
    _write_outputs(task, result, {"plan_sha256": digest, "git": git})


def _write_outputs(task: Task, result: StudyResult, confirmatory: dict[str, Any] | None = None) -> None:
    """Write a study's outputs into its folder: ``runs.json`` first (the raw scores survive a failing report), then,
    once the arms of every labelled size and seed are checked to have seen the same batches, ``summary.json``, the
    pictures and ``report.md``.

    Args:
        task: the task studied.
        result: what the study ran.
        confirmatory: for a confirmatory run, ``{"plan_sha256": ..., "git": ...}``, added to ``summary.json``.

    Raises:
        RuntimeError: arms of one labelled size and seed saw different batches (see
            :func:`~tools.study.study.check_same_data`); only ``runs.json`` is written then.
    """
    out = result.output_dir
    save_runs(result, out / "runs.json")
    check_same_data(result.runs)
    summary = report.summarize(result)
    summary.update(confirmatory or {})
    report.write_summary(summary, out / "summary.json")
    report.plot_metric(summary, task.metric_label, out / "metric_vs_labelled.png")
    report.plot_losses(result, out / "loss_curves.png")
    report.copy_reconstruction(result, out / "reconstruction.png")
    plan_hash = (confirmatory or {}).get("plan_sha256")
    print(report.write_report(result, summary, out / "report.md", plan_hash))
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    fire.Fire(study, name="tools.run_experiment")
