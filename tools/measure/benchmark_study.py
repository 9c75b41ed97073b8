"""Where the time of a study's runs goes, and what the study's two CPU levers save, measured in one run.

The levers: the network is given plain tensors instead of MONAI ``MetaTensor``s (``AutocastInferer`` does this for
every bundle), and the study's narrow segmentation networks keep their weights and activations in the
``channels_last_3d`` memory format (the segmentation bundles' ``memory_format`` id; the paper-size UNETR is faster in
the default format on the CPU, so the bundles keep it). Seconds per iteration, before and after, for:

- ``step``: forward, loss, backward and AdamW step of the network each stage's config builds at the study's small
  size, on random data of the stage's batch shape, under the bundles' autocast (BTCV and BraTS fine-tuning, BTCV MAE
  pre-training); before: MetaTensor input and the default memory format; after: the study's settings;
- ``evaluation``: one sliding-window pass of the BTCV fine-tuning network over a 96 x 96 x 72 volume;
- ``run``: a whole BTCV fine-tuning run of the study through the bundle (data loading, handlers, checkpoint), per
  iteration, with the default memory format and the study's; then its evaluation through ``evaluate.json``, in
  seconds (in the default format both times: channels_last does not pay off there, so the study evaluates without
  it). ``run - step`` is what data loading and the handlers cost;
- ``runs side by side``: wall seconds per iteration of six whole BTCV fine-tuning runs of the study's 300 iterations
  with their evaluations, one at a time with every thread (before) and in one single-threaded worker process per core
  (after, the study's default: ``tools/study/workers.py``).

Example::

    python -m tools.measure.benchmark_study                    # about 6 minutes on 2 CPU cores
    python -m tools.measure.benchmark_study --steps 3 --run_steps 20
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fire
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer

from tools.bundle_runner import bundle_importable
from tools.measure.benchmark_mae import time_steps
from tools.study.study import StudyOptions, run_study
from tools.study.tasks import Stage, Task, brats, btcv

STUDY_FORMAT = "$torch.channels_last_3d"
DEFAULT_FORMAT = "$torch.preserve_format"


def parsed(stage: Stage, ids: list[str], **changes: Any) -> list[Any]:
    """The objects ``ids`` of ``stage``'s configs with the stage's overrides and ``changes``."""
    parser = ConfigParser()
    parser.read_config([str(c) for c in stage.configs])
    for key, value in {**stage.overrides, **changes}.items():
        parser[key] = value
    with bundle_importable(stage.configs[0].parents[1]):
        return [parser.get_parsed_content(i) for i in ids]


def batch_size(stage: Stage) -> int:
    """Crops per iteration: cases per batch times crops per case."""
    return stage.overrides["batch_size"] * stage.overrides.get("num_samples", 1)


def segmentation_batch(stage: Stage, network: torch.nn.Module, loss: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images and labels of the stage's batch shape: a label map for a one-hot loss (BTCV), one binary channel
    per output otherwise (BraTS regions)."""
    batch, roi = batch_size(stage), stage.overrides["roi_size"]
    images = torch.rand(batch, network.vit.patch_embedding.patch_embeddings.in_channels, *roi)
    with torch.no_grad():
        out_channels = network(images[:1]).shape[1]
    if getattr(getattr(loss, "dice", loss), "to_onehot_y", False):  # DiceCELoss keeps it in its DiceLoss
        return images, torch.randint(0, out_channels, (batch, 1, *roi))
    return images, torch.randint(0, 2, (batch, out_channels, *roi)).float()


