"""A training run keeps its files safe: one job per ``bundle_root`` (the lock), no checkpoint truncated by a kill or
holding NaN weights, a resume that restores the best metric so far, leftover temporaries cleared, saved files that
respect the umask; :class:`RunSafetyHandler` does these in that order, and a run killed at random loses nothing."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import ignite.distributed as idist
import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from ignite.metrics import Metric
from monai.engines import SupervisedEvaluator, SupervisedTrainer

from shared.handlers.checkpoint import (
    AtomicCheckpointSaver,
    BestMetricState,
    ModelLoader,
    ResumeLoader,
)
from shared.handlers.guards import NonFiniteLossGuard
from shared.handlers.lock import BundleLock, BundleLockedError
from shared.handlers.run_safety import RunSafetyHandler
from shared.utils.atomic import TEMPORARY_PREFIX, save_atomically
from shared.utils.config import as_bool
from shared.utils.errors import cause_line
from tests.helpers import MAE, SMALL, TINY_MAE, run_workflow
from tools.measure import fault_injection


def nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


# ---------------------------------------------------------------------------------------------------------------
# RunSafetyHandler: lock, temporaries, resume, saving, in that order
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture()
def live_holder(tmp_path) -> Iterator[Path]:
    """``models/.lock`` held by another live process of this host; yields the lock file."""
    lock_file = tmp_path / "models" / ".lock"
    lock_file.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_file.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "earlier"}))
        yield lock_file
    finally:
        holder.kill()
        holder.wait()


class EpochValidation:
    """Stands for ``ValidationHandler``: at each epoch end, sets the evaluator's best metric to ``epoch / 10``."""

    def __init__(self, evaluator: Engine) -> None:
        self.evaluator = evaluator

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        self.evaluator.state.best_metric = engine.state.epoch / 10
        self.evaluator.state.best_metric_epoch = engine.state.epoch


def run_safety(models: Path, evaluator: Engine, **kwargs) -> RunSafetyHandler:
    return RunSafetyHandler(str(models / "checkpoint.pt"), {"best_metric": BestMetricState(evaluator)},
                            lock=str(models / ".lock"), keep_on_fresh_start=[str(models / "model.pt")], **kwargs)


def trainer_with(handler: RunSafetyHandler, evaluator: Engine) -> Engine:
    """A trainer of one iteration per epoch, its handlers attached as MONAI's workflows do: the run safety first,
    then a validation."""
    trainer = Engine(lambda engine, batch: None)
    handler.attach(trainer)
    EpochValidation(evaluator).attach(trainer)
    return trainer


def test_a_second_job_is_refused_before_it_touches_anything_in_models(live_holder):
    models = live_holder.parent
    (models / f"{TEMPORARY_PREFIX}checkpoint.pt").write_bytes(b"the running job's write")
    (models / "model.pt").write_bytes(b"the running job's best model")  # a fresh start would keep it aside
    before = {p.name: p.read_bytes() for p in models.iterdir()}
    handler = run_safety(models, Engine(lambda e, b: None))
    with pytest.raises(BundleLockedError, match=r"is being trained by process \d+ .* kill \d+"):
        handler.attach(Engine(lambda e, b: None))
    assert {p.name: p.read_bytes() for p in models.iterdir()} == before


