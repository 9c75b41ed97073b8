"""Multi-label image classification with a MONAI ViT: a logits-only ViT, a random resized crop, per-class ROC-AUC as
an evaluator key metric, and a handler that writes per-image probabilities and per-class AUC under class names.

MONAI's ``ViT`` returns ``(logits, hidden_states)``; :class:`ViTClassifier` is the same network (same parameter
names, so its state dict is a plain ``ViT`` state dict and :func:`scripts.encoder_transfer.load_mae_encoder` fills
it) whose forward returns the logits alone, which is what ``SupervisedTrainer``, ``SupervisedEvaluator``,
``verify_net_in_out`` and ``ckpt_export`` expect.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence

import ignite.distributed as idist
import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from ignite.metrics import Metric
from monai.config import KeysCollection
from monai.metrics import compute_roc_auc
from monai.networks.nets import ViT
from monai.transforms import MapTransform, Randomizable
from monai.utils import ensure_tuple_rep

__all__ = [
    "ViTClassifier",
    "RandResizedCropd",
    "per_class_auc",
    "MultiLabelAUC",
    "MultiLabelResultsSaver",
]


class ViTClassifier(ViT):
    """``monai.networks.nets.ViT`` with ``classification=True`` whose forward returns the logits ``(B, num_classes)``
    only. Same arguments as ``ViT`` (``classification`` is forced on) except:

    Args:
        post_activation: None (default) gives raw logits, for ``BCEWithLogitsLoss``; ``"Tanh"`` as in ``ViT``.
        use_flash_attention: compute attention with ``scaled_dot_product_attention`` (same weights, same result).
    """

    def __init__(
        self,
        in_channels: int,
        img_size: Sequence[int] | int,
        patch_size: Sequence[int] | int,
        num_classes: int,
        post_activation: str | None = None,
        use_flash_attention: bool = False,
        **kwargs,
    ) -> None:
        kwargs.pop("classification", None)
        super().__init__(
            in_channels, img_size, patch_size, classification=True, num_classes=num_classes,
            post_activation=post_activation, **kwargs,
        )
        if use_flash_attention:
            for block in self.blocks:
                block.attn.use_flash_attention = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``ViT.forward`` without collecting the hidden states (written out, not through ``super()``, so that the
        network can be scripted with TorchScript)."""
        x = self.patch_embedding(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return self.classification_head(x[:, 0])


class RandResizedCropd(Randomizable, MapTransform):
    """Random resized crop of 2D images (torchvision's ``RandomResizedCrop``, as in MAE and the paper's CXR
    recipe): a crop covering ``scale`` of the area with aspect ratio (width / height) in ``ratio`` (log-uniform), at
    a random position, resized to ``size`` bilinearly with antialiasing. After 10 failed draws the central crop
    with the closest allowed aspect ratio is used. All keys get the same crop.

    Args:
        keys: keys of ``(C, H, W)`` images.
        size: output ``(H, W)`` (an int is repeated).
        scale: range of the crop area as a fraction of the image area.
        ratio: range of the aspect ratio.
        allow_missing_keys: don't raise when a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        size: Sequence[int] | int,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.size = tuple(int(s) for s in ensure_tuple_rep(size, 2))
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        if not 0 < self.scale[0] <= self.scale[1] or not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"scale {scale} and ratio {ratio} must be increasing positive ranges.")
        self._box = (0, 0, 0, 0)

    def randomize(self, height: int, width: int) -> None:
        """Choose ``(top, left, crop height, crop width)``."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * self.R.uniform(*self.scale)
            aspect = math.exp(self.R.uniform(*log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                self._box = (int(self.R.randint(0, height - h + 1)), int(self.R.randint(0, width - w + 1)), h, w)
                return
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif aspect > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            h, w = height, width
        self._box = ((height - h) // 2, (width - w) // 2, h, w)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        first = next(self.key_iterator(d), None)
        if first is None:
            return d
        self.randomize(*d[first].shape[-2:])
        top, left, h, w = self._box
        for key in self.key_iterator(d):
            image = torch.as_tensor(d[key])
            crop = image[..., top : top + h, left : left + w].float()
            resized = F.interpolate(crop[None], size=self.size, mode="bilinear", align_corners=False, antialias=True)
            d[key] = resized[0].to(image.dtype) if image.dtype.is_floating_point else resized[0]
        return d


def per_class_auc(y_pred: torch.Tensor, y: torch.Tensor) -> list[float]:
    """ROC-AUC of every column of ``(N, C)`` scores against ``(N, C)`` 0/1 labels, with MONAI's
    ``compute_roc_auc(average="none")``; NaN for a class whose labels are all 0 or all 1."""
    y_pred, y = torch.as_tensor(y_pred).float().reshape(len(y_pred), -1), torch.as_tensor(y).float()
    y = y.reshape(len(y), -1)
    if len(y_pred) == 0:
        return [float("nan")] * y.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y values can not be all 0": reported as NaN
        aucs = compute_roc_auc(y_pred, y, average="none")
    return [float(a) for a in np.atleast_1d(np.asarray(aucs, dtype=np.float64))]


def _stack(values) -> torch.Tensor:
    """A batch tensor from a ``(B, C)`` tensor or a list of ``(C,)`` tensors (decollated output)."""
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().reshape(len(values), -1)
    return torch.stack([torch.as_tensor(v).detach().float().cpu().reshape(-1) for v in values])


def _gather_objects(obj):
    """Every rank's ``obj`` in rank order (a one-element list without ``torch.distributed``)."""
    if idist.get_world_size() == 1:
        return [obj]
    gathered: list = [None] * idist.get_world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


class MultiLabelAUC(Metric):
    """Ignite metric for an evaluator's ``key_val_metric``: the mean over classes of the per-class ROC-AUC
    (classes whose labels are all one value in the data are left out of the mean). On completion each class's AUC is
    also put in ``engine.state.metrics`` as ``<prefix><class name>``, so ``StatsHandler`` and
    ``TensorBoardStatsHandler`` log every finding by name. Data of all ranks is gathered under
    ``torch.distributed``.

    Args:
        class_names: names of the output channels.
        output_transform: gives ``(y_pred, y)`` from the engine output, e.g.
            ``monai.handlers.from_engine(["pred", "label"])``.
        prefix: name prefix of the per-class metrics.
    """

    def __init__(
        self, class_names: Sequence[str], output_transform: Callable = lambda x: x, prefix: str = "val_auc_"
    ) -> None:
        self.class_names = list(class_names)
        self.prefix = prefix
        self.per_class: dict[str, float] = {}
        super().__init__(output_transform=output_transform)

    def reset(self) -> None:
        self._preds: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def update(self, output) -> None:
        y_pred, y = output
        self._preds.append(_stack(y_pred))
        self._labels.append(_stack(y))

    def compute(self) -> float:
        parts = _gather_objects((self._preds, self._labels))
        preds = [p for ps, _ in parts for p in ps]
        labels = [y for _, ys in parts for y in ys]
        num_classes = len(self.class_names)
        y_pred = torch.cat(preds) if preds else torch.zeros(0, num_classes)
        y = torch.cat(labels) if labels else torch.zeros(0, num_classes)
        if y_pred.shape[1] != num_classes:
            raise ValueError(f"{y_pred.shape[1]} outputs but {num_classes} class names.")
        self.per_class = dict(zip(self.class_names, per_class_auc(y_pred, y)))
        return _nanmean(list(self.per_class.values()))

    def completed(self, engine: Engine, name: str) -> None:
        super().completed(engine, name)
        for cls, value in self.per_class.items():
            engine.state.metrics[f"{self.prefix}{cls}"] = value


class MultiLabelResultsSaver:
    """Evaluator handler writing, after each run, per-image probabilities and (when the data has labels) the
    per-class ROC-AUC, under class names:

    - ``<output_dir>/predictions.csv``: ``image, path, <class 1>, ..., <class C>`` (the ``pred`` values, e.g.
      probabilities after a sigmoid), one row per image, and ``predictions.json`` (a list of
      ``{"image", "path", "probabilities": {class: p}, "labels": {class: 0/1}}``);
    - with labels: ``<output_dir>/auc.csv`` (``finding, auc, positives, negatives`` and a ``mean`` row) and
      ``auc.json`` (``{"num_images", "mean_auc", "auc": {class: value or null}, "positives", "negatives"}``).

    Reads the decollated ``pred`` (``(C,)``), ``label`` (optional) and the image's ``filename_or_obj``. Under
    ``torch.distributed`` rank 0 writes every rank's images.

    Args:
        output_dir: folder for the files.
        class_names: names of the ``C`` output channels.
        pred_key: key of the scores in the engine output.
        label_key: key of the labels; ignored when absent.
        image_key: key of the image (its metadata names the file).
    """

    def __init__(
        self,
        output_dir: str,
        class_names: Sequence[str],
        pred_key: str = "pred",
        label_key: str = "label",
        image_key: str = "image",
    ) -> None:
        self.output_dir = output_dir
        self.class_names = list(class_names)
        self.pred_key, self.label_key, self.image_key = pred_key, label_key, image_key
        self.records: list[tuple[str, list[float], list[float] | None]] = []
        self.auc: dict[str, float] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.record)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        self.records = []

    def record(self, engine: Engine) -> None:
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
        records = [r for part in _gather_objects(self.records) for r in part]
        if idist.get_rank() != 0 or not records:
            return
        os.makedirs(self.output_dir, exist_ok=True)
        with open(os.path.join(self.output_dir, "predictions.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image", "path", *self.class_names])
            for path, pred, _ in records:
                writer.writerow([os.path.basename(path), path, *(f"{p:.6f}" for p in pred)])
        rows = []
        for path, pred, label in records:
            row = {"image": os.path.basename(path), "path": path, "probabilities": dict(zip(self.class_names, pred))}
            if label is not None:
                row["labels"] = dict(zip(self.class_names, label))
            rows.append(row)
        with open(os.path.join(self.output_dir, "predictions.json"), "w") as f:
            json.dump(rows, f, indent=2)
        labelled = [r for r in records if r[2] is not None]
        if not labelled:
            engine.logger.info(f"probabilities of {len(records)} images written to {self.output_dir}")
            return
        y_pred = torch.tensor([r[1] for r in labelled])
        y = torch.tensor([r[2] for r in labelled])
        self.auc = dict(zip(self.class_names, per_class_auc(y_pred, y)))
        mean = _nanmean(list(self.auc.values()))
        positives = dict(zip(self.class_names, y.sum(0).int().tolist()))
        negatives = {k: len(labelled) - v for k, v in positives.items()}
        with open(os.path.join(self.output_dir, "auc.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["finding", "auc", "positives", "negatives"])
            for name in self.class_names:
                writer.writerow([name, f"{self.auc[name]:.4f}", positives[name], negatives[name]])
            writer.writerow(["mean", f"{mean:.4f}", "", ""])
        summary = {
            "num_images": len(labelled),
            "mean_auc": None if math.isnan(mean) else mean,
            "auc": {k: (None if math.isnan(v) else v) for k, v in self.auc.items()},
            "positives": positives,
            "negatives": negatives,
        }
        with open(os.path.join(self.output_dir, "auc.json"), "w") as f:
            json.dump(summary, f, indent=4)
        table = ", ".join(f"{k} {v:.3f}" for k, v in self.auc.items())
        engine.logger.info(
            f"mean AUC {mean:.4f} over {len(labelled)} images ({table}); written to {self.output_dir}"
        )
