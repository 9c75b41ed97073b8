"""Per-case, per-class Dice and HD95 (in the label's units, e.g. mm) and their summary over cases."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance

__all__ = ["case_metrics", "summarize"]


def case_metrics(
    pred: torch.Tensor, label: torch.Tensor, spacing: Sequence[float] | None, include_background: bool
) -> dict[str, np.ndarray]:
    """Dice and HD95 (in the units of ``spacing``) of one case.

    Args:
        pred: ``(C, *spatial)`` one-hot (or multi-label) prediction.
        label: ``(C, *spatial)`` one-hot (or multi-label) reference.
        spacing: voxel size per spatial axis; voxels when None.
        include_background: score channel 0 too.

    Returns:
        ``{"dice": (K,), "hd95": (K,)}`` with ``K`` the scored classes; NaN where the reference class is empty.
    """
    pred, label = pred[None].float(), label[None].float()
    dice = compute_dice(pred, label, include_background=include_background, ignore_empty=True)
    hd95 = compute_hausdorff_distance(
        pred, label, include_background=include_background, percentile=95, spacing=spacing
    )
    empty = label.flatten(2).sum(-1) == 0
    if not include_background:
        empty = empty[:, 1:]
    hd95 = hd95.masked_fill(empty, float("nan"))
    return {"dice": dice[0].cpu().numpy(), "hd95": hd95[0].cpu().numpy()}


def summarize(per_case: list[dict[str, np.ndarray]], class_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean over cases per class (ignoring NaN) and the mean over classes, for each metric."""
    summary = {}
    for metric in ("dice", "hd95"):
        values = np.stack([case[metric] for case in per_case])
        with np.errstate(all="ignore"):
            per_class = np.nanmean(values, axis=0) if values.size else np.array([])
        row = {name: float(v) for name, v in zip(class_names, per_class)}
        finite = [v for v in row.values() if not math.isnan(v)]
        row["mean"] = float(np.mean(finite)) if finite else float("nan")
        summary[metric] = row
    return summary