def test_a_run_takes_the_lock_clears_temporaries_saves_and_releases_the_lock_last(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    leftover = models / f"{TEMPORARY_PREFIX}abc.pt"
    leftover.write_bytes(b"half a checkpoint")
    evaluator = Engine(lambda e, b: None)
    handler = run_safety(models, evaluator, save_interval=0)
    trainer = trainer_with(handler, evaluator)
    assert not leftover.exists() and json.loads((models / ".lock").read_text())["pid"] == os.getpid()
    released_after = []
    release = handler.lock.release
    handler.lock.release = lambda engine=None: (released_after.append((models / "checkpoint.pt").exists()),
                                                release(engine))
    trainer.run([0], max_epochs=2)
    assert released_after == [True] and not (models / ".lock").exists()
    assert torch.load(models / "checkpoint.pt", weights_only=True)["trainer"]["iteration"] == 2


def test_a_resumed_run_restores_the_best_metric_of_the_last_saved_epoch(tmp_path):
    models = tmp_path / "models"
    first = Engine(lambda e, b: None)
    trainer_with(run_safety(models, first), first).run([0], max_epochs=2)
    saved = torch.load(models / "checkpoint.pt", weights_only=True)
    assert saved["best_metric"] == {"best_metric": 0.2, "best_metric_epoch": 2}  # saved after the epoch's validation

    restarted = Engine(lambda e, b: None)
    restarted.state.best_metric, restarted.state.best_metric_epoch = -1, -1
    trainer = trainer_with(run_safety(models, restarted), restarted)
    seen = []
    trainer.add_event_handler(Events.STARTED, lambda e: seen.append((e.state.epoch, restarted.state.best_metric)))
    trainer.run([0], max_epochs=3)
    assert seen == [(2, 0.2)] and trainer.state.epoch == 3


def test_a_fresh_start_keeps_the_earlier_best_model_once_the_lock_is_held(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "model.pt").write_bytes(b"the earlier best model")
    run_safety(models, Engine(lambda e, b: None)).attach(Engine(lambda e, b: None))
    (kept,) = models.glob("model.previous-*.pt")
    assert kept.read_bytes() == b"the earlier best model" and (models / ".lock").is_file()


def test_ranks_above_zero_write_nothing_but_resume(tmp_path, monkeypatch):
    models = tmp_path / "models"
    evaluator = Engine(lambda e, b: None)
    trainer_with(run_safety(models, evaluator), evaluator).run([0], max_epochs=1)
    leftover = models / f"{TEMPORARY_PREFIX}abc.pt"
    leftover.write_bytes(b"rank 0's write")
    checkpoint = (models / "checkpoint.pt").read_bytes()
    monkeypatch.setattr(idist, "get_rank", lambda: 1)
    trainer = trainer_with(run_safety(models, evaluator), evaluator)
    trainer.run([0], max_epochs=2)
    assert trainer.state.epoch == 2 and trainer.state.iteration == 2  # one epoch resumed, one trained
    assert leftover.exists() and not (models / ".lock").exists()
    assert (models / "checkpoint.pt").read_bytes() == checkpoint


def test_only_the_process_that_wrote_the_lock_releases_it(tmp_path, monkeypatch):
    """Ranks above 0 hold the job's lock too; on other nodes (their own pid namespaces) one may have rank 0's pid,
    and its release at the end of the run removed rank 0's lock while rank 0 was still writing."""
    path = tmp_path / "models" / ".lock"
    mine = BundleLock(str(path))
    mine.acquire()  # rank 0: writes the file with this process's pid and host
    monkeypatch.setattr(idist, "get_rank", lambda: 1)
    other_rank = BundleLock(str(path))
    other_rank.acquire()
    assert other_rank.held
    other_rank.release()
    assert path.exists()
    monkeypatch.setattr(idist, "get_rank", lambda: 0)
    mine.release()
    assert not path.exists()


def test_the_trainer_entry_is_the_handlers_own():
    with pytest.raises(ValueError, match="save_dict must not hold 'trainer'"):
        RunSafetyHandler("checkpoint.pt", {"trainer": Engine(lambda e, b: None)}, lock=".lock")


# ---------------------------------------------------------------------------------------------------------------
# the best model survives a resume; a killed run loses nothing
# ---------------------------------------------------------------------------------------------------------------


class ScriptedMetric(Metric):
    """A key metric that returns the next value of a script at each evaluation."""

    def __init__(self, values):
        self.values = list(values)
        super().__init__()

    def reset(self):
        pass

    def update(self, output):
        pass

    def compute(self):
        return self.values.pop(0)


def evaluator_with(values, model: torch.nn.Module, model_file: Path) -> SupervisedEvaluator:
    saver = AtomicCheckpointSaver(str(model_file), {"model": model}, on_completed=False, only_best=True)
    return SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=[{"image": torch.zeros(1, 1)}],
                               network=model, key_val_metric={"val": ScriptedMetric(values)}, val_handlers=[saver])


