"""The `unetr_brats_seg` bundle, `shared/data/brats.py` and `shared/transforms/brats.py`: label conventions of both
public layouts (pinned), datalists, and every config (pretrain -> train -> evaluate -> inference) run in-process on
synthetic data of both layouts with tiny networks."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import LoadImage, ResampleToMatch

from shared.data.brats import (
    brats_datalist,
    brats_inference_datalist,
    case_name,
)
from shared.data.splits import split_validation
from shared.transforms.brats import (
    ConvertBratsLabelsToRegionsd,
    ConvertBratsRegionsToLabelsd,
    labels_to_regions,
    regions_to_labels,
)
from shared.utils.errors import root_cause
from tests.helpers import BUNDLES, TINY_MAE, TINY_UNETR, bundle_importable, workflow
from tools import synthetic

BUNDLE = BUNDLES / "unetr_brats_seg"
CONFIGS = BUNDLE / "configs"

LAYOUTS = ("brats2021", "msd")
LABEL_VALUES = {"brats2021": {0, 1, 2, 4}, "msd": {0, 1, 2, 3}}
SHAPE = (48, 48, 32)  # the three sub-regions are present from about this size

# UNETR always has 12 transformer layers: a narrow 12-layer ViT and 32^3 crops
MAE_NET = {**TINY_MAE, "network_def#num_layers": 12}
SEG_NET = TINY_UNETR
COMMON = {"roi_size": [32, 32, 32], "num_workers": 0}


# ---------------------------------------------------------------------------------------------------------------
# label conventions, pinned
# ---------------------------------------------------------------------------------------------------------------

# one voxel per label value, in this order: background, then the layout's labels
PINNED = {
    # BraTS 2021: 1 necrotic core, 2 oedema, 4 enhancing. TC = 1|4, WT = 1|2|4, ET = 4
    "brats2021": ([0, 1, 2, 4], {"TC": [0, 1, 0, 1], "WT": [0, 1, 1, 1], "ET": [0, 0, 0, 1]}),
    # MSD Task01 dataset.json: 1 edema, 2 non-enhancing tumour, 3 enhancing. TC = 2|3, WT = 1|2|3, ET = 3
    "msd": ([0, 1, 2, 3], {"TC": [0, 0, 1, 1], "WT": [0, 1, 1, 1], "ET": [0, 0, 0, 1]}),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_label_to_region_mapping_is_pinned(layout):
    values, expected = PINNED[layout]
    label = torch.tensor(values, dtype=torch.float32).reshape(1, 4, 1, 1)
    regions = labels_to_regions(label, layout)
    assert regions.shape == (3, 4, 1, 1) and regions.dtype == torch.uint8
    for channel, name in enumerate(("TC", "WT", "ET")):
        assert regions[channel].flatten().tolist() == expected[name], name
    numpy_regions = labels_to_regions(np.array(values).reshape(1, 4, 1, 1), layout)
    assert np.array_equal(numpy_regions, regions.numpy())


@pytest.mark.parametrize("dtype", [torch.float32, np.float32, np.dtype("float32"), "float32", torch.bool, np.bool_])
def test_region_dtype_may_be_a_torch_or_numpy_dtype_for_either_label_type(dtype):
    """A torch dtype on a numpy label was ignored (uint8 came back) and a numpy dtype on a tensor raised."""
    values, _ = PINNED["brats2021"]
    tensor_regions = labels_to_regions(torch.tensor(values).reshape(1, 4, 1, 1), "brats2021", dtype)
    numpy_regions = labels_to_regions(np.array(values).reshape(1, 4, 1, 1), "brats2021", dtype)
    is_bool = dtype in (torch.bool, np.bool_)
    assert tensor_regions.dtype == (torch.bool if is_bool else torch.float32)
    assert numpy_regions.dtype == (np.bool_ if is_bool else np.float32)
    assert np.array_equal(numpy_regions, tensor_regions.numpy())


def test_msd_label_2_is_not_enhancing():
    """The copied tutorial transform takes MSD label 2 as ET; per dataset.json 2 is non-enhancing tumour (core)."""
    regions = labels_to_regions(torch.tensor([[2.0]]).reshape(1, 1, 1, 1), "msd").flatten().tolist()
    assert regions == [1, 1, 0]  # TC yes, WT yes, ET no
    regions = labels_to_regions(torch.tensor([[3.0]]).reshape(1, 1, 1, 1), "msd").flatten().tolist()
    assert regions == [1, 1, 1]


@pytest.mark.parametrize(
    "declared, values, unexpected", [("msd", [0, 1, 2, 4], "{4}"), ("brats2021", [0, 1, 2, 3], "{3}")]
)
def test_labels_of_the_other_layout_raise_naming_file_and_values(declared, values, unexpected):
    label = MetaTensor(torch.tensor(values, dtype=torch.float32).reshape(1, 4, 1, 1),
                       meta={"filename_or_obj": "/data/case_007_seg.nii.gz"})
    with pytest.raises(ValueError, match="case_007_seg.nii.gz") as error:
        ConvertBratsLabelsToRegionsd("label", declared)({"label": label})
    assert unexpected in str(error.value) and declared in str(error.value)


def test_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="brats2021"):
        ConvertBratsLabelsToRegionsd("label", "brats2023")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_regions_back_to_labels_restore_the_layout_values(layout):
    values, _ = PINNED[layout]
    rng = np.random.default_rng(0)
    label = torch.from_numpy(rng.choice(values, size=(1, 6, 5, 4)).astype(np.float32))
    restored = ConvertBratsRegionsToLabelsd("pred", layout)({"pred": labels_to_regions(label, layout)})["pred"]
    assert restored.shape == (1, 6, 5, 4) and restored.dtype == torch.uint8
    assert torch.equal(restored, label.to(torch.uint8))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_regions_to_labels_paints_enhancing_over_core_over_oedema(layout):
    enhancing, core, oedema = {"brats2021": (4, 1, 2), "msd": (3, 2, 1)}[layout]
    # voxels: none, WT only, TC+WT, ET+TC+WT, ET alone (not nested), TC alone (not nested)
    regions = torch.tensor([[0, 0, 1, 1, 0, 1], [0, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 0]], dtype=torch.float32)
    labels = regions_to_labels(regions.reshape(3, 6, 1, 1), layout).flatten().tolist()
    assert labels == [0, oedema, core, enhancing, enhancing, core]


# ---------------------------------------------------------------------------------------------------------------
# datalists
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=LAYOUTS)
def data(request, tmp_path_factory) -> tuple[str, Path]:
    """Synthetic data in one of the two layouts: 2 labelled cases (1 training, 1 validation), MSD with 1 test case."""
    layout = request.param
    out = tmp_path_factory.mktemp(layout)
    extra = {"num_test": 1} if layout == "msd" else {}
    synthetic.make_brats(str(out), layout=layout, num_cases=2, shape=SHAPE, seed=0, **extra)
    return layout, out


def test_split_is_deterministic_disjoint_and_complete():
    cases = [{"image": f"c{i}"} for i in range(10)]
    train, val = split_validation(cases, 0.2, seed=7)
    assert (train, val) == split_validation(cases, 0.2, seed=7)
    assert len(val) == 2 and len(train) == 8
    assert sorted(c["image"] for c in train + val) == sorted(c["image"] for c in cases)
    assert split_validation(cases, 0.2, seed=8)[1] != val
    assert len(split_validation(cases[:2], 0.01, seed=0)[1]) == 1  # at least one validation case
    assert split_validation(cases, 0.0, seed=0) == (cases, [])


def test_datalist_of_each_layout_is_split_cached_and_rebuilt(data, tmp_path):
    layout, root = data
    cache = tmp_path / "datalist.json"
    datalist = brats_datalist(str(root), layout, str(cache), val_fraction=0.3, seed=1)
    assert len(datalist["training"]) == 1 and len(datalist["validation"]) == 1
    case = datalist["training"][0]
    if layout == "brats2021":  # four files per case, in channel order FLAIR, T1, T1ce, T2
        name = Path(case["label"]).parent.name
        assert [Path(p).name for p in case["image"]] == [f"{name}_{s}.nii.gz" for s in ("flair", "t1", "t1ce", "t2")]
        assert Path(case["label"]).name == f"{name}_seg.nii.gz"
    else:  # one 4-D file; label from dataset.json
        assert Path(case["image"]).parent.name == "imagesTr" and Path(case["label"]).parent.name == "labelsTr"
    # cached in the decathlon format, relative to dataset_dir; same call -> same content
    saved = json.loads(cache.read_text())
    assert saved["fingerprint"]["dataset_layout"] == layout and saved["fingerprint"]["seed"] == 1
    assert brats_datalist(str(root), layout, str(cache), val_fraction=0.3, seed=1) == datalist
    from monai.data import load_decathlon_datalist
    assert load_decathlon_datalist(str(cache), True, "validation", base_dir=str(root)) == datalist["validation"]
    # another seed rewrites the cache; a hand-made file (no fingerprint) is used as it is
    others = [brats_datalist(str(root), layout, str(cache), val_fraction=0.3, seed=s)["validation"] for s in range(6)]
    assert json.loads(cache.read_text())["fingerprint"]["seed"] == 5
    assert any(v != datalist["validation"] for v in others)
    hand_made = {"training": saved["training"][:1], "validation": saved["validation"]}
    cache.write_text(json.dumps(hand_made))
    used = brats_datalist(str(root), layout, str(cache), val_fraction=0.5, seed=3)
    assert used["training"] == datalist["training"][:1] and used["validation"] == datalist["validation"]


def test_a_hand_made_brats2021_datalist_gets_the_network_s_contrast_order(tmp_path):
    """A hand-written datalist (e.g. the public brats21_folds.json: FLAIR, T1ce, T1, T2) gives the network its
    channels in the order FLAIR, T1, T1ce, T2, as every other input; a case that is not four contrasts is named."""
    root = tmp_path / "data"
    synthetic.make_brats(str(root), layout="brats2021", num_cases=2, shape=SHAPE, seed=0)
    cache = tmp_path / "datalist.json"
    built = brats_datalist(str(root), "brats2021", str(cache), val_fraction=0.5)
    saved = json.loads(cache.read_text())
    flair, t1, t1ce, t2 = saved["training"][0]["image"]
    hand_made = {"training": [{**saved["training"][0], "image": [flair, t1ce, t1, t2]}],
                 "validation": saved["validation"]}
    cache.write_text(json.dumps(hand_made))
    assert brats_datalist(str(root), "brats2021", str(cache))["training"] == built["training"]
    four_d = {**saved["training"][0], "image": "BraTS2021_00001/all_four.nii.gz"}  # one 4-D file: taken as it is
    (root / "BraTS2021_00001" / "all_four.nii.gz").write_bytes(b"")
    cache.write_text(json.dumps({"training": [four_d], "validation": saved["validation"]}))
    assert brats_datalist(str(root), "brats2021", str(cache))["training"][0]["image"] == str(
        root / "BraTS2021_00001" / "all_four.nii.gz")
    hand_made["training"][0]["image"] = [flair, t1ce, t2]
    cache.write_text(json.dumps(hand_made))
    with pytest.raises(ValueError, match=rf"{cache} \(training item 0\): a BraTS 2021 case is its four contrast"):
        brats_datalist(str(root), "brats2021", str(cache))


def _brats21_folds(tmp_path: Path, num_cases: int = 5) -> tuple[Path, Path, list[dict]]:
    """Synthetic BraTS 2021 cases in ``<top>/TrainingData`` and a datalist like the public ``brats21_folds.json``:
    only a training list, items with a ``fold`` (case i in fold i % 3) and paths relative to ``<top>``.

    Returns:
        ``(top, datalist file, its items)``.
    """
    top = tmp_path / "BraTS2021"
    synthetic.make_brats(str(top / "TrainingData"), layout="brats2021", num_cases=num_cases, shape=(16, 16, 16),
                         seed=0)
    names = sorted(p.name for p in (top / "TrainingData").iterdir() if p.is_dir())
    items = [{"fold": i % 3, "image": [f"TrainingData/{n}/{n}_{s}.nii.gz" for s in ("flair", "t1ce", "t1", "t2")],
              "label": f"TrainingData/{n}/{n}_seg.nii.gz"} for i, n in enumerate(names)]
    folds_file = tmp_path / "brats21_folds.json"
    folds_file.write_text(json.dumps({"training": items}))
    return top, folds_file, items


def _case_names(items: list[dict]) -> list[str]:
    return [Path(item["label"]).parent.name for item in items]


@pytest.mark.parametrize("val_fold", [0, 2])
def test_a_hand_made_datalist_without_validation_is_split_by_its_folds(tmp_path, val_fold):
    """brats21_folds.json lists every case under training with its fold: fold val_fold is held out, so pre-training
    (which reads the training list) never sees a validation case."""
    top, folds_file, items = _brats21_folds(tmp_path)
    datalist = brats_datalist(str(top), "brats2021", str(folds_file), val_fold=val_fold)
    names = _case_names(items)
    assert _case_names(datalist["validation"]) == [n for i, n in enumerate(names) if i % 3 == val_fold]
    assert _case_names(datalist["training"]) == [n for i, n in enumerate(names) if i % 3 != val_fold]
    assert all(Path(p).is_file() for case in datalist["training"] for p in case["image"])
    folds_file.write_text(json.dumps({"training": items, "validation": []}))  # an empty validation list: the same
    assert brats_datalist(str(top), "brats2021", str(folds_file), val_fold=val_fold) == datalist
    assert json.loads(folds_file.read_text()) == {"training": items, "validation": []}  # never rewritten
    as_text = [{**item, "fold": str(item["fold"])} for item in items]  # folds written as strings: the same split
    folds_file.write_text(json.dumps({"training": as_text}))
    split = brats_datalist(str(top), "brats2021", str(folds_file), val_fold=val_fold)
    assert _case_names(split["validation"]) == _case_names(datalist["validation"])


def test_the_bundle_configs_hold_out_val_fold_of_a_hand_made_datalist(tmp_path):
    top, folds_file, items = _brats21_folds(tmp_path)
    for name in ("pretrain", "train"):
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / f"{name}.json"))
        parser.update({"bundle_root": str(tmp_path), "dataset_dir": str(top), "dataset_layout": "brats2021",
                       "datalist_file": str(folds_file), "val_fold": 1})
        with bundle_importable(BUNDLE):
            datalist = parser.get_parsed_content("datalist")
        assert _case_names(datalist["validation"]) == [n for i, n in enumerate(_case_names(items)) if i % 3 == 1]


def test_a_hand_made_datalist_without_validation_or_folds_is_refused(tmp_path):
    top, folds_file, items = _brats21_folds(tmp_path)
    unfolded = [{k: v for k, v in item.items() if k != "fold"} for item in items]
    folds_file.write_text(json.dumps({"training": unfolded}))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(folds_file))}: .*without a 'validation' list needs a "
                                         r"'fold' in every training item, but training item 0 has no 'fold'"):
        brats_datalist(str(top), "brats2021", str(folds_file))
    folds_file.write_text(json.dumps({"training": items}))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(folds_file))}: no training item of fold 5 .*folds are "
                                         "0, 1, 2"):
        brats_datalist(str(top), "brats2021", str(folds_file), val_fold=5)


def test_a_hand_made_datalist_read_from_the_wrong_folder_names_the_missing_image(tmp_path):
    """brats21_folds.json's paths start with TrainingData/: dataset_dir is the folder above it."""
    top, folds_file, items = _brats21_folds(tmp_path)
    missing = top / "TrainingData" / items[1]["image"][0]  # the first item of fold 1, the first training item
    expected = (f"{folds_file}: its first image {missing} does not exist: relative paths are read from dataset_dir "
                f"({top / 'TrainingData'}); for brats21_folds.json that is the folder above TrainingData.")
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        brats_datalist(str(top / "TrainingData"), "brats2021", str(folds_file))


