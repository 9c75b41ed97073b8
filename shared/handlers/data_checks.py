"""Checks of the data a segmentation network is validated or evaluated on that would otherwise look like a training
failure or a result too good to be true: each logs a warning naming the cases.

- a validation case that is also a training case (the validation metric is then partly measured on training data);
- a validation or evaluation case whose label is all background (its Dice is 0, or undefined, whatever the network
  learns).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events

from ..utils.dist import is_main_process
from .guards import batch_sources

__all__ = ["BackgroundOnlyLabels", "ValidationDataChecks", "background_only_sources", "case_files", "shared_cases"]

logger = logging.getLogger(__name__)


def case_files(item: Mapping[str, Any], key: str = "image") -> tuple[str, ...]:
    """The real paths of a datalist item's ``key`` (one file, or the contrasts of a BraTS 2021 case)."""
    files = item.get(key, ())
    files = files if isinstance(files, (list, tuple)) else [files]
    return tuple(os.path.realpath(os.fspath(f)) for f in files)


def shared_cases(training: Sequence[Mapping[str, Any]], validation: Sequence[Mapping[str, Any]],
                 key: str = "image") -> list[str]:
    """The validation cases (their first file) whose ``key`` files are also those of a training case."""
    seen = {case_files(item, key) for item in training}
    return [files[0] for files in (case_files(item, key) for item in validation) if files and files in seen]


def background_only_sources(batch: Any, label_key: str = "label", source_key: str = "source") -> list[str]:
    """The source files (see :func:`batch_sources`) of the cases of ``batch`` whose label holds no foreground:
    ``batch`` is a list of cases (MONAI decollates a batch after each iteration) or one collated batch."""
    found = []
    for item in batch if isinstance(batch, list) else [batch]:
        label = item.get(label_key) if isinstance(item, Mapping) else None
        if not isinstance(label, torch.Tensor):
            continue
        if label.ndim > 4:  # a collated batch: (B, C, H, W, D)
            sources = batch_sources(item, source_key)
            found += [sources[i] if i < len(sources) else "(unknown file)"
                      for i in range(label.shape[0]) if not bool((label[i] > 0).any())]
        elif not bool((label > 0).any()):
            found += batch_sources(item, source_key)[:1] or ["(unknown file)"]
    return found


class BackgroundOnlyLabels:
    """Attached to an evaluator: at the end of its first run, warns about the cases whose label is all background,
    naming their files (each process names the cases it saw).

    Args:
        what: the cases' role, as the warning names them (``"evaluation"``, ``"validation"``).
        consequence: what such a case does to the metric, in words (the warning's middle).
        label_key: the batch key of the label.
        source_key: the batch key of the source file names (see :func:`batch_sources`).
    """

    EVALUATION = ("no class of theirs is scored whatever the network predicts, false positives included (Dice and "
                  "HD95 are NaN and left out of the means, while num_cases counts them)")
    VALIDATION = ("their Dice is 0 (or undefined) every epoch whatever the network learns, which lowers the "
                  "validation metric and can look like a failed training")

    def __init__(
        self,
        what: str = "evaluation",
        consequence: str = EVALUATION,
        label_key: str = "label",
        source_key: str = "source",
    ) -> None:
        self.what = what
        self.consequence = consequence
        self.label_key = label_key
        self.source_key = source_key
        self.background_only: list[str] = []
        self._first_run_done = False

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.record_background_only)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.warn_background_only)

    def record_background_only(self, engine: Engine) -> None:
        """Note the cases of the batch whose label holds no foreground (first run only)."""
        if not self._first_run_done:
            self.background_only += background_only_sources(engine.state.batch, self.label_key, self.source_key)

    def warn_background_only(self, engine: Engine) -> None:
        """At the end of the first run, warn about the cases whose label is all background."""
        if self._first_run_done:
            return
        self._first_run_done = True
        if self.background_only:
            engine.logger.warning(
                f"{len(self.background_only)} {self.what} cases have a label that is all background: "
                f"{self.consequence}. Check the labels of these cases: {', '.join(self.background_only)}")


class ValidationDataChecks(BackgroundOnlyLabels):
    """Attached to a training run's validation evaluator: warns, when attached, about validation cases that are also
    training cases, and, at the end of the first validation, about validation cases whose label is all background
    (:class:`BackgroundOnlyLabels`).

    Args:
        training: the training datalist items.
        validation: the validation datalist items.
        image_key: the datalist key of the image(s).
        label_key: the batch key of the label.
        source_key: the batch key of the source file names (see :func:`batch_sources`).
    """

    def __init__(
        self,
        training: Sequence[Mapping[str, Any]],
        validation: Sequence[Mapping[str, Any]],
        image_key: str = "image",
        label_key: str = "label",
        source_key: str = "source",
    ) -> None:
        super().__init__("validation", self.VALIDATION, label_key, source_key)
        self.training = list(training)
        self.validation = list(validation)
        self.image_key = image_key

    def attach(self, engine: Engine) -> None:
        self.warn_shared_cases(engine)
        super().attach(engine)

    def warn_shared_cases(self, engine: Engine | None = None) -> None:
        """Warn about the validation cases that are also training cases (rank 0)."""
        shared = shared_cases(self.training, self.validation, self.image_key)
        if shared and is_main_process():
            log = getattr(engine, "logger", logger)
            log.warning(f"{len(shared)} of {len(self.validation)} validation cases are also training cases, so the "
                        f"validation metric is partly measured on training data: {', '.join(shared)}")
