"""The configs of each bundle agree where they must repeat themselves.

Within a config file each pipeline is written once (``%`` and ``@`` references). Across files of one bundle a few
things are written twice because each of those files must stand alone: ``inference.json`` (MONAI Label and the model
zoo read it without ``train.json``) and ``pretrain.json`` (run on its own). These tests make sure the copies agree: the
same image preprocessing, the same network and the same settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from monai.bundle import ConfigParser

from shared.networks.encoder_transfer import load_mae_encoder
from tests.helpers import BUNDLES, bundle_importable

# step parameters that differ by design between copies: which keys a step acts on and how each key is resampled
PER_KEY_PARAMETERS = {"keys", "mode", "image_only", "source_key", "_desc_"}
# transforms that do to the image what another does (inference's Spacingd also takes MONAI Label's image_path)
SAME_AS = {"scripts.transforms.spatial.PathSafeSpacingd": "Spacingd"}

# (config, id of a list of transforms, how many leading image steps are the shared preprocessing; steps on the label
# alone do not count); every entry of a bundle must give the same image steps
TRAIN, INFERENCE = "train#deterministic_transforms", "preprocessing#transforms"
IMAGE_STEPS = {
    "mae_pretrain_ct": [("train.json", TRAIN, 5), ("inference.json", INFERENCE, 5)],
    "unetr_btcv_seg": [("train.json", TRAIN, 6), ("inference.json", INFERENCE, 6)],
    "unetr_brats_seg": [
        ("pretrain.json", "train#deterministic_transforms", 6),
        ("train.json", "train#deterministic_transforms", 6),
        ("inference.json", "preprocessing#transforms", 6),
    ],
    "vit_cxr14_cls": [
        ("pretrain.json", "train#deterministic_transforms", 3),
        ("train.json", "train#deterministic_transforms", 3),
        ("inference.json", "preprocessing#transforms", 3),
    ],
}

# settings that every standalone config of a bundle defining them must define alike
SHARED_IDS = ("pixdim", "intensity_range", "roi_size", "patch_size", "in_channels", "image_size", "crop_size",
              "intensity_mean", "intensity_std", "dataset_layout", "use_dicom_window", "class_names")


def parser_of(bundle: str, config: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / config))
    return parser


def resolved(parser: ConfigParser, value: Any) -> Any:
    """``value`` with references to plain settings (``@pixdim``, ``@intensity_range#0``) replaced by their values."""
    if isinstance(value, str) and value.startswith("@"):
        return resolved(parser, parser[value[1:]])
    if isinstance(value, list):
        return [resolved(parser, v) for v in value]
    if isinstance(value, dict):
        return {k: resolved(parser, v) for k, v in value.items()}
    return value


def touches_image(step: dict) -> bool:
    """False for steps on the label alone."""
    return step.get("keys") != "label" and not step["_target_"].endswith("CheckGeometryd")


def image_steps(bundle: str, config: str, list_id: str, count: int) -> list[dict]:
    """The first ``count`` steps of a transform list that touch the image, without their per-key parameters."""
    parser = parser_of(bundle, config)
    steps = [s for s in parser[list_id] if touches_image(s)][:count]
    steps = [{**s, "_target_": SAME_AS.get(s["_target_"], s["_target_"])} for s in steps]
    return [{k: resolved(parser, v) for k, v in s.items() if k not in PER_KEY_PARAMETERS} for s in steps]


@pytest.mark.parametrize("bundle", sorted(IMAGE_STEPS))
def test_standalone_configs_preprocess_images_alike(bundle):
    (first, *others) = [image_steps(bundle, *entry) for entry in IMAGE_STEPS[bundle]]
    assert all(len(s) == n for s, (_, _, n) in zip([first, *others], IMAGE_STEPS[bundle]))
    for steps, entry in zip(others, IMAGE_STEPS[bundle][1:]):
        assert steps == first, f"{bundle}: {entry[0]} {entry[1]} differs from {IMAGE_STEPS[bundle][0][0]}"


@pytest.mark.parametrize("bundle", sorted(IMAGE_STEPS))
def test_standalone_configs_share_their_settings(bundle):
    configs = sorted(p.name for p in (BUNDLES / bundle / "configs").glob("*.json")
                     if p.name in ("train.json", "pretrain.json", "inference.json"))
    parsers = {c: parser_of(bundle, c) for c in configs}
    for key in SHARED_IDS:
        values = {c: resolved(p, p[key]) for c, p in parsers.items() if key in p}
        assert len({json.dumps(v) for v in values.values()}) <= 1, f"{bundle}: {key} differs: {values}"


@pytest.mark.parametrize("bundle", ["unetr_btcv_seg", "unetr_brats_seg", "vit_cxr14_cls"])
def test_inference_builds_the_trained_network(bundle):
    train, inference = parser_of(bundle, "train.json"), parser_of(bundle, "inference.json")
    outputs = json.loads((BUNDLES / bundle / "configs" / "metadata.json").read_text())["network_data_format"]
    trained = {k: v for k, v in resolved(train, train["network_def"]).items()}
    inferred = {k: v for k, v in resolved(inference, inference["network_def"]).items()}
    for net in (trained, inferred):  # the class count is written as a number or derived from the class names
        channels = net.pop("out_channels", None) or net.pop("num_classes", None)
        assert channels in (outputs["outputs"]["pred"]["num_channels"], "$len(@class_names)",
                            "$len(@class_names) + 1"), channels
    assert trained == inferred


def network_of(bundle: str, config: str) -> torch.nn.Module:
    with bundle_importable(BUNDLES / bundle):
        return parser_of(bundle, config).get_parsed_content("network_def")


# (pre-training bundle and config, fine-tuning bundle and config): the MAE of the first initialises the second
ENCODER_HANDOVERS = [
    (("mae_pretrain_ct", "train.json"), ("unetr_btcv_seg", "train.json")),
    (("unetr_brats_seg", "pretrain.json"), ("unetr_brats_seg", "train.json")),
    (("vit_cxr14_cls", "pretrain.json"), ("vit_cxr14_cls", "train.json")),
]


@pytest.mark.parametrize("pretraining, finetuning", ENCODER_HANDOVERS, ids=lambda entry: "/".join(entry))
def test_the_pre_trained_encoder_loads_whole_into_the_fine_tuned_network(pretraining, finetuning):
    """The encoder widths are written in each config: a mismatch would surface only after a pre-training had run."""
    mae, network = network_of(*pretraining), network_of(*finetuning)
    report = load_mae_encoder(network, mae.state_dict(), strict=True)  # strict: every encoder tensor filled
    assert report.loaded and not report.missing and not report.interpolated
    vit = getattr(network, "vit", network)
    heads = [b.attn.num_heads for b in vit.blocks]
    assert heads == [b.attn.num_heads for b in mae.encoder.blocks]  # heads change no shape: compared here


def test_the_mae_inference_network_is_the_trained_one():
    train, inference = parser_of("mae_pretrain_ct", "train.json"), parser_of("mae_pretrain_ct", "inference.json")
    trained, inferred = train["network_def"], inference["network_def"]
    assert inferred.pop("_target_") == "scripts.networks.mae.MAEReconstructionNet"  # the same network, picture output
    assert trained.pop("_target_") == "scripts.networks.mae.MaskedAutoencoderViT"
    assert resolved(train, trained) == resolved(inference, inferred)


def test_every_bundle_is_covered():
    assert sorted(IMAGE_STEPS) == sorted(p.name for p in BUNDLES.iterdir() if (p / "configs").is_dir())
    assert all(Path(BUNDLES / b / "configs" / c).is_file() for b, entries in IMAGE_STEPS.items() for c, _, _ in entries)


@pytest.mark.parametrize("config", sorted(BUNDLES.glob("*/configs/multi_gpu_*.json")), ids=lambda p: p.parents[1].name +
                         "/" + p.name)
def test_multi_gpu_runs_end_their_process_group_with_the_shared_helper(config):
    """``finalize`` ends with ``scripts.utils.dist.end_process_group`` and has no barrier of its own: a gloo barrier
    kept finished collectives alive until the interpreter's shutdown, and the process aborted at exit."""
    finalize = json.loads(config.read_text())["finalize"]
    assert finalize[-1] == {"_target_": "scripts.utils.dist.end_process_group"}
    assert not any("barrier" in str(item) or "destroy_process_group" in str(item) for item in finalize)


def first_batch_after_seeding(overlay: Path, rank: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    """The first batch that ``rank`` (of two) draws after the overlay's ``set_determinism``: random crops, flips and
    MAE masks of identical volumes (MONAI's data loaders seed the transforms from the global torch generator)."""
    from monai.data import DataLoader, Dataset, DistributedSampler
    from monai.transforms import Compose, RandFlipd, RandSpatialCropd

    from shared.transforms.masking import RandPatchMaskd

    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: rank)
    parser = ConfigParser()
    parser.read_config([str(overlay.with_name(overlay.name[len("multi_gpu_"):])), str(overlay)])
    seeding = [i for i, item in enumerate(parser["initialize"]) if "set_determinism" in item]
    assert len(seeding) == 1, f"{overlay}: one set_determinism in initialize"
    parser.get_parsed_content(f"initialize#{seeding[0]}")
    torch.nn.Linear(4, 4)  # the network's initialisation draws from the generator too
    volume = torch.arange(16.0**3).reshape(1, 16, 16, 16)
    transform = Compose([RandSpatialCropd("image", (8, 8, 8), random_size=False),
                         RandFlipd("image", prob=0.5, spatial_axis=0),
                         RandPatchMaskd(keys="image", patch_size=4, mask_ratio=0.75)])
    dataset = Dataset([{"image": volume.clone()} for _ in range(8)], transform)
    sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True)
    return next(iter(DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=0)))


