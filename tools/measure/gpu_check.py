"""The GPU check: the figures a GPU machine should give for this project, measured in one run and written as JSON.

1. The MAE training step at the paper's configuration (1x96^3, batch 2, ViT-B, decoder 384/8/12): ours and MONAI's
   ``MaskedAutoEncoderViT``, fp32 and bf16 autocast (``tools/measure/benchmark_mae.py``'s measurement), with peak
   memory.
2. UNETR (ViT-B, 96^3 windows, overlap 0.5, ``sw_batch_size`` 4) sliding-window inference on a CT-sized volume
   (1x512x512x200), fp32 and bf16: seconds per volume and peak memory.
3. One short epoch of every training and pre-training config of the four bundles, with ``amp`` on, on synthetic data
   in each data set's layout: seconds (data caching included) and peak memory.

Meant for a GPU machine, where it takes a few minutes; ``--tiny`` shrinks every size so that it runs anywhere in
seconds (that is how the tests run it)::

    python -m tools.measure.gpu_check --output gpu_check.json
    python -m tools.measure.gpu_check --tiny --device cpu --output /tmp/gpu_check_tiny.json
"""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fire
import torch
from ignite.engine import Events
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import UNETR, MaskedAutoEncoderViT

from shared.inferers.autocast import AutocastInferer
from shared.networks.mae import MaskedAutoencoderViT
from shared.utils.atomic import write_text_atomically
from tools import synthetic
from tools.bundle_runner import run_bundle
from tools.measure.benchmark_mae import monai_step, ours_step, time_steps

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"

PAPER_MAE = {"img_size": 96, "patch_size": 16, "hidden_size": 768, "num_layers": 12, "num_heads": 12,
             "decoder_hidden_size": 384, "decoder_num_layers": 8, "decoder_num_heads": 12}
TINY_MAE = {"img_size": 32, "patch_size": 16, "hidden_size": 48, "num_layers": 2, "num_heads": 4,
            "decoder_hidden_size": 24, "decoder_num_layers": 1, "decoder_num_heads": 2}
TINY_NETWORK = {"network_def#hidden_size": 48, "network_def#mlp_dim": 96, "network_def#num_heads": 4}

# (bundle, config, which synthetic data set, overrides of a short epoch)
TRAINING_CONFIGS = [
    ("mae_pretrain_ct", "train.json", "btcv", {"batch_size": 2, "num_samples": 2}),
    ("unetr_btcv_seg", "train.json", "btcv", {"batch_size": 2, "num_samples": 2}),
    ("unetr_brats_seg", "pretrain.json", "brats", {"batch_size": 2, "num_samples": 2}),
    ("unetr_brats_seg", "train.json", "brats", {"batch_size": 2, "num_samples": 1}),
    ("vit_cxr14_cls", "pretrain.json", "cxr14", {"batch_size": 16}),
    ("vit_cxr14_cls", "train.json", "cxr14", {"batch_size": 16}),
]


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> float | None:
    """Peak memory allocated by torch on ``device`` since the last reset, in GB (None on a CPU)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return round(torch.cuda.max_memory_allocated(device) / 1e9, 3)


def measured(run: Callable[[], Any], device: torch.device) -> dict[str, Any]:
    """Run ``run`` once; its seconds and peak memory, or the first line of its error."""
    reset_peak_memory(device)
    start = time.perf_counter()
    try:
        run()
    except RuntimeError as e:
        return {"error": str(e).splitlines()[0]}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"seconds": round(time.perf_counter() - start, 3), "peak_memory_gb": peak_memory_gb(device)}


def mae_step(device: torch.device, tiny: bool, steps: int = 5, warmup: int = 2) -> dict[str, Any]:
    """Median training-step seconds and peak memory of ours and MONAI's MAE, fp32 and bf16."""
    sizes = TINY_MAE if tiny else PAPER_MAE
    common = {**sizes, "in_channels": 1, "mlp_dim": 4 * sizes["hidden_size"],
              "decoder_mlp_dim": 4 * sizes["decoder_hidden_size"]}
    torch.manual_seed(0)
    networks = {
        "ours": (MaskedAutoencoderViT(**common, mask_ratio=0.75).to(device), ours_step),
        "monai": (MaskedAutoEncoderViT(**common, masking_ratio=0.75).to(device),
                  lambda n, x: monai_step(n, x, sizes["patch_size"])),
    }
    images = torch.rand(2, 1, *(sizes["img_size"],) * 3, device=device)
    results: dict[str, Any] = {"sizes": sizes, "batch_size": 2}
    for name, (net, step) in networks.items():
        for bf16 in (False, True):
            key = f"{name}_{'bf16' if bf16 else 'fp32'}"
            reset_peak_memory(device)
            try:
                seconds = statistics.median(time_steps(step, net, images, steps, warmup, bf16))
                results[key] = {"seconds_per_step": round(seconds, 4), "peak_memory_gb": peak_memory_gb(device)}
            except RuntimeError as e:
                results[key] = {"error": str(e).splitlines()[0]}
    return results


