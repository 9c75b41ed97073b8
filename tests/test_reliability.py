"""Nothing a user has is lost and nothing fails silently: each case of a hostile but realistic use, with the message
the user now sees. Small inputs and tiny networks; the bundle runs are in this process unless the exit status or the
last line of the output is what is tested."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from ignite.metrics import Metric
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from PIL import Image

from shared.data.cxr14 import build_datalist, read_data_entry
from shared.data.inputs import image_datalist, non_empty
from shared.handlers.checkpoint import AtomicCheckpointSaver, BestMetricState, ResumeLoader
from shared.handlers.guards import NonFiniteLossGuard
from shared.handlers.lock import BundleLock, BundleLockedError
from shared.networks.encoder_transfer import load_mae_encoder
from shared.transforms.checks import CheckGeometryd, CheckImaged, CheckLabelValuesd
from shared.transforms.io import LoadImaged
from shared.transforms.xray import LoadXRayd
from shared.utils.atomic import TEMPORARY_PREFIX, save_atomically
from shared.utils.config import as_bool
from shared.utils.errors import InputError, cause_line
from tests.helpers import (
    MAE,
    SEG,
    SMALL,
    TINY_ENCODER,
    TINY_MAE,
    TINY_UNETR,
    bundle_run,
    http_server,
    run_workflow,
    tiny_mae,
)
from tools import fault_injection, synthetic
from tools.download_bundle import download_bundle
from tools.package_bundles import package


@pytest.fixture(scope="module")
def btcv(tmp_path_factory) -> Path:
    return Path(synthetic.make_btcv(str(tmp_path_factory.mktemp("btcv")), num_train=2, num_val=1, num_test=1,
                                    shape=(40, 40, 24), body_scale=0.1))


def nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


def load(path: Path | list, **checks) -> dict:
    """The first steps of every 3-D pipeline: load (errors name the file), channel first, check."""
    from monai.transforms import EnsureChannelFirstd

    d = LoadImaged("image", image_only=True)({"image": str(path) if isinstance(path, Path) else path})
    d = EnsureChannelFirstd("image")(d)
    return CheckImaged("image", **checks)(d)


# ---------------------------------------------------------------------------------------------------------------
# 1. the best model survives a resume
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


def test_fault_injection_loses_nothing(tmp_path):
    observed = fault_injection.fault_injection(kills=2, epochs=10, workdir=str(tmp_path))  # 2 epochs of margin
    assert len(observed["kills"]) == 2 and observed["model_pt_metric"] == pytest.approx(observed["best_metric"])
    with pytest.raises(ValueError, match="10 kills need at least 32 epochs"):  # refused before any work
        fault_injection.fault_injection(kills=10, epochs=8, workdir=str(tmp_path / "too_short"))


# ---------------------------------------------------------------------------------------------------------------
# 2, 6, 12, 13: inference inputs
# ---------------------------------------------------------------------------------------------------------------


def test_two_inputs_with_the_same_name_are_refused_before_any_work(btcv, tmp_path):
    for folder in ("A", "B"):
        (tmp_path / folder).mkdir()
        shutil.copy(btcv / "imagesTs" / "img0061.nii.gz", tmp_path / folder / "ct.nii.gz")
    inputs = [str(tmp_path / "A" / "ct.nii.gz"), str(tmp_path / "B" / "ct.nii.gz")]
    with pytest.raises(ValueError, match=r"same name would overwrite each other's output \(ct: .*A/ct.nii.gz, .*B/ct"):
        image_datalist(inputs)
    with pytest.raises(RuntimeError):
        run_workflow([SEG / "inference.json"], tmp_path / "bundle", "infer", input_files=inputs,
                     output_dir=str(tmp_path / "out"), **SMALL, **TINY_UNETR)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_single_input_path_and_empty_inputs():
    assert image_datalist(__file__) == [{"image": __file__}]  # a string is one file, not its characters
    with pytest.raises(FileNotFoundError, match=r"nothing matches /nowhere/imagesTs/\*.nii.gz"):
        image_datalist([], looked_for="/nowhere/imagesTs/*.nii.gz")
    with pytest.raises(FileNotFoundError, match="not found: /nowhere/ct.nii.gz"):
        image_datalist("/nowhere/ct.nii.gz")
    with pytest.raises(ValueError, match="no validation cases in /data/dataset_0.json"):
        non_empty([], "validation cases in /data/dataset_0.json")


def test_inference_with_a_missing_dataset_dir_says_where_it_looked(tmp_path):
    overrides = {"bundle_root": str(tmp_path), "dataset_dir": "/nowhere", **SMALL, **TINY_UNETR}
    output = bundle_run([SEG / "inference.json"], overrides, expect_failure=True)
    assert output.strip().splitlines()[-1].endswith(
        "FileNotFoundError: no input images: nothing matches /nowhere/imagesTs/*.nii.gz. Pass --input_files or "
        "--dataset_dir.")


def test_one_bad_input_does_not_stop_the_others(btcv, tmp_path):
    """A truncated file and a file with NaN among good ones: the good ones are segmented, the bad ones reported with
    their reasons, and the run fails at the end."""
    good = btcv / "imagesTs" / "img0061.nii.gz"
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    image = nib.load(good)
    data = np.asanyarray(image.dataobj).astype(np.float32)
    data[3, 4, 5] = np.nan
    with_nan = nifti(tmp_path / "with_nan.nii.gz", data, image.affine)
    bundle = tmp_path / "bundle"
    (bundle / "models").mkdir(parents=True)
    from monai.networks.nets import UNETR

    torch.save(UNETR(1, 14, 32, feature_size=8, **TINY_ENCODER).state_dict(), bundle / "models" / "model.pt")
    output = bundle_run([SEG / "inference.json"], {
        "bundle_root": str(bundle), "output_dir": str(tmp_path / "out"), **SMALL, **TINY_UNETR,
        "input_files": [str(truncated), str(good), str(with_nan)]}, expect_failure=True)
    assert (tmp_path / "out" / "img0061_seg.nii.gz").is_file()
    written = {p.name for p in (tmp_path / "out").glob("*.nii.gz")}
    assert written == {"img0061_seg.nii.gz"}
    tail = output[output.rindex("error: InputFailures"):]
    assert "2 of 3 inputs failed (1 done)" in tail
    assert f"{truncated}: cannot be read (EOFError" in tail
    assert f"{with_nan}: 1 of" in tail and "values are NaN or infinite" in tail


# ---------------------------------------------------------------------------------------------------------------
# 3: a NaN never reaches a checkpoint
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
    network = torch.nn.Linear(2, 1)
    batch = {"image": torch.tensor([[1.0, float("nan")]]), "label": torch.zeros(1, 1), "source": ["a.nii.gz"]}
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=2, train_data_loader=[batch], network=network,
        optimizer=torch.optim.SGD(network.parameters(), 0.1), loss_function=torch.nn.MSELoss(),
        train_handlers=[NonFiniteLossGuard(checkpoint="models/checkpoint.pt"),
                        AtomicCheckpointSaver(str(tmp_path / "checkpoint.pt"), {"model": network})],
    )
    with pytest.raises(FloatingPointError, match=r"loss is nan at epoch 1, iteration 1.*Files of this batch: a.nii.gz"):
        trainer.run()
    assert not (tmp_path / "checkpoint.pt").exists()


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
# 4, 5, 9, 10: inputs that are refused with the file and the problem named
# ---------------------------------------------------------------------------------------------------------------


def test_bad_volumes_are_named_with_their_problem(tmp_path):
    volume = np.random.default_rng(0).normal(size=(20, 20, 12)).astype(np.float32)
    with_inf = volume.copy()
    with_inf[0, 0, 0] = np.inf
    cases = {
        "inf.nii.gz": (with_inf, {"spatial_dims": 3, "channels": 1}, "1 of 4800 values are NaN or infinite"),
        "four_d.nii.gz": (np.stack([volume] * 5, -1), {"spatial_dims": 3, "channels": 1},
                          "5 channels (shape (5, 20, 20, 12)); the network takes 1"),
        "two_d.nii.gz": (volume[:, :, 0], {"spatial_dims": 3, "channels": 1},
                         "2-D image (channel-first shape (1, 20, 20)); the network takes 3-D images"),
        "three_contrasts.nii.gz": (np.stack([volume] * 3, -1), {"spatial_dims": 3, "channels": 4},
                                   "3 channels (shape (3, 20, 20, 12)); the network takes 4"),
    }
    for name, (array, checks, problem) in cases.items():
        path = nifti(tmp_path / name, array)
        with pytest.raises(InputError) as error:
            load(path, **checks)
        assert str(error.value) == f"{path}: {problem}"


def test_truncated_files_are_named(tmp_path):
    good = nifti(tmp_path / "good.nii.gz", np.random.default_rng(0).normal(size=(20, 20, 12)).astype(np.float32))
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match=rf"^{truncated}: cannot be read \("):
        load(truncated, spatial_dims=3)
    png = tmp_path / "xray.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(png)
    png.write_bytes(png.read_bytes()[:60])
    with pytest.raises(InputError, match=rf"^{png}: cannot be read \("):
        LoadXRayd("image")({"image": str(png)})


def test_brats_contrasts_on_different_grids_are_named(tmp_path):
    volume = np.zeros((20, 20, 12), np.float32)
    files = [nifti(tmp_path / f"c{i}.nii.gz", volume) for i in range(3)]
    files.append(nifti(tmp_path / "c3.nii.gz", np.zeros((20, 20, 10), np.float32)))
    with pytest.raises(InputError, match=r"the channels of this case do not share one voxel grid .*c3.nii.gz shape "
                                         r"\(20, 20, 10\)"):
        load([str(f) for f in files], spatial_dims=3, channels=4)
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    files[3] = nifti(tmp_path / "c3.nii.gz", volume, shifted)
    with pytest.raises(InputError, match="do not share one voxel grid"):
        load([str(f) for f in files], spatial_dims=3, channels=4)


def test_a_label_off_its_image_grid_and_labels_out_of_range_are_named(tmp_path):
    from monai.transforms import EnsureChannelFirstd

    image = nifti(tmp_path / "img.nii.gz", np.zeros((64, 64, 32), np.float32))
    label = nifti(tmp_path / "label.nii.gz", np.zeros((64, 64, 20), np.uint8))
    d = LoadImaged(["image", "label"])({"image": str(image), "label": str(label)})
    d = EnsureChannelFirstd(["image", "label"])(d)
    with pytest.raises(InputError, match=rf"^{image}, {label}: the label has spatial shape \(64, 64, 20\), the image "
                                         r"\(64, 64, 32\)"):
        CheckGeometryd(["image", "label"])(d)
    values = np.zeros((64, 64, 32), np.uint8)
    values[0, 0, 0], values[1, 1, 1] = 14, 255
    label = nifti(tmp_path / "label14.nii.gz", values)
    d = LoadImaged("label")({"label": str(label)})
    with pytest.raises(InputError, match=rf"^{label}: label values {{14, 255}} are not labels of this data set "
                                         r"\(allowed: 0..13\)"):
        CheckLabelValuesd("label", range(14))(d)


def test_a_failed_run_ends_with_its_cause(btcv, tmp_path):
    """The last line of the output names the file and the problem, not MONAI's 'Failed to evaluate'."""
    data = tmp_path / "data"
    shutil.copytree(btcv, data)
    label = nib.load(data / "labelsTr" / "label0001.nii.gz")
    values = np.asanyarray(label.dataobj).copy()
    values[0, 0, 0] = 14
    nifti(data / "labelsTr" / "label0001.nii.gz", values, label.affine)
    output = bundle_run([SEG / "train.json"], {"bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(data),
                                               "epochs": 1, **SMALL, **TINY_UNETR}, expect_failure=True)
    assert output.strip().splitlines()[-1] == (
        f"error: InputError: {data / 'labelsTr' / 'label0001.nii.gz'}: label values {{14}} are not labels of this "
        "data set (allowed: 0..13)")