def test_folder_of_the_other_layout_gets_a_hint(data):
    layout, root = data
    other = "msd" if layout == "brats2021" else "brats2021"
    with pytest.raises(FileNotFoundError, match=f"dataset_layout '{layout}'"):
        brats_datalist(str(root), other)


def test_inference_datalist_and_output_names(data):
    layout, root = data
    cases = brats_inference_datalist(str(root), layout)
    if layout == "brats2021":
        assert len(cases) == 2 and all(len(c["image"]) == 4 and "label" not in c for c in cases)
        assert case_name(cases[0]["image"][0]) == "BraTS2021_00000"
        label = root / "BraTS2021_00000" / "BraTS2021_00000_seg.nii.gz"  # the default output's name, in its folder
        with pytest.raises(ValueError, match=f"would overwrite {label}, a file the run must not replace"):
            brats_inference_datalist(str(root), layout, output_dir=str(label.parent))
        assert brats_inference_datalist(str(root), layout, output_dir=str(label.parent), output_postfix="pred")
    else:
        assert [Path(c["image"]).name for c in cases] == ["BRATS_003.nii.gz"]
        assert case_name(cases[0]["image"]) == "BRATS_003"


def inference_datalist(**overrides):
    """The ``datalist`` of ``inference.json`` with ``overrides``, as ``--key value`` would give them."""
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.update(overrides)
    with bundle_importable(BUNDLE):
        try:
            return parser.get_parsed_content("datalist")
        except RuntimeError as error:  # MONAI wraps what the function raised
            raise root_cause(error) from None


