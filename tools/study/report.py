"""What a study writes: ``summary.json`` (machine-readable), ``report.md`` and the pictures it shows."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from shared.utils.atomic import write_json_atomically, write_text_atomically  # noqa: E402
from tools.study.arms import ARMS, CONTRASTS  # noqa: E402
from tools.study.stats import holm, mean_sd, minimum_detectable_effect, paired_difference  # noqa: E402
from tools.study.study import StudyOptions, StudyResult, check_same_data  # noqa: E402
from tools.study.workers import default_workers  # noqa: E402

__all__ = ["parallel_settings", "summarize", "write_summary", "plot_metric", "plot_losses", "write_report"]

SECONDARY = {
    "mean_dice_8": "mean Dice over the 8 organs of the TransUNet protocol",
    "mean_hd95": "mean HD95 in mm (a missed class scores the image diagonal)",
    "misses": "classes missed (present in the reference, absent from the prediction), summed over cases",
}
ALPHA = 0.05
"""The significance level of every contrast (its intervals are 95%)."""
CORRECTION = "holm"
"""How the p-values of the contrasts of a labelled size are adjusted (Holm's step-down)."""
POSITIVE_CONTROL = "P - S"
"""The contrast that says whether the design can see a gain (the positive control against scratch)."""
LOWER_IS_BETTER = ("mean_hd95", "misses")
"""Metrics whose smaller values are the better ones (a negative difference favours the first arm)."""


def _clean(value: float | None) -> float | None:
    """A figure for JSON: ``None`` for a missing one or NaN (JSON has no NaN), else the value."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _contrasts(values: dict[str, list[float]], alpha: float = ALPHA) -> dict[str, dict[str, Any]]:
    """Every contrast of ``tools.study.arms.CONTRASTS`` whose two arms ran: mean difference, sd, 95% CI, p-value,
    Holm-adjusted p-value (over the contrasts of this table) and the minimum detectable effect at 80% power."""
    rows = {}
    for contrast in CONTRASTS:
        if contrast.first in values and contrast.second in values:
            d = paired_difference(values[contrast.first], values[contrast.second])
            rows[contrast.name] = {
                "first": contrast.first, "second": contrast.second, "question": contrast.question,
                "mean": _clean(d.mean), "sd": _clean(d.sd), "ci95": [_clean(d.ci95[0]), _clean(d.ci95[1])],
                "p_value": _clean(d.p_value), "minimum_detectable_effect": _clean(minimum_detectable_effect(d.sd, d.n,
                                                                                                            alpha)),
            }
    adjusted = holm([row["p_value"] if row["p_value"] is not None else float("nan") for row in rows.values()])
    for row, p in zip(rows.values(), adjusted):
        row["p_holm"] = _clean(p)
    return rows


def _by_size(result: StudyResult, key: str) -> dict[str, dict[str, Any]]:
    """``{size: {arm: [value per seed], ..., "contrasts": {name: {...}}}}``."""
    table = {}
    for n in result.sizes:
        values = {arm: [r.scores[key] for r in result.runs if r.labelled == n and r.arm == arm]
                  for arm in result.arms}
        table[str(n)] = {**values, "contrasts": _contrasts(values)}
    return table


def parallel_settings(options: StudyOptions) -> dict[str, int]:
    """How a study's jobs ran, as ``summary.json`` and a confirmatory run's ``resolved_plan.json`` record it: the
    figures depend on ``threads_per_run`` (the order of a product's sums), not on ``workers``.

    Args:
        options: the study's options.

    Returns:
        ``{"workers": jobs run at once (at most; its default resolved), "threads_per_run": torch threads of each job,
        0 for torch's default, every core}``.
    """
    return {"workers": options.workers or default_workers(options.threads_per_run),
            "threads_per_run": options.threads_per_run or 0}


def summarize(result: StudyResult) -> dict[str, Any]:
    """The content of ``summary.json`` (its ``configuration`` includes :func:`parallel_settings`)."""
    task, runs, options = result.task, result.runs, result.options
    secondary = {k: _by_size(result, k) for k in SECONDARY if runs and k in runs[0].scores}
    per_class = {}
    for n in result.sizes:
        per_class[str(n)] = {}
        for arm in result.arms:
            rows = [r.scores["per_class"] for r in runs if r.labelled == n and r.arm == arm]
            names = list(rows[0]) if rows else []
            per_class[str(n)][arm] = {c: _clean(mean_sd([r[c] for r in rows if r[c] is not None])[0]) for c in names}
    return {
        "task": task.name,
        "metric": task.metric,
        "seeds": list(options.seeds),
        "arms": list(result.arms),
        "labelled_sizes": list(result.sizes),
        "results": _by_size(result, task.metric),
        "secondary": secondary,
        "per_class": per_class,
        "configuration": {
            "dataset_dir": str(result.dataset_dir),
            "synthetic": options.dataset_dir is None,
            "full_size": options.full_size,
            "training_cases": result.num_training,
            "evaluation_cases": result.num_evaluation,
            "finetune_iterations": result.steps,
            "pretrain_epochs": len(result.pretraining.losses),
            "data_seed": options.data_seed,
            "recipes": {arm: {**task.recipes.get(arm, {}), **options.arm_overrides.get(arm, {})}
                        for arm in result.arms},
            "encoders": {arm: result.encoders.get(arm, "") for arm in result.arms},
            "supervised_network_scores": {k: v for k, v in result.control.scores.items() if k != "per_class"},
            **parallel_settings(options),
        },
        "wall_seconds": round(result.wall_seconds, 1),
    }


def write_summary(summary: dict[str, Any], path: Path) -> None:
    """Write ``summary`` as the model zoo's JSON hook formats it (4-space indent), so that a report can live in a
    bundle's ``docs/`` and still pass the packaging checks."""
    write_json_atomically(summary, path)


def plot_metric(summary: dict[str, Any], metric_label: str, path: Path) -> None:
    """The metric against the number of labelled cases, every arm, mean ± sd over seeds."""
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = [int(n) for n in summary["results"]]
    arms = [arm for arm in ARMS if arm.name in summary["arms"]]
    for i, arm in enumerate(arms):
        label, offset = f"{arm.letter}: {arm.description}", 0.02 * (i - (len(arms) - 1) / 2)
        stats = [mean_sd(summary["results"][str(n)][arm.name]) for n in sizes]
        xs = [n * (1 + offset) for n in sizes]
        ax.errorbar(xs, [m for m, _ in stats], yerr=[0 if math.isnan(s) else s for _, s in stats], marker="o",
                    capsize=4, label=label)
    ax.set(xscale="log", xlabel="labelled training cases", ylabel=metric_label, title=summary["task"])
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_losses(result: StudyResult, path: Path) -> None:
    """MAE pre-training loss, and the fine-tuning loss per labelled size and arm (mean over seeds)."""
    sizes, pretraining_losses = result.sizes, result.pretraining.losses
    fig, axes = plt.subplots(1, 1 + len(sizes), figsize=(4.5 * (1 + len(sizes)), 3.6))
    axes[0].plot(range(1, len(pretraining_losses) + 1), pretraining_losses)
    axes[0].set(title="MAE pre-training", xlabel="epoch", ylabel="loss (hidden patches)")
    for ax, n in zip(axes[1:], sizes):
        for arm in result.arms:
            curves = [r.losses for r in result.runs if r.labelled == n and r.arm == arm and r.losses]
            if curves:
                length = min(len(c) for c in curves)
                mean = [sum(c[i] for c in curves) / len(curves) for i in range(length)]
                ax.plot(range(1, length + 1), mean, label=arm)
        ax.set(title=f"fine-tuning, {n} labelled", xlabel="epoch", ylabel="training loss")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(value: float | None, digits: int = 3) -> str:
    """A figure for the report with ``digits`` decimals; ``"n/a"`` for a missing one or NaN."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _mean_sd_text(values: Sequence[float], digits: int = 3) -> str:
    mean, sd = mean_sd(values)
    return f"{_fmt(mean, digits)} ± {_fmt(sd, digits)}"


def _difference_text(row: dict[str, Any], digits: int = 3) -> str:
    low, high = row["ci95"]
    sign = "+" if row["mean"] is not None and row["mean"] >= 0 else ""
    return f"{sign}{_fmt(row['mean'], digits)} [{_fmt(low, digits)}, {_fmt(high, digits)}]"


def _verdict(row: dict[str, Any], lower_is_better: bool = False, alpha: float = ALPHA) -> str:
    """The contrast in words. An arm is called better only when the 95% interval excludes 0 *and* the Holm-adjusted
    p-value is at most ``alpha``; an interval that excludes 0 while the Holm p-value is larger is read as not
    significant after Holm (the interval is not adjusted for the other contrasts). For ``lower_is_better`` metrics a
    negative difference favours the first arm.

    Args:
        row: a contrast of ``summary.json`` (``first``, ``second``, ``mean``, ``ci95``, ``p_holm``); a ``mean`` of
            ``None`` is a pair with a missing score.
        lower_is_better: the metric's smaller values are the better ones.
        alpha: the significance level.

    Returns:
        the reading, e.g. ``"mae better (CI above 0, Holm p = 0.006)"``.
    """
    low, high = row["ci95"]
    if row["mean"] is None:
        return "n/a: a run of this pair failed or scored nothing (see runs.json)"
    if low is None:
        return "one seed: no interval"
    if low <= 0 <= high:
        return "no difference shown (CI contains 0)"
    first_higher = low > 0
    side = "above" if first_higher else "below"
    better = row["first"] if first_higher != lower_is_better else row["second"]
    p_holm = row["p_holm"]
    if p_holm is not None and p_holm > alpha:
        return f"unadjusted CI {side} 0, leaning to {better}; not significant after Holm (p = {p_holm:.3f})"
    holm_note = "" if p_holm is None else f", Holm p = {p_holm:.3f}"
    return f"{better} better (CI {side} 0{holm_note})"


def _arm_header(arms: Sequence[str]) -> str:
    """A table header's arm cells, e.g. ``"S: scratch | M: mae"``."""
    letters = {arm.name: f"{arm.letter}: {arm.name}" for arm in ARMS}
    return " | ".join(letters[a] for a in arms)


def _results_table(summary: dict[str, Any], key_rows: dict[str, Any], digits: int = 3,
                   lower_is_better: bool = False) -> list[str]:
    """The report's two tables of a metric: mean ± sd per labelled size and arm, then every contrast with its
    interval, p-values, detectable difference and reading.

    Args:
        summary: ``summary.json``'s content (its arms).
        key_rows: the metric's rows, ``{size: {arm: [value per seed], "contrasts": {...}}}``.
        digits: decimals shown.
        lower_is_better: the metric's smaller values are the better ones (see :func:`_verdict`).

    Returns:
        the Markdown lines.
    """
    arms = summary["arms"]
    lines = [f"| labelled cases | {_arm_header(arms)} |", "|---" * (1 + len(arms)) + "|"]
    for n, row in key_rows.items():
        lines.append(f"| {n} | " + " | ".join(_mean_sd_text(row[a], digits) for a in arms) + " |")
    lines += ["", "| labelled cases | contrast | difference [95% CI] | p (Holm) | detectable at 80% power | reading |",
              "|---|---|---|---|---|---|"]
    for n, row in key_rows.items():
        for name, c in row["contrasts"].items():
            lines.append(f"| {n} | {name} | {_difference_text(c, digits)} | {_fmt(c['p_value'])} "
                         f"({_fmt(c['p_holm'])}) | {_fmt(c['minimum_detectable_effect'], digits)} | "
                         f"{_verdict(c, lower_is_better)} |")
    return lines


def _design_reading(summary: dict[str, Any]) -> list[str]:
    """What the positive control says about the design, at the smallest labelled size, in words."""
    smallest = summary["results"][str(min(summary["labelled_sizes"]))]
    control = smallest["contrasts"].get(POSITIVE_CONTROL)
    if control is None:
        return ["No positive control ran: nothing here says whether the design could see a gain of an encoder."]
    low = control["ci95"][0]
    if low is not None and low > 0:
        return [f"**The design can see a gain**: at {min(summary['labelled_sizes'])} labelled cases the supervised "
                f"encoder beats scratch by {_difference_text(control)}. The MAE contrasts below are read against "
                "that."]
    return [f"**The design is blind at this size**: the positive control does not beat scratch with an interval above "
            f"zero ({_difference_text(control)} at {min(summary['labelled_sizes'])} labelled cases), so a null MAE "
            "contrast says nothing about the method."]


def write_report(result: StudyResult, summary: dict[str, Any], path: Path, plan_hash: str | None = None) -> str:
    """``report.md``: the tables, the pictures and what they show.

    Args:
        result: what the study ran.
        summary: its :func:`summarize`.
        path: the file written.
        plan_hash: the sha256 of the confirmatory plan, for a confirmatory run.

    Returns:
        the report's text.

    Raises:
        RuntimeError: arms of one labelled size and seed saw different batches (see
            :func:`~tools.study.study.check_same_data`).
    """
    task = result.task
    checked = ("the data checked in this run: every arm of a labelled size and seed trained on the same batches, by "
               "the digests of their batch fingerprints in `runs.json`" if check_same_data(result.runs) else
               "the data not checked in this run: not every run recorded its batch fingerprints")
    config = summary["configuration"]
    seeds = summary["seeds"]
    origin = "synthetic, generated by this run" if config["synthetic"] else "given"
    size = "Paper configuration." if config["full_size"] else "Small configuration (the task in tools/study/tasks.py)."
    arms = [arm for arm in ARMS if arm.name in summary["arms"]]
    lines = [
        f"# MAE self pre-training with controls: {task.name}",
        "",
        *([f"Confirmatory run of the committed plan, sha256 `{plan_hash}`.", ""] if plan_hash else []),
        f"Data: `{config['dataset_dir']}` ({origin}, data seed {config['data_seed']}); {config['training_cases']} "
        "training cases (the MAE pre-trains on all their images, labels unused; the labelled sets are nested subsets "
        f"of them, drawn per seed), {config['evaluation_cases']} evaluation cases (never used to choose anything). "
        f"{size} Fine-tuning: {config['finetune_iterations']} iterations per run at every labelled size, last model "
        f"evaluated; seeds {seeds} (each seed: the same labelled cases, decoder initialisation, data order and "
        f"augmentation in every arm; {checked}).",
        "",
        "Arms (each fine-tunes the same config; only the encoder file and the recipe differ):",
        "",
        *[f"- {arm.letter} `{arm.name}`: {arm.description}; recipe `{json.dumps(config['recipes'][arm.name])}`"
          for arm in arms],
        "",
        f"## {task.metric_label} (`{task.metric}`)",
        "",
        *_results_table(summary, summary["results"]),
        "",
        f"Intervals: Student's t over the {len(seeds)} paired seeds; p: paired t-test, Holm-adjusted over the "
        "contrasts of a labelled size in brackets; 'detectable': the smallest true difference that this many seeds "
        f"detect with 80% power at the observed spread (two-sided, alpha {ALPHA}). They measure the spread of "
        "fine-tuning seeds around one MAE pre-training, one supervised encoder and one untrained initialisation "
        "(each made once per study, from the data seed), on these evaluation cases: not how much another "
        "pre-training run would differ.",
        "",
        *_design_reading(summary),
        "",
        "![metric against labelled cases](metric_vs_labelled.png)",
        "",
    ]
    if result.pretraining.health:
        lines += ["MAE health check (held-out images, labels unused): " + result.pretraining.health, ""]
    if result.control.scores:
        lines += [f"Strength of the positive control: the supervised network whose encoder P fine-tunes scores "
                  f"{task.metric} {_fmt(result.control.scores[task.metric])} on the evaluation cases by itself "
                  f"({result.control.cases or 'the'} labelled cases of a disjoint stream, "
                  f"{task.supervised_steps} iterations).", ""]
    for key, rows in summary["secondary"].items():
        digits = 1 if key == "mean_hd95" else (0 if key == "misses" else 3)
        lines += [f"### {SECONDARY[key]} (`{key}`)", "",
                  *_results_table(summary, rows, digits, lower_is_better=key in LOWER_IS_BETTER), ""]
    for n, per_arm in summary["per_class"].items():
        names = list(per_arm[summary["arms"][0]])
        lines += [f"### Per {task.class_label}, {n} labelled cases (mean over seeds)", "",
                  f"| {task.class_label} | {_arm_header(summary['arms'])} |", "|---" * (1 + len(arms)) + "|"]
        lines += [f"| {c} | " + " | ".join(_fmt(per_arm[a].get(c)) for a in summary["arms"]) + " |" for c in names]
        lines.append("")
    lines += ["## Training", "", "![loss curves](loss_curves.png)", ""]
    if (path.parent / "reconstruction.png").is_file():
        lines += ["MAE reconstruction at the end of pre-training (masked input | reconstruction | original):", "",
                  "![reconstruction](reconstruction.png)", ""]
    lines += [f"Wall time: {summary['wall_seconds']:.0f} s (MAE pre-training "
              f"{result.pretraining.seconds:.0f} s). Every run's scores: `runs.json`; logs: `logs/`.", ""]
    text = "\n".join(lines)
    write_text_atomically(text, path)
    return text


def copy_reconstruction(result: StudyResult, path: Path) -> None:
    """The last reconstruction picture of the MAE pre-training, if it wrote any."""
    pictures = sorted((result.output_dir / "mae" / "runs").rglob("reconstruction_epoch*.png"))
    if pictures:
        shutil.copy(pictures[-1], path)