# ---------------------------------------------------------------------------------------------------------------
# 6, 7, 11, 14: training and evaluation runs
# ---------------------------------------------------------------------------------------------------------------


def test_empty_training_or_validation_lists_are_errors(btcv, tmp_path):
    datalist = json.loads((btcv / "dataset_0.json").read_text())
    for split in ("training", "validation"):
        empty = tmp_path / f"no_{split}.json"
        empty.write_text(json.dumps({**datalist, split: []}))
        with pytest.raises(RuntimeError) as error:
            run_workflow([SEG / "train.json"], tmp_path / "bundle", dataset_dir=str(btcv), datalist_file=str(empty),
                         epochs=1, **SMALL, **TINY_UNETR)
        assert f"no {split} cases in {empty}: nothing to do." in cause_line(error.value)
    empty = tmp_path / "no_validation.json"
    with pytest.raises(RuntimeError) as error:
        run_workflow([SEG / "train.json", SEG / "evaluate.json"], tmp_path / "bundle", dataset_dir=str(btcv),
                     datalist_file=str(empty), **SMALL, **TINY_UNETR)
    assert f"no validation cases in {empty}" in cause_line(error.value)


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
    wf = run_workflow([MAE / "train.json"], root, epochs=2, **overrides)
    assert "this run is already complete (2 of 2 epochs" in capsys.readouterr().out
    wf = run_workflow([MAE / "train.json"], root, epochs=4, **overrides)
    scheduler = wf.parser.get_parsed_content("lr_scheduler")
    assert scheduler.t_total == 4 and scheduler.last_epoch == 4  # one iteration per epoch, schedule of 4 epochs
    assert scheduler.get_last_lr()[0] < 1e-6 * wf.parser.get_parsed_content("learning_rate") + 1e-12