def test_chosen_input_files_are_checked_like_a_folder(data, tmp_path):
    layout, root = data
    found = brats_inference_datalist(str(root), layout)
    chosen = [case["image"] for case in found]
    cases = inference_datalist(dataset_layout=layout, dataset_dir="/nowhere", input_files=chosen,
                               output_dir=str(tmp_path))
    assert cases == found
    if layout == "brats2021":  # the case folder as output folder: the reference label would be overwritten
        label = root / "BraTS2021_00000" / "BraTS2021_00000_seg.nii.gz"
        with pytest.raises(ValueError, match=f"would overwrite {label}, a file the run must not replace"):
            inference_datalist(dataset_layout=layout, input_files=chosen[:1], output_dir=str(label.parent))
        # a case as its folder, or as its contrasts in any order: FLAIR, T1, T1ce, T2 for the network
        folder_and_shuffled = [str(label.parent), list(reversed(chosen[1]))]
        assert inference_datalist(dataset_layout=layout, input_files=folder_and_shuffled) == found
        for wrong in (chosen[0][:3] + [str(label)], chosen[0][:3], chosen[0][0]):
            with pytest.raises(ValueError, match="a BraTS 2021 case is its"):
                inference_datalist(dataset_layout=layout, input_files=[wrong])
        missing = ["/nowhere/a_flair.nii.gz", "/nowhere/a_t1.nii.gz", "/nowhere/a_t1ce.nii.gz", "/nowhere/a_t2.nii.gz"]
        with pytest.raises(FileNotFoundError, match="input files not found: /nowhere/a_flair.nii.gz"):
            inference_datalist(dataset_layout=layout, input_files=[missing])
    else:  # one file as a string; its own folder, which holds an earlier output of it, is refused
        assert inference_datalist(dataset_layout=layout, input_files=chosen[0], output_dir=str(tmp_path)) == found
        earlier = Path(chosen[0]).parent / "BRATS_003_seg.nii.gz"
        earlier.write_bytes(b"an earlier output")
        try:
            with pytest.raises(ValueError, match="would overwrite the input"):
                inference_datalist(dataset_layout=layout, input_files=[chosen[0], str(earlier)],
                                   output_dir=str(earlier.parent))
        finally:
            earlier.unlink()
        with pytest.raises(FileNotFoundError, match="input files not found: /nowhere/BRATS_999.nii.gz"):
            inference_datalist(dataset_layout=layout, input_files=["/nowhere/BRATS_999.nii.gz"])
        with pytest.raises(ValueError, match="an MSD case is one 4-D file"):
            inference_datalist(dataset_layout=layout, input_files=[chosen])


