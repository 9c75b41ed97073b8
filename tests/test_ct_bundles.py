"""The CT pipeline bundles (`mae_pretrain_ct`, `unetr_btcv_seg`) on synthetic BTCV-layout data with tiny networks:
training as users run it (`python -m monai.bundle run`, from the repository root and from another working directory,
under torchrun), evaluation and inference in this process."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.networks.nets import UNETR

from shared.networks.encoder_transfer import load_mae_encoder
from tests.helpers import (
    MAE,
    REPO,
    SEG,
    TINY_ENCODER,
    TINY_MAE,
    TINY_UNETR,
    bundle_command,
    bundle_importable,
    bundle_run,
    run_workflow,
    workflow,
)
from tools.measure.benchmark_inference import SETTINGS, Setting, chosen_settings, inference_overrides

ROI = {"roi_size": [32, 32, 32]}
MAE_RUN = {**TINY_MAE, **ROI, "batch_size": 2, "num_samples": 2, "num_workers": 0, "warmup_epochs": 1,
           "snapshot_interval": 1}
SEG_RUN = {**TINY_UNETR, **ROI, "num_workers": 0}
SEG_TRAIN = {**SEG_RUN, "batch_size": 1, "num_samples": 1, "warmup_epochs": 1, "val_interval": 1}


def saved_epoch(checkpoint: Path) -> int:
    trainer = torch.load(checkpoint, weights_only=True)["trainer"]
    return trainer["iteration"] // trainer["epoch_length"]


def logged(name: str, log: str) -> list[float]:
    """Every value of ``name`` (e.g. ``train_loss``) that MONAI's StatsHandler printed per iteration."""
    return [float(v) for v in re.findall(rf"{name}: ([0-9.]+)", log)]


@pytest.fixture(scope="module")
def pretrained(btcv, tmp_path_factory) -> tuple[Path, str]:
    """MAE pre-training run from another working directory, with absolute paths; 12 layers so UNETR can take it."""
    root = tmp_path_factory.mktemp("mae")
    log = bundle_run([MAE / "train.json"], {"bundle_root": str(root), "dataset_dir": str(btcv), "epochs": 12,
                                            "base_learning_rate": 0.5, **MAE_RUN}, cwd=root)
    return root, log


def test_mae_pretraining_writes_weights_pictures_and_its_loss_falls(pretrained):
    root, log = pretrained
    assert (root / "models" / "model.pt").is_file() and (root / "models" / "checkpoint.pt").is_file()
    assert len(list((root / "runs" / "train").glob("reconstruction_epoch*.png"))) == 12
    assert list((root / "runs" / "train").glob("events.out.tfevents.*"))
    values = logged("train_loss", log)
    assert len(values) == 12
    assert np.mean(values[-3:]) < 0.9 * np.mean(values[:3]), values


@pytest.mark.slow
def test_mae_training_resumes_after_being_killed(btcv, tmp_path):
    """Run from the repository root; kill the run once a checkpoint exists; the restart continues from the saved
    epoch, schedule included."""
    overrides = {"bundle_root": str(tmp_path), "dataset_dir": str(btcv), "epochs": 40, "network_def#num_layers": 2,
                 **MAE_RUN}
    cmd = bundle_command([MAE / "train.json"], overrides)
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
    log = bundle_run([MAE / "train.json"], overrides)
    assert re.search(r"resumed from .*checkpoint.pt at epoch", log)
    epochs_run = [int(e) for e in re.findall(r"Epoch\[(\d+)\] Complete", log)]
    assert epochs_run[0] == interrupted_at + 1 and epochs_run[-1] == 40
    final = torch.load(checkpoint, weights_only=True)
    iterations_per_epoch = 1  # 2 volumes, batch 2
    assert saved_epoch(checkpoint) == 40
    assert final["lr_scheduler"]["last_epoch"] == 40 * iterations_per_epoch
    assert len(final["optimizer"]["state"]) > 0


