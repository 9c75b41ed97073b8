"""Estimate the accelerator memory one training step of each training config needs, without a GPU.

Each config's own network, optimizer (with its parameter groups) and loss are built from the config, then one
training step at the config's batch (``batch_size`` x ``num_samples`` crops of ``roi_size``, or ``batch_size`` images
of ``crop_size``), bf16 autocast as ``amp`` gives on a GPU, runs twice on fake tensors (``FakeTensorMode``: shapes
only, no arithmetic, seconds on a CPU). torch's ``MemTracker`` records the peak of the live tensors: parameters,
optimizer state, activations, temporaries. A real GPU adds the CUDA context and cuDNN workspace (about 0.5-1 GB) and
allocator fragmentation, so read the figures as lower bounds. ``tools/measure/gpu_check.py`` measures on a GPU.

    python -m tools.measure.estimate_memory
    python -m tools.measure.estimate_memory --batch_sizes "[1, 2]"     # the same configs at other batch sizes
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fire
import torch
from monai.bundle import ConfigParser
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.mem_tracker import MemTracker

from tools.bundle_runner import bundle_importable

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
TRAINING_CONFIGS = [("mae_pretrain_ct", "train.json"), ("unetr_btcv_seg", "train.json"),
                    ("unetr_brats_seg", "pretrain.json"), ("unetr_brats_seg", "train.json"),
                    ("vit_cxr14_cls", "pretrain.json"), ("vit_cxr14_cls", "train.json")]


def read_config(bundle: str, config: str, overrides: dict[str, Any]) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / config))
    # the network stays where it is built (``.to`` of fake parameters would try to swap them)
    parser.update({"device": "$torch.device('cpu')", "network": "@network_def", **overrides})
    return parser


def batch_shape(parser: ConfigParser) -> tuple[int, ...]:
    """``(images per step, channels, *spatial)`` of one training step of the config."""
    net = parser["network_def"]
    channels = parser.get_parsed_content("network_def#in_channels", instantiate=False)
    if "roi_size" in parser:
        images = parser.get_parsed_content("batch_size") * parser.get_parsed_content("num_samples")
        return (images, channels, *parser.get_parsed_content("roi_size"))
    size = parser.get_parsed_content("crop_size")
    return (parser.get_parsed_content("batch_size"), channels, *(size,) * len(net["img_size"]))


def training_step(network: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Forward under bf16 autocast and a loss in fp32 (the MAE computes its own loss in its forward).

    The segmentation and classification losses are stand-ins that hold the tensors of the configs' losses (fp32
    logits, their softmax or sigmoid and a one-hot target): MONAI's ``DiceLoss`` reads tensor values (``tolist``),
    which fake tensors do not have.
    """
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = network(images)
    if isinstance(output, dict):
        return output["loss"]
    logits = output.float()
    target = torch.zeros_like(logits)
    if logits.shape[2:] == images.shape[2:]:  # segmentation: Dice on probabilities plus cross-entropy
        probabilities = logits.softmax(1)
        return torch.nn.functional.cross_entropy(logits, target) + (probabilities - target).pow(2).mean()
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, target)


def estimate(bundle: str, config: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Peak memory of the live tensors of one training step of ``bundle``'s ``config``.

    Returns:
        ``batch`` (the shape of the step's input) and GiB per category at the peak: ``param``, ``buffer``, ``grad``,
        ``act`` (activations), ``temp``, ``opt`` (optimizer state), ``oth`` and their ``total``.
    """
    parser = read_config(bundle, config, overrides or {})
    with bundle_importable(BUNDLES / bundle), FakeTensorMode():
        network = parser.get_parsed_content("network")
        for param in network.parameters():  # MemTracker hooks every parameter; frozen ones are small (sin-cos PE)
            param.requires_grad_(True)
        optimizer = parser.get_parsed_content("optimizer")
        shape = batch_shape(parser)
        images = torch.zeros(shape)
        tracker = MemTracker()
        tracker.track_external(network, optimizer)
        with tracker:
            for _ in range(2):  # the second step has the optimizer state that the first one created
                training_step(network, images).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                tracker.reset_mod_stats()
    peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
    gib = {str(k).split(".")[-1].lower(): v / 2**30 for k, v in peak.items()}
    return {"batch": list(shape), **gib}


def main(batch_sizes: Sequence[int] | None = None) -> None:
    """Print the estimate of every training config (at its own batch size, or at each of ``batch_sizes``)."""
    for bundle, config in TRAINING_CONFIGS:
        for batch_size in batch_sizes or [None]:
            overrides = {} if batch_size is None else {"batch_size": batch_size}
            row = {"config": f"{bundle}/configs/{config}", **estimate(bundle, config, overrides)}
            print(f"{row['config']:40s} batch {row['batch']}: {row['total']:.1f} GiB (parameters {row['param']:.2f}, "
                  f"optimizer state {row['opt']:.2f}, activations {row['act']:.2f}, temporaries {row['temp']:.2f})",
                  flush=True)


if __name__ == "__main__":
    fire.Fire(main, name="tools.measure.estimate_memory")