def sliding_window(device: torch.device, tiny: bool) -> dict[str, Any]:
    """Seconds per volume and peak memory of UNETR sliding-window inference on a CT-sized volume, fp32 and bf16."""
    roi, shape = ((32,) * 3, (64, 64, 48)) if tiny else ((96,) * 3, (512, 512, 200))
    encoder = {"hidden_size": 48, "mlp_dim": 96, "num_heads": 4} if tiny else {}
    torch.manual_seed(0)
    network = UNETR(1, 14, roi, feature_size=8 if tiny else 16, norm_name="instance", res_block=True,
                    qkv_bias=False, **encoder).to(device).eval()
    volume = torch.rand(1, 1, *shape, device=device)
    window = SlidingWindowInferer(roi_size=roi, sw_batch_size=4, overlap=0.5)
    results: dict[str, Any] = {"volume_shape": list(shape), "roi_size": list(roi), "overlap": 0.5, "sw_batch_size": 4}
    outputs = {}
    for dtype in ("float32", "bfloat16"):
        inferer = AutocastInferer(window, enabled=dtype == "bfloat16", dtype="bfloat16")

        def infer(inferer=inferer, dtype=dtype) -> None:
            with torch.no_grad():
                outputs[dtype] = inferer(volume, network).argmax(1)

        results[dtype] = measured(infer, device)
    if len(outputs) == 2:
        agreement = (outputs["float32"] == outputs["bfloat16"]).float().mean().item()
        results["label_agreement_bf16_vs_fp32"] = round(agreement, 5)
    return results


def make_data(kind: str, out: Path, tiny: bool) -> dict[str, Any]:
    """Synthetic data of ``kind`` under ``out``; returns the config overrides that point a bundle at it."""
    if kind == "btcv":
        shape, body_scale = ((64, 64, 32), 0.1) if tiny else ((256, 256, 96), 1.0)
        return {"dataset_dir": synthetic.make_btcv(str(out), num_train=2, num_val=1, num_test=0, shape=shape,
                                                   body_scale=body_scale)}
    if kind == "brats":
        shape = (48, 48, 32) if tiny else (160, 160, 128)
        synthetic.make_brats(str(out), layout="msd", num_cases=4, shape=shape, seed=0)
        return {"dataset_dir": str(out), "dataset_layout": "msd"}
    synthetic.make_cxr14(str(out), num_images=64, size=64 if tiny else 256)
    return {"dataset_dir": str(out)}


def training_epochs(device: torch.device, tiny: bool, workdir: Path) -> dict[str, Any]:
    """One epoch of each bundle's training and pre-training config, ``amp`` on.

    Returns, per config: ``seconds`` of the whole run (data caching included), ``epoch_seconds`` and
    ``seconds_per_iteration`` of the training epoch alone, the ``batch`` it ran and peak memory.
    """
    data: dict[str, dict[str, Any]] = {}
    results: dict[str, Any] = {}
    for bundle, config, kind, overrides in TRAINING_CONFIGS:
        if kind not in data:
            data[kind] = make_data(kind, workdir / "data" / kind, tiny)
        small: dict[str, Any] = {}
        if tiny:
            small = {**TINY_NETWORK, "roi_size": [32, 32, 32]} if kind != "cxr14" else {
                **TINY_NETWORK, "image_size": 64, "crop_size": 32}
            if bundle in ("unetr_btcv_seg", "unetr_brats_seg") and config == "train.json":
                small["network_def#feature_size"] = 8
        configs = [BUNDLES / bundle / "configs" / config]
        root = workdir / f"{bundle}_{config.removesuffix('.json')}"
        run_overrides = {**data[kind], **overrides, **small, "epochs": 1, "warmup_epochs": 1, "val_interval": 2,
                         "amp": True, "num_workers": 2, "device": f"$torch.device('{device}')"}
        finished = []

        def run(configs=configs, root=root, run_overrides=run_overrides, finished=finished) -> None:
            finished.append(run_bundle(configs, root, root / "run.log", run_overrides))

        figures = measured(run, device)
        if finished:  # ignite's trainer state keeps the epoch's duration
            state = finished[0].parser.get_parsed_content("train#trainer").state
            seconds = state.times[Events.EPOCH_COMPLETED.name]
            figures.update(epoch_seconds=round(seconds, 3), iterations=state.epoch_length,
                           seconds_per_iteration=round(seconds / state.epoch_length, 3))
        results[f"{bundle}/{config}"] = {**figures, "batch": overrides}
    return results


def main(output: str = "gpu_check.json", tiny: bool = False, device: str | None = None,
         parts: str = "mae,sliding_window,training") -> None:
    """Run the check and write its figures to ``output`` (JSON).

    Args:
        output: the JSON file to write.
        tiny: tiny sizes everywhere (seconds on a CPU), to check that the script works.
        device: ``cuda`` (default when available) or ``cpu``.
        parts: which parts to run, comma-separated: ``mae``, ``sliding_window``, ``training``.
    """
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    wanted = {p.strip() for p in (parts.split(",") if isinstance(parts, str) else parts)}
    figures: dict[str, Any] = {
        "device": torch.cuda.get_device_name(target) if target.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "tiny": tiny, "bf16_supported": bool(
            torch.cuda.is_bf16_supported() if target.type == "cuda" else True),
    }
    start = time.perf_counter()
    if "mae" in wanted:
        figures["mae_step"] = mae_step(target, tiny)
        print(json.dumps({"mae_step": figures["mae_step"]}), flush=True)
    if "sliding_window" in wanted:
        figures["sliding_window"] = sliding_window(target, tiny)
        print(json.dumps({"sliding_window": figures["sliding_window"]}), flush=True)
    if "training" in wanted:
        with tempfile.TemporaryDirectory(prefix="gpu_check_") as workdir:
            figures["training_epoch"] = training_epochs(target, tiny, Path(workdir))
        print(json.dumps({"training_epoch": figures["training_epoch"]}), flush=True)
    figures["wall_seconds"] = round(time.perf_counter() - start, 1)
    write_text_atomically(json.dumps(figures, indent=1), output)
    print(f"written {output} ({figures['wall_seconds']} s)")


if __name__ == "__main__":
    fire.Fire(main, name="tools.measure.gpu_check")
