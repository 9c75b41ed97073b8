"""The one way the tools and tests run a bundle's configs: in this process, as ``python -m monai.bundle run`` would
(:func:`run_bundle`, the logs in a file; :func:`bundle_workflow`, initialised only), or in a process of its own as a
user runs it (:func:`bundle_command`, :func:`run_bundle_process`); with the bundle's ``scripts`` importable
(:func:`bundle_importable`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigWorkflow

__all__ = [
    "bundle_command",
    "bundle_importable",
    "bundle_workflow",
    "cli_args",
    "run_bundle",
    "run_bundle_process",
]


@contextlib.contextmanager
def bundle_importable(bundle_root: str | os.PathLike) -> Iterator[None]:
    """Put the bundle root first on ``sys.path`` (as the zoo's ``verify_bundle.py`` and MONAI Label do), and forget
    its ``scripts`` package afterwards, so that the next bundle imports its own."""

    def forget_scripts() -> None:
        for module in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
            del sys.modules[module]

    path_before = list(sys.path)
    forget_scripts()
    sys.path.insert(0, str(Path(bundle_root).resolve()))
    try:
        yield
    finally:
        sys.path[:] = path_before
        forget_scripts()


def cli_args(overrides: Mapping[str, Any]) -> list[str]:
    """``--key value`` pairs for ``python -m monai.bundle run``. Values are written as Python literals, which
    python-fire parses back (JSON's ``false`` inside a list or dict would reach the config as the string "false")."""
    return [arg for key, value in overrides.items() for arg in (f"--{key}", repr(value))]


def bundle_command(
    configs: Sequence[str | os.PathLike],
    overrides: Mapping[str, Any] | None = None,
    launcher: Sequence[str] = (sys.executable,),
    via: Sequence[str] = ("monai.bundle",),
) -> list[str]:
    """The command line ``python -m monai.bundle run --config_file ... --key value ...``.

    Args:
        configs: config files of one bundle, merged left to right.
        overrides: config overrides (see :func:`cli_args`).
        launcher: what starts Python, e.g. ``[sys.executable, "-m", "torch.distributed.run", ...]`` or a command
            before the interpreter.
        via: the module run with ``-m`` and its first arguments, in place of ``monai.bundle``.

    Returns:
        the command, as a list of arguments.
    """
    config = str(configs[0]) if len(configs) == 1 else str([str(c) for c in configs])
    return [*launcher, "-m", *via, "run", "--config_file", config, *cli_args(overrides or {})]


def run_bundle_process(
    configs: Sequence[str | os.PathLike], overrides: Mapping[str, Any], log_file: Path, cwd: Path | None = None
) -> None:
    """Run ``configs`` with ``overrides`` in a process of their own (:func:`bundle_command`), the output in
    ``log_file``.

    Raises:
        RuntimeError: the run failed; the message gives the command and the log file.
    """
    cmd = bundle_command(configs, overrides)
    with open(log_file, "w") as out:
        result = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed; see {log_file}")


def bundle_workflow(
    configs: Sequence[str | os.PathLike],
    bundle_root: str | os.PathLike,
    workflow_type: str | None = "train",
    logging_file: str | bool = False,
    **overrides: Any,
) -> ConfigWorkflow:
    """An initialised ``ConfigWorkflow`` of a bundle's configs (merged left to right) with the metadata of the first
    config's folder; call it inside :func:`bundle_importable` when the configs use ``scripts``.

    Args:
        configs: config files of one bundle.
        bundle_root: the run's ``bundle_root``.
        workflow_type: ``"train"``, ``"infer"`` or ``None`` (MONAI's ``ConfigWorkflow``).
        logging_file: a logging config file, or ``False`` to leave logging as it is.
        overrides: config overrides, as ``--key value`` on the command line.
    """
    folder = Path(configs[0]).parent
    workflow = ConfigWorkflow(
        config_file=[str(c) for c in configs], meta_file=str(folder / "metadata.json"), logging_file=logging_file,
        workflow_type=workflow_type, bundle_root=str(bundle_root), **overrides,
    )
    workflow.initialize()
    return workflow


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
    """Initialise and run the bundle configs ``configs`` (merged left to right) with ``overrides`` in this process,
    every log line in ``log_file`` (the console keeps only what ``progress`` prints).

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
            workflow = bundle_workflow(configs, bundle_root, "train", **overrides)
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