# ---------------------------------------------------------------------------------------------------------------
# the bundle's configs, in-process
# ---------------------------------------------------------------------------------------------------------------


def configs(*names: str) -> list[Path]:
    return [CONFIGS / n for n in names]


@pytest.fixture(autouse=True, scope="module")
def _scripts_importable():
    """The bundle's ``scripts`` (-> shared/) importable while configs are parsed, as ``ConfigWorkflow.run()`` does."""
    with bundle_importable(BUNDLE):
        yield


def _cause(error: BaseException) -> str:
    """Messages of an exception and the exceptions it was raised from (MONAI wraps transform errors)."""
    messages = []
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(messages)


@pytest.fixture(scope="module")
def pretrained(data, tmp_path_factory) -> Path:
    layout, root = data
    bundle_root = tmp_path_factory.mktemp(f"bundle_{layout}")
    wf = workflow(configs("pretrain.json"), bundle_root, "train", dataset_dir=str(root), dataset_layout=layout,
                  epochs=1, batch_size=2, num_samples=1, warmup_epochs=1, snapshot_interval=1, **COMMON, **MAE_NET)
    wf.check_properties()
    wf.run()
    wf.finalize()
    return bundle_root


def copy_of(bundle_root: Path, copy: Path) -> Path:
    """A copy of ``bundle_root`` to train in, so that the module's fixtures stay as they were made."""
    shutil.copytree(bundle_root, copy)
    return copy


