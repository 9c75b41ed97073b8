"""Kill a tiny training run at random points, restart it each time, and check that nothing was lost.

It trains ``unetr_btcv_seg`` (tiny network, synthetic data, validation every epoch) with ``python -m monai.bundle
run``, sends SIGKILL at a random moment after a checkpoint exists, ``kills`` times, restarts the same command each
time, and checks after every restart that:

- the checkpoint the killed run left loads (``weights_only=True``) and the restart resumes from its epoch;
- no ``.tmp_`` file left by an interrupted write remains once the restart has started;
- ``models/model.pt`` is still the best model seen: validating it gives the best metric the checkpoint records;

and at the end that the run has as many epochs as an uninterrupted one. A kill that lands after the last epoch's
checkpoint (the run had finished) ends the experiment: a restart of a finished run starts over, by design. The suite
runs it with two kills; run it longer by hand (each kill waits for two fresh checkpoints and may land after a
third, so the run gets ``3 * kills + 2`` epochs unless ``--epochs`` gives more)::

    python -m tools.measure.fault_injection --kills 10
"""

from __future__ import annotations

import functools
import json
import random
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import fire
import torch

from shared.utils.atomic import TEMPORARY_PREFIX
from tools import synthetic
from tools.bundle_runner import bundle_command, bundle_importable, bundle_workflow

__all__ = ["fault_injection"]

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "unetr_btcv_seg" / "configs"
TINY = {"network_def#hidden_size": 48, "network_def#mlp_dim": 96, "network_def#num_heads": 4,
        "network_def#feature_size": 8, "roi_size": [32, 32, 32], "num_workers": 0, "batch_size": 1, "num_samples": 1,
        "warmup_epochs": 1, "val_interval": 1, "pretrained_encoder": ""}


def _saved_epoch(checkpoint: Path) -> int:
    trainer = torch.load(checkpoint, weights_only=True)["trainer"]
    return trainer["iteration"] // trainer["epoch_length"]


def _temporaries(folder: Path) -> set[str]:
    return {p.name for p in folder.glob(TEMPORARY_PREFIX + "*")}


def _validate(root: Path, data: Path, overrides: dict) -> float:
    """The validation metric of ``models/model.pt``, computed with the bundle's own validation pipeline."""
    with bundle_importable(CONFIGS.parent):
        wf = bundle_workflow([CONFIGS / "train.json"], root, dataset_dir=str(data), **overrides)
        wf.parser.get_parsed_content("network").load_state_dict(torch.load(root / "models" / "model.pt"))
        evaluator = wf.parser.get_parsed_content("validate#evaluator")
        evaluator.run()
        return float(evaluator.state.metrics["val_mean_dice"])


def fault_injection(kills: int = 3, epochs: int | None = None, seed: int = 0, workdir: str | None = None,
                    timeout: float = 300) -> dict:
    """Run the experiment described in the module docstring; returns what was observed.

    Args:
        kills: how many times the run is killed and restarted.
        epochs: epochs of the run; default and minimum ``3 * kills + 2``.
        seed: seed of the random kill moments.
        workdir: a folder for the run (default: a new temporary folder); each run writes its data, bundle and logs
            into a new ``run_*`` folder there, so that a second run never resumes the first one's finished bundle.
        timeout: seconds an attempt may take.

    Raises:
        ValueError: ``epochs`` too short for ``kills``.
        AssertionError: something was lost (the message says what).
    """
    needed = 3 * kills + 2
    epochs = needed if epochs is None else epochs
    if epochs < needed:
        raise ValueError(f"{kills} kills need at least {needed} epochs (each kill waits for two fresh checkpoints "
                         f"and may land after a third), got --epochs {epochs}")
    rng = random.Random(seed)
    work = Path(workdir or tempfile.mkdtemp(prefix="fault_injection_"))
    work.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run_", dir=work))
    data = Path(synthetic.make_btcv(str(work / "data"), num_train=2, num_val=1, num_test=0, shape=(48, 48, 32),
                                         body_scale=0.1))
    root = work / "bundle"
    overrides = {**TINY, "epochs": epochs}
    cmd = bundle_command([CONFIGS / "train.json"], {"bundle_root": str(root), "dataset_dir": str(data), **overrides})
    models, checkpoint = root / "models", root / "models" / "checkpoint.pt"
    observed: dict = {"kills": [], "work_dir": str(work)}
    left_over: set[str] = set()
    for attempt in range(kills + 1):
        log_path = work / f"attempt{attempt}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.time() + timeout
            if attempt > 0:  # the restart must resume where the killed run left, and clear its temporaries
                while time.time() < deadline and proc.poll() is None and "resumed from" not in log_path.read_text():
                    time.sleep(0.1)
                text = log_path.read_text()
                resumed = re.search(r"resumed from .*checkpoint.pt at epoch (\d+)", text)
                assert resumed, f"attempt {attempt} did not resume:\n{text[-2000:]}"
                assert int(resumed.group(1)) == observed["kills"][-1]["saved_epoch"], text[-2000:]
                assert not (left_over & _temporaries(models)), f"temporaries left: {left_over & _temporaries(models)}"
            if attempt < kills:  # after two more checkpoints, kill at a random moment of the next epoch
                start = _saved_epoch(checkpoint) if checkpoint.exists() else 0
                seen: dict[int, float] = {}  # saved epoch -> when it was first seen (a slow poll may skip one)
                while time.time() < deadline and proc.poll() is None and max(seen, default=start) < start + 2:
                    if checkpoint.exists():
                        seen.setdefault(_saved_epoch(checkpoint), time.time())
                    time.sleep(0.01)
                seen.pop(start, None)
                first, last = min(seen, default=0), max(seen, default=0)
                epoch_seconds = (seen[last] - seen[first]) / (last - first) if last > first else 0.0
                time.sleep(rng.uniform(0.0, 0.8 * epoch_seconds))
                if proc.poll() is not None:
                    raise AssertionError(f"attempt {attempt} ended before it could be killed:\n{log_path.read_text()}")
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                saved = _saved_epoch(checkpoint)  # the checkpoint loads
                left_over = _temporaries(models)
                observed["kills"].append({"attempt": attempt, "saved_epoch": saved, "temporaries": sorted(left_over)})
                if saved == epochs:  # the kill landed after the last save: the run had finished, a restart starts over
                    observed["kills"][-1]["after_the_last_epoch"] = True
                    break
            else:
                proc.wait(timeout=max(deadline - time.time(), 1))
                assert proc.returncode == 0, f"the last attempt failed:\n{log_path.read_text()[-3000:]}"
    final = torch.load(checkpoint, weights_only=True)
    assert _saved_epoch(checkpoint) == epochs, f"ended at epoch {_saved_epoch(checkpoint)}, not {epochs}"
    best = final["best_metric"]["best_metric"]
    score = _validate(root, data, overrides)
    assert abs(score - best) < 1e-6, f"model.pt validates at {score}, the best recorded is {best}"
    observed.update({"epochs": epochs, "best_metric": best, "model_pt_metric": score,
                     "best_metric_epoch": final["best_metric"]["best_metric_epoch"]})
    print(json.dumps(observed, indent=1))
    return observed


@functools.wraps(fault_injection)
def main(*args, **kwargs) -> None:
    """Command line entry: :func:`fault_injection` (it prints what it observed)."""
    fault_injection(*args, **kwargs)


if __name__ == "__main__":
    fire.Fire(main, name="tools.measure.fault_injection")
