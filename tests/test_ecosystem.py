"""The bundles as the ecosystem uses them: experiment tracking with ``--tracking mlflow``, multi-node ``torchrun``,
DICOM series in and NIfTI out, ONNX export, and the inputs MONAI Label gives a bundle."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.networks.nets import UNETR
from monai.transforms import LoadImaged
from PIL import Image

from tests.helpers import (
    BUNDLES,
    MAE,
    SEG,
    SMALL,
    TINY_ENCODER,
    TINY_MAE,
    TINY_UNETR,
    TINY_VIT,
    bundle_importable,
    cli_args,
    free_port,
    run_workflow,
    user_env,
    write_dicom_series,
)

# ---------------------------------------------------------------------------------------------------------------
# --tracking mlflow
# ---------------------------------------------------------------------------------------------------------------


def _mlflow_metrics(tracking_uri: str) -> dict[str, list[float]]:
    mlflow = pytest.importorskip("mlflow")
    client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
    metrics: dict[str, list[float]] = {}
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            for key in run.data.metrics:
                metrics[key] = [m.value for m in client.get_metric_history(run.info.run_id, key)]
    return metrics


@pytest.mark.parametrize("config", [MAE / "train.json", SEG / "train.json"], ids=["mae_pretraining", "finetuning"])
def test_mlflow_tracking_logs_the_loss_and_one_learning_rate(config, btcv, tmp_path):
    pytest.importorskip("mlflow")
    network = {**TINY_MAE, "network_def#num_layers": 2} if config.parent == MAE else TINY_UNETR
    overrides = {"dataset_dir": str(btcv), "epochs": 2, "batch_size": 2, "num_samples": 1, "warmup_epochs": 1,
                 "val_interval": 1, "tracking_uri": f"sqlite:///{tmp_path}/mlruns.db", **SMALL, **network}
    run_workflow([config], tmp_path / "bundle", tracking="mlflow", **overrides)
    metrics = _mlflow_metrics(overrides["tracking_uri"])
    assert len(metrics["train_loss"]) == 2 * 1  # two epochs of one iteration
    assert len(metrics["learning_rate"]) == 2 and not any(k.startswith("lr_group") for k in metrics)


# ---------------------------------------------------------------------------------------------------------------
# two torchrun "nodes" on this machine
# ---------------------------------------------------------------------------------------------------------------


def run_two_nodes(config: Path, overrides: dict, tmp_path: Path, *extra: str) -> tuple[list[int], list[str]]:
    """Two one-process torchrun "nodes" on this machine, node ``i`` with its own ``bundle_root`` ``tmp_path/node<i>``
    (so that what rank 1 writes shows); their exit statuses and outputs."""
    port = free_port()
    configs = str([str(config / "train.json"), str(config / "multi_gpu_train.json")])
    processes = []
    for node in (0, 1):
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={node}",
                    "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}"]
        cmd = [*launcher, "-m", "monai.bundle", "run", "--config_file", configs,
               *cli_args({**overrides, "bundle_root": str(tmp_path / f"node{node}")}), *extra]
        processes.append(subprocess.Popen(cmd, cwd=tmp_path, env={**user_env(), "OMP_NUM_THREADS": "1"},
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    return [p.returncode for p in processes], outputs


@pytest.mark.slow
@pytest.mark.parametrize("config, network", [(SEG, TINY_UNETR), (MAE, {**TINY_MAE, "network_def#num_layers": 2})],
                         ids=["finetuning", "mae_pretraining"])
def test_two_nodes_train_one_model_and_only_rank_zero_writes(config, network, btcv, tmp_path):
    """Two nodes train one model and rank 0 alone writes. Nodes that do not share the bundle's folder cannot resume:
    rank 0 would continue its checkpoint while the other node starts afresh; every rank refuses, naming the file."""
    overrides = {"dataset_dir": str(btcv), "epochs": 2, "batch_size": 1, "num_samples": 1, "warmup_epochs": 1,
                 "val_interval": 1, **SMALL, **network}
    check = "$print('FINAL WEIGHTS', sum(float(p.double().sum()) for p in @network.parameters()), flush=True)"
    finalize = json.dumps([check, {"_target_": "scripts.utils.dist.end_process_group"}])
    statuses, outputs = run_two_nodes(config, overrides, tmp_path, "--finalize", finalize)
    assert statuses == [0, 0], "\n\n".join(o[-3000:] for o in outputs)
    weights = [float(re.findall(r"FINAL WEIGHTS ([-+.0-9e]+)", o)[-1]) for o in outputs]
    assert weights[0] == pytest.approx(weights[1], rel=1e-6)  # one model, trained by both ranks
    written = {node: sorted(p.relative_to(tmp_path / f"node{node}").as_posix()
                            for p in (tmp_path / f"node{node}").rglob("*") if p.is_file())
               for node in (0, 1) if (tmp_path / f"node{node}").exists()}
    assert "models/model.pt" in written[0]
    assert not written.get(1), f"rank 1 wrote {written[1]}"
    assert "Epoch[1] Complete" in outputs[0] and "Epoch[1] Complete" not in outputs[1]  # ranks > 0 are quiet

    statuses, outputs = run_two_nodes(config, {**overrides, "epochs": 3}, tmp_path)  # resume on unshared folders
    assert statuses[0] != 0 and statuses[1] != 0, "\n\n".join(o[-3000:] for o in outputs)
    for node, output in enumerate(outputs):
        assert re.search(rf"disagree on whether \S*node{node}/models/checkpoint.pt is a file: rank\(s\) 0 \(host "
                         r"[^)]*\) see one, rank\(s\) 1 \(host [^)]*\) do not", output), output[-3000:]
        assert re.search(r"^error: RanksDisagreeError: .* a file system that every node shares\.$", output, re.M)
    assert not (tmp_path / "node1").exists()


# ---------------------------------------------------------------------------------------------------------------
# DICOM series in, NIfTI out
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def series(btcv, tmp_path_factory) -> tuple[Path, Path]:
    source = btcv / "imagesTs" / "img0061.nii.gz"
    image = nib.load(source)
    folder = tmp_path_factory.mktemp("dicom") / "series_1"
    write_dicom_series(np.asanyarray(image.dataobj), image.affine, folder)
    return folder, source


def _geometry(path: Path) -> tuple[tuple, np.ndarray]:
    image = nib.load(path)
    return tuple(image.shape[:3]), image.affine


def test_segmentation_of_a_dicom_series_has_the_series_geometry(series, tmp_path):
    folder, source = series
    bundle = tmp_path / "bundle"
    (bundle / "models").mkdir(parents=True)
    torch.save(UNETR(1, 14, 32, feature_size=8, **TINY_ENCODER).state_dict(), bundle / "models" / "model.pt")
    run_workflow([SEG / "inference.json"], bundle, "infer", input_files=str(folder), output_dir=str(tmp_path / "out"),
                 **SMALL, **TINY_UNETR)
    shape, affine = _geometry(tmp_path / "out" / "series_1_seg.nii.gz")
    expected_shape, expected_affine = _geometry(source)  # the series was written from this volume
    assert shape == expected_shape
    np.testing.assert_allclose(affine, expected_affine, atol=1e-3)


def test_mae_reconstruction_of_a_dicom_series_has_the_series_geometry(series, tmp_path):
    folder, source = series
    from tests.helpers import tiny_mae

    bundle = tmp_path / "bundle"
    (bundle / "models").mkdir(parents=True)
    torch.save(tiny_mae(num_layers=2).state_dict(), bundle / "models" / "model.pt")
    run_workflow([MAE / "inference.json"], bundle, "infer", input_files=[str(folder)], output_dir=str(tmp_path / "out"),
                 **SMALL, **TINY_MAE, **{"network_def#num_layers": 2})
    expected_shape, expected_affine = _geometry(source)
    for kind in ("original", "masked", "reconstruction"):
        shape, affine = _geometry(tmp_path / "out" / f"series_1_{kind}.nii.gz")
        assert shape == expected_shape, kind
        np.testing.assert_allclose(affine, expected_affine, atol=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# ONNX export
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bundle, network, shape", [
    ("unetr_btcv_seg", {**TINY_UNETR, "roi_size": [32, 32, 32]}, [1, 1, 32, 32, 32]),
    ("vit_cxr14_cls", {**TINY_VIT, "network_def#num_layers": 2, "crop_size": 32}, [1, 1, 32, 32]),
])
def test_onnx_export_gives_the_network_outputs(bundle, network, shape, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime

    root = BUNDLES / bundle
    with bundle_importable(root):
        parser = ConfigParser()
        parser.read_config(str(root / "configs" / "inference.json"))
        parser.update({"bundle_root": str(tmp_path), **network})
        torch.manual_seed(0)
        net = parser.get_parsed_content("network_def").eval()
        torch.save(net.state_dict(), tmp_path / "model.pt")
        cmd = [sys.executable, "-m", "monai.bundle", "onnx_export", "network_def",
               "--filepath", str(tmp_path / "model.onnx"),
               "--ckpt_file", str(tmp_path / "model.pt"), "--meta_file", str(root / "configs" / "metadata.json"),
               "--config_file", str(root / "configs" / "inference.json"), "--input_shape", json.dumps(shape),
               "--bundle_root", str(tmp_path), *cli_args(network)]
        proc = subprocess.run(cmd, env={**user_env(), "PYTHONPATH": str(root)}, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        x = torch.rand(*shape)
        with torch.no_grad():
            expected = net(x)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(out, expected.numpy(), atol=1e-3, rtol=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# what MONAI Label gives a bundle's inference preprocessing
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bundle", ["mae_pretrain_ct", "unetr_btcv_seg", "unetr_brats_seg"])
def test_preprocessing_takes_monai_labels_image_path(bundle, tmp_path):
    """MONAI Label adds ``image_path`` (a string) and loads with ``image_only=False``; MONAI 1.6's ``Spacingd``
    updates every key that starts with ``image_``: the preprocessing must survive it and keep ``image_path``."""
    root = BUNDLES / bundle
    channels = 4 if bundle == "unetr_brats_seg" else 1
    volume = np.random.default_rng(0).normal(size=(40, 36, 24, channels) if channels > 1 else (40, 36, 24))
    path = tmp_path / "input.nii.gz"
    nib.save(nib.Nifti1Image(volume.astype(np.float32), np.diag([1.2, 1.2, 2.5, 1.0])), str(path))
    with bundle_importable(root):
        parser = ConfigParser()
        parser.read_config(str(root / "configs" / "inference.json"))
        parser.update({"bundle_root": str(tmp_path), **SMALL})
        preprocessing = parser.get_parsed_content("preprocessing")
        for transform in preprocessing.transforms:  # as MONAI Label's bundle task does
            if isinstance(transform, LoadImaged):
                transform._loader.image_only = False
        out = preprocessing({"image": str(path), "image_path": str(path)})
    assert out["image_path"] == str(path)
    assert out["image"].shape[0] == channels


def test_classifier_scores_carry_no_image_shape_to_restore(tmp_path):
    """MONAI Label appends ``Restored``, which resizes the prediction to the ``spatial_shape`` in the image's
    metadata: on a per-finding score vector that fails, so the X-ray loader must not record one."""
    root = BUNDLES / "vit_cxr14_cls"
    path = tmp_path / "xray.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, size=(300, 280)).astype(np.uint8)).save(path)
    with bundle_importable(root):
        parser = ConfigParser()
        parser.read_config(str(root / "configs" / "inference.json"))
        parser.update({"bundle_root": str(tmp_path)})
        out = parser.get_parsed_content("preprocessing")({"image": str(path), "image_path": str(path)})
    assert out["image"].shape == (1, 224, 224)
    assert "spatial_shape" not in out["image"].meta
    assert out["image"].meta["filename_or_obj"] == str(path)


# ---------------------------------------------------------------------------------------------------------------
# MONAI Label's training requests
# ---------------------------------------------------------------------------------------------------------------

# What MONAI Label 0.8.5's BundleTrainTask does for a /train request on one device (monailabel/tasks/train/bundle.py):
# the bundle on sys.path, the raw train#handlers with a CheckpointLoader of models/model.pt put first when it exists
# ("pretrained", the default), and monai.bundle.run with run_id "run", no initialize and no finalize.
_MONAI_LABEL_TRAIN = """
import json, os, sys
import monai, torch
from monai.bundle import ConfigParser
bundle, root, request = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, bundle)
config = ConfigParser()
config.read_config(os.path.join(bundle, "configs", "train.json"))
handlers = config.get("train#handlers", [])
model = os.path.join(root, "models", "model.pt")
if os.path.exists(model):
    handlers.insert(0, {"_target_": "CheckpointLoader", "load_path": model, "load_dict": {"model": "$@network"},
                        "strict": False})