def test_mae_inference_writes_three_volumes(pretrained, btcv, tmp_path):
    root, _ = pretrained
    run_workflow([MAE / "inference.json"], root, "infer", dataset_dir=str(btcv), output_dir=str(tmp_path),
                 mask_ratio=0.5, num_workers=0, **TINY_MAE, **ROI)
    names = sorted(p.name for p in tmp_path.glob("*.nii.gz"))
    assert names == ["img0061_masked.nii.gz", "img0061_original.nii.gz", "img0061_reconstruction.nii.gz"]
    masked = nib.load(tmp_path / "img0061_masked.nii.gz").get_fdata()
    original = nib.load(tmp_path / "img0061_original.nii.gz").get_fdata()
    assert masked.shape == original.shape
    body = original > 0
    assert 0.25 < np.mean(masked[body] == 0) < 0.75  # about half the patches hidden


@pytest.fixture(scope="module")
def finetuned(pretrained, btcv, tmp_path_factory) -> tuple[Path, str]:
    """Three epochs of UNETR fine-tuning from the MAE encoder, validated every epoch, from another directory."""
    mae_root, _ = pretrained
    root = tmp_path_factory.mktemp("unetr")
    log = bundle_run([SEG / "train.json"], {"bundle_root": str(root), "dataset_dir": str(btcv), "epochs": 3,
                                            "pretrained_encoder": str(mae_root / "models" / "model.pt"), **SEG_TRAIN},
                     cwd=root)
    return root, log


def test_mae_encoder_initialises_every_unetr_encoder_tensor(pretrained):
    mae_state = torch.load(pretrained[0] / "models" / "model.pt", weights_only=True)
    unetr = UNETR(1, 14, 32, feature_size=8, **TINY_ENCODER)
    report = load_mae_encoder(unetr, mae_state)
    encoder_keys = [k for k in mae_state if k.startswith("encoder.")]
    assert sorted(report.loaded) == sorted(k.removeprefix("encoder.") for k in encoder_keys)
    for key in encoder_keys:
        assert torch.equal(unetr.vit.state_dict()[key.removeprefix("encoder.")], mae_state[key]), key


def test_unetr_training_logs_the_encoder_transfer_and_keeps_the_best_model(finetuned, btcv):
    root, log = finetuned
    assert re.search(r"MAE encoder from .*model.pt: loaded 1\d\d encoder tensors", log)
    assert "NOT loaded" not in log
    assert (root / "models" / "checkpoint.pt").is_file()
    assert len(re.findall(r"Metrics -- val_mean_dice", log)) == 3  # validated every epoch
    best = max(float(v) for v in re.findall(r"Got new best metric of val_mean_dice: ([0-9.e-]+)", log))
    # model.pt is the network of the best validation, not the last: validating it again gives the best score
    with bundle_importable(SEG.parent):
        wf = workflow([SEG / "train.json"], root, "train", dataset_dir=str(btcv), **SEG_TRAIN)
        wf.parser.get_parsed_content("network").load_state_dict(torch.load(root / "models" / "model.pt"))
        evaluator = wf.parser.get_parsed_content("validate#evaluator")
        evaluator.run()
    assert evaluator.state.metrics["val_mean_dice"] == pytest.approx(best, abs=1e-6)


def test_unetr_evaluate_writes_named_per_organ_dice_and_hd95(finetuned, btcv, tmp_path):
    root, _ = finetuned
    run_workflow([SEG / "train.json", SEG / "evaluate.json"], root, "train", dataset_dir=str(btcv),
                 eval_dir=str(tmp_path), **SEG_RUN)
    summary = json.loads((tmp_path / "metrics_summary.json").read_text())
    assert summary["num_cases"] == 2
    assert list(summary["dice"])[:3] == ["spleen", "right kidney", "left kidney"]
    assert {"mean", "mean_8_organs"} <= set(summary["dice"]) and {"mean", "mean_8_organs"} <= set(summary["hd95"])
    assert set(summary) == {"num_cases", "dice", "hd95", "misses", "spurious", "hd95_rule"}
    assert summary["misses"]["total"] == sum(v for k, v in summary["misses"].items() if k != "total")
    rows = (tmp_path / "metrics_per_case.csv").read_text().splitlines()
    assert rows[0].startswith("case,metric,spleen,") and len(rows) == 1 + 2 * 4  # dice, hd95, missed, spurious


