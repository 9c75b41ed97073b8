"""The inputs of a run, checked before any work: lists that are not empty, files that exist and outputs that
overwrite neither each other nor an input; and an inference loader and postprocessing that process every good input
and report the bad ones.

Every inference writer (:class:`scripts.transforms.io.SaveImaged`) names its file with :func:`output_path`, and
:func:`check_outputs` applies the same rule to all the inputs of a run before the first is read.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ignite.engine import Engine, Events
from monai.data import DataLoader, list_data_collate, load_decathlon_datalist
from torch.utils.data import Dataset as TorchDataset

from ..utils.config import as_bool
from ..utils.errors import InputError, describe_source, exception_chain, root_cause
from ..utils.files import read_json

__all__ = [
    "as_list",
    "decathlon_datalist",
    "non_empty",
    "select_keys",
    "datalist_split",
    "pretraining_keys",
    "output_stem",
    "output_path",
    "check_outputs",
    "image_datalist",
    "SkipFailedInputs",
    "SkipFailedPostprocessing",
    "InputFailures",
]

logger = logging.getLogger(__name__)


def decathlon_datalist(
    datalist_file: str, key: str, base_dir: str | None = None, required: Sequence[str] = ("image",)
) -> list[dict]:
    """``monai.data.load_decathlon_datalist(datalist_file, True, key, base_dir)``, with errors that name the file,
    and the entry, at fault.

    Args:
        datalist_file: the datalist (JSON).
        key: the list to read, e.g. ``"training"``.
        base_dir: the folder the paths are relative to; default the datalist's folder.
        required: the keys every entry must have.

    Raises:
        InputError: the file is not valid JSON (naming the line and column), has no list ``key``, or an entry lacks
            one of ``required`` (naming the entry).
    """
    content = read_json(datalist_file)
    items = content.get(key) if isinstance(content, dict) else None
    if not isinstance(items, list):
        raise InputError(datalist_file, f"has no {key!r} list.")
    if key == "test" and items and not isinstance(items[0], dict):
        items = [{"image": item} for item in items]  # as MONAI reads it: a "test" list may hold bare image paths
    for index, item in enumerate(items):
        missing = [k for k in required if not isinstance(item, dict) or k not in item]
        if missing:
            raise InputError(datalist_file, f"entry {index} of {key!r} ({json.dumps(item)}) has no "
                                            f"{', '.join(repr(k) for k in missing)}.")
    return load_decathlon_datalist(datalist_file, True, key, base_dir=base_dir)


def non_empty(items: Sequence[Any], what: str) -> list[Any]:
    """``items`` as a list; an error saying what was looked for, and where, when there is none.

    Args:
        items: a datalist (or any list).
        what: what the list is and where it comes from, e.g. ``"validation cases of /data/BTCV/dataset_0.json"``.

    Raises:
        ValueError: ``items`` is empty.
    """
    items = list(items)
    if not items:
        raise ValueError(f"no {what}: nothing to do.")
    return items


def select_keys(items: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """The datalist ``items`` with only ``keys`` in each (e.g. the images of a labelled datalist, for pre-training).

    Raises:
        ValueError: an item lacks one of ``keys`` (e.g. label-guided crops on a datalist without labels).
    """
    selected = []
    for item in items:
        missing = [k for k in keys if k not in item]
        if missing:
            raise ValueError(f"the datalist entry {dict(item)} has no {', '.join(missing)}.")
        selected.append({k: item[k] for k in keys})
    return selected


def datalist_split(
    datalist: str | os.PathLike | Mapping[str, Any], split: str, keys: Sequence[str], base_dir: str | None = None
) -> list[dict[str, Any]]:
    """The items of one split of a decathlon-format datalist with only ``keys`` in each, or ``[]`` when it has no
    such split (e.g. held-out images for a check that is optional).

    Args:
        datalist: a datalist JSON file (paths relative to ``base_dir``, the file's folder when None) or its content
            with absolute paths, e.g. ``{"training": [...], "validation": [...]}``.
        split: e.g. ``"validation"``.
        keys: the keys to keep, see :func:`select_keys`.
        base_dir: folder of relative paths in a datalist file.
    """
    if isinstance(datalist, Mapping):
        return select_keys(datalist.get(split, []), keys)
    content = read_json(os.fspath(datalist))
    if not isinstance(content, dict) or split not in content:
        return []
    return select_keys(decathlon_datalist(os.fspath(datalist), split, base_dir, required=keys), keys)


def pretraining_keys(label_guided_crops: bool | str) -> list[str]:
    """The keys MAE pre-training reads: ``["image"]``, or ``["image", "label"]`` for label-guided crops
    (``--label_guided_crops true``; the command line's string ``"false"`` means False)."""
    return ["image", "label"] if as_bool(label_guided_crops, "label_guided_crops") else ["image"]


def output_stem(path: str) -> str:
    """The name an output is saved under: the file name without its extension (``.nii.gz`` counts as one); a folder
    (a DICOM series) keeps its whole name, dots included (e.g. a folder named by its SeriesInstanceUID)."""
    path = os.path.normpath(os.fspath(path))
    name = os.path.basename(path)
    if os.path.isdir(path):
        return name
    for ext in (".nii.gz", ".nii", ".mha", ".nrrd", ".png", ".jpg", ".jpeg", ".dcm"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return os.path.splitext(name)[0]


def output_path(
    source: str, output_dir: str, postfix: str, ext: str = ".nii.gz", name_of: Callable[[str], str] = output_stem
) -> str:
    """The file an inference writer writes for the input ``source``: ``<output_dir>/<name>_<postfix><ext>``.

    Args:
        source: the input file (the first file of a multi-file case).
        output_dir: the output folder.
        postfix: what the output is, e.g. ``"seg"``.
        ext: the output's extension.
        name_of: the output name of an input (:func:`output_stem`, or the case name of a BraTS 2021 case).
    """
    return os.path.join(os.fspath(output_dir), f"{name_of(os.fspath(source))}_{postfix}{ext}")


def _files_of(source: str | Sequence[str]) -> list[str]:
    return [os.fspath(source)] if isinstance(source, (str, os.PathLike)) else [os.fspath(s) for s in source]


def check_outputs(
    sources: Sequence[str | Sequence[str]],
    output_dir: str,
    postfixes: Sequence[str],
    ext: str = ".nii.gz",
    name_of: Callable[[str], str] = output_stem,
    protected: Sequence[str] = (),
) -> None:
    """Refuse, before any work, a run whose outputs would overwrite one of its inputs or each other.

    An input that is the output of another input (``ct_seg.nii.gz`` beside ``ct.nii.gz``, written by an earlier run
    into the input folder) is refused too: processing it would read an output as an input.

    Args:
        sources: the inputs, one entry per case (a file, or the files of a multi-file case).
        output_dir: the output folder.
        postfixes: the postfixes of the files written for each input.
        ext: the outputs' extension.
        name_of: the output name of an input (see :func:`output_path`).
        protected: other files that no output may overwrite, e.g. the reference labels beside the inputs.

    Raises:
        ValueError: naming the output and the input it would overwrite.
    """
    inputs = {os.path.realpath(f): f for source in sources for f in _files_of(source)}
    guarded = {os.path.realpath(f): f for f in protected}
    written: dict[str, str] = {}
    for source in sources:
        files = _files_of(source)
        for postfix in postfixes:
            out = output_path(files[0], output_dir, postfix, ext, name_of)
            key = os.path.realpath(out)
            if key in inputs:
                raise ValueError(
                    f"the output {out} of {describe_source(source)} would overwrite the input {inputs[key]}; write "
                    "the outputs to another --output_dir (if it is the output of an earlier run, move it out of the "
                    "input folder). Nothing was written."
                )
            if key in guarded:
                raise ValueError(f"the output {out} of {describe_source(source)} would overwrite {guarded[key]}, a "
                                 "file the run must not replace (e.g. the case's reference label); write the outputs "
                                 "to another --output_dir. Nothing was written.")
            if key in written:
                raise ValueError(f"{describe_source(source)} and {written[key]} would both be written to {out}; "
                                 "rename one of them. Nothing was written.")
            written[key] = describe_source(source)


def as_list(paths: str | os.PathLike | Sequence[Any]) -> list[Any]:
    """One path (a string is one file, not a sequence of characters) or a list of entries, as a list."""
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def image_datalist(
    input_files: str | Sequence[str],
    looked_for: str = "input_files",
    name_of: Callable[[str], str] = output_stem,
    output_dir: str | None = None,
    output_postfixes: Sequence[str] = (),
    output_ext: str = ".nii.gz",
) -> list[dict[str, str]]:
    """``[{"image": path}]`` for inference, refusing before any work what would fail later or lose outputs or inputs.

    Args:
        input_files: one path (a string is one file, not a sequence of characters) or a list of paths (a DICOM
            series is given as its folder).
        looked_for: where the files were looked for, for the message when there is none (e.g. the glob pattern).
        name_of: the output name of an input; two inputs with the same output name would overwrite each other.
        output_dir: where the outputs are written; with ``output_postfixes``, outputs that would overwrite an input
            are refused (:func:`check_outputs`).
        output_postfixes: the postfixes of the files the run writes for each input.
        output_ext: the outputs' extension.

    Raises:
        FileNotFoundError: no input, or inputs that do not exist.
        ValueError: two inputs would be written to the same output, or an output would overwrite an input.
    """
    files = [os.fspath(f) for f in as_list(input_files)]
    if not files:
        raise FileNotFoundError(f"no input images: nothing matches {looked_for}. Pass --input_files or --dataset_dir.")
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        raise FileNotFoundError(f"input images not found: {', '.join(missing[:10])}")
    by_name: dict[str, list[str]] = {}
    for f in files:
        by_name.setdefault(name_of(f), []).append(f)
    clashes = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    if clashes:
        shown = "; ".join(f"{name}: {', '.join(paths)}" for name, paths in list(clashes.items())[:5])
        raise ValueError(f"inputs with the same name would overwrite each other's output ({shown}); rename them or "
                         "run them separately.")
    if output_dir is not None:
        check_outputs(files, output_dir, output_postfixes, output_ext, name_of)
    return [{"image": f} for f in files]


class InputFailures(RuntimeError):
    """Some inputs of an inference run could not be processed; the others were."""


def failure_reason(error: BaseException) -> str:
    """What went wrong with one input, for the run's report: the problem an :class:`InputError` names, else the
    root cause's type and message."""
    cause = root_cause(error)
    return str(getattr(cause, "problem", None) or f"{type(cause).__name__}: {cause}")


class _Reporting(TorchDataset):
    """``dataset`` whose items that fail to load or transform become ``{"__failed__": [source, reason]}``."""

    def __init__(self, dataset: Sequence) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except Exception as e:  # any failure of one input is reported, the run goes on with the others
            items = getattr(self.dataset, "data", None)
            item = items[index] if items is not None else index
            source = describe_source(item.get("image", item) if isinstance(item, dict) else item)
            return {"__failed__": [source, failure_reason(e)]}


def _collate_reporting_failures(items: Sequence[Any]) -> tuple[Any, list[list[str]]]:
    """``(batch of the inputs that succeeded, or None; [source, reason] of each that failed)``."""
    failed = [item["__failed__"] for item in items if isinstance(item, dict) and "__failed__" in item]
    done = [item for item in items if not (isinstance(item, dict) and "__failed__" in item)]
    return (list_data_collate(done) if done else None), failed


class SkipFailedInputs:
    """An inference data loader that runs every input it can and reports, at the end, those it could not.

    Iterating it gives the batches of the inputs whose loading and preprocessing succeeded; an input that fails
    (unreadable file, wrong dimensions, NaN values, ...) is logged with its reason and skipped. Attached to the
    evaluator (put it in ``handlers`` too), it raises :class:`InputFailures` listing every failed input when the
    run ends, so that the process exits non-zero after the good inputs are done.

    Args:
        dataset: the inference dataset (``monai.data.Dataset`` of the datalist and the preprocessing).
        num_workers: data-loader workers.
        batch_size: inputs per batch (of the same shape, e.g. X-rays resized alike); a batch holds the inputs of its
            ``batch_size`` that succeeded.
    """

    def __init__(self, dataset: Sequence, num_workers: int = 0, batch_size: int = 1) -> None:
        self.dataset = dataset
        self.loader = DataLoader(_Reporting(dataset), batch_size=int(batch_size), shuffle=False,
                                 num_workers=num_workers, collate_fn=_collate_reporting_failures)
        self.failures: list[tuple[str, str]] = []

    def __iter__(self) -> Iterator[Any]:
        self.failures = []
        for batch, failures in self.loader:
            for source, reason in failures:
                self.record_failure(source, reason)
            if batch is not None:
                yield batch

    def record_failure(self, source: object, reason: str) -> None:
        """Log an input that failed, and list it in the report at the end of the run."""
        self.failures.append((str(source), str(reason)))
        logger.error(f"skipped {source}: {reason}")

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self.report)

    def report(self, engine: Engine | None = None) -> None:
        if self.failures:
            done = len(self.dataset) - len(self.failures)
            lines = "\n".join(f"  {source}: {reason}" for source, reason in self.failures)
            raise InputFailures(f"{len(self.failures)} of {len(self.dataset)} inputs failed ({done} done):\n{lines}")


class SkipFailedPostprocessing:
    """The postprocessing of an inference run that, for an input it fails on, reports the input and goes on.

    An input can fail after the network has run: its label map cannot be put back in its original grid, or its
    DICOM SEG cannot be made (e.g. a series without the ``FrameOfReferenceUID`` a SEG must reference). The failure is
    logged and listed by ``inputs``, which raises :class:`InputFailures` when the run ends, and the other inputs are
    written; the failed input's data goes on as it came. A write that fails (full disk, read-only folder: an
    ``OSError``) stops the run as before, naming the input and the output: it would fail for every input.

    In a config it has its own id and the evaluator takes it as an expression, ``"postprocessing":
    "$@postprocessing_skipping_failures"``: MONAI's bundle property check accepts an expression there, or
    ``@postprocessing`` itself, which MONAI Label reads as the inference's post transforms.

    Args:
        transform: the postprocessing of one input (e.g. a ``Compose``).
        inputs: the run's :class:`SkipFailedInputs`, which reports every failed input when the run ends.
        source_key: the key whose metadata names the input (``filename_or_obj``).
    """

    def __init__(self, transform: Callable[[Any], Any], inputs: SkipFailedInputs, source_key: str = "image") -> None:
        self.transform = transform
        self.inputs = inputs
        self.source_key = source_key

    def __call__(self, data: Mapping[str, Any]) -> Any:
        try:
            return self.transform(data)
        except Exception as e:  # one input's failure is reported, the run goes on with the others
            if any(isinstance(error, OSError) for error in exception_chain(e)):
                raise
            logger.debug("postprocessing failed", exc_info=True)
            self.inputs.record_failure(self.source_of(data), failure_reason(e))
            return data

    def source_of(self, data: Mapping[str, Any]) -> str:
        """The file (or files) the input was read from, as its metadata names it."""
        meta = getattr(data.get(self.source_key), "meta", {})
        return describe_source(meta.get("filename_or_obj", "an input"))
