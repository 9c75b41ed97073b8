"""What ``unetr_btcv_seg/configs/inference.json`` costs per CT, and what its settings cost in Dice, measured in one run.

``timing``: the whole bundle run (``python -m monai.bundle run``, one process per setting, under ``/usr/bin/time``
when present) on one CT volume, for each setting: wall seconds, peak memory, and the fraction of voxels whose label
equals that of the first setting. By default the volume is a synthetic abdomen CT of a common size (512x512x115 at
0.68x0.68x2.5 mm: 221x165x144 voxels after resampling to 1.5x1.5x2 mm and cropping to the body) and the network a
randomly initialised UNETR of the paper's size (speed does not depend on the weights; agreement of a random network
is not informative, pass ``--model_file`` for that).

``stages``: where the time of one such run goes (start-up, each transform, the network), in one process.

``dice``: the Dice cost of the settings, through ``evaluate.json``, for models a study trained
(``tools/run_experiment.py``, small configuration) on its synthetic validation cases.

``network``: the network alone, one batch of sliding windows, in the bundle's way (bf16 autocast) and with the CPU
levers that leave the label map (nearly) unchanged: seconds per window, the ratio to the bundle's way, the arithmetic
rate reached, and the fraction of voxels whose label equals fp32's.

``inversion``: ``InvertedArgmaxd`` (the label map computed only in the box of original voxels that read the foreground
crop) against the same resampling and argmax over the whole original grid, in one process.

    python -m tools.measure.benchmark_inference timing
    python -m tools.measure.benchmark_inference stages
    python -m tools.measure.benchmark_inference network
    python -m tools.measure.benchmark_inference inversion --pixel_mm 0.9
    python -m tools.measure.benchmark_inference dice --study_dir runs/study_btcv
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import fire
import nibabel as nib
import numpy as np

from tools.bundle_runner import bundle_command

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "unetr_btcv_seg"



@dataclass(frozen=True)
class Setting:
    """One way of running the network and its postprocessing.

    Args:
        amp: bf16 autocast (``--amp``).
        overlap: sliding-window overlap.
        inversion: how the probabilities become a label map in the original grid: ``"inverted_argmax"`` (the
            bundle's ``InvertedArgmaxd``: probabilities resampled slab by slab with the argmax fused),
            ``"invert_then_argmax"`` (MONAI's ``Invertd`` of the 14 probability channels, then ``AsDiscreted``
            argmax: the model zoo's order) or ``"argmax_then_invert"`` (the argmax on the resampled grid, then
            ``Invertd`` of the label map with nearest-neighbour interpolation).
    """

    amp: bool
    overlap: float
    inversion: str = "inverted_argmax"


# the first is the reference for agreement and Dice cost
SETTINGS = {
    "fp32, overlap 0.5": Setting(amp=False, overlap=0.5),
    "bf16, overlap 0.5 (the bundle's)": Setting(amp=True, overlap=0.5),
    "fp32, overlap 0.25": Setting(amp=False, overlap=0.25),
    "bf16, overlap 0.25": Setting(amp=True, overlap=0.25),
    "bf16, overlap 0.5, Invertd then argmax": Setting(amp=True, overlap=0.5, inversion="invert_then_argmax"),
    "bf16, overlap 0.5, argmax then Invertd": Setting(amp=True, overlap=0.5, inversion="argmax_then_invert"),
}

# the index of InvertedArgmaxd in the postprocessing of inference.json and evaluate.json
_INVERSION_INDEX = 1


def chosen_settings(names: Sequence[str] | None) -> dict[str, Setting]:
    """The ``SETTINGS`` named by ``names``, in that order (all of them when None).

    Raises:
        ValueError: a name is not one of ``SETTINGS``.
    """
    if not names:
        return SETTINGS
    unknown = [name for name in names if name not in SETTINGS]
    if unknown:
        raise ValueError(f"unknown settings {unknown}; choose among {list(SETTINGS)}.")
    return {name: SETTINGS[name] for name in names}


def _inversion(setting: Setting, preprocessing: str) -> dict[str, Any] | None:
    """The transform that replaces ``InvertedArgmaxd`` for ``setting`` (None: keep it)."""
    invert = {"_target_": "Invertd", "keys": "pred", "transform": preprocessing, "orig_keys": "image",
              "nearest_interp": False, "to_tensor": True}
    argmax = {"_target_": "AsDiscreted", "keys": "pred", "argmax": True}
    if setting.inversion == "invert_then_argmax":
        return {"_target_": "Compose", "transforms": [invert, argmax]}
    if setting.inversion == "argmax_then_invert":
        return {"_target_": "Compose", "transforms": [argmax, {**invert, "nearest_interp": True}]}
    if setting.inversion != "inverted_argmax":
        raise ValueError(f"unknown inversion {setting.inversion!r}.")
    return None


def inference_overrides(setting: Setting) -> dict[str, Any]:
    """Overrides of ``inference.json`` for ``setting``."""
    overrides: dict[str, Any] = {"amp": setting.amp, "inferer#inferer#overlap": setting.overlap}
    inversion = _inversion(setting, "@preprocessing")
    if inversion:
        overrides[f"postprocessing#transforms#{_INVERSION_INDEX}"] = inversion
    return overrides


def evaluate_overrides(setting: Setting) -> dict[str, Any]:
    """Overrides of ``train.json`` + ``evaluate.json`` for ``setting``."""
    overrides: dict[str, Any] = {"amp": setting.amp, "validate#inferer#inferer#overlap": setting.overlap}
    inversion = _inversion(setting, "@validate#preprocessing")
    if inversion:
        overrides[f"validate#postprocessing#transforms#{_INVERSION_INDEX}"] = inversion
    return overrides


def synthetic_ct(out_dir: Path, shape=(512, 512, 115), spacing=(0.683, 0.683, 2.5)) -> Path:
    """One synthetic abdomen CT in the BTCV layout (``imagesTs``); returns its path."""
    from tools import synthetic

    synthetic.make_btcv(str(out_dir), num_train=0, num_val=0, num_test=1, shape=shape,
                        inplane_spacing=(spacing[0], spacing[0]), slice_spacing=(spacing[2], spacing[2]))
    return next((out_dir / "imagesTs").glob("*.nii.gz"))


def inference_parser(**overrides: Any):
    """The bundle's ``inference.json`` (with its metadata) in a ``ConfigParser``, ``overrides`` applied."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.json"))
    parser.read_meta(str(BUNDLE / "configs" / "metadata.json"))
    for key, value in overrides.items():
        parser[key] = value
    return parser


def random_unetr(path: Path) -> Path:
    """The paper's UNETR (as ``inference.json`` builds it), randomly initialised, saved as a model file."""
    import torch

    torch.manual_seed(0)
    torch.save(inference_parser().get_parsed_content("network_def").state_dict(), path)
    return path


def run_timed(cmd: list[str], cwd: Path) -> dict[str, Any]:
    """Run ``cmd``; wall seconds and peak resident memory (MB, from ``/usr/bin/time -v`` when present)."""
    timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    full = [timer, "-v", *cmd] if timer else cmd
    start = time.perf_counter()
    proc = subprocess.run(full, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    return {"seconds": round(seconds, 1), "peak_memory_mb": round(int(peak.group(1)) / 1024) if peak else None}


def timing(ct: str | None = None, model_file: str | None = None, workdir: str | None = None,
           settings: Sequence[str] | None = None) -> dict[str, Any]:
    """Time ``inference.json`` on one CT per setting; print and return the figures.

    Args:
        ct: a CT volume (default: a synthetic one of a common size).
        model_file: the weights (default: the paper's UNETR, randomly initialised).
        workdir: where volumes and outputs go (default: a new temporary folder).
        settings: names of ``SETTINGS`` to run, the first being the reference for agreement (default: all).
    """
    work = Path(workdir or tempfile.mkdtemp(prefix="benchmark_inference_"))
    work.mkdir(parents=True, exist_ok=True)
    volume = Path(ct) if ct else synthetic_ct(work / "ct")
    model = Path(model_file) if model_file else random_unetr(work / "random_unetr.pt")
    print(f"CT {volume}: shape {nib.load(volume).shape}, spacing {nib.load(volume).header.get_zooms()}; "
          f"model {model}", flush=True)
    results: dict[str, Any] = {}
    reference = None
    for name, setting in chosen_settings(settings).items():
        out = work / re.sub(r"\W+", "_", name)
        cmd = bundle_command([BUNDLE / "configs" / "inference.json"], {
            "bundle_root": str(BUNDLE), "input_files": [str(volume)], "output_dir": str(out), "model_file": str(model),
            **inference_overrides(setting),
        })
        results[name] = run_timed(cmd, work)
        labels = np.asanyarray(nib.load(next(out.glob("*_seg.nii.gz"))).dataobj)
        reference = labels if reference is None else reference
        results[name]["voxel_agreement"] = round(float((labels == reference).mean()), 5)
        print(f"{name:40s} {results[name]}", flush=True)
    first = next(iter(results.values()))["seconds"]
    for name, figures in results.items():
        print(f"  {name}: {figures['seconds'] / first:.2f}x the time of the first")
    return results


def _timed(seconds: dict[str, float], name: str, step, *args):
    """``step(*args)``; its wall time added to ``seconds[name]``."""
    start = time.perf_counter()
    result = step(*args)
    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
    return result


def stages(ct: str | None = None, model_file: str | None = None, workdir: str | None = None,
           amp: bool | None = None) -> dict[str, float]:
    """Where the time of one ``inference.json`` pass goes: seconds for the interpreter's start-up and imports (a
    separate process), parsing the config, building its objects and loading the weights, each preprocessing
    transform, the network (sliding window), and each postprocessing transform, measured in this process on one CT;
    printed with each step's share.

    Args:
        ct: a CT volume (default: a synthetic one of a common size).
        model_file: the weights (default: the paper's UNETR, randomly initialised).
        workdir: where volumes and outputs go (default: a new temporary folder).
        amp: bf16 autocast (default: the bundle's choice for this machine).
    """
    import torch
    from monai.data import decollate_batch, list_data_collate

    from tools.bundle_runner import bundle_importable

    work = Path(workdir or tempfile.mkdtemp(prefix="benchmark_inference_"))
    work.mkdir(parents=True, exist_ok=True)
    volume = Path(ct) if ct else synthetic_ct(work / "ct")
    model = Path(model_file) if model_file else random_unetr(work / "random_unetr.pt")
    seconds: dict[str, float] = {}
    start_up = [sys.executable, "-c", "import torch, monai.bundle, monai.transforms, monai.engines"]
    seconds["interpreter start-up and imports (separate process)"] = run_timed(start_up, work)["seconds"]
    with bundle_importable(BUNDLE):
        preprocessing, network, inferer, postprocessing = _timed(
            seconds, "config parsing, objects and weights", _inference_objects, volume, model, work / "out", amp)
        item: Any = {"image": str(volume)}
        for transform in preprocessing.transforms:
            item = _timed(seconds, f"pre: {type(transform).__name__}", transform, item)
        batch = list_data_collate([item])
        with torch.no_grad():
            pred = _timed(seconds, "network (sliding window)", inferer, batch["image"], network)
        outputs = decollate_batch({"image": batch["image"], "pred": pred})
        for transform in postprocessing.transforms:
            outputs = [_timed(seconds, f"post: {type(transform).__name__}", transform, o) for o in outputs]
    total = sum(seconds.values())
    for name, value in seconds.items():
        print(f"{name:55s} {value:7.2f} s  {value / total:6.1%}")
    print(f"{'total':55s} {total:7.2f} s")
    return {name: round(value, 2) for name, value in seconds.items()}


def _inference_objects(volume: Path, model: Path, out: Path, amp: bool | None) -> tuple[Any, Any, Any, Any]:
    """``inference.json`` for one volume, built: ``(preprocessing, network with the weights of model in evaluation
    mode, inferer, postprocessing)``."""
    import torch

    parser = inference_parser(bundle_root=str(BUNDLE), input_files=[str(volume)], output_dir=str(out),
                              model_file=str(model), **({} if amp is None else {"amp": amp}))
    network = parser.get_parsed_content("network")
    network.load_state_dict(torch.load(model, map_location="cpu", weights_only=True))
    preprocessing, inferer, postprocessing = (parser.get_parsed_content(k)
                                              for k in ("preprocessing", "inferer", "postprocessing"))
    return preprocessing, network.eval(), inferer, postprocessing


def dice(study_dir: str = "runs/study_btcv",
         runs: Sequence[str] = ("n8_seed0_scratch", "n8_seed0_mae"),
         settings: Sequence[str] | None = None) -> dict[str, Any]:
    """Mean Dice (13 organs) through ``evaluate.json`` of a study's models, per setting, on its evaluation cases.

    Args:
        study_dir: the ``--output_dir`` of a finished ``tools/run_experiment.py btcv`` study.
        runs: names of its runs (folders under ``runs/``), e.g. ``n8_seed0_mae``; fire reads ``a,b`` as a list.
        settings: names of ``SETTINGS`` to run (default: all).
    """
    study = Path(study_dir).resolve()
    summary = json.loads((study / "summary.json").read_text())
    from tools.study.tasks import TASKS

    task = TASKS[summary["task"]]
    results: dict[str, Any] = {}
    for run in [runs] if isinstance(runs, str) else runs:
        root = study / "runs" / run
        datalist = next((study / "datalists").glob(f"{run.split('_')[0]}_{run.split('_')[1]}.json"))
        for name, setting in chosen_settings(settings).items():
            eval_dir = Path(tempfile.mkdtemp(prefix="benchmark_dice_"))
            cmd = bundle_command(task.evaluate.configs, {
                "bundle_root": str(root), **task.evaluate.overrides,
                **task.data_overrides(Path(summary["configuration"]["dataset_dir"]), datalist),
                "model_file": str(root / "models" / "checkpoint.pt"), "eval_dir": str(eval_dir),
                **evaluate_overrides(setting),
            })
            figures = run_timed(cmd, root)
            scores = task.scores(eval_dir)
            results.setdefault(name, {})[run] = {"mean_dice_13": round(scores["mean_dice_13"], 4), **figures}
            print(f"{run:20s} {name:40s} {results[name][run]}", flush=True)
    return results


def inversion(ct: str | None = None, pixel_mm: float = 0.683, repeats: int = 2, workdir: str | None = None
              ) -> dict[str, float]:
    """Seconds of the bundle's label-map inversion (``inverted_argmax``: only inside the crop's box) and of the same
    resampling and argmax over the whole original grid, on one CT preprocessed by ``inference.json``, with random
    class probabilities in the network's grid (the time does not depend on them); the fastest of ``repeats`` passes
    each, their ratio, and whether the label maps are identical.

    Args:
        ct: a CT volume (default: the synthetic 512x512x115 CT with in-plane pixels of ``pixel_mm``: a wider field of
            view around the same body for larger pixels).
        pixel_mm: the synthetic CT's in-plane pixel size.
        repeats: timed passes of each.
        workdir: where the synthetic CT goes (default: a new temporary folder).
    """
    import torch
    from monai.data import MetaTensor

    from tools.bundle_runner import bundle_importable

    work = Path(workdir or tempfile.mkdtemp(prefix="benchmark_inversion_"))
    volume = Path(ct) if ct else synthetic_ct(work / "ct", spacing=(pixel_mm, pixel_mm, 2.5))
    with bundle_importable(BUNDLE):
        from scripts.transforms.invert import inverted_argmax, inverted_probability_slabs

        parser = inference_parser()
        image = parser.get_parsed_content("preprocessing")({"image": str(volume)})["image"]
        torch.manual_seed(0)
        probabilities = MetaTensor(torch.softmax(torch.randn(parser.get_parsed_content("num_classes"),
                                                             *image.shape[1:]), 0))
        probabilities.copy_meta_from(image)

        def whole_grid() -> torch.Tensor:
            labels = torch.empty(tuple(image.applied_operations[0]["orig_size"]), dtype=torch.uint8)
            for planes, values in inverted_probability_slabs(probabilities, image):
                labels[..., planes] = values.argmax(-1).permute(1, 2, 0)
            return labels

        seconds, labels = _fastest({"whole grid": whole_grid,
                                    "crop box (the bundle's)": lambda: inverted_argmax(probabilities, image)[0]},
                                   repeats)
    box, whole = labels["crop box (the bundle's)"].as_tensor(), labels["whole grid"]
    result = {**{name: round(value, 2) for name, value in seconds.items()},
              "ratio": round(seconds["crop box (the bundle's)"] / seconds["whole grid"], 2),
              "identical": bool(torch.equal(box, whole)),
              "network_grid": list(image.shape[1:]), "original_grid": list(whole.shape)}
    print(result)
    return result


def _fastest(steps: dict[str, Any], repeats: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Each of ``steps`` (callables without arguments) run ``repeats`` times, taking turns so that a slow spell of
    the machine hits them alike: the fastest seconds of each, and each one's last result."""
    seconds = dict.fromkeys(steps, float("inf"))
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            results[name] = step()
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    return seconds, results


# the first is the reference for the time ratios; fp32 for the label agreement
NETWORK_VARIANTS = ("bf16 autocast (the bundle's)", "fp32", "bf16 autocast, channels_last_3d",
                    "bf16 weights, no autocast", "bf16 autocast, torch.compile")


def network(batch: int = 4, roi_size: int | None = None, repeats: int = 2,
            variants: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """The ``inference.json`` network (randomly initialised) on one batch of ``batch`` windows, per variant of
    ``NETWORK_VARIANTS``: seconds per window (the fastest of ``repeats`` passes after a warm-up pass; for
    torch.compile the warm-up includes compiling, reported apart), the ratio to the bundle's way, GFLOP/s (the
    convolutions' and matrix products' FLOPs counted by torch) and the fraction of voxels whose argmax equals fp32's.

    Args:
        batch: windows per pass (the config's ``sw_batch_size`` is 4).
        roi_size: the window's edge (default: the config's ``roi_size``, 96).
        repeats: timed passes per variant.
        variants: names of ``NETWORK_VARIANTS`` to run (default: all).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    unknown = sorted(set(variants or ()) - set(NETWORK_VARIANTS))
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(NETWORK_VARIANTS)}.")
    parser = inference_parser(**({"roi_size": [roi_size] * 3} if roi_size else {}))
    torch.manual_seed(0)
    reference = parser.get_parsed_content("network_def").eval()
    windows = torch.rand(batch, 1, *parser.get_parsed_content("roi_size"))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fp32_labels = reference(windows).argmax(1)
    gflop = counter.get_total_flops() / 1e9
    results: dict[str, dict[str, float]] = {}
    for name in variants or NETWORK_VARIANTS:
        model, inputs, dtype = _network_variant(name, reference, windows)
        seconds, compile_seconds, labels = _time_passes(model, inputs, dtype, repeats)
        results[name] = {"seconds_per_window": round(seconds / batch, 3), "gflop_per_s": round(gflop / seconds, 1),
                         "label_agreement_with_fp32": round((labels == fp32_labels).float().mean().item(), 4)}
        if name.endswith("torch.compile"):
            results[name]["compile_seconds"] = round(compile_seconds, 1)
        print(f"{name:35s} {results[name]}", flush=True)
    first = next(iter(results.values()))["seconds_per_window"]
    for name, figures in results.items():
        print(f"  {name}: {figures['seconds_per_window'] / first:.2f}x the time of the first")
    return results


def _network_variant(name: str, reference, windows):
    """``(model, inputs, autocast dtype or None)`` for the variant ``name`` of ``NETWORK_VARIANTS``."""
    import copy

    import torch

    if name == "fp32":
        return reference, windows, None
    if name == "bf16 weights, no autocast":
        return copy.deepcopy(reference).to(torch.bfloat16), windows.to(torch.bfloat16), None
    if name == "bf16 autocast, channels_last_3d":
        return (copy.deepcopy(reference).to(memory_format=torch.channels_last_3d),
                windows.to(memory_format=torch.channels_last_3d), torch.bfloat16)
    if name == "bf16 autocast, torch.compile":
        return torch.compile(copy.deepcopy(reference)), windows, torch.bfloat16
    return reference, windows, torch.bfloat16


def _time_passes(model, inputs, dtype, repeats: int):
    """``(fastest pass in seconds, warm-up pass in seconds, argmax labels)`` of ``model`` on ``inputs``."""
    import torch

    with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        start = time.perf_counter()
        model(inputs)
        warm_up = time.perf_counter() - start
        passes = []
        for _ in range(repeats):
            start = time.perf_counter()
            outputs = model(inputs)
            passes.append(time.perf_counter() - start)
    return min(passes), warm_up, outputs.float().argmax(1)


if __name__ == "__main__":
    fire.Fire({"timing": timing, "stages": stages, "dice": dice, "network": network, "inversion": inversion},
              name="tools.measure.benchmark_inference")
