"""Checks of a training run's validation data that would otherwise look like a training failure or a result too
good to be true: each logs a warning naming the cases.

- a validation case that is also a training case (the validation metric is then partly measured on training data);
- a validation case whose label is all background (its Dice is 0, or undefined, whatever the network learns).
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

__all__ = ["ValidationDataChecks", "case_files", "shared_cases"]

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


class ValidationDataChecks:
    """Attached to a training run's validation evaluator: warns, when attached, about validation cases that are also
    training cases, and, at the end of the first validation, about validation cases whose label is all background.

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
        self.training = list(training)
        self.validation = list(validation)
        self.image_key = image_key
        self.label_key = label_key
        self.source_key = source_key
        self.background_only: list[str] = []
        self._first_run_done = False

    def attach(self, engine: Engine) -> None:
        self.warn_shared_cases(engine)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.record_background_only)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.warn_background_only)

    def warn_shared_cases(self, engine: Engine | None = None) -> None:
        """Warn about the validation cases that are also training cases (rank 0)."""
        shared = shared_cases(self.training, self.validation, self.image_key)
        if shared and is_main_process():
            log = getattr(engine, "logger", logger)
            log.warning(f"{len(shared)} of {len(self.validation)} validation cases are also training cases, so the "
                        f"validation metric is partly measured on training data: {', '.join(shared)}")

    def record_background_only(self, engine: Engine) -> None:
        """Note the cases of the batch whose label holds no foreground (first validation only)."""
        if self._first_run_done:
            return
        batch = engine.state.batch
        items = batch if isinstance(batch, list) else [batch]  # MONAI decollates the batch after each iteration
        for item in items:
            label = item.get(self.label_key) if isinstance(item, Mapping) else None
            if not isinstance(label, torch.Tensor):
                continue
            if label.ndim > 4:  # a collated batch: (B, C, H, W, D)
                sources = batch_sources(item, self.source_key)
                self.background_only += [sources[i] if i < len(sources) else "(unknown file)"
                                         for i in range(label.shape[0]) if not bool((label[i] > 0).any())]
            elif not bool((label > 0).any()):
                self.background_only += batch_sources(item, self.source_key)[:1] or ["(unknown file)"]

    def warn_background_only(self, engine: Engine) -> None:
        """At the end of the first validation, warn about the cases whose label is all background (rank 0)."""
        if self._first_run_done:
            return
        self._first_run_done = True
        if self.background_only and is_main_process():
            engine.logger.warning(
                f"{len(self.background_only)} validation cases have a label that is all background: their Dice is 0 "
                "(or undefined) every epoch whatever the network learns, which lowers the validation metric and "
                f"can look like a failed training. Check the labels of these cases: {', '.join(self.background_only)}")
