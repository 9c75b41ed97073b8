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

from monai.bundle import ConfigWorkflow

from shared.networks.mae import MaskedAutoencoderViT
from tools.check_bundles import bundle_importable
from tools.study.workflow import cli_args  # noqa: F401  (tests import it from here)

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
) -> str:
    """``python -m monai.bundle run --config_file ...`` (under ``torchrun`` with 2 processes when asked), as a user
    runs it; returns its output. Fails unless its exit status is what ``expect_failure`` says. ``via`` is the module
    run with ``-m`` and its first arguments: a test module that runs ``monai.bundle`` under injected faults (e.g.
    ``("tests.disk_full", folder)``)."""
    config = str(configs[0]) if len(configs) == 1 else str([str(c) for c in configs])
    launcher = [sys.executable]
    if torchrun:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2"]
    cmd = launcher + ["-m", *via, "run", "--config_file", config, *cli_args(overrides or {})]
    proc = subprocess.run(cmd, cwd=cwd, env=user_env(), capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert (proc.returncode != 0) == expect_failure, f"{' '.join(cmd)}\nexit {proc.returncode}\n{output[-4000:]}"
    return output


def workflow(
    configs: Sequence[Path], bundle_root: Path, workflow_type: str | None = "train", **overrides: Any
) -> ConfigWorkflow:
    """An initialised ``ConfigWorkflow`` of a bundle's configs in this process (the metadata and logging config of
    the first config's folder); call it inside :func:`bundle_importable` when the configs use ``scripts``."""
    folder = Path(configs[0]).parent
    wf = ConfigWorkflow(
        config_file=[str(c) for c in configs], meta_file=str(folder / "metadata.json"),
        logging_file=str(folder / "logging.conf"), workflow_type=workflow_type, bundle_root=str(bundle_root),
        **overrides,
    )
    wf.initialize()
    return wf


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