overrides = {"bundle_root": root, "train#trainer#max_epochs": request["max_epochs"],
             "train#dataset#data": request["train"], "device": torch.device("cpu"), "train#handlers": handlers,
             "validate#dataset#data": request["validation"], **request["tiny"]}
monai.bundle.run(run_id="run", init_id=None, final_id=None, meta_file=os.path.join(bundle, "configs", "metadata.json"),
                 config_file=os.path.join(bundle, "configs", "train.json"), **overrides)
"""


def monai_label_train(bundle: Path, root: Path, request: dict) -> str:
    proc = subprocess.run([sys.executable, "-c", _MONAI_LABEL_TRAIN, str(bundle), str(root), json.dumps(request)],
                          cwd=root, env=user_env(), capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


@pytest.mark.parametrize("configs, tiny", [(SEG, {**TINY_UNETR, "pretrained_encoder": ""}),
                                           (MAE, {**TINY_MAE, "network_def#num_layers": 2, "health_num_images": 1})],
                         ids=["unetr_btcv_seg", "mae_pretrain_ct"])
def test_monai_label_trains_a_bundle_on_every_request(configs, tiny, btcv, tmp_path):
    """A /train request of MONAI Label sets only the trainer's max_epochs (50 by default; 2 here) and the data, the
    validation split included: the run validates (the validation interval is at most the run; the MAE's health check
    takes the validation split) and writes models/model.pt, its learning-rate schedule spans the run, and a second
    request trains again, from the model of the first, instead of resuming a finished run (nothing to train)."""
    datalist = json.loads((btcv / "dataset_0.json").read_text())
    items = {split: [{key: str(btcv / path) for key, path in item.items()} for item in datalist[split]]
             for split in ("training", "validation")}
    request = {"max_epochs": 2, "train": items["training"], "validation": items["validation"][:1],
               "tiny": {**SMALL, **tiny, "batch_size": 1, "num_samples": 1}}
    root = tmp_path / "bundle"
    root.mkdir()
    first = monai_label_train(configs.parent, root, request)
    assert "Epoch[2] Complete" in first and (root / "models" / "model.pt").is_file()
    assert "epoch 2: saved" in first and "model.pt" in first.split("epoch 2: saved", 1)[1].splitlines()[0]
    checkpoint = torch.load(root / "models" / "checkpoint.pt", weights_only=True)
    assert checkpoint["lr_scheduler"]["t_total"] == 2 * 2  # 2 epochs of 2 iterations, not the bundle's 5,000 epochs
    second = monai_label_train(configs.parent, root, request)
    assert "finished (2 epochs): this run of 2 epochs starts from scratch" in second
    assert f"Restored all variables from {root / 'models' / 'model.pt'}" in second
    assert "Epoch[2] Complete" in second and len(list((root / "models").glob("model.previous-*.pt"))) == 1