def test_a_resumed_run_keeps_the_best_model(tmp_path):
    model_file, checkpoint = tmp_path / "model.pt", tmp_path / "checkpoint.pt"
    model = torch.nn.Linear(1, 1)
    first = evaluator_with([0.5, 0.9, 0.6], model, model_file)
    for epoch in (1, 2, 3):  # validations after epochs 1..3; the best is epoch 2
        with torch.no_grad():
            model.weight.fill_(epoch)
        first.run(epoch)
    assert torch.load(model_file)["weight"].item() == 2.0
    save_atomically({"best_metric": BestMetricState(first).state_dict()}, checkpoint)

    restarted = evaluator_with([0.7], model, model_file)  # the first validation after the restart is worse
    ResumeLoader(str(checkpoint), {"best_metric": BestMetricState(restarted)})(Engine(lambda e, b: None))
    with torch.no_grad():
        model.weight.fill_(4)
    restarted.run(4)
    assert torch.load(model_file)["weight"].item() == 2.0  # not replaced by the worse epoch-4 model
    assert restarted.state.best_metric == pytest.approx(0.9) and restarted.state.best_metric_epoch == 2


@pytest.mark.slow
def test_fault_injection_loses_nothing(tmp_path):
    observed = fault_injection.fault_injection(kills=2, epochs=10, workdir=str(tmp_path))  # 2 epochs of margin
    assert len(observed["kills"]) == 2 and observed["model_pt_metric"] == pytest.approx(observed["best_metric"])
    with pytest.raises(ValueError, match="10 kills need at least 32 epochs"):  # refused before any work
        fault_injection.fault_injection(kills=10, epochs=8, workdir=str(tmp_path / "too_short"))


def test_resume_false_finished_runs_and_longer_runs(btcv, tmp_path, capsys):
    root = tmp_path / "bundle"
    overrides = {"dataset_dir": str(btcv), "batch_size": 2, "num_samples": 1, "warmup_epochs": 1,
                 "network_def#num_layers": 2, **SMALL, **TINY_MAE}
    run_workflow([MAE / "train.json"], root, epochs=2, **overrides)
    assert as_bool("false") is False and as_bool("True") is True and as_bool(0) is False
    with pytest.raises(ValueError, match="resume must be true or false, got 'maybe'"):
        as_bool("maybe", "resume")
    wf = run_workflow([MAE / "train.json"], root, epochs=2, resume="false", **overrides)  # the string, from the CLI
    assert wf.parser.get_parsed_content("train#trainer").state.epoch == 2  # trained 2 epochs again, from scratch
    assert "resume is off" in capsys.readouterr().out
    before = (root / "models" / "model.pt").read_bytes()
    kept_before = set((root / "models").glob("model.previous-*.pt"))
    wf = run_workflow([MAE / "train.json"], root, epochs=2, **overrides)  # as MONAI Label's repeated training request
    out = capsys.readouterr().out
    assert "finished (2 epochs): this run of 2 epochs starts from scratch" in out
    assert "Epoch[1] Complete" in out and "Epoch[2] Complete" in out  # trained (a resumed finished run: none)
    (kept,) = set((root / "models").glob("model.previous-*.pt")) - kept_before
    assert kept.read_bytes() == before and "is kept as" in out
    (kept_checkpoint,) = (root / "models").glob("checkpoint.previous-*.pt")  # what a larger --epochs would continue
    assert torch.load(kept_checkpoint, weights_only=True)["trainer"]["iteration"] == 2
    wf = run_workflow([MAE / "train.json"], root, epochs=4, **overrides)
    scheduler = wf.parser.get_parsed_content("lr_scheduler")
    assert scheduler.t_total == 4 and scheduler.last_epoch == 4  # one iteration per epoch, schedule of 4 epochs
    assert scheduler.get_last_lr()[0] < 1e-6 * wf.parser.get_parsed_content("learning_rate") + 1e-12
    # the same 2 cases in batches of 1: 2 iterations per epoch from now on (the checkpoint's run had 1)
    wf = run_workflow([MAE / "train.json"], root, epochs=6, **{**overrides, "batch_size": 1})
    trainer, scheduler = wf.parser.get_parsed_content("train#trainer"), wf.parser.get_parsed_content("lr_scheduler")
    assert (trainer.state.epoch, trainer.state.epoch_length, trainer.state.iteration) == (6, 2, 12)
    assert scheduler.t_total == 12 and scheduler.last_epoch == 12  # the schedule ends with the run
    assert "the data now give 2 iterations per epoch (the checkpoint's run had 1)" in capsys.readouterr().out