def median_step(network: torch.nn.Module, loss: Callable, images: torch.Tensor, labels: torch.Tensor,
                steps: int) -> float:
    """Median seconds of a training step under bf16 autocast (:func:`tools.measure.benchmark_mae.time_steps`)."""
    def step(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        out = net(x)
        return loss(out.float() if isinstance(out, torch.Tensor) else out, labels)

    return statistics.median(time_steps(step, network, images, steps, warmup=2, bf16=True))


def step_seconds(stage: Stage, steps: int, channels_last: bool, mae: bool = False) -> tuple[float, float]:
    """Seconds per training step of ``stage``'s network (the MAE, whose loss is its forward's, where ``mae``): before
    (MetaTensor, default format) and after (plain tensors, and ``channels_last_3d`` where ``channels_last``)."""
    results = []
    for after in (False, True):
        torch.manual_seed(0)
        changes = {"memory_format": STUDY_FORMAT if after else DEFAULT_FORMAT} if channels_last else {}
        network, loss = parsed(stage, ["network", "loss"], **changes)
        if mae:
            images = torch.rand(batch_size(stage), 1, *stage.overrides["roi_size"])
            labels = torch.zeros(images.shape[0])
        else:
            images, labels = segmentation_batch(stage, network, loss)
        if not after:
            images, labels = MetaTensor(images), MetaTensor(labels)
        results.append(median_step(network, loss, images, labels, steps))
    return results[0], results[1]


def evaluation_seconds(stage: Stage, repeats: int) -> tuple[float, float]:
    """Seconds of one sliding-window pass (bf16, batch of 4 windows) over a 96 x 96 x 72 volume: before and after."""
    results = []
    for after in (False, True):
        torch.manual_seed(0)
        (network,) = parsed(stage, ["network"], memory_format=STUDY_FORMAT if after else DEFAULT_FORMAT)
        network.eval()
        image = torch.rand(1, 1, 96, 96, 72)
        inferer = SlidingWindowInferer(stage.overrides["roi_size"], sw_batch_size=4, overlap=0.25)
        durations = []
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            for i in range(repeats + 1):
                start = time.perf_counter()
                inferer(MetaTensor(image) if not after else image, network)
                if i:
                    durations.append(time.perf_counter() - start)
        results.append(statistics.median(durations))
    return results[0], results[1]


def run_seconds(task: Task, run_steps: int, memory_format: str, workdir: Path) -> tuple[float, float]:
    """Seconds per iteration of one study fine-tuning run (scratch arm, 2 labelled cases) with ``memory_format``,
    and the seconds of its evaluation."""
    options = StudyOptions(output_dir=workdir, seeds=(0,), labelled_sizes=(2,), steps=run_steps, arms=("scratch",),
                           overrides={"finetune": {"memory_format": memory_format}}, threads_per_run=None)
    (run,) = run_study(task, options).runs
    return (run.seconds - run.evaluation_seconds) / run_steps, run.evaluation_seconds


def side_by_side_seconds(task: Task, run_steps: int, workdir: Path, runs: int) -> tuple[float, float]:
    """Wall seconds per iteration of ``runs`` fine-tuning runs (scratch arm, 2 labelled cases, with evaluation) on one
    synthetic data set: one job at a time with every thread, then single-threaded jobs in as many workers as there
    are cores (their start-up included)."""
    dataset_dir = task.make_synthetic(workdir / "data", seed=0)
    results = []
    for threads, workers in ((None, 1), (1, None)):
        options = StudyOptions(output_dir=workdir / f"threads{threads}", dataset_dir=dataset_dir,
                               seeds=tuple(range(runs)), labelled_sizes=(2,), steps=run_steps, arms=("scratch",),
                               threads_per_run=threads, workers=workers)
        start = time.perf_counter()
        run_study(task, options)
        results.append((time.perf_counter() - start) / (runs * run_steps))
    return results[0], results[1]


def main(steps: int = 6, run_steps: int = 100, repeats: int = 3, study_steps: int = 300, study_runs: int = 6) -> None:
    """Print seconds per iteration before and after the study's CPU levers, and their ratio.

    Args:
        steps: timed training steps per network (after 2 warm-up steps).
        run_steps: iterations of the whole fine-tuning runs.
        repeats: timed sliding-window passes.
        study_steps: iterations of each run side by side (the study's budget by default: a worker's start-up and
            a run's fixed costs weigh as they do in a study).
        study_runs: runs side by side.
    """
    rows = [
        ("BTCV fine-tuning step", *step_seconds(btcv.finetune, steps, channels_last=True)),
        ("BraTS fine-tuning step", *step_seconds(brats.finetune, steps, channels_last=True)),
        ("BTCV MAE pre-training step", *step_seconds(btcv.pretrain, steps, channels_last=False, mae=True)),
        ("BTCV evaluation pass", *evaluation_seconds(btcv.finetune, repeats)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        before, before_eval = run_seconds(btcv, run_steps, DEFAULT_FORMAT, Path(tmp) / "before")
        after, after_eval = run_seconds(btcv, run_steps, STUDY_FORMAT, Path(tmp) / "after")
        side_by_side = side_by_side_seconds(btcv, study_steps, Path(tmp) / "side_by_side", study_runs)
    rows += [("BTCV fine-tuning run, per iteration", before, after),
             ("BTCV evaluation of a run (4 cases)", before_eval, after_eval),
             (f"{study_runs} BTCV runs side by side, per iteration", *side_by_side)]
    print(f"{torch.get_num_threads()} threads. Steps and the evaluation pass: before = MetaTensor input and the "
          "default memory format, after = plain tensors and the study's format. Runs (the bundle gives its network "
          "plain tensors in both): the default memory format vs the study's. Runs side by side: one job with every "
          "thread vs one single-threaded job per core (wall time, evaluations and the workers' start-up included).")
    print(f"| {'stage':40} | before s | after s | before / after |")
    print(f"|{'-' * 42}|---------:|--------:|---------------:|")
    for name, first, second in rows:
        print(f"| {name:40} | {first:8.3f} | {second:7.3f} | {first / second:14.2f} |")


if __name__ == "__main__":
    fire.Fire(main, name="tools.measure.benchmark_study")