def test_unetr_inference_keeps_the_input_geometry(finetuned, btcv, tmp_path):
    """An input that is neither RAS nor 1.5 mm: the label map has exactly its shape and affine."""
    root, _ = finetuned
    source = nib.load(btcv / "imagesTs" / "img0061.nii.gz")
    affine = np.array([[0.0, 0.9, 0.0, 10.0], [-0.7, 0.0, 0.0, -20.0], [0.0, 0.0, 2.5, 5.0], [0, 0, 0, 1]])
    data = np.asarray(source.dataobj)[:, :50, :]
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "rotated.nii.gz")
    out = tmp_path / "out"
    inputs = [str(tmp_path / "rotated.nii.gz"), str(btcv / "imagesTs" / "img0061.nii.gz")]
    run_workflow([SEG / "inference.json"], root, "infer", output_dir=str(out), input_files=inputs, **SEG_RUN)
    for name, reference in (("rotated", nib.load(tmp_path / "rotated.nii.gz")), ("img0061", source)):
        result = nib.load(out / f"{name}_seg.nii.gz")
        assert result.shape == reference.shape
        np.testing.assert_allclose(result.affine, reference.affine, atol=1e-4)
        labels = np.unique(np.asarray(result.dataobj))
        assert set(labels.tolist()) <= set(range(14))


def test_the_inversions_benchmark_inference_compares_give_the_label_map_on_the_inputs_grid(finetuned, btcv, tmp_path):
    """MONAI's order (``Invertd`` of the probabilities, then argmax) and the argmax-first order that
    ``tools/measure/benchmark_inference.py`` measures against the bundle's ``InvertedArgmaxd`` give label maps on the
    input's grid; MONAI's order agrees with the bundle's up to near-ties."""
    root, _ = finetuned
    inputs = [str(btcv / "imagesTs" / "img0061.nii.gz")]
    names = ("inverted_argmax", "invert_then_argmax", "argmax_then_invert")
    for name in names:
        run_workflow([SEG / "inference.json"], root, "infer", output_dir=str(tmp_path / name), input_files=inputs,
                     **SEG_RUN, **inference_overrides(Setting(amp=True, overlap=0.5, inversion=name)))
    bundle, monai_order, argmax_first = (nib.load(tmp_path / name / "img0061_seg.nii.gz") for name in names)
    for other in (monai_order, argmax_first):
        assert other.shape == bundle.shape
        np.testing.assert_allclose(other.affine, bundle.affine, atol=1e-4)
        assert set(np.unique(np.asarray(other.dataobj)).tolist()) <= set(range(14))
    # they differ only on a plane of the original grid that falls exactly on the foreground crop's edge: Invertd
    # interpolates there between the crop's zero padding and the edge, leaving probabilities of ~1e-16 whose argmax is
    # rounding noise, while InvertedArgmaxd gives background (tests/test_invert.py pins the probabilities themselves)
    differ = np.asarray(monai_order.dataobj) != np.asarray(bundle.dataobj)
    assert differ.mean() < 0.02 and (np.asarray(bundle.dataobj)[differ] == 0).all()
    # argmax first differs where resampling moves an edge; a tiny, barely trained model has edges everywhere
    assert (np.asarray(argmax_first.dataobj) == np.asarray(bundle.dataobj)).mean() > 0.5