@pytest.mark.parametrize("overlay", sorted(BUNDLES.glob("*/configs/multi_gpu_*train.json")),
                         ids=lambda p: p.parents[1].name + "/" + p.name)
def test_each_rank_draws_its_own_augmentation_and_masks(overlay, monkeypatch):
    """Every rank seeding alike gave the k-th sample of every rank the same crop, flip and MAE mask (a global batch
    had as many distinct masks as one rank's batch); the overlays seed each rank by its rank. Their replicas still
    start alike: DistributedDataParallel broadcasts rank 0's weights, and the splits and the samplers have seeds of
    their own."""
    from monai.utils import set_determinism

    try:
        batches = [first_batch_after_seeding(overlay, rank, monkeypatch) for rank in (0, 1)]
    finally:
        set_determinism(None)
    assert not torch.equal(batches[0]["mask"], batches[1]["mask"])
    assert not torch.equal(batches[0]["image"], batches[1]["image"])


@pytest.mark.parametrize("config", ["train.json", "pretrain.json"])
@pytest.mark.parametrize("images, batches", [(100, 1), (300, 2)])
def test_cxr14_multi_gpu_batches_count_each_ranks_share(config, images, batches):
    """Whether the last short batch is dropped depends on the images of one rank: 100 images in batches of 64 on 2
    ranks are 50 a rank, one batch (the whole set counted gave none, and the run stopped); 300 are 150 a rank, two
    full batches."""
    parser = ConfigParser()
    parser.read_config([str(BUNDLES / "vit_cxr14_cls" / "configs" / n) for n in (config, f"multi_gpu_{config}")])
    parser.update({"train#dataset": {"_target_": "Dataset", "data": f"$list(range({images}))"}, "batch_size": 64,
                   "num_workers": 0, "train#sampler#num_replicas": 2, "train#sampler#rank": 0})
    assert len(parser.get_parsed_content("train#dataloader")) == batches


