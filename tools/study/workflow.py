"""Run a bundle's configs in this process, as ``python -m monai.bundle run`` would, with the logs in a file; and the
command-line form of config overrides for runs in a process of their own."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigWorkflow

from tools.check_bundles import bundle_importable

__all__ = ["run_bundle", "cli_args"]


def cli_args(overrides: Mapping[str, Any]) -> list[str]:
    """``--key value`` pairs for ``python -m monai.bundle run``. Values are written as Python literals, which
    python-fire parses back (JSON's ``false`` inside a list or dict would reach the config as the string "false")."""
    return [arg for key, value in overrides.items() for arg in (f"--{key}", repr(value))]


def _file_handler(log_file: Path) -> logging.Handler:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
    return handler


def _route_logging(handler: logging.Handler) -> dict[logging.Logger, tuple[list[logging.Handler], int]]:
    """Send every logger that prints (MONAI and ignite give theirs stdout handlers) to ``handler`` instead, so that
    the console shows the study's progress lines only. Returns what to restore (see :func:`_restore_logging`)."""
    loggers = [logging.getLogger()] + [
        logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    previous = {}
    for logger in loggers:
        if logger.handlers or logger is logging.getLogger():
            previous[logger] = (logger.handlers, logger.level)
            logger.handlers = [handler]
    logging.getLogger().setLevel(logging.INFO)
    return previous


def _restore_logging(previous: dict[logging.Logger, tuple[list[logging.Handler], int]]) -> None:
    for logger, (handlers, level) in previous.items():
        logger.handlers, logger.level = handlers, level


def run_bundle(
    configs: Sequence[Path],
    bundle_root: Path,
    log_file: Path,
    overrides: dict[str, Any],
    progress: Any = None,
    trainer_id: str = "train#trainer",
) -> ConfigWorkflow:
    """Initialise and run the bundle configs ``configs`` (merged left to right) with ``overrides``.

    Args:
        configs: config files of one bundle (its ``configs/`` folder holds the metadata).
        bundle_root: the run's ``bundle_root`` (where ``models/``, ``runs/`` and ``eval/`` go).
        log_file: where the run's log lines go.
        overrides: config overrides, as ``--key value`` on the command line; a copy is applied, so that a nested value
            (e.g. a whole ``network_def``) is never changed by a later ``network_def#...`` override.
        progress: an ignite handler with ``attach(engine)``, attached to the trainer ``trainer_id`` before the run.
        trainer_id: config id of the trainer.

    Returns:
        the finished workflow (its parser gives access to the trained objects).
    """
    configs = [Path(c) for c in configs]
    overrides = copy.deepcopy(overrides)
    handler = _file_handler(log_file)
    with bundle_importable(configs[0].parents[1]):
        previous = _route_logging(handler)
        try:
            workflow = ConfigWorkflow(
                config_file=[str(c) for c in configs], meta_file=str(configs[0].parent / "metadata.json"),
                logging_file=False, workflow_type="train", bundle_root=str(bundle_root), **overrides,
            )
            workflow.initialize()
            if progress is not None:
                progress.attach(workflow.parser.get_parsed_content(trainer_id))
            # building the engines created their loggers: route them too
            previous = {**_route_logging(handler), **previous}
            workflow.run()
            workflow.finalize()
        finally:
            _restore_logging(previous)
            handler.close()
    return workflow
