"""Brain tumour data in the BraTS 2021 and the MSD Task01 layouts: datalists, label -> region channels and back.

Both public layouts hold the same four MRI contrasts and the same three tumour sub-regions, but with different files
and different label values:

============  ==============================================  ==============================================
              BraTS 2021 (``"brats2021"``)                     MSD Task01_BrainTumour (``"msd"``)
============  ==============================================  ==============================================
files         ``BraTS2021_NNNNN/BraTS2021_NNNNN_<c>.nii.gz``,  ``dataset.json``, ``imagesTr/BRATS_NNN.nii.gz``
              one 3-D file per contrast ``c`` in flair, t1,    (4-D, channel last: FLAIR, T1w, t1gd, T2w),
              t1ce, t2, and ``..._seg.nii.gz``                 ``labelsTr/BRATS_NNN.nii.gz``, ``imagesTs/``
labels        1 necrotic tumour core, 2 oedema, 4 enhancing    1 oedema, 2 non-enhancing tumour, 3 enhancing
TC            1 | 4                                            2 | 3
WT            1 | 2 | 4                                        1 | 2 | 3
ET            4                                                3
============  ==============================================  ==============================================

The MSD mapping follows the data set's own ``dataset.json``. The MONAI ``brats_segmentation_3d`` tutorial and the
SelfMedMAE code it was copied into take MSD label 2 as the enhancing tumour (ET = 2); that is wrong
(Project-MONAI/tutorials#1355), and MONAI's ``ConvertToMultiChannelBasedOnBratsClasses`` (ET = 4) gives an empty ET
on MSD labels. Here a label whose values do not fit the declared layout raises instead of giving empty regions.

Channel order of the images is FLAIR, T1, T1ce (T1Gd), T2 for both layouts; the region channels are TC, WT, ET.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..utils.errors import InputError
from ..utils.files import read_json
from .datalist_cache import FINGERPRINT_KEY, cached_datalist, file_stamp
from .inputs import as_list, check_outputs
from .splits import split_validation

__all__ = [
    "REGION_NAMES",
    "MODALITY_NAMES",
    "BratsLayout",
    "LAYOUTS",
    "get_layout",
    "in_contrast_order",
    "brats2021_cases",
    "msd_cases",
    "brats_datalist",
    "brats_inference_datalist",
    "case_name",
]

logger = logging.getLogger(__name__)

REGION_NAMES = ("TC", "WT", "ET")
"""Names of the three region channels, in channel order: tumour core, whole tumour, enhancing tumour."""

MODALITY_NAMES = ("FLAIR", "T1", "T1ce", "T2")
"""Names of the four image channels, in channel order (MSD: FLAIR, T1w, t1gd, T2w)."""

BRATS2021_SUFFIXES = ("flair", "t1", "t1ce", "t2")
"""BraTS 2021 file suffixes of the image channels, in channel order."""

DATALIST_VERSION = 2
"""Format version of the cached datalist (part of its fingerprint)."""


@dataclass(frozen=True)
class BratsLayout:
    """Label convention of a brain tumour data set layout.

    Attributes:
        name: layout name (``"brats2021"`` or ``"msd"``).
        labels: label value -> sub-region name, background excluded.
        regions: for each of TC, WT, ET, the label values it is the union of.
        enhancing: label written for the enhancing tumour.
        core: label written for the tumour core that is not enhancing (necrotic / non-enhancing tumour).
        oedema: label written for the whole tumour outside the core (peritumoral oedema).
    """

    name: str
    labels: Mapping[int, str]
    regions: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    enhancing: int
    core: int
    oedema: int

    @property
    def values(self) -> tuple[int, ...]:
        """Every label value allowed in a label map of this layout, background (0) included."""
        return (0, *sorted(self.labels))


LAYOUTS: dict[str, BratsLayout] = {
    "brats2021": BratsLayout(
        name="brats2021",
        labels={1: "necrotic tumour core", 2: "peritumoral oedema", 4: "enhancing tumour"},
        regions=((1, 4), (1, 2, 4), (4,)),
        enhancing=4,
        core=1,
        oedema=2,
    ),
    "msd": BratsLayout(
        name="msd",
        labels={1: "edema", 2: "non-enhancing tumor", 3: "enhancing tumour"},
        regions=((2, 3), (1, 2, 3), (3,)),
        enhancing=3,
        core=2,
        oedema=1,
    ),
}
"""The supported layouts by name."""


def get_layout(layout: str | BratsLayout) -> BratsLayout:
    """The :class:`BratsLayout` called ``layout``; raises ``ValueError`` naming the supported ones otherwise."""
    if isinstance(layout, BratsLayout):
        return layout
    if layout not in LAYOUTS:
        raise ValueError(f"dataset_layout must be one of {sorted(LAYOUTS)}, got {layout!r}.")
    return LAYOUTS[layout]


# ----------------------------------------------------------------------------------------------------------------
# finding cases and building datalists
# ----------------------------------------------------------------------------------------------------------------


def _nifti(folder: str, stem: str) -> str | None:
    """``folder/stem.nii.gz`` or ``folder/stem.nii``, whichever exists."""
    for ext in (".nii.gz", ".nii"):
        path = os.path.join(folder, stem + ext)
        if os.path.isfile(path):
            return path
    return None


def brats2021_cases(dataset_dir: str, labelled: bool = True) -> list[dict]:
    """The cases of a BraTS 2021 folder (the content of ``TrainingData`` or ``ValidationData``).

    A case is a sub-folder ``<name>`` holding ``<name>_{flair,t1,t1ce,t2}.nii.gz`` (and ``<name>_seg.nii.gz``). A
    sub-folder that holds any of the four contrasts is a case, and one that lacks any of its files is an error:
    whichever contrast is missing, the case is never silently left out.

    Args:
        dataset_dir: folder holding the case folders.
        labelled: require (and return) the ``_seg`` label of each case.

    Returns:
        ``[{"image": [flair, t1, t1ce, t2], "label": seg}, ...]`` (no ``label`` when ``labelled`` is False) with
        absolute paths, sorted by case name.

    Raises:
        FileNotFoundError: no case folder found (the message says when the folder looks like MSD), or a case folder
            lacks files (the message lists them).
    """
    root = os.path.abspath(dataset_dir)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"dataset_dir {root!r} does not exist.")
    cases, incomplete = [], []
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        contrasts = [f"{name}_{s}" for s in BRATS2021_SUFFIXES]
        # a case folder is one that holds any of its contrasts: the same rule for every contrast (a case without
        # its FLAIR is as incomplete as one without its T2, and is not silently left out)
        if not os.path.isdir(folder) or all(_nifti(folder, stem) is None for stem in contrasts):
            continue
        stems = contrasts + ([f"{name}_seg"] if labelled else [])
        paths = [_nifti(folder, stem) for stem in stems]
        missing = [os.path.join(folder, f"{stem}.nii.gz") for stem, path in zip(stems, paths) if path is None]
        if missing:
            incomplete.append(f"{name}: missing {', '.join(missing)}")
            continue
        case = {"image": paths[:4]}
        if labelled:
            case["label"] = paths[4]
        cases.append(case)
    if incomplete:
        raise FileNotFoundError(f"incomplete BraTS 2021 cases in {root}:\n  " + "\n  ".join(incomplete))
    if not cases:
        hint = (
            " It holds a dataset.json: is it an MSD Task01 folder (dataset_layout 'msd')?"
            if os.path.isfile(os.path.join(root, "dataset.json"))
            else ""
        )
        raise FileNotFoundError(
            f"no BraTS 2021 case folders (<name>/<name>_flair.nii.gz ...) in {root}.{hint}"
        )
    return cases


def msd_cases(dataset_dir: str, section: str = "training") -> list[dict]:
    """The cases of an MSD Task01_BrainTumour folder, read from its ``dataset.json``.

    Args:
        dataset_dir: the ``Task01_BrainTumour`` folder.
        section: ``"training"`` (labelled) or ``"test"`` (image paths only). When ``dataset.json`` has no test list,
            the files in ``imagesTs`` are used.

    Returns:
        ``[{"image": path, "label": path}, ...]`` (``"image"`` only for ``"test"``) with absolute paths, sorted by
        image path.

    Raises:
        FileNotFoundError: no ``dataset.json`` (the message says when the folder looks like BraTS 2021), or it lists
            files that do not exist.
    """
    root = os.path.abspath(dataset_dir)
    json_file = os.path.join(root, "dataset.json")
    if not os.path.isfile(json_file):
        looks_brats = os.path.isdir(root) and any(
            os.path.isdir(os.path.join(root, n)) and _nifti(os.path.join(root, n), f"{n}_flair")
            for n in os.listdir(root)
        )
        hint = " It holds BraTS 2021 case folders: use dataset_layout 'brats2021'." if looks_brats else ""
        raise FileNotFoundError(f"no MSD dataset.json in {root}.{hint}")
    content = read_json(json_file)
    if not isinstance(content, dict):
        raise InputError(json_file, f"an MSD dataset.json is a JSON object, not a {type(content).__name__}.")
    entries = content.get(section)
    if section == "test" and not entries:
        folder = os.path.join(root, "imagesTs")
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        entries = [os.path.join("imagesTs", f) for f in names if f.endswith((".nii", ".nii.gz"))]
    if not entries:
        raise FileNotFoundError(f"{json_file} lists no {section!r} cases.")
    cases = []
    for entry in entries:
        entry = {"image": entry} if isinstance(entry, str) else dict(entry)
        case = {k: os.path.normpath(os.path.join(root, entry[k])) for k in ("image", "label") if k in entry}
        if section != "training":
            case.pop("label", None)
        elif "label" not in case:
            raise ValueError(f"{json_file}: training entry {entry} has no label.")
        missing = [p for p in case.values() if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"{json_file} lists files that do not exist: {missing[:5]}")
        cases.append(case)
    return sorted(cases, key=lambda c: c["image"])


def _relative(case: dict, root: str) -> dict:
    """A datalist item with its paths made relative to ``root``, for the cached datalist.

    Args:
        case: ``{"image": path or list of paths, "label": path}`` with absolute paths.
        root: the data set folder.

    Returns:
        the item with every value's paths relative to ``root``.
    """

    def rel(p: str | list[str]) -> str | list[str]:
        """One path, or each path of a list, relative to ``root``."""
        return [os.path.relpath(x, root) for x in p] if isinstance(p, list) else os.path.relpath(p, root)

    return {k: rel(v) for k, v in case.items()}


def _absolute(case: dict, root: str) -> dict:
    """A datalist item with its ``image`` and ``label`` paths read from ``root``; other keys are kept as they are.

    Args:
        case: an item of a datalist file, paths relative to ``root`` (absolute paths stay as they are).
        root: the data set folder.

    Returns:
        the item with absolute, normalised ``image`` and ``label`` paths.
    """

    def ab(p: str | list[str]) -> str | list[str]:
        """One path, or each path of a list, joined to ``root`` and normalised."""
        return [os.path.normpath(os.path.join(root, x)) for x in p] if isinstance(p, list) else os.path.normpath(
            os.path.join(root, p)
        )

    return {k: (ab(v) if k in ("image", "label") else v) for k, v in case.items()}


def _fingerprint(root: str, layout: BratsLayout, val_fraction: float, seed: int) -> dict:
    """What the datalist depends on: the layout, the split settings and the listing of ``root`` (MSD: its
    ``dataset.json``)."""
    dataset_json = os.path.join(root, "dataset.json")
    listing = dataset_json if layout.name == "msd" and os.path.isfile(dataset_json) else root
    return {
        "version": DATALIST_VERSION,
        "dataset_layout": layout.name,
        "val_fraction": val_fraction,
        "seed": seed,
        "listing": file_stamp(listing),
    }


def brats_datalist(
    dataset_dir: str,
    layout: str,
    datalist_file: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 12345,
    val_fold: int = 0,
) -> dict[str, list[dict]]:
    """The training/validation datalist of a labelled BraTS 2021 or MSD Task01 folder, cached as JSON.

    BraTS 2021 ships no datalist and MSD only an unsplit ``training`` list (no validation list), so both are split
    here the same way (:func:`split_validation`, deterministic in ``seed`` and ``val_fraction``). The result is
    cached in ``datalist_file`` in the decathlon format (``{"training": [...], "validation": [...]}``, paths
    relative to ``dataset_dir``, so ``monai.data.load_decathlon_datalist(datalist_file, True, "training",
    base_dir=dataset_dir)`` reads it too) and rebuilt when the layout, the split settings or the case listing
    change. A datalist file written by hand (without a fingerprint) is used as it is (see :func:`cached_datalist`),
    except that:

    - without a (non-empty) ``validation`` list, its training items must each carry a ``fold`` (as in the public
      ``brats21_folds.json``): those of fold ``val_fold`` are the validation cases, the others the training cases
      (:func:`_split_hand_made`); without folds either it is refused, as pre-training would see every case;
    - its first listed image must exist under ``dataset_dir``, which its relative paths are read from;
    - the contrast files of its BraTS 2021 cases are put in the order FLAIR, T1, T1ce, T2 (:func:`in_contrast_order`).

    Args:
        dataset_dir: BraTS 2021: the folder of case folders (``TrainingData``); MSD: ``Task01_BrainTumour``. A
            hand-made datalist's relative paths are read from it (``brats21_folds.json``: the folder above
            ``TrainingData``).
        layout: ``"brats2021"`` or ``"msd"``.
        datalist_file: where to cache the datalist; not written when None or empty.
        val_fraction: fraction of the labelled cases held out for validation.
        seed: seed of the split.
        val_fold: the fold held out for validation when a hand-made datalist has folds but no validation list (as
            MONAI's BraTS 2021 tutorial holds out one fold of ``brats21_folds.json``).

    Returns:
        ``{"training": [...], "validation": [...]}``, each item ``{"image": ..., "label": ...}`` with absolute paths;
        ``image`` is a list of four files (FLAIR, T1, T1ce, T2) for BraTS 2021 and one 4-D file for MSD.

    Raises:
        InputError: a hand-made datalist with neither a validation list nor a fold in every training item, with no
            item of fold ``val_fold``, or whose first listed image does not exist (naming the file).
    """
    lay = get_layout(layout)
    root = os.path.abspath(dataset_dir)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"dataset_dir {root!r} does not exist.")

    def build() -> dict:
        cases = brats2021_cases(root, labelled=True) if lay.name == "brats2021" else msd_cases(root, "training")
        training, validation = split_validation(cases, val_fraction, seed)
        logger.info(f"{lay.name} datalist of {root}: {len(training)} training, {len(validation)} validation cases")
        return {
            "image_channels": list(MODALITY_NAMES),
            "labels": {str(k): v for k, v in lay.labels.items()},
            "regions": {name: list(members) for name, members in zip(REGION_NAMES, lay.regions)},
            "training": [_relative(c, root) for c in training],
            "validation": [_relative(c, root) for c in validation],
        }

    data = cached_datalist(datalist_file or None, _fingerprint(root, lay, val_fraction, seed), build)
    hand_made = FINGERPRINT_KEY not in data
    if hand_made:
        data = _split_hand_made(data, datalist_file, val_fold)
    cases = {s: [_absolute(c, root) for c in data.get(s, [])] for s in ("training", "validation")}
    if hand_made:
        _check_first_image(cases, datalist_file, root)
    if lay.name == "brats2021":  # a datalist written by hand may list the contrasts in another order
        for split, items in cases.items():
            for index, case in enumerate(items):
                case["image"] = _contrasts_of_listed_case(case, f"{datalist_file or root} ({split} item {index})")
    return cases


def _split_hand_made(data: dict, datalist_file: str, val_fold: int) -> dict:
    """The training and validation lists of a hand-made datalist: its own when it has a non-empty validation list,
    else its training items split by their ``fold``: fold ``val_fold`` for validation, the others for training.

    Args:
        data: the datalist file's content.
        datalist_file: the file, for the messages.
        val_fold: the fold held out for validation.

    Returns:
        ``{"training": [...], "validation": [...]}``, the items as listed.

    Raises:
        InputError: no validation list and a training item without a ``fold`` (or no training item), or no item of
            fold ``val_fold``.
    """
    training, validation = data.get("training") or [], data.get("validation") or []
    if validation:
        return {"training": training, "validation": validation}
    unfolded = next((i for i, item in enumerate(training) if not isinstance(item, dict) or "fold" not in item), None)
    if not training or unfolded is not None:
        which = "no training items" if not training else f"training item {unfolded} has no 'fold'"
        raise InputError(datalist_file, f"a hand-made datalist (no {FINGERPRINT_KEY!r} record) without a 'validation' "
                                        f"list needs a 'fold' in every training item, but {which}: pre-training would "
                                        "see every case. Add a 'validation' list or the folds, or delete the file to "
                                        "have the split made from dataset_dir.")
    # folds compared as text: a datalist may write them as numbers or as strings ("fold": "1")
    held_out = [item for item in training if str(item["fold"]) == str(val_fold)]
    if not held_out:
        folds = sorted({str(item["fold"]) for item in training}, key=lambda f: (len(f), f))
        raise InputError(datalist_file, f"no training item of fold {val_fold!r} (val_fold) to validate on; its folds "
                                        f"are {', '.join(folds)}.")
    kept = [item for item in training if str(item["fold"]) != str(val_fold)]
    logger.info(f"{datalist_file} has no validation list: fold {val_fold} ({len(held_out)} cases) is the validation, "
                f"the other folds ({len(kept)} cases) the training")
    return {"training": kept, "validation": held_out}


def _check_first_image(cases: Mapping[str, list[dict]], datalist_file: str, root: str) -> None:
    """Refuse a hand-made datalist whose first listed image (absolute, in ``cases``) does not exist: its relative
    paths were most likely written for another ``dataset_dir`` (``root``).

    Raises:
        InputError: naming the datalist file, the missing path and where relative paths are read from.
    """
    first = next((case.get("image") for split in ("training", "validation") for case in cases[split]), None)
    path = first[0] if isinstance(first, list) and first else first
    if isinstance(path, str) and not os.path.exists(path):
        raise InputError(datalist_file, f"its first image {path} does not exist: relative paths are read from "
                                        f"dataset_dir ({root}); for brats21_folds.json that is the folder above "
                                        "TrainingData.")


def _contrasts_of_listed_case(case: dict, where: str) -> list[str]:
    """The ``image`` of a datalist's BraTS 2021 case in the network's contrast order (:func:`in_contrast_order`);
    one 4-D file is taken as it is. An error naming ``where`` when a list is not four contrast files."""
    image = case.get("image")
    if not isinstance(image, list):
        return image
    try:
        return in_contrast_order(image)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def brats_inference_datalist(
    dataset_dir: str,
    layout: str,
    output_dir: str | None = None,
    output_postfix: str = "seg",
    input_files: str | Sequence[str | Sequence[str]] | None = None,
) -> list[dict]:
    """The cases to segment, labels not needed: ``input_files`` when given, else those found in ``dataset_dir``.

    - ``"brats2021"``: every case folder with the four contrast files (``image`` is the list FLAIR, T1, T1ce, T2);
    - ``"msd"``: the ``test`` list of ``dataset.json`` (or the files of ``imagesTs``) (``image`` is one 4-D file).

    Args:
        dataset_dir: the data set folder (not read when ``input_files`` is given).
        layout: ``"brats2021"`` or ``"msd"``.
        output_dir: where the segmentations are written; outputs that would overwrite an input, or a BraTS 2021
            case's reference label (``<case>_seg.nii.gz``, the name of the default output), are refused
            (:func:`check_outputs`).
        output_postfix: the segmentations' postfix.
        input_files: chosen cases instead of a folder: one 4-D file, or a list whose entries are 4-D files (MSD) or
            lists of the four contrast files of a case (BraTS 2021).

    Returns:
        ``[{"image": ...}, ...]`` with absolute paths.

    Raises:
        FileNotFoundError: a given file does not exist.
        ValueError: two cases would be written to the same output, or an output would overwrite an input or a
            reference label.
    """
    lay = get_layout(layout)
    if input_files:
        cases = [{"image": _given_case(entry, lay)} for entry in as_list(input_files)]
    elif lay.name == "brats2021":
        cases = brats2021_cases(dataset_dir, labelled=False)
    else:
        cases = msd_cases(dataset_dir, "test")
    names: dict[str, list[str]] = {}
    for case in cases:
        first = case["image"][0] if isinstance(case["image"], list) else case["image"]
        names.setdefault(case_name(first), []).append(first)
    clashes = {n: files for n, files in names.items() if len(files) > 1}
    if clashes:
        raise ValueError(f"cases with the same name would overwrite each other's output: {clashes}")
    if output_dir is not None:
        # a BraTS 2021 case folder also holds the case's reference label, under the default output's name
        labels: list[str | None] = []
        if lay.name == "brats2021":
            labels = [_nifti(os.path.dirname(files[0]), f"{name}_seg") for name, files in names.items()]
        check_outputs([case["image"] for case in cases], output_dir, [output_postfix], name_of=case_name,
                      protected=[label for label in labels if label is not None])
    return cases


def _given_case(entry: str | Sequence[str], layout: BratsLayout) -> str | list[str]:
    """One case of ``input_files`` with absolute paths: MSD, one 4-D file; BraTS 2021, a case's folder or its four
    contrast files, put in the order FLAIR, T1, T1ce, T2 by their names' suffixes (``_flair``, ...) when they have
    them, else taken in the order given."""
    if layout.name == "msd":
        if not isinstance(entry, (str, os.PathLike)):
            raise ValueError(f"an MSD case is one 4-D file, got the list {list(entry)}.")
        return _existing([entry])[0]
    if isinstance(entry, (str, os.PathLike)):
        if not os.path.isdir(entry):
            raise ValueError(f"a BraTS 2021 case is its folder or the list of its four contrast files, got the file "
                             f"{os.fspath(entry)}.")
        name = os.path.basename(os.path.normpath(entry))
        stems = [f"{name}_{suffix}" for suffix in BRATS2021_SUFFIXES]
        return _existing([_nifti(entry, stem) or os.path.join(entry, f"{stem}.nii.gz") for stem in stems])
    return in_contrast_order(_existing(entry))


def in_contrast_order(files: Sequence[str]) -> list[str]:
    """The four contrast files of a BraTS 2021 case in the order FLAIR, T1, T1ce, T2, by their names' suffixes
    (``_flair``, ...) when they have them (the public ``brats21_folds.json``, for one, lists FLAIR, T1ce, T1, T2),
    else in the order given.

    Raises:
        ValueError: not four files, or suffixes that are not one of each.
    """
    files = list(files)
    suffixes = [_contrast_suffix(f) for f in files]
    if len(files) == len(BRATS2021_SUFFIXES) and sorted(s for s in suffixes if s) == sorted(BRATS2021_SUFFIXES):
        return [files[suffixes.index(suffix)] for suffix in BRATS2021_SUFFIXES]
    if len(files) != len(BRATS2021_SUFFIXES) or any(suffixes):
        raise ValueError(f"a BraTS 2021 case is its four contrast files, one of each ({', '.join(BRATS2021_SUFFIXES)}"
                         f"), got {files}.")
    return files


def _existing(files: Sequence[str]) -> list[str]:
    """``files`` as absolute paths, when every one is a file."""
    missing = [os.fspath(f) for f in files if not os.path.isfile(f)]
    if missing:
        raise FileNotFoundError(f"input files not found: {', '.join(missing[:10])}")
    return [os.path.abspath(f) for f in files]


def _contrast_suffix(path: str) -> str | None:
    """``"t1ce"`` for ``.../BraTS2021_00000_t1ce.nii.gz``; None for a name without a contrast's suffix."""
    stem = _nifti_stem(path)
    return next((suffix for suffix in BRATS2021_SUFFIXES if stem.endswith(f"_{suffix}")), None)


def _nifti_stem(path: str) -> str:
    """The file name without its ``.nii.gz`` or ``.nii`` extension."""
    name = os.path.basename(path)
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def case_name(path: str) -> str:
    """The case a BraTS file belongs to: ``.../BraTS2021_00000_flair.nii.gz`` -> ``BraTS2021_00000``; MSD names
    (``BRATS_485.nii.gz`` -> ``BRATS_485``) only lose their extension."""
    name, suffix = _nifti_stem(path), _contrast_suffix(path)
    return name[: -len(suffix) - 1] if suffix else name
