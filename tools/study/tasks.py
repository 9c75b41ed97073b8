"""The paper's three tasks as studies: where the data comes from, which bundle configs run each stage with which
overrides, and how the evaluation's files turn into the study's metrics.

A task knows two sizes: ``small`` (synthetic data generated here, narrow networks, a budget that fits a 2-core CPU in
about a quarter of an hour) and ``full`` (the bundles' paper configuration, for the real data set). Everything a task
runs is a bundle config: nothing here re-implements training or evaluation.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.data.brats import brats_datalist
from shared.data.cxr14 import prepare_datalist
from tools import synthetic

__all__ = ["Stage", "Task", "TASKS", "btcv", "brats", "cxr14"]

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


def _network(**values: Any) -> dict[str, Any]:
    return {f"network_def#{k}": v for k, v in values.items()}


# a fine-tuning run of a study: a checkpoint at the end only, no training metric, no validation data cached (the
# study evaluates the last model on its own evaluation cases)
_STUDY_RUN = {"save_interval": 0, "train#trainer#key_train_metric": None, "train#trainer#postprocessing": None,
              "validate#dataset#cache_rate": 0.0}


@dataclass(frozen=True)
class Stage:
    """One bundle run of a study: the configs (merged left to right) and the overrides of the task's size."""

    configs: tuple[Path, ...]
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Task(ABC):
    """One of the paper's experiments as a study.

    Attributes:
        name: subcommand name.
        metric: key of the primary metric in ``summary.json`` (higher is better).
        metric_label: the metric in words.
        class_label: what the per-class table lists (organ, region, finding).
        pretrain: the MAE pre-training stage (small size; ``full`` uses the config's own values).
        finetune: the fine-tuning stage (small size).
        evaluate: the evaluation stage (small size).
        full_pretrain, full_finetune, full_evaluate: overrides of the paper configuration (on top of the configs).
        finetune_steps: training iterations of one fine-tuning run (small size); epochs follow from the labelled size.
        full_finetune_steps: the same for the paper configuration.
        batch_size: labelled cases (images) per iteration, to turn steps into epochs.
        labelled_sizes: default labelled-set sizes on synthetic data (``"all"``: every training case).
        num_seeds: default number of seeds (paired runs per arm and labelled size): as many as the positive control
            needs to be seen at the smallest labelled size.
        full_labelled_sizes: default labelled-set sizes on the real data.
        synthetic: keyword arguments of the synthetic data generator.
        recipes: fine-tuning overrides per arm (``tools.study.arms``): the layer-wise decay and the peak learning rate
            each arm gets.
        supervised_synthetic: generator arguments of the positive control's labelled cases (a disjoint stream).
        supervised_steps: training iterations of the positive control's supervised encoder.
        supervised_recipe: overrides of the scratch arm's recipe for training the positive control's network (e.g.
            its own learning rate: the control should be as strong as the budget allows).
    """

    name: str
    metric: str
    metric_label: str
    class_label: str
    pretrain: Stage
    finetune: Stage
    evaluate: Stage
    finetune_steps: int
    full_finetune_steps: int
    batch_size: int
    labelled_sizes: tuple[int | str, ...]
    full_labelled_sizes: tuple[int | str, ...]
    num_seeds: int = 3
    synthetic: dict[str, Any] = field(default_factory=dict)
    recipes: dict[str, dict[str, Any]] = field(default_factory=dict)
    supervised_synthetic: dict[str, Any] = field(default_factory=dict)
    supervised_steps: int = 0
    supervised_recipe: dict[str, Any] = field(default_factory=dict)
    full_pretrain: dict[str, Any] = field(default_factory=dict)
    full_finetune: dict[str, Any] = field(default_factory=dict)
    full_evaluate: dict[str, Any] = field(default_factory=dict)

    # --- data ---------------------------------------------------------------------------------------------------

    @abstractmethod
    def make_synthetic(self, out_dir: Path, seed: int, **changes: Any) -> Path:
        """Write the task's synthetic data set into ``out_dir`` (``changes`` update the generator's arguments);
        returns the ``dataset_dir``."""

    @abstractmethod
    def cases(self, dataset_dir: Path, workdir: Path) -> tuple[list[dict], list[dict]]:
        """The training cases (labelled subsets are drawn from them; the MAE sees all their images) and the
        evaluation cases (reported, never used to choose anything), as datalist items."""

    def write_datalist(self, path: Path, training: Sequence[dict], evaluation: Sequence[dict]) -> Path:
        """A datalist file the task's bundle reads as it is: ``training`` to train on, ``evaluation`` to score."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"training": list(training), "validation": list(evaluation)}, indent=1))
        return path

    def data_overrides(self, dataset_dir: Path, datalist: Path) -> dict[str, Any]:
        """Overrides that point a bundle config at the data set and a study datalist."""
        return {"dataset_dir": str(dataset_dir), "datalist_file": str(datalist)}

    @abstractmethod
    def scores(self, eval_dir: Path) -> dict[str, Any]:
        """The metrics of one evaluated run: the primary metric, secondary ones and per-class values."""

    # --- stages ---------------------------------------------------------------------------------------------------

    def stage_overrides(self, stage: str, full_size: bool) -> dict[str, Any]:
        """The overrides of one of the task's stages at the chosen size.

        Args:
            stage: ``"pretrain"``, ``"finetune"`` or ``"evaluate"``.
            full_size: the paper configuration's overrides (``full_<stage>``) instead of the small size's.

        Raises:
            ValueError: ``stage`` is not one of the three.
        """
        stages = {"pretrain": (self.pretrain, self.full_pretrain), "finetune": (self.finetune, self.full_finetune),
                  "evaluate": (self.evaluate, self.full_evaluate)}
        if stage not in stages:
            raise ValueError(f"unknown stage {stage!r}; choose one of {list(stages)}.")
        small, full = stages[stage]
        return full if full_size else small.overrides

    # --- budget ---------------------------------------------------------------------------------------------------

    def epochs_for(self, labelled: int, steps: int) -> int:
        """Epochs of ``steps`` iterations over ``labelled`` cases (the same iterations for every labelled size)."""
        return max(1, math.ceil(steps / math.ceil(labelled / self.batch_size)))


def _segmentation_scores(eval_dir: Path, groups: dict[str, str]) -> dict[str, Any]:
    summary = json.loads((eval_dir / "metrics_summary.json").read_text())
    scores = {name: summary["dice"][key] for name, key in groups.items()}
    scores["mean_hd95"] = summary["hd95"]["mean"]
    scores["misses"] = summary["misses"]["total"]
    scores["per_class"] = {k: v for k, v in summary["dice"].items() if not k.startswith("mean")}
    return scores


# the study's narrow ViT (the paper's is 768 wide, 12 heads)
_SMALL_ENCODER = {"hidden_size": 96, "mlp_dim": 384, "num_heads": 4}
_SMALL_VIT = _network(**_SMALL_ENCODER)
_SMALL_UNETR = {**_SMALL_VIT, **_network(feature_size=8)}


def _small_segmentation_stages(pretrain_config: Path, seg_configs: Path, data: dict[str, Any],
                                pretrain_epochs: int, network: dict[str, Any] = _SMALL_UNETR,
                                mae: dict[str, Any] | None = None) -> dict[str, Stage]:
    """The three stages of a segmentation study at the small size (the same recipe for BTCV and BraTS).

    Args:
        pretrain_config: the MAE pre-training config.
        seg_configs: the UNETR bundle's ``configs`` folder (``train.json``, ``evaluate.json``).
        data: crop size, spacing and data-set overrides of every stage.
        pretrain_epochs: MAE pre-training epochs (a tenth of them warm-up).
        network: overrides of the segmentation network (the bundle's UNETR, narrow, by default).
        mae: overrides of the MAE pre-training (e.g. its patch size).
    """
    segmentation = {**data, **network}
    return {
        "pretrain": Stage((pretrain_config,), {
            **_SMALL_VIT, **data, **_network(decoder_hidden_size=48, decoder_num_layers=2, decoder_num_heads=4),
            "epochs": pretrain_epochs, "warmup_epochs": pretrain_epochs // 10, "batch_size": 2, "num_samples": 4,
            "base_learning_rate": 0.2, "snapshot_interval": 100, "save_interval": 0, **(mae or {}),
        }),
        "finetune": Stage((seg_configs / "train.json",), {
            **segmentation, **_STUDY_RUN, "batch_size": 2, "num_samples": 1,
            # channels_last_3d: a 1.1-1.4x faster training step for these narrow networks on the CPU, but not a faster
            # evaluation, nor for the paper-size UNETR (tools/measure/benchmark_study.py)
            "memory_format": "$torch.channels_last_3d",
        }),
        "evaluate": Stage((seg_configs / "train.json", seg_configs / "evaluate.json"), segmentation),
    }


def _linear_head_vit(in_channels: int, out_channels: int | str, patch_size: int) -> dict[str, Any]:
    """The network a segmentation study fine-tunes: the narrow ViT with one linear layer per token as its decoder
    (``shared/networks/vit_linear_seg.py``), so that the encoder, not a decoder trained from scratch in every arm,
    is what the budget measures. Its encoder keys are the MAE's, so every arm loads through ``pretrained_encoder``."""
    return {"network_def": {
        "_target_": "scripts.networks.vit_linear_seg.ViTLinearSeg", "in_channels": in_channels,
        "out_channels": out_channels, "img_size": "@roi_size", "patch_size": patch_size, "qkv_bias": False,
        **_SMALL_ENCODER,
    }}


def _recipes(learning_rates: dict[str, float], layer_decay: float = 0.75) -> dict[str, dict[str, Any]]:
    """Fine-tuning recipe per arm: scratch without layer-wise decay (no pre-trained depth to protect), every encoder
    that was trained or initialised elsewhere with the paper's decay; each arm its own peak learning rate (chosen on
    the tuning draw, see ``tools/study/plans/``)."""
    return {arm: {"base_learning_rate": lr, "layer_decay": 1.0 if arm == "scratch" else layer_decay}
            for arm, lr in learning_rates.items()}


# ----------------------------------------------------------------------------------------------------------------
# BTCV: mae_pretrain_ct + unetr_btcv_seg
# ----------------------------------------------------------------------------------------------------------------

_CT = BUNDLES / "mae_pretrain_ct" / "configs"
_SEG = BUNDLES / "unetr_btcv_seg" / "configs"
# The paper's token geometry at CPU size: 6 x 6 x 8 mm voxels, 24^3 crops and 4^3 patches span the paper's field
# (96^3 crops of 1.5 x 1.5 x 2 mm: 144 x 144 x 192 mm) and token size (24 x 24 x 32 mm): 216 tokens, 54 visible at
# mask ratio 0.75. (3 x 3 x 4 mm with 48^3 crops and 8^3 patches has the same tokens at 8x the voxels.)
_CT_GEOMETRY = {"pixdim": [6.0, 6.0, 8.0], "roi_size": [24, 24, 24], "num_workers": 0}
# The network the BTCV study fine-tunes: the ViT with one linear layer per token as its decoder. With UNETR's CNN
# decoder, trained from scratch in every arm, a supervised encoder did not beat scratch at 300, 1,000 or 2,000
# iterations on the tuning draw (the decoder, not the encoder, limited the budget); with the linear head it does, by a
# wide margin (bundles/unetr_btcv_seg/docs/README.md, "The study's network")
_LINEAR_HEAD_VIT = _linear_head_vit(in_channels=1, out_channels="@num_classes", patch_size=4)


class BtcvTask(Task):
    def make_synthetic(self, out_dir: Path, seed: int, **changes: Any) -> Path:
        return Path(synthetic.make_btcv(str(out_dir), seed=seed, **{**self.synthetic, **changes}))

    def cases(self, dataset_dir: Path, workdir: Path) -> tuple[list[dict], list[dict]]:
        datalist = json.loads((dataset_dir / "dataset_0.json").read_text())
        return datalist["training"], datalist["validation"]

    def scores(self, eval_dir: Path) -> dict[str, Any]:
        return _segmentation_scores(eval_dir, {"mean_dice_13": "mean", "mean_dice_8": "mean_8_organs"})


btcv = BtcvTask(
    name="btcv",
    metric="mean_dice_13",
    metric_label="mean Dice over the 13 organs",
    class_label="organ",
    **_small_segmentation_stages(_CT / "train.json", _SEG, _CT_GEOMETRY, pretrain_epochs=300,
                                 network=_LINEAR_HEAD_VIT, mae={"patch_size": 4}),
    finetune_steps=300,
    full_finetune_steps=25000,
    batch_size=2,
    labelled_sizes=(2, "all"),
    full_labelled_sizes=(3, 5, 7, 12, 24),
    synthetic={"num_train": 8, "num_val": 4, "num_test": 0},
    # chosen on the tuning draw (100), the grid 0.03-3.0 for every arm (tools/study/plans/btcv_confirm.json, "tuning")
    recipes=_recipes({"scratch": 1.0, "mae": 1.0, "supervised": 0.3, "untrained": 0.3}),
    supervised_synthetic={"num_train": 12, "num_val": 1, "num_test": 0},
    supervised_steps=3000,
    # on the tuning draw the linear-head network trained 3,000 iterations at base learning rate 1.0 scores mean Dice
    # 0.05 on held-out cases, at 0.1 it scores 0.46 (bundles/unetr_btcv_seg/docs/README.md): the stronger control
    supervised_recipe={"base_learning_rate": 0.1},
)


# ----------------------------------------------------------------------------------------------------------------
# BraTS: unetr_brats_seg (pretrain.json + train.json)
# ----------------------------------------------------------------------------------------------------------------

_BRATS = BUNDLES / "unetr_brats_seg" / "configs"
_BRATS_ROI = {"roi_size": [48, 48, 48], "num_workers": 0, "dataset_layout": "msd"}
# 48^3 crops of 1 mm voxels in 8^3 patches: 216 tokens (54 visible at mask ratio 0.75), as in the BTCV study; the
# tokens are 8 mm where the paper's are 16 mm (128^3 crops, 16^3 patches: 512 tokens). With the bundle's UNETR (patch
# 16: 27 tokens) every arm reached Dice >= 0.93 on the synthetic tumours, a ceiling no encoder could rise above
_BRATS_LINEAR_HEAD_VIT = _linear_head_vit(in_channels=4, out_channels="$len(@class_names)", patch_size=8)


class BratsTask(Task):
    def make_synthetic(self, out_dir: Path, seed: int, **changes: Any) -> Path:
        return Path(synthetic.make_brats(str(out_dir), layout="msd", seed=seed, **{**self.synthetic, **changes}))

    def cases(self, dataset_dir: Path, workdir: Path) -> tuple[list[dict], list[dict]]:
        """The cases of an MSD Task01 folder, the only layout the study reads.

        Raises:
            FileNotFoundError: ``dataset_dir`` has no ``dataset.json`` (e.g. a BraTS 2021 folder), saying so.
        """
        if not (dataset_dir / "dataset.json").is_file():
            raise FileNotFoundError(
                f"--dataset_dir {dataset_dir} has no dataset.json: the brats study reads the MSD Task01_BrainTumour "
                "layout only (dataset.json, imagesTr/, labelsTr/). A BraTS 2021 folder of case folders is read by the "
                "unetr_brats_seg bundle itself (its dataset_layout 'brats2021'), not by the study.")
        split = brats_datalist(str(dataset_dir), "msd", str(workdir / "bundle_split.json"))
        return split["training"], split["validation"]

    def scores(self, eval_dir: Path) -> dict[str, Any]:
        return _segmentation_scores(eval_dir, {"mean_dice_regions": "mean"})


brats = BratsTask(
    name="brats",
    metric="mean_dice_regions",
    metric_label="mean Dice over TC, WT and ET",
    class_label="region",
    **_small_segmentation_stages(_BRATS / "pretrain.json", _BRATS, _BRATS_ROI, pretrain_epochs=200,
                                 network=_BRATS_LINEAR_HEAD_VIT, mae={"patch_size": 8}),
    finetune_steps=300,
    full_finetune_steps=20000,
    batch_size=2,
    # with 3 seeds the positive control was not separated from scratch at 2 labelled cases (P - S +0.137
    # [-0.027, 0.302], scratch's SD 0.073); with 8 it was (+0.145 [0.107, 0.184]). 8 seeds x 2 sizes would take about
    # an hour, so the default runs the smallest size only; --labelled_sizes "[2,all]" adds the 11 labelled cases
    labelled_sizes=(2,),
    num_seeds=8,
    full_labelled_sizes=(20, "all"),
    synthetic={"num_cases": 14},
    # each arm's best of base learning rates 0.1, 0.3, 1.0, 3.0, 10.0 on the tuning draw (data seed 100, 2 labelled,
    # 3 held-out cases, seeds 100-102; bundles/unetr_brats_seg/docs/README.md, "Performance")
    recipes=_recipes({"scratch": 1.0, "mae": 3.0, "supervised": 1.0, "untrained": 1.0}),
    supervised_synthetic={"num_cases": 12},
    supervised_steps=3000,
    # as for BTCV: on the tuning draw (100) this network scores mean Dice 0.88 on held-out cases by itself
    supervised_recipe={"base_learning_rate": 0.1},
)


# ----------------------------------------------------------------------------------------------------------------
# ChestX-ray14: vit_cxr14_cls (pretrain.json + train.json)
# ----------------------------------------------------------------------------------------------------------------

_CXR = BUNDLES / "vit_cxr14_cls" / "configs"
_CXR_SMALL = {"image_size": 64, "crop_size": 56, "patch_size": 8, "num_workers": 0,
              **_network(hidden_size=96, mlp_dim=384, num_heads=4, num_layers=4)}


class Cxr14Task(Task):
    def make_synthetic(self, out_dir: Path, seed: int, **changes: Any) -> Path:
        return Path(synthetic.make_cxr14(str(out_dir), seed=seed, **{**self.synthetic, **changes}))

    def cases(self, dataset_dir: Path, workdir: Path) -> tuple[list[dict], list[dict]]:
        root = dataset_dir.resolve()  # one form for both: a link's path and its target's do not relate
        split = prepare_datalist(str(root), str(workdir / "bundle_split.json"))
        relative = [{"image": str(Path(i["image"]).relative_to(root)), "label": i["label"]} for i in split["training"]]
        test = [{"image": str(Path(i["image"]).relative_to(root)), "label": i["label"]} for i in split["test"]]
        return relative, test

    def write_datalist(self, path: Path, training: Sequence[dict], evaluation: Sequence[dict]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"training": list(training), "validation": list(evaluation), "test": list(evaluation)}
        path.write_text(json.dumps(data))
        return path

    def scores(self, eval_dir: Path) -> dict[str, Any]:
        summary = json.loads((eval_dir / "auc.json").read_text())
        return {"mean_auc": summary["mean_auc"], "per_class": summary["auc"]}


cxr14 = Cxr14Task(
    name="cxr14",
    metric="mean_auc",
    metric_label="mean ROC-AUC over the 14 findings",
    class_label="finding",
    pretrain=Stage((_CXR / "pretrain.json",), {
        **_CXR_SMALL, **_network(decoder_hidden_size=64, decoder_num_layers=2, decoder_num_heads=4),
        "epochs": 100, "warmup_epochs": 10, "batch_size": 32, "base_learning_rate": 1.5e-3 * 256 / 32,
        "snapshot_interval": 10, "save_interval": 0,
    }),
    finetune=Stage((_CXR / "train.json",), {
        **_CXR_SMALL, "save_interval": 0, "val_cache_rate": 0.0, "batch_size": 32,
    }),
    evaluate=Stage((_CXR / "train.json", _CXR / "evaluate.json"), {**_CXR_SMALL, "val_batch_size": 64}),
    finetune_steps=400,
    full_finetune_steps=30000,
    batch_size=32,
    labelled_sizes=(64, "all"),
    full_labelled_sizes=(1000, 10000, "all"),
    synthetic={"num_images": 800, "size": 128},
    # each arm's best of base learning rates 0.0027, 0.008, 0.024, 0.072 on the tuning draw (data seed 100, 64
    # labelled, 150 held-out images, seeds 100-102; bundles/vit_cxr14_cls/docs/README.md, "Performance")
    recipes=_recipes({"scratch": 0.008, "mae": 0.024, "supervised": 0.0027, "untrained": 0.008}),
    supervised_synthetic={"num_images": 800},
    # on the tuning draw (100) the control's own network scored mean AUC 0.754 on held-out images after 400 iterations
    # at base learning rate 0.0027, no better than scratch from 64 labels: no gain to hand over; 0.944 after 2,000 at
    # the recipe's 0.008 (the two changes not separated; bundles/vit_cxr14_cls/docs/README.md, "Performance")
    supervised_steps=2000,
)

TASKS = {task.name: task for task in (btcv, brats, cxr14)}
