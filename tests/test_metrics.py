"""Segmentation metrics: a missed class is penalised, not left out, and group means follow the class names."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from shared.metrics.segmentation import case_metrics, image_diagonal, summarize


def one_hot(label: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(label.long(), num_classes).movedim(-1, 0)


def test_a_missed_class_scores_the_image_diagonal_and_is_counted():
    reference = torch.zeros(20, 10, 8)
    reference[2:6, 2:6, 2:4] = 1  # class 1 present
    reference[10:14, 2:6, 2:4] = 2  # class 2 present, never predicted
    prediction = torch.zeros(20, 10, 8)
    prediction[2:6, 2:6, 2:4] = 1  # class 3 absent from the reference, predicted: spurious
    prediction[15:17, 2:4, 2:4] = 3
    scores = case_metrics(one_hot(prediction, 4), one_hot(reference, 4), spacing=(1.0, 2.0, 3.0),
                          include_background=False)
    diagonal = math.sqrt(20**2 + 20**2 + 24**2)
    assert image_diagonal((20, 10, 8), (1.0, 2.0, 3.0)) == pytest.approx(diagonal)
    assert scores["dice"][0] == pytest.approx(1.0) and scores["dice"][1] == 0.0 and math.isnan(scores["dice"][2])
    assert scores["hd95"][0] == 0.0 and scores["hd95"][1] == pytest.approx(diagonal) and math.isnan(scores["hd95"][2])
    assert scores["missed"].tolist() == [False, True, False]
    assert scores["spurious"].tolist() == [False, False, True]  # not scored (NaN), but counted


def test_summary_means_groups_and_misses():
    cases = [
        {"dice": np.array([1.0, 0.0, np.nan]), "hd95": np.array([0.0, 50.0, np.nan]),
         "missed": np.array([False, True, False]), "spurious": np.array([False, False, True])},
        {"dice": np.array([0.5, 0.5, 0.2]), "hd95": np.array([2.0, 4.0, 6.0]), "missed": np.array([False] * 3),
         "spurious": np.array([False] * 3)},
    ]
    summary = summarize(cases, ["a", "b", "c"], {"ab": ["a", "b"]})
    assert summary["dice"] == pytest.approx({"a": 0.75, "b": 0.25, "c": 0.2, "mean": 1.2 / 3, "ab": 0.5})
    assert summary["hd95"]["b"] == pytest.approx(27.0) and summary["hd95"]["ab"] == pytest.approx(14.0)
    assert summary["misses"] == {"a": 0, "b": 1, "c": 0, "total": 1}
    assert summary["spurious"] == {"a": 0, "b": 0, "c": 1, "total": 1}
    with pytest.raises(ValueError, match="not scored"):
        summarize(cases, ["a", "b", "c"], {"x": ["a", "z"]})