@pytest.mark.parametrize("config", sorted(BUNDLES.glob("*/configs/*train.json")), ids=lambda p: p.parents[1].name +
                         "/" + p.name)
def test_training_runs_its_trainer_alone_with_one_run_safety_handler(config):
    """Run safety is a handler of the trainer (every rank resumes, rank 0 writes), not an order of ``run`` items;
    ``run`` only takes the handler's lock first, before the trainer and its data are built; the multi-GPU overlay
    keeps the base ``run``."""
    if config.name.startswith("multi_gpu_"):
        assert "run" not in json.loads(config.read_text()), f"{config}: the base config's run does for it"
        return
    parser = ConfigParser()
    parser.read_config(str(config))
    assert parser["run"] == ["$@check_scripts_package", "$@bundle_lock.acquire()", "$@train#trainer.run()"]
    safety = [h for h in parser["train#handlers"] if h["_target_"] == "scripts.handlers.run_safety.RunSafetyHandler"]
    assert len(safety) == 1 and "_disabled_" not in safety[0] and safety[0]["lock"] == "@bundle_lock"


@pytest.mark.parametrize("config", sorted(p for p in BUNDLES.glob("*/configs/*train.json")
                                           if not p.name.startswith("multi_gpu_")),
                         ids=lambda p: p.parents[1].name + "/" + p.name)
