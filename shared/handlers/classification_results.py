"""Evaluator handler writing per-image probabilities and per-class ROC-AUC of a multi-label classifier."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import torch
from ignite.engine import Engine, Events

from ..metrics.auc import per_class_auc
from ..utils.atomic import write_csv_atomically, write_json_atomically, write_text_atomically
from ..utils.dist import gather_objects, is_main_process
from ..utils.stats import nan_to_none, nanmean

__all__ = ["MultiLabelResultsSaver"]


class MultiLabelResultsSaver:
    """Evaluator handler writing, after each run, per-image probabilities and (when the data has labels) the
    per-class ROC-AUC, under class names:

    - ``<output_dir>/predictions.csv``: ``image, path, <class 1>, ..., <class C>`` (the ``pred`` values, e.g.
      probabilities after a sigmoid), one row per image, and ``predictions.json`` (a list of
      ``{"image", "path", "probabilities": {class: p}, "labels": {class: 0/1}}``);
    - with labels: ``<output_dir>/auc.csv`` (``finding, auc, positives, negatives`` and a ``mean`` row) and
      ``auc.json`` (``{"num_images", "mean_auc", "auc": {class: value or null}, "positives", "negatives"}``, and
      ``"listed_images"`` when given: then fewer images than listed is a warning).

    Reads the decollated ``pred`` (``(C,)``), ``label`` (optional) and the image's ``filename_or_obj``. Under
    ``torch.distributed`` rank 0 writes every rank's images.

    Args:
        output_dir: folder for the files.
        class_names: names of the ``C`` output channels.
        pred_key: key of the scores in the engine output.
        label_key: key of the labels; ignored when absent.
        image_key: key of the image (its metadata names the file).
        listed_images: how many images the evaluated set should have (e.g. the official test list's), when known.
    """

    def __init__(
        self,
        output_dir: str,
        class_names: Sequence[str],
        pred_key: str = "pred",
        label_key: str = "label",
        image_key: str = "image",
        listed_images: int | None = None,
    ) -> None:
        self.output_dir = output_dir
        self.listed_images = listed_images
        self.class_names = list(class_names)
        self.pred_key, self.label_key, self.image_key = pred_key, label_key, image_key
        self.records: list[tuple[str, list[float], list[float] | None]] = []
        self.auc: dict[str, float] = {}

    def attach(self, engine: Engine) -> None:
        """Reset at each run's start, record every iteration's images and write the files at its end.

        Args:
            engine: the evaluator.
        """
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.record)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        """Forget the images of the previous run.

        Args:
            engine: the evaluator (unused).
        """
        self.records = []

    def record(self, engine: Engine) -> None:
        """Keep the path, the scores and the labels (when present) of each image of one iteration.

        Args:
            engine: the evaluator; ``engine.state.output`` is one item or the decollated list of items.

        Raises:
            ValueError: the number of scores is not the number of class names.
        """
        output = engine.state.output
        items = output if isinstance(output, list) else [output]
        for item in items:
            pred = torch.as_tensor(item[self.pred_key]).detach().float().cpu().reshape(-1)
            if len(pred) != len(self.class_names):
                raise ValueError(f"{len(pred)} outputs but {len(self.class_names)} class names.")
            label = item.get(self.label_key)
            label = None if label is None else torch.as_tensor(label).float().cpu().reshape(-1).tolist()
            image = item.get(self.image_key, item[self.pred_key])
            path = getattr(image, "meta", {}).get("filename_or_obj", f"image{len(self.records)}")
            self.records.append((str(path), pred.tolist(), label))

    def write(self, engine: Engine) -> None:
        """Gather every rank's images and, on rank 0, write the predictions and, with labels, the per-class AUCs;
        nothing is written when no image was recorded.

        Args:
            engine: the evaluator (its logger reports what was written).
        """
        records = [r for part in gather_objects(self.records) for r in part]
        if not is_main_process() or not records:
            return
        write_csv_atomically([["image", "path", *self.class_names],
                              *([os.path.basename(path), path, *(f"{p:.6f}" for p in pred)]
                                for path, pred, _ in records)], os.path.join(self.output_dir, "predictions.csv"))
        rows = []
        for path, pred, label in records:
            row = {"image": os.path.basename(path), "path": path, "probabilities": dict(zip(self.class_names, pred))}
            if label is not None:
                row["labels"] = dict(zip(self.class_names, label))
            rows.append(row)
        write_text_atomically(json.dumps(rows, indent=2), os.path.join(self.output_dir, "predictions.json"))
        labelled = [r for r in records if r[2] is not None]
        if not labelled:
            engine.logger.info(f"probabilities of {len(records)} images written to {self.output_dir}")
            return
        y_pred = torch.tensor([r[1] for r in labelled])
        y = torch.tensor([r[2] for r in labelled])
        self.auc = dict(zip(self.class_names, per_class_auc(y_pred, y)))
        mean = nanmean(list(self.auc.values()))
        positives = dict(zip(self.class_names, y.sum(0).int().tolist()))
        negatives = {k: len(labelled) - v for k, v in positives.items()}
        write_csv_atomically([["finding", "auc", "positives", "negatives"],
                              *([name, f"{self.auc[name]:.4f}", positives[name], negatives[name]]
                                for name in self.class_names),
                              ["mean", f"{mean:.4f}", "", ""]], os.path.join(self.output_dir, "auc.csv"))
        summary = {
            "num_images": len(labelled),
            "mean_auc": nan_to_none(mean),
            "auc": nan_to_none(self.auc),
            "positives": positives,
            "negatives": negatives,
        }
        if self.listed_images is not None:
            summary["listed_images"] = self.listed_images
            if len(labelled) < self.listed_images:
                engine.logger.warning(f"the AUCs are over {len(labelled)} of the {self.listed_images} listed images: "
                                      "the others have no file (or no row in the CSV)")
        write_json_atomically(summary, os.path.join(self.output_dir, "auc.json"))
        table = ", ".join(f"{k} {v:.3f}" for k, v in self.auc.items())
        engine.logger.info(
            f"mean AUC {mean:.4f} over {len(labelled)} images ({table}); written to {self.output_dir}"
        )
