"""Evaluator handler: per-case, per-class Dice and HD95 under class names, written as CSV and JSON.

MONAI's ``MetricsSaver`` names classes ``class0, class1, ...`` and its ``HausdorffDistance`` handler measures in
voxels. :class:`SegmentationMetricsSaver` computes both metrics per case from the evaluator's (decollated) output,
with HD95 in millimetres from the label's voxel spacing, and writes them under the organ or region names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events

from ..metrics.segmentation import MISSED_HD95_RULE, case_metrics, summarize
from ..utils.atomic import write_csv_atomically, write_json_atomically
from ..utils.dist import gather_objects, is_main_process
from ..utils.stats import nan_to_none

__all__ = ["SegmentationMetricsSaver"]


class SegmentationMetricsSaver:
    """Evaluator handler: per-case, per-class Dice and HD95 under class names, saved as
    ``<output_dir>/metrics_per_case.csv`` and ``<output_dir>/metrics_summary.json``.

    Reads the decollated ``pred`` and ``label`` of every iteration (one-hot or multi-label, in the space they are
    compared in, e.g. after ``Invertd``), the voxel spacing from the label's affine and the case name from the
    image's ``filename_or_obj``. Under ``torch.distributed`` each rank scores its cases and rank 0 writes all.

    Args:
        output_dir: folder for the files.
        class_names: names of the scored channels (without the background when ``include_background`` is False).
        include_background: score channel 0 too (e.g. BraTS's three region channels).
        case_name: turns the image's file path into the case name (default: the file name).
        class_groups: extra means over groups of classes, e.g. ``{"mean_8_organs": [...]}`` for the 8 organs of the
            TransUNet BTCV protocol.
    """

    def __init__(
        self,
        output_dir: str,
        class_names: Sequence[str],
        include_background: bool = False,
        case_name: Callable[[str], str] = os.path.basename,
        class_groups: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.output_dir = output_dir
        self.case_name = case_name
        self.class_names = list(class_names)
        self.include_background = include_background
        self.class_groups = dict(class_groups or {})
        self.cases: list[str] = []
        self.per_case: list[dict[str, np.ndarray]] = []
        self.summary: dict[str, dict[str, float]] = {}

    def attach(self, engine: Engine) -> None:
        """Reset at each evaluation's start, score every iteration's cases and write the files at its end.

        Args:
            engine: the evaluator.
        """
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.record)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def reset(self, engine: Engine) -> None:
        """Forget the cases of the previous evaluation.

        Args:
            engine: the evaluator (unused).
        """
        self.cases, self.per_case = [], []

    def record(self, engine: Engine) -> None:
        """Score the cases of one iteration: per-class Dice, HD95 and the missed and spurious flags, with the case's
        name.

        Args:
            engine: the evaluator; ``engine.state.output`` is the decollated list of ``pred`` / ``label`` items.

        Raises:
            ValueError: the number of scored channels is not the number of class names.
        """
        for item in engine.state.output:
            pred, label = item["pred"], item["label"]
            scores = case_metrics(pred, label, self._spacing(label), self.include_background)
            if len(scores["dice"]) != len(self.class_names):
                raise ValueError(f"{len(scores['dice'])} scored channels but {len(self.class_names)} class names.")
            self.per_case.append(scores)
            filename = getattr(item.get("image", pred), "meta", {}).get("filename_or_obj")
            self.cases.append(self.case_name(str(filename)) if filename else f"case{len(self.cases)}")

    def write(self, engine: Engine) -> None:
        """Gather every rank's cases and, on rank 0, write ``metrics_per_case.csv`` and ``metrics_summary.json`` and
        log the means; nothing is written when no case was scored.

        Args:
            engine: the evaluator (its logger reports the means).
        """
        cases, per_case = self._gather()
        if not is_main_process() or not per_case:
            return
        self.summary = summarize(per_case, self.class_names, self.class_groups)
        rows = [["case", "metric", *self.class_names]]
        for name, scores in zip(cases, per_case):
            rows += [[name, metric, *(f"{v:.4f}" for v in scores[metric])] for metric in ("dice", "hd95")]
            rows += [[name, flag, *(int(v) for v in scores[flag])] for flag in ("missed", "spurious")]
        write_csv_atomically(rows, os.path.join(self.output_dir, "metrics_per_case.csv"))
        summary = {"num_cases": len(per_case), **nan_to_none(self.summary), "hd95_rule": MISSED_HD95_RULE}
        write_json_atomically(summary, os.path.join(self.output_dir, "metrics_summary.json"))
        engine.logger.info(
            f"mean Dice {self.summary['dice']['mean']:.4f}, mean HD95 {self.summary['hd95']['mean']:.2f} "
            f"({self.summary['misses']['total']} missed, {self.summary['spurious']['total']} predicted where the "
            f"reference has none) over {len(per_case)} cases, written to {self.output_dir}"
        )

    def _gather(self) -> tuple[list[str], list[dict[str, np.ndarray]]]:
        """Every rank's cases and scores, in rank order."""
        gathered = gather_objects((self.cases, self.per_case))
        return sum((c for c, _ in gathered), []), sum((p for _, p in gathered), [])

    @staticmethod
    def _spacing(label: torch.Tensor) -> list[float] | None:
        """The voxel spacing of ``label``: the lengths of its affine's spatial columns.

        Args:
            label: ``(C, *spatial)`` label, a ``MetaTensor`` with an affine.

        Returns:
            one spacing per spatial axis, or None when ``label`` has no affine (HD95 is then in voxels).
        """
        affine = getattr(label, "affine", None)
        if affine is None:
            return None
        spatial_dims = label.dim() - 1
        return torch.linalg.norm(affine[:spatial_dims, :spatial_dims].float(), dim=0).tolist()