def test_a_stopped_run_is_resumed_only_when_epochs_are_left_to_train(tmp_path, caplog):
    """A run stopped after 3 of its 5 epochs (e.g. a MONAI Label request stopped by the user), started again for 3
    epochs or fewer, starts from scratch keeping that run's files (it was refused, or trained nothing); for 4 it
    resumes at epoch 3."""
    models = tmp_path / "models"
    models.mkdir()
    model, checkpoint = models / "model.pt", models / "checkpoint.pt"
    stopped = Engine(lambda engine, batch: None)
    stopped.state.iteration, stopped.state.epoch_length, stopped.state.max_epochs = 3, 1, 5
    torch.save({"model": torch.nn.Linear(1, 1).state_dict()}, model)
    save_atomically({"trainer": stopped.state_dict()}, checkpoint)

    def restart(max_epochs: int) -> list[int]:
        trainer = Engine(lambda engine, batch: None)
        ResumeLoader(str(checkpoint), {"trainer": trainer}, keep_on_fresh_start=[str(model)]).attach(trainer)
        epochs = []
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: epochs.append(engine.state.epoch))
        with caplog.at_level(logging.INFO):
            trainer.run([0], max_epochs=max_epochs)
        return epochs

    assert restart(4) == [4]
    assert "resumed from" in caplog.text and not list(models.glob("*.previous-*"))
    for max_epochs in (3, 2):
        caplog.clear()
        assert restart(max_epochs) == list(range(1, max_epochs + 1))
        assert (f"the run in {checkpoint} stopped after 3 of its 5 epochs: this run of {max_epochs} epochs starts "
                "from scratch") in caplog.text
    assert len(list(models.glob("model.previous-*.pt"))) == 2 and len(list(models.glob("checkpoint.previous-*"))) == 2


def test_a_corrupt_checkpoint_is_named_with_how_to_start_over(tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match=rf"cannot resume from {checkpoint} .* Delete the file, or run with "
                                           "--resume false, to start the training over."):
        ResumeLoader(str(checkpoint), {"model": torch.nn.Linear(1, 1)})(Engine(lambda e, b: None))


