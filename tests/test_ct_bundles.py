"""The CT pipeline bundles (`mae_pretrain_ct`, `unetr_btcv_seg`) run as users run them: `python -m monai.bundle run`
from the repository root and from another working directory, on synthetic BTCV-layout data, with tiny networks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.networks.nets import UNETR

REPO = Path(__file__).resolve().parents[1]
MAE = REPO / "bundles" / "mae_pretrain_ct"
SEG = REPO / "bundles" / "unetr_btcv_seg"
SCHEMA = REPO.parent / "shared" / "schemas" / "meta_schema_20240725.json"
sys.path.insert(0, str(REPO / "tools"))
import synthetic_data  # noqa: E402

# a narrow 12-layer ViT, as UNETR needs, and 32^3 crops
ENCODER = ["--network_def#hidden_size", "48", "--network_def#mlp_dim", "96", "--network_def#num_heads", "4"]
MAE_NET = ENCODER + ["--network_def#decoder_hidden_size", "24", "--network_def#decoder_num_layers", "1",
                     "--network_def#decoder_num_heads", "2", "--roi_size", "[32,32,32]"]
SEG_NET = ENCODER + ["--network_def#feature_size", "8", "--roi_size", "[32,32,32]"]
MAE_TRAIN = ["--batch_size", "2", "--num_samples", "2", "--num_workers", "0", "--warmup_epochs", "1",
             "--snapshot_interval", "1"]
SEG_TRAIN = ["--batch_size", "1", "--num_samples", "1", "--num_workers", "0", "--warmup_epochs", "1",
             "--val_interval", "1"]


def bundle_run(configs: list[Path], *args: str, cwd: Path = REPO, torchrun: bool = False) -> str:
    config = str(configs[0]) if len(configs) == 1 else str([str(c) for c in configs])
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2"] \
        if torchrun else [sys.executable]
    cmd = launcher + ["-m", "monai.bundle", "run", "--config_file", config, *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def saved_epoch(checkpoint: Path) -> int:
    trainer = torch.load(checkpoint, weights_only=True)["trainer"]
    return trainer["iteration"] // trainer["epoch_length"]


def losses(log: str) -> list[float]:
    return [float(v) for v in re.findall(r"train_loss: ([0-9.]+)", log)]


@pytest.fixture(scope="module")
def btcv(tmp_path_factory) -> Path:
    return Path(synthetic_data.make_btcv(str(tmp_path_factory.mktemp("btcv")), num_train=2, num_val=2, num_test=1,
                                         shape=(64, 64, 32), seed=0))


@pytest.fixture(scope="module")
def pretrained(btcv, tmp_path_factory) -> tuple[Path, str]:
    """MAE pre-training run from another working directory, with absolute paths; 12 layers so UNETR can take it."""
    root = tmp_path_factory.mktemp("mae")
    log = bundle_run([MAE / "configs" / "train.json"], "--bundle_root", str(root), "--dataset_dir", str(btcv),
                     "--epochs", "12", "--base_learning_rate", "0.5", *MAE_TRAIN, *MAE_NET, cwd=root)
    return root, log


def test_mae_pretraining_writes_weights_pictures_and_its_loss_falls(pretrained):
    root, log = pretrained
    assert (root / "models" / "model.pt").is_file() and (root / "models" / "checkpoint.pt").is_file()
    assert len(list((root / "runs" / "train").glob("reconstruction_epoch*.png"))) == 12
    assert list((root / "runs" / "train").glob("events.out.tfevents.*"))
    values = losses(log)
    assert len(values) == 12
    assert np.mean(values[-3:]) < 0.9 * np.mean(values[:3]), values


def test_mae_pretraining_from_the_repository_root(btcv, tmp_path):
    bundle_run([MAE / "configs" / "train.json"], "--bundle_root", str(tmp_path), "--dataset_dir", str(btcv),
               "--epochs", "1", "--network_def#num_layers", "2", *MAE_TRAIN, *MAE_NET)
    assert (tmp_path / "models" / "model.pt").is_file()


def test_mae_training_resumes_after_being_killed(btcv, tmp_path):
    """Kill the run once a checkpoint exists; the restart continues from the saved epoch, schedule included."""
    args = ["--bundle_root", str(tmp_path), "--dataset_dir", str(btcv), "--epochs", "40", "--network_def#num_layers",
            "2", *MAE_TRAIN, *MAE_NET]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(MAE / "configs" / "train.json"), *args]
    checkpoint = tmp_path / "models" / "checkpoint.pt"
    with open(tmp_path / "first_run.log", "w") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if checkpoint.exists() and saved_epoch(checkpoint) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "training ended before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    interrupted_at = saved_epoch(checkpoint)
    log = bundle_run([MAE / "configs" / "train.json"], *args)
    assert "Restored all variables" in log
    epochs_run = [int(e) for e in re.findall(r"Epoch\[(\d+)\] Complete", log)]
    assert epochs_run[0] == interrupted_at + 1 and epochs_run[-1] == 40
    final = torch.load(checkpoint, weights_only=True)
    iterations_per_epoch = 1  # 2 volumes, batch 2
    assert saved_epoch(checkpoint) == 40
    assert final["lr_scheduler"]["last_epoch"] == 40 * iterations_per_epoch
    assert len(final["optimizer"]["state"]) > 0


def test_mae_inference_writes_three_volumes(pretrained, btcv, tmp_path):
    root, _ = pretrained
    bundle_run([MAE / "configs" / "inference.json"], "--bundle_root", str(root), "--dataset_dir", str(btcv),
               "--output_dir", str(tmp_path), "--mask_ratio", "0.5", *MAE_NET, cwd=tmp_path)
    names = sorted(p.name for p in tmp_path.glob("*.nii.gz"))
    assert names == ["img0061_masked.nii.gz", "img0061_original.nii.gz", "img0061_reconstruction.nii.gz"]
    masked = nib.load(tmp_path / "img0061_masked.nii.gz").get_fdata()
    original = nib.load(tmp_path / "img0061_original.nii.gz").get_fdata()
    assert masked.shape == original.shape
    body = original > 0
    assert 0.25 < np.mean(masked[body] == 0) < 0.75  # about half the patches hidden


@pytest.fixture(scope="module")
def finetuned(pretrained, btcv, tmp_path_factory) -> Path:
    mae_root, _ = pretrained
    root = tmp_path_factory.mktemp("unetr")
    bundle_run([SEG / "configs" / "train.json"], "--bundle_root", str(root), "--dataset_dir", str(btcv),
               "--epochs", "2", "--pretrained_encoder", str(mae_root / "models" / "model.pt"), *SEG_TRAIN, *SEG_NET,
               cwd=root)
    return root


def test_mae_encoder_initialises_every_unetr_encoder_tensor(pretrained):
    from shared.networks.encoder_transfer import load_mae_encoder

    mae_state = torch.load(pretrained[0] / "models" / "model.pt", weights_only=True)
    unetr = UNETR(1, 14, 32, feature_size=8, hidden_size=48, mlp_dim=96, num_heads=4)
    report = load_mae_encoder(unetr, mae_state)
    encoder_keys = [k for k in mae_state if k.startswith("encoder.")]
    assert sorted(report.loaded) == sorted(k.removeprefix("encoder.") for k in encoder_keys)
    for key in encoder_keys:
        assert torch.equal(unetr.vit.state_dict()[key.removeprefix("encoder.")], mae_state[key]), key


def test_unetr_training_loads_the_mae_encoder_and_saves_the_best_model(finetuned):
    assert (finetuned / "models" / "model.pt").is_file() and (finetuned / "models" / "checkpoint.pt").is_file()


def test_unetr_train_log_reports_the_encoder_transfer(pretrained, btcv, tmp_path):
    log = bundle_run([SEG / "configs" / "train.json"], "--bundle_root", str(tmp_path), "--dataset_dir", str(btcv),
                     "--epochs", "1", "--pretrained_encoder", str(pretrained[0] / "models" / "model.pt"),
                     *SEG_TRAIN, *SEG_NET)
    assert re.search(r"MAE encoder from .*model.pt: loaded 1\d\d encoder tensors", log)
    assert "NOT loaded" not in log


def test_unetr_evaluate_writes_named_per_organ_dice_and_hd95(finetuned, btcv):
    bundle_run([SEG / "configs" / "train.json", SEG / "configs" / "evaluate.json"], "--bundle_root", str(finetuned),
               "--dataset_dir", str(btcv), "--num_workers", "0", *SEG_NET, cwd=finetuned)
    summary = json.loads((finetuned / "eval" / "metrics_summary.json").read_text())
    assert summary["num_cases"] == 2
    assert list(summary["dice"])[:3] == ["spleen", "right kidney", "left kidney"] and "mean" in summary["dice"]
    assert set(summary) == {"num_cases", "dice", "hd95"}
    rows = (finetuned / "eval" / "metrics_per_case.csv").read_text().splitlines()
    assert rows[0].startswith("case,metric,spleen,") and len(rows) == 1 + 2 * 2


def test_unetr_inference_keeps_the_input_geometry(finetuned, btcv, tmp_path):
    """An input that is neither RAS nor 1.5 mm: the label map has exactly its shape and affine."""
    source = nib.load(btcv / "imagesTs" / "img0061.nii.gz")
    affine = np.array([[0.0, 0.9, 0.0, 10.0], [-0.7, 0.0, 0.0, -20.0], [0.0, 0.0, 2.5, 5.0], [0, 0, 0, 1]])
    data = np.asarray(source.dataobj)[:, :50, :]
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "rotated.nii.gz")
    out = tmp_path / "out"
    bundle_run([SEG / "configs" / "inference.json"], "--bundle_root", str(finetuned), "--output_dir", str(out),
               "--input_files", str([str(tmp_path / "rotated.nii.gz"), str(btcv / "imagesTs" / "img0061.nii.gz")]),
               *SEG_NET, cwd=tmp_path)
    for name, reference in (("rotated", nib.load(tmp_path / "rotated.nii.gz")), ("img0061", source)):
        result = nib.load(out / f"{name}_seg.nii.gz")
        assert result.shape == reference.shape
        np.testing.assert_allclose(result.affine, reference.affine, atol=1e-4)
        labels = np.unique(np.asarray(result.dataobj))
        assert set(labels.tolist()) <= set(range(14))


def test_multi_gpu_configs_run_on_cpu_with_gloo(pretrained, btcv, tmp_path):
    bundle_run([MAE / "configs" / "train.json", MAE / "configs" / "multi_gpu_train.json"], "--bundle_root",
               str(tmp_path / "mae"), "--dataset_dir", str(btcv), "--epochs", "1", "--network_def#num_layers", "2",
               *MAE_TRAIN, *MAE_NET, torchrun=True)
    assert (tmp_path / "mae" / "models" / "model.pt").is_file()
    seg = tmp_path / "seg"
    bundle_run([SEG / "configs" / "train.json", SEG / "configs" / "multi_gpu_train.json"], "--bundle_root", str(seg),
               "--dataset_dir", str(btcv), "--epochs", "1", *SEG_TRAIN, *SEG_NET, torchrun=True)
    bundle_run([SEG / "configs" / "train.json", SEG / "configs" / "evaluate.json",
                SEG / "configs" / "multi_gpu_evaluate.json"], "--bundle_root", str(seg), "--dataset_dir", str(btcv),
               "--num_workers", "0", *SEG_NET, torchrun=True)
    assert json.loads((seg / "eval" / "metrics_summary.json").read_text())["num_cases"] == 2


@pytest.mark.parametrize("bundle", [MAE, SEG], ids=lambda b: b.name)
def test_metadata_and_network_shapes_verify(bundle):
    env = {**os.environ, "PYTHONPATH": str(bundle)}
    meta = str(bundle / "configs" / "metadata.json")
    for args in (["verify_metadata", "--meta_file", meta, "--filepath", str(SCHEMA)],
                 ["verify_net_in_out", "--net_id", "network_def", "--meta_file", meta, "--config_file",
                  str(bundle / "configs" / "inference.json"), "--bundle_root", str(bundle), *ENCODER]):
        proc = subprocess.run([sys.executable, "-m", "monai.bundle", *args], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "verified with no error" in proc.stdout + proc.stderr
