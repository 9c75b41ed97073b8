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

from tools.study.stats import mean_sd, paired_difference  # noqa: E402

__all__ = ["summarize", "write_summary", "plot_metric", "plot_losses", "write_report"]

SECONDARY = {
    "mean_dice_8": "mean Dice over the 8 organs of the TransUNet protocol",
    "mean_hd95": "mean HD95 in mm (a missed class scores the image diagonal)",
    "misses": "classes missed (present in the reference, absent from the prediction), summed over cases",
}


def _clean(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _by_size(result: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    """``{size: {"mae": [per seed], "scratch": [per seed], "difference_mean", "difference_sd", "difference_ci95"}}``."""
    table = {}
    for n in result["sizes"]:
        values = {arm: [r.scores[key] for r in result["runs"] if r.labelled == n and r.arm == arm]
                  for arm in ("mae", "scratch")}
        difference = paired_difference(values["mae"], values["scratch"])
        table[str(n)] = {
            **values,
            "difference_mean": _clean(difference.mean),
            "difference_sd": _clean(difference.sd),
            "difference_ci95": [_clean(difference.ci95[0]), _clean(difference.ci95[1])],
        }
    return table


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The content of ``summary.json``."""
    task = result["task"]
    runs = result["runs"]
    secondary = {k: _by_size(result, k) for k in SECONDARY if runs and k in runs[0].scores}
    per_class = {}
    for n in result["sizes"]:
        per_class[str(n)] = {}
        for arm in ("mae", "scratch"):
            rows = [r.scores["per_class"] for r in runs if r.labelled == n and r.arm == arm]
            names = list(rows[0]) if rows else []
            per_class[str(n)][arm] = {c: _clean(mean_sd([r[c] for r in rows if r[c] is not None])[0]) for c in names}
    options = result["options"]
    return {
        "task": task.name,
        "metric": task.metric,
        "seeds": list(options.seeds),
        "labelled_sizes": list(result["sizes"]),
        "results": _by_size(result, task.metric),
        "secondary": secondary,
        "per_class": per_class,
        "configuration": {
            "dataset_dir": str(result["dataset_dir"]),
            "synthetic": options.dataset_dir is None,
            "full_size": options.full_size,
            "training_cases": result["num_training"],
            "evaluation_cases": result["num_evaluation"],
            "finetune_iterations": result["steps"],
            "pretrain_epochs": len(result["pretraining"]["losses"]),
            "data_seed": options.data_seed,
            "arm_overrides": options.arm_overrides,
        },
        "wall_seconds": round(result["wall_seconds"], 1),
    }


def write_summary(summary: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(summary, indent=2) + "\n")


def plot_metric(summary: dict[str, Any], metric_label: str, path: Path) -> None:
    """The metric against the number of labelled cases, both arms, mean ± sd over seeds."""
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = [int(n) for n in summary["results"]]
    for arm, label, offset in (("mae", "MAE self pre-training", -0.02), ("scratch", "from scratch", 0.02)):
        stats = [mean_sd(summary["results"][str(n)][arm]) for n in sizes]
        xs = [n * (1 + offset) for n in sizes]
        ax.errorbar(xs, [m for m, _ in stats], yerr=[0 if math.isnan(s) else s for _, s in stats], marker="o",
                    capsize=4, label=label)
    ax.set(xscale="log", xlabel="labelled training cases", ylabel=metric_label, title=summary["task"])
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_losses(result: dict[str, Any], path: Path) -> None:
    """MAE pre-training loss, and the fine-tuning loss per labelled size and arm (mean over seeds)."""
    sizes = result["sizes"]
    fig, axes = plt.subplots(1, 1 + len(sizes), figsize=(4.5 * (1 + len(sizes)), 3.6))
    axes[0].plot(range(1, len(result["pretraining"]["losses"]) + 1), result["pretraining"]["losses"])
    axes[0].set(title="MAE pre-training", xlabel="epoch", ylabel="loss (hidden patches)")
    for ax, n in zip(axes[1:], sizes):
        for arm in ("mae", "scratch"):
            curves = [r.losses for r in result["runs"] if r.labelled == n and r.arm == arm and r.losses]
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
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _mean_sd_text(values: Sequence[float], digits: int = 3) -> str:
    mean, sd = mean_sd(values)
    return f"{_fmt(mean, digits)} ± {_fmt(sd, digits)}"


def _difference_text(row: dict[str, Any], digits: int = 3) -> str:
    low, high = row["difference_ci95"]
    sign = "+" if (row["difference_mean"] or 0) >= 0 else ""
    return f"{sign}{_fmt(row['difference_mean'], digits)} [{_fmt(low, digits)}, {_fmt(high, digits)}]"


def _verdict(row: dict[str, Any]) -> str:
    low, high = row["difference_ci95"]
    if low is None:
        return "one seed: no interval"
    if low > 0:
        return "MAE better (CI above 0)"
    if high < 0:
        return "scratch better (CI below 0)"
    return "no difference shown (CI contains 0)"


def write_report(result: dict[str, Any], summary: dict[str, Any], path: Path) -> str:
    """``report.md``: the tables, the pictures and what they show."""
    task = result["task"]
    config = summary["configuration"]
    seeds = summary["seeds"]
    origin = "synthetic, generated by this run" if config["synthetic"] else "given"
    size = "Paper configuration." if config["full_size"] else "Small configuration (the task in tools/study/tasks.py)."
    lines = [
        f"# MAE self pre-training vs from scratch: {task.name}",
        "",
        f"Data: `{config['dataset_dir']}` ({origin}); {config['training_cases']} training cases (the MAE pre-trains on "
        "all their images, labels unused; the labelled sets are nested subsets of them, drawn per seed), "
        f"{config['evaluation_cases']} evaluation cases (never used to choose anything). {size} Fine-tuning: "
        f"{config['finetune_iterations']} iterations per run at every labelled size, last model evaluated; seeds "
        f"{seeds} (each seed: the same labelled cases, initialisation, data order and augmentation in both arms).",
        "",
        f"## {task.metric_label} (`{task.metric}`)",
        "",
        "| labelled cases | MAE-init (mean ± sd) | scratch (mean ± sd) | MAE − scratch [95% CI] | reading |",
        "|---|---|---|---|---|",
    ]
    for n, row in summary["results"].items():
        lines.append(f"| {n} | {_mean_sd_text(row['mae'])} | {_mean_sd_text(row['scratch'])} | "
                     f"{_difference_text(row)} | {_verdict(row)} |")
    lines += ["", f"The interval is Student's t over the {len(seeds)} paired seeds.", "",
              "![metric against labelled cases](metric_vs_labelled.png)", ""]
    for key, rows in summary["secondary"].items():
        digits = 1 if key == "mean_hd95" else (0 if key == "misses" else 3)
        lines += [f"### {SECONDARY[key]} (`{key}`)", "",
                  "| labelled cases | MAE-init | scratch | MAE − scratch [95% CI] |", "|---|---|---|---|"]
        for n, row in rows.items():
            lines.append(f"| {n} | {_mean_sd_text(row['mae'], digits)} | {_mean_sd_text(row['scratch'], digits)} | "
                         f"{_difference_text(row, digits)} |")
        lines.append("")
    for n, arms in summary["per_class"].items():
        names = list(arms["mae"])
        lines += [f"### Per {task.class_label}, {n} labelled cases (mean over seeds)", "",
                  f"| {task.class_label} | MAE-init | scratch |", "|---|---|---|"]
        lines += [f"| {c} | {_fmt(arms['mae'][c])} | {_fmt(arms['scratch'].get(c))} |" for c in names]
        lines.append("")
    lines += ["## Training", "", "![loss curves](loss_curves.png)", ""]
    if (path.parent / "reconstruction.png").is_file():
        lines += ["MAE reconstruction at the end of pre-training (masked input | reconstruction | original):", "",
                  "![reconstruction](reconstruction.png)", ""]
    lines += [f"Wall time: {summary['wall_seconds']:.0f} s (MAE pre-training "
              f"{result['pretraining']['seconds']:.0f} s). Every run's scores: `runs.json`; logs: `logs/`.", ""]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def copy_reconstruction(result: dict[str, Any], path: Path) -> None:
    """The last reconstruction picture of the MAE pre-training, if it wrote any."""
    pictures = sorted((result["output_dir"] / "mae" / "runs").rglob("reconstruction_epoch*.png"))
    if pictures:
        shutil.copy(pictures[-1], path)
