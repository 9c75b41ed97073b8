"""The class scores of the same chest X-ray stored as an 8-bit or a 16-bit PNG, through ``vit_cxr14_cls``.

``read_xray`` (``shared/data/xray.py``) reads an 8-bit PNG as ``value / 255`` but scales a 16-bit PNG by the
image's own minimum and maximum. The same picture stored both ways (16-bit value = 8-bit value x 257, what converting
the 8-bit file to 16 bits gives) thus reaches the network with its contrast stretched by ``255 / (max - min)`` and
its darkest pixel moved to 0. This tool trains the study's small classifier from scratch on synthetic ChestX-ray14
(``tools/study/tasks.py``), scores the held-out images stored both ways through ``inference.json`` and prints how
much the 14 probabilities differ (and, as a control, that an image spanning 0-255 scores the same at both depths).

    python -m tools.measure.measure_bit_depth                        # 800 synthetic 128-pixel images, 400 iterations
    python -m tools.measure.measure_bit_depth --num_images 200 --steps 50 --out_dir /tmp/bit_depth
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import fire
import numpy as np
from PIL import Image

from shared.data.cxr14 import prepare_datalist
from shared.utils.atomic import write_json_atomically
from shared.utils.files import replace_marked_folder
from tools import synthetic
from tools.bundle_runner import run_bundle_process
from tools.study.tasks import cxr14

OUTPUT_MARKER = ".bit_depth_output"
"""The file that marks a folder as this tool's output, which its next run may replace."""

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "vit_cxr14_cls" / "configs"


def write_both_depths(images: Sequence[Path], folder: Path) -> list[float]:
    """Write each 8-bit image as it is (``folder/8bit``) and as 16 bits (``folder/16bit``, value x 257).

    Returns:
        each image's contrast stretch at 16 bits, ``255 / (max - min)`` of its 8-bit values.
    """
    stretches = []
    for depth in ("8bit", "16bit"):
        (folder / depth).mkdir(parents=True, exist_ok=True)
    for path in images:
        pixels = np.asarray(Image.open(path).convert("L"), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "8bit" / path.name)
        Image.fromarray(pixels.astype(np.uint16) * 257).save(folder / "16bit" / path.name)
        stretches.append(255.0 / max(1, int(pixels.max()) - int(pixels.min())))
    return stretches


def full_range(path: Path, out: Path) -> Path:
    """``path`` stretched to span 0-255 (the case where both depths read alike), written as ``out``."""
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    low, high = pixels.min(), pixels.max()
    Image.fromarray(np.rint((pixels - low) * 255.0 / max(high - low, 1.0)).astype(np.uint8)).save(out)
    return out


def scores(root: Path, folder: Path, out_dir: Path, overrides: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The 14 probabilities of each image of ``folder``, by file name, from the model of ``root``."""
    run_bundle_process([CONFIGS / "inference.json"], {**overrides, "bundle_root": str(root), "dataset_dir": str(folder),
                                              "output_dir": str(out_dir)}, out_dir.with_suffix(".log"))
    with open(out_dir / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    names = [k for k in rows[0] if k not in ("image", "path")]
    return {Path(r["image"]).name: np.array([float(r[n]) for n in names]) for r in rows}


def differences(eight: Mapping[str, np.ndarray], sixteen: Mapping[str, np.ndarray]) -> dict[str, float]:
    """How much the probabilities of the same images differ between the two depths (absolute, over images x
    findings), and how often a finding's 0.5 decision flips."""
    a = np.stack([eight[k] for k in sorted(eight)])
    b = np.stack([sixteen[k] for k in sorted(eight)])
    delta = np.abs(a - b)
    return {"images": len(a), "mean": float(delta.mean()), "median": float(np.median(delta)),
            "p95": float(np.percentile(delta, 95)), "max": float(delta.max()),
            "max_per_image_mean": float(delta.mean(axis=1).max()),
            "relative_mean": float((delta / np.maximum(a, 1e-12)).mean()),
            "flipped_decisions": float(((a > 0.5) != (b > 0.5)).mean())}


def train(data: Path, root: Path, steps: int, overrides: Mapping[str, Any]) -> None:
    """The study's small classifier, from scratch, ``steps`` iterations of batch 32 (its scratch recipe)."""
    training = len(prepare_datalist(str(data))["training"])
    epochs = max(1, round(steps * 32 / training))
    run_bundle_process([CONFIGS / "train.json"], {
        **overrides, **cxr14.recipes["scratch"], "bundle_root": str(root), "dataset_dir": str(data),
        "epochs": epochs, "warmup_epochs": max(1, epochs // 10), "val_interval": epochs, "pretrained_encoder": "",
        "resume": False}, root / "train.log")


def measure(out_dir: str = "runs/bit_depth", num_images: int = 800, size: int = 128, steps: int = 400,
            seed: int = 0) -> dict[str, Any]:
    """Train, score the held-out images at both depths; the figures, also written to ``<out_dir>/summary.json``.

    ``out_dir`` is replaced whole (nothing of an earlier run with other settings is reused): it must be new, empty or
    written by an earlier run of this tool (marked by :data:`OUTPUT_MARKER`).
    """
    out = replace_marked_folder(
        Path(out_dir).resolve(), OUTPUT_MARKER, "written by python -m tools.measure.measure_bit_depth; its next run "
        "into this folder replaces it.\n", f"{out_dir} is not empty and this tool did not write it (no "
        f"{OUTPUT_MARKER}): choose another --out_dir or empty it.")
    root = out / "bundle"
    root.mkdir()
    data = Path(synthetic.make_cxr14(str(out / "data"), num_images=num_images, size=size, seed=seed))
    overrides = {k: v for k, v in cxr14.finetune.overrides.items() if k != "val_cache_rate"}
    train(data, root, steps, overrides)
    held_out = [data / "images" / n for n in (data / "test_list.txt").read_text().split()]
    stretches = write_both_depths(held_out, out / "held_out")
    result = {"stretch": {"min": min(stretches), "median": float(np.median(stretches)), "max": max(stretches)}}
    result["held_out"] = differences(scores(root, out / "held_out" / "8bit", out / "scores_8bit", overrides),
                                     scores(root, out / "held_out" / "16bit", out / "scores_16bit", overrides))
    control = out / "full_range"
    write_both_depths([full_range(held_out[0], out / f"full_{held_out[0].name}")], control)
    result["full_range_control"] = differences(scores(root, control / "8bit", out / "control_8bit", overrides),
                                               scores(root, control / "16bit", out / "control_16bit", overrides))
    write_json_atomically(result, out / "summary.json")
    return result


def main(out_dir: str = "runs/bit_depth", num_images: int = 800, size: int = 128, steps: int = 400,
         seed: int = 0) -> None:
    """Print the figures of :func:`measure` (same arguments)."""
    print(json.dumps(measure(out_dir, num_images, size, steps, seed), indent=2))


if __name__ == "__main__":
    fire.Fire(main, name="tools.measure.measure_bit_depth")