def test_a_file_that_holds_no_dict_is_named_by_both_loaders(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(RuntimeError, match=rf"cannot resume from {path} \(it holds a Tensor, not a checkpoint dict\)"):
        ResumeLoader(str(path), {"model": torch.nn.Linear(1, 1)})(Engine(lambda e, b: None))
    with pytest.raises(RuntimeError, match=rf"cannot read the trained network {path} \(it holds a Tensor, not a "):
        ModelLoader(str(path), {"model": torch.nn.Linear(1, 1)}).read()


# ---------------------------------------------------------------------------------------------------------------
# a NaN never reaches a checkpoint
# ---------------------------------------------------------------------------------------------------------------


def test_a_nan_voxel_in_a_training_volume_is_refused_and_the_checkpoints_are_kept(btcv, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(btcv, data)
    overrides = {"dataset_dir": str(data), "epochs": 1, "batch_size": 2, "num_samples": 1, "warmup_epochs": 1,
                 "network_def#num_layers": 2, **SMALL, **TINY_MAE}
    run_workflow([MAE / "train.json"], tmp_path / "bundle", **overrides)
    models = tmp_path / "bundle" / "models"
    before = {name: (models / name).read_bytes() for name in ("model.pt", "checkpoint.pt")}
    image = nib.load(data / "imagesTr" / "img0002.nii.gz")
    array = np.asanyarray(image.dataobj).astype(np.float32)
    array[10, 10, 10] = np.nan
    nifti(data / "imagesTr" / "img0002.nii.gz", array, image.affine)
    with pytest.raises(RuntimeError) as error:
        run_workflow([MAE / "train.json"], tmp_path / "bundle", **{**overrides, "epochs": 3})
    assert "img0002.nii.gz: 1 of" in cause_line(error.value) and "NaN or infinite" in cause_line(error.value)
    assert {name: (models / name).read_bytes() for name in before} == before


def test_a_non_finite_loss_stops_training_naming_the_files_and_nothing_is_saved(tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"

    def trainer() -> SupervisedTrainer:
        network = torch.nn.Linear(2, 1)
        batch = {"image": torch.tensor([[1.0, float("nan")]]), "label": torch.zeros(1, 1), "source": ["a.nii.gz"]}
        return SupervisedTrainer(
            device=torch.device("cpu"), max_epochs=2, train_data_loader=[batch], network=network,
            optimizer=torch.optim.SGD(network.parameters(), 0.1), loss_function=torch.nn.MSELoss(),
            train_handlers=[NonFiniteLossGuard(checkpoint=str(checkpoint)),
                            AtomicCheckpointSaver(str(checkpoint), {"model": network})],
        )

    stopped = r"loss is nan at epoch 1, iteration 1; training stopped before saving anything. Files of this batch: a"
    with pytest.raises(FloatingPointError, match=stopped):  # and no word of a checkpoint: there is none
        trainer().run()
    assert not checkpoint.exists()
    checkpoint.write_bytes(b"an earlier run's")
    with pytest.raises(FloatingPointError, match=f"{checkpoint} keeps the last finite state"):
        trainer().run()
    assert checkpoint.read_bytes() == b"an earlier run's"


def test_the_saver_refuses_non_finite_weights_and_keeps_the_file(tmp_path):
    network = torch.nn.Linear(2, 1)
    saver = AtomicCheckpointSaver(str(tmp_path / "model.pt"), {"model": network})
    engine = Engine(lambda e, b: None)
    saver(engine)
    saved = (tmp_path / "model.pt").read_bytes()
    with torch.no_grad():
        network.bias.fill_(float("inf"))
    with pytest.raises(FloatingPointError, match="refusing to write .*model.pt .* NaN or infinite values"):
        saver(engine)
    assert (tmp_path / "model.pt").read_bytes() == saved


# ---------------------------------------------------------------------------------------------------------------
# temporaries, file modes, one job per bundle_root
# ---------------------------------------------------------------------------------------------------------------


def test_saved_files_respect_the_umask_and_leftover_temporaries_are_removed(tmp_path):
    leftover = tmp_path / f"{TEMPORARY_PREFIX}abc.pt"
    leftover.write_bytes(b"half a checkpoint")
    saver = AtomicCheckpointSaver(str(tmp_path / "model.pt"), {"model": torch.nn.Linear(1, 1)})
    engine = Engine(lambda e, b: None)
    saver.attach(engine)
    assert leftover.exists()  # attaching (instantiating a config) touches nothing: the lock may not be held yet
    engine.fire_event(Events.STARTED)
    assert not leftover.exists()
    saver(engine)
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "model.pt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_second_job_on_the_same_bundle_root_refuses_to_start(tmp_path):
    lock_file = tmp_path / "models" / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_file.parent.mkdir()
        lock_file.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "earlier"}))
        with pytest.raises(BundleLockedError, match=rf"is being trained by process {holder.pid} .* kill {holder.pid}"):
            BundleLock(str(lock_file)).attach(Engine(lambda e, b: None))
    finally:
        holder.kill()
        holder.wait()
    lock = BundleLock(str(lock_file))  # the holder is gone: its lock is taken over
    engine = Engine(lambda e, b: None)
    lock.attach(engine)
    assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    engine.fire_event(Events.COMPLETED)
    assert not lock_file.exists()


