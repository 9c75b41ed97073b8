"""What the tests share: tiny networks, and running bundle configs in this process or as a user runs them.

Import it as ``from tests.helpers import ...`` (the repository root is on ``sys.path``, see ``pytest.ini``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.bundle import ConfigWorkflow

from shared.networks.mae import MaskedAutoencoderViT
from tools.bundle_runner import (
    bundle_command,
    bundle_importable,
    bundle_workflow,
    cli_args,  # noqa: F401  (tests import it from here)
)

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"
MAE = BUNDLES / "mae_pretrain_ct" / "configs"
SEG = BUNDLES / "unetr_btcv_seg" / "configs"
BRATS = BUNDLES / "unetr_brats_seg" / "configs"
# 32^3 crops, data loaded in the test's process: what most test runs of the 3D bundles override
SMALL = {"roi_size": [32, 32, 32], "num_workers": 0}

# A narrow ViT (UNETR and the classifiers need 12 layers unless overridden) and a one-block MAE decoder.
TINY_ENCODER = {"hidden_size": 48, "mlp_dim": 96, "num_heads": 4}
TINY_DECODER = {"decoder_hidden_size": 24, "decoder_num_layers": 1, "decoder_num_heads": 2}


def network_overrides(**values: Any) -> dict[str, Any]:
    """``{"network_def#<name>": value}``: config overrides of the network definition."""
    return {f"network_def#{k}": v for k, v in values.items()}


TINY_VIT = network_overrides(**TINY_ENCODER)
TINY_MAE = network_overrides(**TINY_ENCODER, **TINY_DECODER)
TINY_UNETR = network_overrides(**TINY_ENCODER, feature_size=8)


def tiny_mae(in_channels: int = 1, img_size=32, spatial_dims: int = 3, num_layers: int = 2, **kwargs):
    """A small MAE whose encoder matches a tiny ``UNETR``/``ViT`` when ``num_layers=12``."""
    return MaskedAutoencoderViT(
        in_channels, img_size, 16, num_layers=num_layers, spatial_dims=spatial_dims, **TINY_ENCODER, **TINY_DECODER,
        **kwargs,
    )


def user_env() -> dict[str, str]:
    """The environment of a user: no PYTHONPATH, so that nothing of the repository is importable by accident."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def bundle_run(
    configs: Sequence[Path],
    overrides: Mapping[str, Any] | None = None,
    cwd: Path = REPO,
    torchrun: bool = False,
    expect_failure: bool = False,
    timeout: float = 600,
    via: Sequence[str] = ("monai.bundle",),
    prefix: Sequence[str] = (),
) -> str:
    """``python -m monai.bundle run --config_file ...`` (under ``torchrun`` with 2 processes when asked), as a user
    runs it; returns its output. Fails unless its exit status is what ``expect_failure`` says. ``via`` is the module
    run with ``-m`` and its first arguments: a test module that runs ``monai.bundle`` under injected faults (e.g.
    ``("tests.disk_full", folder)``); ``prefix`` is a command that starts the Python process (e.g. ``setpriv``
    taking root's right to write anywhere)."""
    launcher = [*prefix, sys.executable]
    if torchrun:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2"]
    cmd = bundle_command(configs, overrides, launcher, via)
    proc = subprocess.run(cmd, cwd=cwd, env=user_env(), capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert (proc.returncode != 0) == expect_failure, f"{' '.join(cmd)}\nexit {proc.returncode}\n{output[-4000:]}"
    return output


def workflow(
    configs: Sequence[Path], bundle_root: Path, workflow_type: str | None = "train", **overrides: Any
) -> ConfigWorkflow:
    """An initialised ``ConfigWorkflow`` of a bundle's configs in this process (the metadata and logging config of
    the first config's folder); call it inside :func:`bundle_importable` when the configs use ``scripts``."""
    logging_file = str(Path(configs[0]).parent / "logging.conf")
    return bundle_workflow(configs, bundle_root, workflow_type, logging_file, **overrides)


def run_workflow(
    configs: Sequence[Path], bundle_root: Path, workflow_type: str | None = "train", **overrides: Any
) -> ConfigWorkflow:
    """Initialise, check, run and finalise a bundle's configs in this process, with its ``scripts`` importable."""
    bundle = Path(configs[0]).parents[1]
    with bundle_importable(bundle):
        wf = workflow(configs, bundle_root, workflow_type, **overrides)
        assert wf.check_properties() in ([], None)
        wf.run()
        wf.finalize()
    return wf


def write_dicom_series(volume: np.ndarray, affine: np.ndarray, folder: Path, modality: str = "CT") -> None:
    """One slice per file (a CT or MR image storage instance), with the geometry of ``affine`` (a RAS NIfTI affine)
    in DICOM's LPS frame, one Frame of Reference, and the patient and study attributes a conformant image has."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

    sop_class = {"CT": CTImageStorage, "MR": MRImageStorage}[modality]
    folder.mkdir(parents=True)
    lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :3]
    origin = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, 3]
    spacing = np.linalg.norm(lps, axis=0)
    row_dir, col_dir = lps[:, 0] / spacing[0], lps[:, 1] / spacing[1]  # DICOM columns run along array axis 0
    series, study, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    for k in range(volume.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality, ds.PatientID = study, series, modality, "synthetic"
        ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "Synthetic^Patient", "", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", ""
        ds.FrameOfReferenceUID, ds.SeriesNumber, ds.InstanceNumber = frame_of_reference, 1, k + 1
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        ds.ImagePositionPatient = [float(v) for v in origin + lps[:, 2] * k]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.ascontiguousarray(volume[:, :, k].T.astype(np.int16)).tobytes()
        ds.save_as(str(folder / f"slice{k:03d}.dcm"), enforce_file_format=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[str]:
    """Serve ``directory`` with ``python -m http.server`` on 127.0.0.1; yields the base URL; always terminated."""
    port = free_port()
    cmd = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port), "--directory", str(directory)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(base + "/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"http.server on port {port} did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