def test_the_schedule_and_validation_follow_the_trainers_epochs(config):
    """MONAI Label sets only ``train#trainer#max_epochs`` (50 by default): the learning-rate schedule spans those
    epochs, the warm-up is at most a tenth of them and validation (which writes ``models/model.pt``) comes within
    them; the bundle's own epochs keep the documented warm-up and interval."""
    parser = ConfigParser()
    parser.read_config(str(config))
    defaults = {key: parser.get_parsed_content(key) for key in ("epochs", "warmup_epochs", "val_interval")
                if key in parser}
    assert parser["lr_scheduler#t_total"].replace("::", "#") == "$@train#trainer#max_epochs * len(@train#dataloader)"
    assert defaults["warmup_epochs"] < defaults["epochs"] // 10 or defaults["warmup_epochs"] == defaults["epochs"] // 10
    parser.update({"train#trainer#max_epochs": 50})
    assert parser.get_parsed_content("warmup_epochs") <= 5
    if "val_interval" in defaults:
        assert defaults["val_interval"] < defaults["epochs"] and parser.get_parsed_content("val_interval") <= 50


def test_btcv_augmentation_never_reverses_or_moves_the_left_right_axis():
    """Left and right organs (kidneys, adrenal glands) keep their labels, so no augmentation of the BTCV fine-tuning
    may mirror left and right: no left-right flip, and no axial rotation (by 180 degrees it reverses the left-right
    axis). Every flip and 90-degree rotation of the recipe, at each of its outcomes, keeps the voxels' left-right order
    (the volume is RAS: axis 0 runs left to right)."""
    import torch
    from monai.transforms import Flip, RandFlipd, RandRotate90d, Rotate90

    parser = ConfigParser()
    parser.read_config(str(BUNDLES / "unetr_btcv_seg" / "configs" / "train.json"))
    steps = parser.get_parsed_content("train#random_transforms", instantiate=True)
    outcomes = [Flip(step.flipper.spatial_axis) for step in steps if isinstance(step, RandFlipd)]
    outcomes += [Rotate90(k, step.spatial_axes) for step in steps if isinstance(step, RandRotate90d)
                 for k in range(1, step.max_k + 1)]
    assert len(outcomes) >= 2, "the recipe has fewer flips than this test expects: update it"
    left_to_right = torch.arange(4.0).reshape(1, 4, 1, 1).expand(1, 4, 4, 4)  # a voxel's value: its x position
    for outcome in outcomes:
        out = outcome(left_to_right.clone())
        assert torch.equal(out, left_to_right), f"{outcome.__class__.__name__} {vars(outcome)} moves left and right"
