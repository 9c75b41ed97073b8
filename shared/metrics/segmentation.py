"""Per-case, per-class Dice and HD95 (in the label's units, e.g. mm) and their summary over cases.

A class present in the reference but absent from the prediction is *missed*: its Dice is 0 and, since a surface
distance to nothing is undefined, its HD95 is set to the diagonal of the image (the largest distance possible in it)
instead of being left out, which would flatter a model that misses organs. A class absent from the reference is not
scored (NaN) in that case, as MONAI's ``DiceMetric`` (``ignore_empty``) and the paper do; where the prediction holds it
nonetheless, the class is *spurious* in that case, and counted (the BraTS challenge would score it Dice 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance

from ..utils.stats import nanmean

__all__ = ["MISSED_HD95_RULE", "image_diagonal", "case_metrics", "summarize"]

MISSED_HD95_RULE = "a missed class (empty prediction, non-empty reference) scores HD95 = the image diagonal"


def image_diagonal(shape: Sequence[int], spacing: Sequence[float] | None) -> float:
    """Length of the diagonal of an image of ``shape`` voxels of size ``spacing`` (voxels when None)."""
    spacing = spacing if spacing is not None else [1.0] * len(shape)
    return math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing)))


def case_metrics(
    pred: torch.Tensor, label: torch.Tensor, spacing: Sequence[float] | None, include_background: bool
) -> dict[str, np.ndarray]:
    """Dice and HD95 (in the units of ``spacing``) of one case, and which classes it missed or predicted spuriously.

    Args:
        pred: ``(C, *spatial)`` one-hot (or multi-label) prediction.
        label: ``(C, *spatial)`` one-hot (or multi-label) reference.
        spacing: voxel size per spatial axis; voxels when None.
        include_background: score channel 0 too.

    Returns:
        ``{"dice": (K,), "hd95": (K,), "missed": (K,) bool, "spurious": (K,) bool}`` with ``K`` the scored
        classes; Dice and HD95 are NaN where the reference class is empty, HD95 is the image diagonal where the
        class is missed; ``spurious``: predicted where the reference class is empty.
    """
    pred, label = pred[None].float(), label[None].float()
    dice = compute_dice(pred, label, include_background=include_background, ignore_empty=True)
    hd95 = compute_hausdorff_distance(
        pred, label, include_background=include_background, percentile=95, spacing=spacing
    )
    first = 0 if include_background else 1
    in_reference = label.flatten(2).sum(-1)[:, first:] > 0
    in_prediction = pred.flatten(2).sum(-1)[:, first:] > 0
    missed = in_reference & ~in_prediction
    hd95 = hd95.masked_fill(~in_reference, float("nan"))
    hd95 = hd95.masked_fill(missed, image_diagonal(label.shape[2:], spacing))
    spurious = in_prediction & ~in_reference
    return {"dice": dice[0].cpu().numpy(), "hd95": hd95[0].cpu().numpy(), "missed": missed[0].cpu().numpy(),
            "spurious": spurious[0].cpu().numpy()}


def _mean_row(values: np.ndarray, class_names: Sequence[str], groups: Mapping[str, Sequence[str]]) -> dict:
    """Per-class mean over cases (ignoring NaN), the mean over classes, and the mean over each group of classes."""
    with np.errstate(all="ignore"):
        per_class = np.nanmean(values, axis=0) if values.size else np.full(len(class_names), np.nan)
    row = {name: float(v) for name, v in zip(class_names, per_class)}
    row["mean"] = nanmean(row.values())
    for group, members in groups.items():
        row[group] = nanmean(row[m] for m in members)
    return row


def summarize(
    per_case: list[dict[str, np.ndarray]],
    class_names: Sequence[str],
    class_groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, dict[str, float]]:
    """Per-class means over cases (ignoring NaN), the mean over classes and over each group of classes (e.g.
    ``{"mean_8_organs": [...]}``), for Dice and HD95; and the number of cases in which each class was missed
    (``misses``) or predicted spuriously (``spurious``).

    Raises:
        ValueError: a group names a class that is not in ``class_names``.
    """
    groups = dict(class_groups or {})
    unknown = sorted({m for members in groups.values() for m in members} - set(class_names))
    if unknown:
        raise ValueError(f"class_groups name classes that are not scored: {unknown}")
    summary = {m: _mean_row(np.stack([case[m] for case in per_case]), class_names, groups) for m in ("dice", "hd95")}
    for flag, key in (("missed", "misses"), ("spurious", "spurious")):
        counts = np.stack([case[flag] for case in per_case]).sum(0)
        summary[key] = {**{name: int(v) for name, v in zip(class_names, counts)}, "total": int(counts.sum())}
    return summary