@pytest.fixture(scope="module")
def trained(data, pretrained, tmp_path_factory) -> dict:
    """Fine-tune from the MAE, in a copy of the pre-training's bundle root (whose ``models/mae.pt`` is the default
    encoder); record the UNETR encoder right after the MAE weights were loaded, before training."""
    layout, root = data
    bundle_root = copy_of(pretrained, tmp_path_factory.mktemp(f"trained_{layout}") / "bundle")
    wf = workflow(configs("train.json"), bundle_root, "train", dataset_dir=str(root), dataset_layout=layout, epochs=1,
                  val_interval=1, batch_size=1, num_samples=1, warmup_epochs=1, **COMMON, **SEG_NET)
    wf.check_properties()
    parser = wf.parser
    parser.get_parsed_content("train#trainer")  # builds the trainer: MAEEncoderLoader loads when attached
    loaded = {k: v.clone() for k, v in parser.get_parsed_content("network").vit.state_dict().items()}
    wf.run()
    wf.finalize()
    return {"layout": layout, "root": root, "bundle_root": bundle_root, "loaded": loaded,
            "pretrained_encoder": parser.get_parsed_content("pretrained_encoder")}


def test_pretraining_writes_mae_weights_checkpoint_pictures_and_datalist(pretrained):
    assert (pretrained / "models" / "mae.pt").is_file() and (pretrained / "models" / "mae_checkpoint.pt").is_file()
    assert list((pretrained / "runs" / "pretrain").glob("reconstruction_epoch0001.png"))
    datalist = json.loads((pretrained / "runs" / "datalist.json").read_text())
    assert len(datalist["training"]) == 1 and len(datalist["validation"]) == 1
    state = torch.load(pretrained / "models" / "mae.pt", weights_only=True)
    assert state["encoder.patch_embedding.patch_embeddings.weight"].shape[1] == 4  # every channel is an input
    assert state["decoder_pred.weight"].shape[0] == 4 * 16**3  # ... and is reconstructed