def test_a_corrupt_checkpoint_is_named_with_how_to_start_over(tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match=rf"cannot resume from {checkpoint} .* Delete the file, or run with "
                                           "--resume false, to start the training over."):
        ResumeLoader(str(checkpoint), {"model": torch.nn.Linear(1, 1)})(Engine(lambda e, b: None))


def test_encoder_files_that_cannot_be_used_say_why(tmp_path):
    from monai.networks.nets import UNETR

    unetr = UNETR(1, 14, 32, feature_size=8, **TINY_ENCODER)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"is empty \(0 bytes\)"):
        load_mae_encoder(unetr, empty)
    mae_2d = tiny_mae(img_size=32, spatial_dims=2, num_layers=12)
    with pytest.raises(ValueError, match=r"holds a 2-D encoder .* the network is 3-D"):
        load_mae_encoder(unetr, mae_2d.state_dict())


def test_csv_errors_are_reported_on_the_right_line(tmp_path):
    header = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,x,y,z,w\n"
    rows = ["a.png,Mass,0,1,40,M,PA,1,1,1,1", 'b.png,"Mass,0,2,40,M,PA,1,1,1,1', "c.png,Mass,0,3,40,M,PA,1,1,1,1"]
    csv_file = tmp_path / "Data_Entry_2017.csv"
    csv_file.write_text(header + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match="line 3: a quoted field that starts on this line is not closed"):
        read_data_entry(str(csv_file))
    csv_file.write_text(header)
    for name in ("train_val_list.txt", "test_list.txt"):
        (tmp_path / name).write_text("")
    with pytest.raises(ValueError, match="lists no images .it has a header but no rows."):
        build_datalist(str(tmp_path))