_ACQUIRE = """
import sys, time
from pathlib import Path
from shared.handlers.lock import BundleLock, BundleLockedError
print("ready", flush=True)
go, done = Path(sys.argv[2]), Path(sys.argv[3])
while not go.exists() or not go.read_text():  # once all have imported: the moment at which all try
    time.sleep(0.001)
start = float(go.read_text())
while time.time() < start:
    pass
try:
    BundleLock(sys.argv[1]).acquire()
except BundleLockedError:
    print("refused", flush=True)
else:
    print("held", flush=True)
    while not done.exists():  # alive until the others have looked at the lock
        time.sleep(0.01)
"""


def test_of_jobs_started_at_the_same_moment_one_takes_the_lock(tmp_path):
    """Jobs look at and write the lock one at a time: never two holders, whatever the interleaving."""
    import time

    lock_file, go, done = tmp_path / "models" / ".lock", tmp_path / "go", tmp_path / "done"
    jobs = [subprocess.Popen([sys.executable, "-c", _ACQUIRE, str(lock_file), str(go), str(done)],
                             stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
            for _ in range(3)]
    try:
        assert [job.stdout.readline().strip() for job in jobs] == ["ready"] * 3
        go.write_text(str(time.time() + 0.5))
        outcomes = sorted(job.stdout.readline().strip() for job in jobs)
    finally:
        done.touch()
        for job in jobs:
            job.wait(timeout=60)
    assert outcomes == ["held", "refused", "refused"]
    assert not lock_file.exists()  # released by its holder at exit


_RANK = """
import sys
import torch.distributed as dist
from shared.handlers.lock import BundleLock, BundleLockedError
from shared.utils.dist import end_process_group, gather_objects
store, rank, lock_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
lock = BundleLock(lock_file)
try:
    lock.acquire()
    lock.acquire()  # a second time, as the trainer's run-safety handler does: no rank waits on the others
except BundleLockedError as e:
    print("refused:", e, flush=True)
else:
    print("went on", gather_objects(rank), flush=True)
end_process_group()
"""


def two_ranks_acquire(tmp_path: Path, lock_file: Path) -> list[str]:
    """What each rank of a two-process gloo job prints after taking ``lock_file``."""
    ranks = [subprocess.Popen([sys.executable, "-c", _RANK, str(tmp_path / "store"), str(rank), str(lock_file)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              cwd=Path(__file__).resolve().parents[1])
             for rank in (0, 1)]
    try:
        outputs = [rank.communicate(timeout=120)[0] for rank in ranks]
    finally:
        for rank in ranks:
            rank.kill()
    assert all(rank.returncode == 0 for rank in ranks), "\n".join(outputs)
    return [output.strip().splitlines()[-1] for output in outputs]


def test_a_refused_job_stops_on_every_rank(live_holder, tmp_path):
    """Rank 0 takes the lock; its outcome reaches every rank before any of them writes (ranks above 0 went on and
    wrote the datalist of the job holding the lock)."""
    holder = live_holder.read_text()
    refusals = two_ranks_acquire(tmp_path, live_holder)
    assert refusals[0] == refusals[1] and refusals[0].startswith("refused: ") and "is being trained by" in refusals[0]
    assert live_holder.read_text() == holder
    (tmp_path / "free").mkdir()
    assert two_ranks_acquire(tmp_path / "free", tmp_path / "free" / "models" / ".lock") == ["went on [0, 1]"] * 2


def test_a_lock_from_another_host_or_unreadable_is_taken_over_with_a_warning(tmp_path, caplog):
    lock_file = tmp_path / ".lock"
    lock_file.write_text(json.dumps({"pid": 1, "host": "another-node", "started": "earlier"}))
    lock = BundleLock(str(lock_file))
    lock.acquire()
    assert "written by process 1 on host 'another-node'" in caplog.text
    assert "make sure that job has ended" in caplog.text
    assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    lock.release()
    lock_file.write_text("{")
    lock.acquire()
    assert "it cannot be read" in caplog.text and json.loads(lock_file.read_text())["pid"] == os.getpid()
    lock.release()