def test_encoder_from_pretraining_loads_into_unetr_with_every_tensor_equal(trained):
    mae_file = trained["bundle_root"] / "models" / "mae.pt"
    assert trained["pretrained_encoder"] == str(mae_file)  # the default picks up the pre-training output
    encoder = {k[len("encoder."):]: v for k, v in torch.load(mae_file, weights_only=True).items()
               if k.startswith("encoder.")}
    loaded = trained["loaded"]
    assert sorted(loaded) == sorted(encoder)
    for key, value in encoder.items():
        assert torch.equal(loaded[key], value), key


def test_training_writes_a_three_region_model_and_a_checkpoint(trained):
    models = trained["bundle_root"] / "models"
    assert (models / "model.pt").is_file() and (models / "checkpoint.pt").is_file()
    state = torch.load(models / "model.pt", weights_only=True)
    assert state["out.conv.conv.weight"].shape[:2] == (3, 8)  # TC, WT, ET from feature_size 8


def test_without_mae_weights_training_starts_from_scratch(data, tmp_path, capsys):
    layout, root = data
    wf = workflow(configs("train.json"), tmp_path, dataset_dir=str(root), dataset_layout=layout, **COMMON, **SEG_NET)
    assert wf.parser.get_parsed_content("pretrained_encoder") == ""
    loader = next(h for h in wf.parser.get_parsed_content("train#handlers") if type(h).__name__ == "MAEEncoderLoader")
    loader.attach(None)
    assert loader.report is None and "starts from scratch" in capsys.readouterr().out  # logging.conf: stdout


