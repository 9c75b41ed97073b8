"""What a training run does with the files in ``models/``: a refused second job touches nothing, and a fresh run
never silently replaces the best model of an earlier one. Through ``python -m monai.bundle run``, as a user runs it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine
from monai.networks.nets import UNETR

from shared.handlers.checkpoint import ResumeLoader
from shared.utils.atomic import TEMPORARY_PREFIX
from tests.helpers import BRATS, SEG, SMALL, TINY_ENCODER, TINY_UNETR, bundle_run
from tools import synthetic


def train_overrides(root: Path, data: Path, **more) -> dict:
    return {"bundle_root": str(root), "dataset_dir": str(data), "epochs": 1, "batch_size": 1, "num_samples": 1,
            "warmup_epochs": 1, "val_interval": 1, "pretrained_encoder": "", **SMALL, **TINY_UNETR, **more}


@pytest.fixture
def running_job(tmp_path) -> Iterator[tuple[Path, int]]:
    """A bundle root whose lock a live process holds, with that job's checkpoint being written."""
    models = tmp_path / "bundle" / "models"
    models.mkdir(parents=True)
    (models / f"{TEMPORARY_PREFIX}checkpoint.pt").write_bytes(b"half a checkpoint")
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (models / ".lock").write_text(json.dumps({"pid": running.pid, "host": socket.gethostname(), "started": "x"}))
        yield tmp_path / "bundle", running.pid
    finally:
        running.kill()
        running.wait()


def assert_refused_untouched(root: Path, pid: int, output: str) -> None:
    """The job was refused by the lock and wrote nothing: no datalist, no log files, ``models/`` as it was."""
    assert f"BundleLockedError: {root} is being trained by process {pid}" in output.strip().splitlines()[-1]
    assert sorted(p.name for p in root.iterdir()) == ["models"]
    models = root / "models"
    assert sorted(p.name for p in models.iterdir()) == [".lock", f"{TEMPORARY_PREFIX}checkpoint.pt"]
    assert (models / f"{TEMPORARY_PREFIX}checkpoint.pt").read_bytes() == b"half a checkpoint"


def test_a_refused_second_job_leaves_the_running_jobs_files_alone(btcv, running_job):
    """Refused before the trainer is built: no TensorBoard files in ``runs/train`` (with the lock taken by the
    trainer's handler, the refused job wrote them, after caching the data)."""
    root, pid = running_job
    output = bundle_run([SEG / "train.json"], train_overrides(root, btcv), expect_failure=True)
    assert_refused_untouched(root, pid, output)


def test_a_refused_second_job_writes_no_datalist(running_job, tmp_path):
    """The BraTS (and CXR14) configs write their split to ``runs/datalist.json``; a refused job does not."""
    root, pid = running_job
    data = Path(synthetic.make_brats(str(tmp_path / "brats"), layout="msd", num_cases=2, shape=(24, 24, 16)))
    overrides = {**train_overrides(root, data), "roi_size": [16, 16, 16]}
    output = bundle_run([BRATS / "train.json"], overrides, expect_failure=True)
    assert_refused_untouched(root, pid, output)


def test_a_fresh_run_keeps_the_earlier_best_model(btcv, tmp_path):
    """After the checkpoint is deleted (as the error about a corrupt one advises), the run starts over; the best
    model of the earlier run is kept under a new name, and the log says where."""
    models = tmp_path / "bundle" / "models"
    models.mkdir(parents=True)
    earlier = models / "model.pt"
    torch.save(UNETR(1, 14, 32, feature_size=8, **TINY_ENCODER).state_dict(), earlier)
    before = earlier.read_bytes()
    output = bundle_run([SEG / "train.json"], train_overrides(tmp_path / "bundle", btcv))
    (kept,) = models.glob("model.previous-*.pt")
    assert kept.read_bytes() == before and earlier.read_bytes() != before  # the new run wrote its own best model
    assert f"this run starts from scratch: the earlier {earlier} is kept as {kept}" in output


def test_resume_false_keeps_the_earlier_best_model(tmp_path):
    model_file, checkpoint = tmp_path / "model.pt", tmp_path / "checkpoint.pt"
    model_file.write_bytes(b"the best model")
    checkpoint.write_bytes(b"a checkpoint")
    ResumeLoader(str(checkpoint), {}, resume="false", keep_on_fresh_start=[str(model_file)]).attach(
        Engine(lambda e, b: None))
    (kept,) = tmp_path.glob("model.previous-*.pt")
    assert kept.read_bytes() == b"the best model" == model_file.read_bytes()
