"""NIH ChestX-ray14: the data-entry CSV, the official lists, image discovery, a patient-wise validation split and a
cached datalist (reading the images: :mod:`.xray`).

Public layout (``dataset_dir``)::

    Data_Entry_2017_v2020.csv   (or Data_Entry_2017.csv)   Image Index, Finding Labels, ..., Patient ID, ...
    train_val_list.txt          one image name per line (official patient-wise split)
    test_list.txt
    images/00000001_000.png ... (flat), or images_001/images/*.png ... images_012/images/*.png (the archives)

Labels are 14 floats in :data:`FINDINGS` order (1 = finding present); ``No Finding`` is all zeros. The validation
set is a patient-wise sample of ``train_val_list.txt``: every image of a patient goes to the same split, chosen by
``seed`` and ``val_fraction`` alone. :func:`prepare_datalist` builds the training/validation/test lists once and
caches them as JSON next to a fingerprint of its inputs (CSV, lists, image folders, split settings); a changed input
or ``rebuild=True`` rebuilds the cache (:func:`cached_datalist`).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ..utils.config import as_bool
from ..utils.dist import is_main_process
from .datalist_cache import cached_datalist, file_stamp
from .splits import split_validation

__all__ = [
    "FINDINGS",
    "NO_FINDING",
    "finding_names",
    "CSV_NAMES",
    "Entry",
    "find_data_entry_csv",
    "read_data_entry",
    "parse_finding_labels",
    "read_image_list",
    "find_images",
    "split_patients",
    "build_datalist",
    "prepare_datalist",
    "listed_images",
    "report_left_out",
]

logger = logging.getLogger(__name__)

#: The 14 findings, in the order of the ChestX-ray8/14 papers and most later work (the label vector's order).
FINDINGS = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
NO_FINDING = "No Finding"


def finding_names() -> list[str]:
    """The 14 findings as a list, for bundle configs:
    ``"class_names": {"_target_": "scripts.data.cxr14.finding_names"}`` keeps the list in one place."""
    return list(FINDINGS)


#: Data-entry file names, in order of preference (the 2020 revision first).
CSV_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
DATALIST_VERSION = 3

_IMAGE_COLUMN, _LABEL_COLUMN, _PATIENT_COLUMN = "Image Index", "Finding Labels", "Patient ID"
_FINDING_KEYS = {name.lower(): i for i, name in enumerate(FINDINGS)}
_NO_FINDING_KEY = "no_finding"


class Entry(NamedTuple):
    """One row of the data-entry CSV."""

    image: str
    patient: str
    labels: tuple[float, ...]


# ----------------------------------------------------------------------------------------------------------------
# CSV and list files
# ----------------------------------------------------------------------------------------------------------------


def find_data_entry_csv(dataset_dir: str) -> str:
    """Path of the data-entry CSV in ``dataset_dir`` (``Data_Entry_2017_v2020.csv`` preferred).

    Raises:
        FileNotFoundError: neither file exists.
    """
    for name in CSV_NAMES:
        path = os.path.join(dataset_dir, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"No {' or '.join(CSV_NAMES)} in {dataset_dir!r}: is this the ChestX-ray14 folder?")


def _finding_key(label: str) -> str:
    """The spelling findings are matched by: ``" Pleural Thickening"`` -> ``"pleural_thickening"``.

    Args:
        label: a finding's name as written in the CSV or in :data:`FINDINGS`.

    Returns:
        the name stripped, with underscores for spaces, in lower case.
    """
    return label.strip().replace(" ", "_").lower()


def parse_finding_labels(text: str) -> tuple[float, ...]:
    """``"Effusion|Mass"`` -> 14 floats in :data:`FINDINGS` order. ``"No Finding"`` -> all zeros.

    Spelling is matched case-insensitively, with a space accepted for the underscore (``Pleural Thickening``).

    Raises:
        ValueError: an empty field, an unknown finding, or ``No Finding`` together with a finding.
    """
    keys = [_finding_key(part) for part in text.split("|")]
    if any(not k for k in keys):
        raise ValueError(f"empty finding in {text!r}")
    labels = [0.0] * len(FINDINGS)
    if _NO_FINDING_KEY in keys:
        if len(keys) > 1:
            raise ValueError(f"'No Finding' combined with findings in {text!r}")
        return tuple(labels)
    for key, part in zip(keys, text.split("|")):
        index = _FINDING_KEYS.get(key)
        if index is None:
            expected = f"{', '.join(FINDINGS)} or '{NO_FINDING}'"
            raise ValueError(f"unknown finding {part.strip()!r} (expected one of {expected})")
        labels[index] = 1.0
    return tuple(labels)


def read_data_entry(path: str) -> list[Entry]:
    """Read ``Data_Entry_2017(_v2020).csv`` by column name with the ``csv`` module.

    The header's bracketed fields contain commas (``OriginalImage[Width,Height]``), so they count as two columns
    each; only ``Image Index``, ``Finding Labels`` and ``Patient ID`` are read. A trailing comma (an extra empty
    field on the header or the rows, as in some copies of the 2017 file) is accepted; blank lines are skipped.
    Patient IDs are normalised (``"00012"`` -> ``"12"``).

    Raises:
        ValueError: naming the file and the line, for a missing column, a short row, a row with extra non-empty
            fields, an empty image name or patient ID, a duplicate image, or an invalid ``Finding Labels``.
    """
    entries: list[Entry] = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        while header and not header[-1]:
            header.pop()  # trailing comma(s)
        columns = {}
        for name in (_IMAGE_COLUMN, _LABEL_COLUMN, _PATIENT_COLUMN):
            if name not in header:
                raise ValueError(f"{path}, line 1: no {name!r} column in the header {header}.")
            columns[name] = header.index(name)
        i_image, i_labels, i_patient = columns[_IMAGE_COLUMN], columns[_LABEL_COLUMN], columns[_PATIENT_COLUMN]
        needed = max(columns.values()) + 1
        width = len(header)
        label_cache: dict[str, tuple[float, ...]] = {}
        seen: dict[str, int] = {}
        row_end = reader.line_num
        for row in reader:
            line, row_end = row_end + 1, reader.line_num  # a quoted field may span lines: report where the row starts
            if any("\n" in field or "\r" in field for field in row):
                raise ValueError(
                    f"{path}, line {line}: a quoted field that starts on this line is not closed (it runs on to line "
                    f"{row_end}); check the quotes on line {line}."
                )
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) < needed:
                raise ValueError(
                    f"{path}, line {line}: {len(row)} fields, but the {_PATIENT_COLUMN!r}/{_LABEL_COLUMN!r} columns "
                    f"need at least {needed}: {row}"
                )
            if len(row) > width and "".join(row[width:]).strip():
                raise ValueError(f"{path}, line {line}: {len(row)} fields, the header has {width}: {row}")
            image = row[i_image].strip()
            patient = row[i_patient].strip()
            if not image:
                raise ValueError(f"{path}, line {line}: empty {_IMAGE_COLUMN!r}.")
            if not patient:
                raise ValueError(f"{path}, line {line}: empty {_PATIENT_COLUMN!r} for {image}.")
            if patient.isdigit():
                patient = str(int(patient))
            text = row[i_labels]
            labels = label_cache.get(text)
            if labels is None:
                try:
                    labels = label_cache[text] = parse_finding_labels(text)
                except ValueError as e:
                    raise ValueError(f"{path}, line {line}: {_LABEL_COLUMN!r} of {image}: {e}.") from None
            if image in seen:
                raise ValueError(f"{path}, line {line}: {image} already listed on line {seen[image]}.")
            seen[image] = line
            entries.append(Entry(image, patient, labels))
    return entries


def read_image_list(path: str) -> list[str]:
    """Image names of ``train_val_list.txt`` / ``test_list.txt``: one per line (first token), blank lines skipped,
    duplicates dropped, order kept."""
    names: dict[str, None] = {}
    with open(path, encoding="utf-8-sig") as f:
        for line in f:
            token = line.strip().split()
            if token:
                names.setdefault(token[0], None)
    return list(names)


# ----------------------------------------------------------------------------------------------------------------
# Image discovery, split and datalist
# ----------------------------------------------------------------------------------------------------------------


def _image_folders(dataset_dir: str) -> list[str]:
    """Folders (relative to ``dataset_dir``) that may hold the images: ``images/``, ``images_NNN/images/`` (the
    official archives) and ``images_NNN/`` (archives extracted flat), sorted."""
    folders = []
    if os.path.isdir(os.path.join(dataset_dir, "images")):
        folders.append("images")
    with os.scandir(dataset_dir) as it:
        archives = sorted(e.name for e in it if e.is_dir() and e.name.startswith("images_"))
    for name in archives:
        inner = os.path.join(name, "images")
        folders.append(inner if os.path.isdir(os.path.join(dataset_dir, inner)) else name)
    return folders


def find_images(dataset_dir: str) -> dict[str, str]:
    """Map every image file name to its path relative to ``dataset_dir``, searching :func:`_image_folders`.

    A name found in two folders keeps the first (``images/`` before the archives) and is logged.
    """
    found: dict[str, str] = {}
    duplicates = 0
    for folder in _image_folders(dataset_dir):
        with os.scandir(os.path.join(dataset_dir, folder)) as it:
            for e in it:
                if not e.is_file():
                    continue
                if e.name in found:
                    duplicates += 1
                    continue
                found[e.name] = f"{folder}/{e.name}"
    if duplicates:
        logger.warning(f"{duplicates} image names occur in more than one folder of {dataset_dir}; the first is used.")
    return found


def _patient_sort_key(patient: str) -> tuple[int, int | str]:
    """Sort key of a patient ID: numeric IDs first, by value (``"2"`` before ``"10"``), then the others by name.

    Args:
        patient: the CSV's ``Patient ID``.

    Returns:
        ``(0, number)`` for a numeric ID, ``(1, ID)`` otherwise.
    """
    return (0, int(patient)) if patient.isdigit() else (1, patient)


def split_patients(patients: Sequence[str], val_fraction: float, seed: int) -> set[str]:
    """The validation patients: :func:`split_validation` of the sorted distinct patients, so the split depends only
    on the patients, the fraction and the seed."""
    unique = sorted(set(patients), key=_patient_sort_key)
    return set(split_validation(unique, val_fraction, seed)[1])


def build_datalist(
    dataset_dir: str, val_fraction: float = 0.1, seed: int = 0, csv_file: str | None = None
) -> dict:
    """Training, validation and test lists of ``{"image": <path relative to dataset_dir>, "label": [14 floats]}``.

    Training and validation come from ``train_val_list.txt`` (validation patient-wise, see :func:`split_patients`),
    test from ``test_list.txt``. Listed images without a CSV row or without a file are left out and counted in
    ``stats``; a patient found in both official lists is removed from training and validation (test is kept as
    published) and counted too.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...], "class_names": [...], "stats": {...}}``.

    Raises:
        FileNotFoundError: the CSV or a list file is missing, or no listed image exists.
        ValueError: a malformed CSV (see :func:`read_data_entry`).
    """
    csv_path = csv_file or find_data_entry_csv(dataset_dir)
    entries = {e.image: e for e in read_data_entry(csv_path)}
    if not entries:
        raise ValueError(f"{csv_path} lists no images (it has a header but no rows).")
    lists = {}
    for key, name in (("train_val", TRAIN_VAL_LIST), ("test", TEST_LIST)):
        path = os.path.join(dataset_dir, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing (the official split of ChestX-ray14).")
        lists[key] = read_image_list(path)
    files = find_images(dataset_dir)
    stats = {"csv_rows": len(entries), "images_found": len(files), "not_in_csv": 0, "missing_files": 0, "lists": {}}

    def usable(key: str, names: list[str]) -> list[Entry]:
        out = []
        counts = stats["lists"][key] = {"listed": len(names), "not_in_csv": 0, "missing_files": 0}
        for name in names:
            problem = "not_in_csv" if name not in entries else "missing_files" if name not in files else None
            if problem is None:
                out.append(entries[name])
            else:
                counts[problem] += 1
                stats[problem] += 1
        return out

    train_val, test = usable("train_val", lists["train_val"]), usable("test", lists["test"])
    if not train_val and not test:
        raise FileNotFoundError(_nothing_usable(dataset_dir, csv_path, lists, files, stats))
    test_patients = {e.patient for e in test}
    overlap = {e.patient for e in train_val} & test_patients
    if overlap:
        logger.warning(
            f"{len(overlap)} patients are in both {TRAIN_VAL_LIST} and {TEST_LIST}; their {TRAIN_VAL_LIST} images "
            "are left out of training and validation."
        )
        train_val = [e for e in train_val if e.patient not in overlap]
    stats["patients_in_both_lists"] = len(overlap)
    val_patients = split_patients([e.patient for e in train_val], val_fraction, seed)

    def item(e: Entry) -> dict:
        return {"image": files[e.image], "label": list(e.labels)}

    data = {
        "training": [item(e) for e in train_val if e.patient not in val_patients],
        "validation": [item(e) for e in train_val if e.patient in val_patients],
        "test": [item(e) for e in test],
    }
    for split, items in data.items():
        stats[f"{split}_images"] = len(items)
        positives = np.sum([i["label"] for i in items], 0) if items else np.zeros(len(FINDINGS))
        stats[f"{split}_positives"] = dict(zip(FINDINGS, map(int, positives)))
    stats["training_patients"] = len({e.patient for e in train_val}) - len(val_patients)
    stats["validation_patients"] = len(val_patients)
    stats["test_patients"] = len(test_patients)
    return {**data, "class_names": list(FINDINGS), "stats": stats}


def _nothing_usable(dataset_dir: str, csv_path: str, lists: dict[str, list[str]], files: dict[str, str],
                    stats: dict) -> str:
    """The error of a data set none of whose listed images is usable, saying which lookup failed."""
    names = [n for key in ("train_val", "test") for n in lists[key]]
    if names and stats["not_in_csv"] == len(names):
        return (f"None of the {len(names)} names of {TRAIN_VAL_LIST} and {TEST_LIST} is an 'Image Index' of "
                f"{csv_path} (first: {names[0]!r}): the lists hold bare file names, e.g. '00000001_000.png'.")
    return (f"None of the listed images was found under {dataset_dir} (searched {_image_folders(dataset_dir)}; "
            f"{len(files)} files there, {stats['missing_files']} listed names without a file).")


def listed_images(datalist: dict, split: str) -> int | None:
    """How many images the official list of ``split`` names (``test``: ``test_list.txt``); None for a split no list
    gives alone (``training``, ``validation``) or a datalist without the counts (hand-made, or of an earlier
    version)."""
    if split != "test":
        return None
    return datalist.get("stats", {}).get("lists", {}).get("test", {}).get("listed")


def report_left_out(dataset_dir: str, stats: dict) -> None:
    """Warn, per official list, of the listed images left out (no file, or no row in the CSV): every run that
    uses the datalist says so, e.g. an evaluation on an incomplete test set. Rank 0 only."""
    if not is_main_process():
        return
    for key, name in (("train_val", TRAIN_VAL_LIST), ("test", TEST_LIST)):
        counts = stats.get("lists", {}).get(key)
        if counts and (counts["missing_files"] or counts["not_in_csv"]):
            used = counts["listed"] - counts["missing_files"] - counts["not_in_csv"]
            logger.warning(
                f"{dataset_dir}: {counts['missing_files']} of the {counts['listed']} images of {name} have no file "
                f"and {counts['not_in_csv']} no row in the CSV; they are left out ({used} used)."
            )


def _fingerprint(dataset_dir: str, csv_path: str, val_fraction: float, seed: int) -> dict:
    """What the datalist depends on: the CSV and list files, the image folders (their modification times change
    when files are added or removed), the split settings and the format version."""
    return {
        "version": DATALIST_VERSION,
        "csv": file_stamp(csv_path),
        "lists": [file_stamp(os.path.join(dataset_dir, n)) for n in (TRAIN_VAL_LIST, TEST_LIST)],
        "image_folders": [file_stamp(os.path.join(dataset_dir, f)) for f in _image_folders(dataset_dir)],
        "val_fraction": float(val_fraction),
        "seed": int(seed),
    }


def prepare_datalist(
    dataset_dir: str,
    datalist_file: str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    rebuild: bool = False,
    csv_file: str | None = None,
) -> dict:
    """The datalist of :func:`build_datalist`, with image paths joined to ``dataset_dir``, read from the cache file
    ``datalist_file`` when it is up to date, else built and written there (atomically, so concurrent ranks are safe).

    Args:
        dataset_dir: the ChestX-ray14 folder.
        datalist_file: cache file (JSON); None disables caching.
        val_fraction: fraction of the ``train_val_list.txt`` patients that form the validation set.
        seed: seed of the patient-wise split.
        rebuild: rebuild even if the cache is up to date.
        csv_file: the data-entry CSV; found in ``dataset_dir`` when None.

    Returns:
        ``{"training", "validation", "test": [{"image": abs path, "label": [14 floats]}], "class_names", "stats"}``.
    """
    csv_path = csv_file or find_data_entry_csv(dataset_dir)

    def build() -> dict:
        data = build_datalist(dataset_dir, val_fraction, seed, csv_path)
        logger.info(
            f"ChestX-ray14 datalist built from {dataset_dir}: {data['stats']['training_images']} training, "
            f"{data['stats']['validation_images']} validation, {data['stats']['test_images']} test images"
            + (f", cached in {datalist_file}" if datalist_file else "")
        )
        return data

    fingerprint = _fingerprint(dataset_dir, csv_path, val_fraction, seed)
    rebuild = as_bool(rebuild, "rebuild_datalist")  # the command line gives the string 'false'
    data = cached_datalist(datalist_file, fingerprint, build, rebuild=rebuild, indent=None)  # compact: 112k items
    report_left_out(dataset_dir, data.get("stats", {}))
    root = os.path.abspath(dataset_dir)
    out = {k: v for k, v in data.items() if k not in ("training", "validation", "test")}
    for split in ("training", "validation", "test"):
        out[split] = [{"image": os.path.join(root, i["image"]), "label": i["label"]} for i in data.get(split, [])]
    return out