def test_evaluate_writes_region_dice_and_hd95(trained, tmp_path):
    wf = workflow(configs("train.json", "evaluate.json"), trained["bundle_root"], "train",
                  dataset_dir=str(trained["root"]), dataset_layout=trained["layout"], eval_dir=str(tmp_path),
                  **COMMON, **SEG_NET)
    wf.run()
    wf.finalize()
    summary = json.loads((tmp_path / "metrics_summary.json").read_text())
    assert summary["num_cases"] == 1
    for metric in ("dice", "hd95"):
        assert set(summary[metric]) == {"TC", "WT", "ET", "mean"}
    assert all(0.0 <= v <= 1.0 for v in summary["dice"].values() if v is not None)
    with open(tmp_path / "metrics_per_case.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["case", "metric", "TC", "WT", "ET"]
    assert [r[1] for r in rows[1:]] == ["dice", "hd95", "missed", "spurious"]
    assert re.fullmatch(r"BraTS2021_\d{5}|BRATS_\d{3}", rows[1][0])  # the case, not its FLAIR file


def test_inference_writes_label_maps_in_the_input_geometry(trained, tmp_path):
    """BraTS 2021 input: four 3-D files per case (a folder of one case folder, as `ValidationData`); MSD input: one
    4-D file (the `imagesTs` case of dataset.json)."""
    layout, root = trained["layout"], trained["root"]
    if layout == "brats2021":
        (tmp_path / "cases").mkdir()
        (tmp_path / "cases" / "BraTS2021_00001").symlink_to(root / "BraTS2021_00001", target_is_directory=True)
        root = tmp_path / "cases"
    out = tmp_path / "out"
    wf = workflow(configs("inference.json"), trained["bundle_root"], "infer", dataset_dir=str(root),
                  dataset_layout=layout, output_dir=str(out), **COMMON, **SEG_NET)
    wf.check_properties()
    wf.run()
    wf.finalize()
    cases = brats_inference_datalist(str(root), layout)
    assert len(cases) == 1 and len(list(out.glob("*_seg.nii.gz"))) == 1
    for case in cases:
        first = case["image"][0] if layout == "brats2021" else case["image"]  # four 3-D files, or one 4-D file
        name = case_name(first)
        source, written = nib.load(first), nib.load(out / f"{name}_seg.nii.gz")
        assert written.shape == source.shape[:3]
        assert np.allclose(written.affine, source.affine)
        assert set(np.unique(np.asanyarray(written.dataobj)).tolist()) <= LABEL_VALUES[layout]


def test_inference_postprocessing_turns_true_regions_into_the_dataset_label(data, tmp_path):
    """Feed the ground-truth regions (as logits in the network's space) through inference.json's postprocessing:
    the file written must be the data set's own label file, values and geometry."""
    layout, root = data
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.update({"bundle_root": str(tmp_path), "dataset_layout": layout, "output_dir": str(tmp_path)})
    preprocessing = parser.get_parsed_content("preprocessing")
    postprocessing = parser.get_parsed_content("postprocessing")
    case = brats_datalist(str(root), layout)["training"][0]
    d = preprocessing({"image": case["image"]})
    label = LoadImage(image_only=True, ensure_channel_first=True)(case["label"])
    label = ResampleToMatch(mode="nearest")(label, d["image"])  # the reference label in the network's space
    d["pred"] = (labels_to_regions(label, layout).float() * 2 - 1) * 10
    postprocessing(d)
    name = case_name(case["image"][0] if layout == "brats2021" else case["image"])
    written, reference = nib.load(tmp_path / f"{name}_seg.nii.gz"), nib.load(case["label"])
    assert np.allclose(written.affine, reference.affine)
    assert np.array_equal(np.asanyarray(written.dataobj), np.asanyarray(reference.dataobj))
    assert set(np.unique(np.asanyarray(written.dataobj)).tolist()) == LABEL_VALUES[layout]


def test_training_pipeline_refuses_labels_of_the_other_layout(data, tmp_path):
    layout, root = data
    other = "msd" if layout == "brats2021" else "brats2021"
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser.update({"bundle_root": str(tmp_path), "dataset_layout": other})
    case = brats_datalist(str(root), layout)["training"][0]
    with pytest.raises(Exception) as error:
        parser.get_parsed_content("validate#preprocessing")(case)
    message = _cause(error.value)
    assert Path(case["label"]).name in message and ("{4}" if layout == "brats2021" else "{3}") in message


def test_training_pipeline_refuses_a_label_of_several_channels_naming_it(data, tmp_path):
    """A label converted to one-hot regions beforehand (values 0/1 fit either layout) is named, not broadcast."""
    layout, root = data
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser.update({"bundle_root": str(tmp_path), "dataset_layout": layout})
    case = brats_datalist(str(root), layout)["training"][0]
    label = nib.load(case["label"])
    one_hot = np.stack([np.asanyarray(label.dataobj) == v for v in (1, 2, 3)], -1).astype(np.uint8)
    nib.save(nib.Nifti1Image(one_hot, label.affine), str(tmp_path / "one_hot.nii.gz"))
    with pytest.raises(Exception) as error:
        parser.get_parsed_content("validate#preprocessing")({**case, "label": str(tmp_path / "one_hot.nii.gz")})
    assert "one_hot.nii.gz" in _cause(error.value) and "3 channels" in _cause(error.value)


def test_pretraining_resumes_from_its_checkpoint(data, pretrained, tmp_path):
    layout, root = data
    bundle_root = copy_of(pretrained, tmp_path / "bundle")
    wf = workflow(configs("pretrain.json"), bundle_root, "train", dataset_dir=str(root), dataset_layout=layout,
                  epochs=2, batch_size=2, num_samples=1, warmup_epochs=1, snapshot_interval=1, **COMMON, **MAE_NET)
    assert any(h["_target_"].endswith("RunSafetyHandler") for h in wf.parser["train#handlers"])
    wf.run()
    wf.finalize()
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 2 and trainer.state.iteration == 2  # one epoch restored, one run
    assert torch.load(bundle_root / "models" / "mae_checkpoint.pt", weights_only=True)["trainer"]["iteration"] == 2
