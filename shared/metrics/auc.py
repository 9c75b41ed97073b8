"""Multi-label ROC-AUC: per class with class names, and their mean as an evaluator key metric."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine
from ignite.metrics import Metric
from monai.metrics import compute_roc_auc

from ..utils.dist import gather_objects
from ..utils.stats import nanmean

__all__ = ["per_class_auc", "MultiLabelAUC"]


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


def _stack(values: torch.Tensor | Sequence[Any]) -> torch.Tensor:
    """A batch tensor from a ``(B, C)`` tensor or a list of ``(C,)`` tensors (decollated output).

    Args:
        values: scores or labels of one iteration.

    Returns:
        ``(B, C)`` float32 tensor on the CPU.
    """
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().reshape(len(values), -1)
    return torch.stack([torch.as_tensor(v).detach().float().cpu().reshape(-1) for v in values])


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
        """Forget the scores and labels gathered so far."""
        self._preds: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def update(self, output: Sequence[Any]) -> None:
        """Keep the scores and labels of one iteration.

        Args:
            output: ``(y_pred, y)``, each a ``(B, C)`` tensor or a list of ``(C,)`` tensors.
        """
        y_pred, y = output
        self._preds.append(_stack(y_pred))
        self._labels.append(_stack(y))

    def compute(self) -> float:
        """The mean per-class ROC-AUC over the data of every rank; each class's AUC is kept in ``per_class``.

        Returns:
            the mean over the classes whose AUC is defined (NaN when none is).

        Raises:
            ValueError: the number of score columns is not the number of class names.
        """
        parts = gather_objects((self._preds, self._labels))
        preds = [p for ps, _ in parts for p in ps]
        labels = [y for _, ys in parts for y in ys]
        num_classes = len(self.class_names)
        y_pred = torch.cat(preds) if preds else torch.zeros(0, num_classes)
        y = torch.cat(labels) if labels else torch.zeros(0, num_classes)
        if y_pred.shape[1] != num_classes:
            raise ValueError(f"{y_pred.shape[1]} outputs but {num_classes} class names.")
        self.per_class = dict(zip(self.class_names, per_class_auc(y_pred, y)))
        return nanmean(list(self.per_class.values()))

    def completed(self, engine: Engine, name: str) -> None:
        super().completed(engine, name)
        for cls, value in self.per_class.items():
            engine.state.metrics[f"{self.prefix}{cls}"] = value