def test_benchmark_inference_stages_times_every_step_of_the_inference_config(tmp_path):
    """``tools/measure/benchmark_inference.py stages`` runs each transform of ``inference.json`` (and the network)
    once, in the config's order, and writes the label map as the bundle does; the timings themselves are not
    asserted."""
    from tools.measure.benchmark_inference import stages, synthetic_ct

    ct = synthetic_ct(tmp_path / "ct", shape=(96, 96, 32), spacing=(1.5, 1.5, 2.5))
    seconds = stages(ct=str(ct), workdir=str(tmp_path))
    config = json.loads((SEG / "inference.json").read_text())
    pre = [f"pre: {t['_target_'].rsplit('.', 1)[-1]}" for t in config["preprocessing"]["transforms"]]
    post = [f"post: {t['_target_'].rsplit('.', 1)[-1]}" for t in config["postprocessing"]["transforms"]
            if t.get("_disabled_") in (None, "$@output_format != 'nifti'")]
    steps = [name for name in seconds if name.startswith(("pre: ", "post: "))]
    assert steps == list(dict.fromkeys(pre + post))
    assert "network (sliding window)" in seconds and all(value >= 0 for value in seconds.values())
    assert (tmp_path / "out" / f"{ct.name.removesuffix('.nii.gz')}_seg.nii.gz").is_file()


def test_benchmark_settings_are_chosen_by_name_in_order_and_unknown_names_are_refused():
    names = list(SETTINGS)[::-1][:2]
    assert list(chosen_settings(names)) == names and chosen_settings(None) == SETTINGS
    with pytest.raises(ValueError, match="unknown settings \\['bf8'\\]"):
        chosen_settings(["bf8"])


@pytest.mark.slow
def test_multi_gpu_configs_run_on_cpu_with_gloo(btcv, tmp_path):
    bundle_run([MAE / "train.json", MAE / "multi_gpu_train.json"],
               {"bundle_root": str(tmp_path / "mae"), "dataset_dir": str(btcv), "epochs": 1,
                "network_def#num_layers": 2, **MAE_RUN}, torchrun=True)
    assert (tmp_path / "mae" / "models" / "model.pt").is_file()
    seg = tmp_path / "seg"
    bundle_run([SEG / "train.json", SEG / "multi_gpu_train.json"],
               {"bundle_root": str(seg), "dataset_dir": str(btcv), "epochs": 1, **SEG_TRAIN}, torchrun=True)
    bundle_run([SEG / "train.json", SEG / "evaluate.json", SEG / "multi_gpu_evaluate.json"],
               {"bundle_root": str(seg), "dataset_dir": str(btcv), **SEG_RUN}, torchrun=True)
    assert json.loads((seg / "eval" / "metrics_summary.json").read_text())["num_cases"] == 2


def test_benchmark_inference_network_measures_every_variant_on_the_configs_network():
    """``tools/measure/benchmark_inference.py network`` runs the config's network in each variant and reports the
    label agreement with fp32 (exactly 1 for fp32 itself); unknown variants are refused; timings are not asserted."""
    from tools.measure.benchmark_inference import NETWORK_VARIANTS, network

    variants = [name for name in NETWORK_VARIANTS if not name.endswith("torch.compile")]  # compiling takes ~30 s
    results = network(batch=1, roi_size=32, repeats=1, variants=variants)
    assert list(results) == variants
    assert results["fp32"]["label_agreement_with_fp32"] == 1.0
    assert all(r["seconds_per_window"] > 0 and 0.5 < r["label_agreement_with_fp32"] <= 1 for r in results.values())
    with pytest.raises(ValueError, match=r"unknown variants \['int4'\]"):
        network(variants=["int4"])


def test_benchmark_inference_inversion_compares_identical_label_maps(tmp_path):
    """``tools/measure/benchmark_inference.py inversion`` times the bundle's crop-box inversion against the whole grid
    on a CT preprocessed by ``inference.json``; the two label maps must be identical; timings are not asserted."""
    from tools.measure.benchmark_inference import inversion, synthetic_ct

    ct = synthetic_ct(tmp_path / "ct", shape=(96, 96, 32), spacing=(1.5, 1.5, 2.5))
    result = inversion(ct=str(ct), repeats=1)
    assert result["identical"] and result["original_grid"] == [96, 96, 32]
    assert result["whole grid"] > 0 and result["crop box (the bundle's)"] > 0