# ---------------------------------------------------------------------------------------------------------------
# 8: a tampered download
# ---------------------------------------------------------------------------------------------------------------


def test_a_tampered_bundle_zip_is_refused_and_nothing_is_extracted(tmp_path):
    dist = tmp_path / "dist"
    with http_server(dist.parent) as base:
        (result,) = package("unetr_btcv_seg", str(dist), f"{base}/dist", quiet=True)
        model_info = str(dist / "model_info.json")
        good = download_bundle("unetr_btcv_seg", str(tmp_path / "good"), model_info=model_info)
        assert (good / "configs" / "inference.json").is_file()
        with zipfile.ZipFile(result.zip_path, "a") as zf:  # code injected into the bundle's scripts
            zf.writestr("unetr_btcv_seg/scripts/__init__.py", "import os; os.system('echo pwned')\n")
        with pytest.raises(RuntimeError, match="does not have the published sha1 .* refused, nothing extracted"):
            download_bundle("unetr_btcv_seg", str(tmp_path / "tampered"), model_info=model_info)
    assert not (tmp_path / "tampered").exists() or not any((tmp_path / "tampered").iterdir())


# ---------------------------------------------------------------------------------------------------------------
# 15, 16: temporaries, file modes, one job per bundle_root
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
        import socket

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
