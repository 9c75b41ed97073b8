"""Packaging, download round trip and offline model-zoo checks of every bundle in ``bundles/``.

1. ``tools/zoo/package_bundles.py`` writes a deterministic zip with one top-level ``<name>/`` folder, the shared module
   copied in as ``scripts/`` (real files), no cache/test/run-output files, and a matching ``model_info.json``.
2. For every bundle: tiny weights are made, the bundle is packaged with them behind a ``large_files.yml``, served by
   ``python -m http.server`` on 127.0.0.1, downloaded with ``python -m monai.bundle download``, its large files
   fetched with ``download_large_files``, and its ``inference.json`` run from the downloaded folder, from a working
   directory outside the repository and with the repository not importable, on small synthetic data.
3. ``tools/zoo/check_bundles.py`` (the offline model-zoo checks) passes for every bundle.

Each bundle needs an entry in ``CASES``: small-network overrides, a synthetic-data maker and the outputs its
inference must write. A bundle without an entry fails these tests, so a new bundle cannot go untested.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from monai.bundle import download_large_files

from tests.helpers import (
    TINY_MAE,
    TINY_UNETR,
    TINY_VIT,
    bundle_command,
    bundle_importable,
    bundle_workflow,
    http_server,
    user_env,
)
from tools import synthetic
from tools.zoo import check_bundles, package_bundles

REPO = package_bundles.REPO_ROOT
BUNDLES = package_bundles.discover_bundles()


def _btcv_inputs(out_dir: Path) -> Path:
    """Two labelled training CT volumes and one test volume in the BTCV layout, small."""
    return Path(synthetic.make_btcv(str(out_dir), num_train=2, num_val=0, num_test=1, shape=(32, 32, 24),
                                    body_scale=0.1))


def _brats_msd_inputs(out_dir: Path) -> Path:
    """One labelled and one test brain MRI (4 channels) in the MSD Task01 layout, small."""
    return Path(synthetic.make_brats(str(out_dir), layout="msd", num_cases=1, num_test=1, shape=(32, 32, 32)))


def _cxr14_inputs(out_dir: Path) -> Path:
    """Two small chest X-rays (PNG) in the NIH ChestX-ray14 layout."""
    return Path(synthetic.make_cxr14(str(out_dir), num_images=2, size=64))


@dataclass(frozen=True)
class BundleCase:
    """How to exercise one bundle on a CPU in seconds.

    Attributes:
        network: config overrides making the network tiny, applied everywhere (inference, checks, training); keys
            starting with ``_meta_#`` adapt the metadata (e.g. the input ``spatial_shape``) and are used by the
            checks only.
        make_data: writes synthetic inputs into the given folder and returns the ``dataset_dir``.
        outputs: globs, relative to the bundle root, that inference must produce (each at least one file).
        inference: extra overrides for the inference run.
        train: overrides to train tiny weights with ``configs/train.json``; None uses random weights instead.
    """

    network: dict[str, Any]
    make_data: Callable[[Path], Path]
    outputs: tuple[str, ...]
    inference: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] | None = None


_ROI32 = {"roi_size": [32, 32, 32], "_meta_#network_data_format#inputs#image#spatial_shape": [32, 32, 32]}

CASES: dict[str, BundleCase] = {
    "mae_pretrain_ct": BundleCase(
        network={
            **_ROI32,
            **TINY_MAE,
            "network_def#num_layers": 2,
        },
        make_data=_btcv_inputs,
        outputs=("eval/*_original.nii.gz", "eval/*_masked.nii.gz", "eval/*_reconstruction.nii.gz"),
        inference={"dataloader#num_workers": 0},
        train={"epochs": 1, "batch_size": 2, "num_samples": 2, "num_workers": 0, "snapshot_interval": 1,
               "warmup_epochs": 1},
    ),
    "unetr_btcv_seg": BundleCase(
        network={**_ROI32, **TINY_UNETR},
        make_data=_btcv_inputs,
        outputs=("eval/*_seg.nii.gz",),
        inference={"dataloader#num_workers": 0, "inferer#inferer#sw_batch_size": 1},
    ),
    "unetr_brats_seg": BundleCase(
        network={**_ROI32, **TINY_UNETR},
        make_data=_brats_msd_inputs,
        outputs=("eval/BRATS_*_seg.nii.gz",),
        inference={"num_workers": 0, "inferer#inferer#sw_batch_size": 1, "dataset_layout": "msd"},
    ),
    "vit_cxr14_cls": BundleCase(
        network={**TINY_VIT, "network_def#num_layers": 2, "image_size": 40, "crop_size": 32,
                 "_meta_#network_data_format#inputs#image#spatial_shape": [32, 32]},
        make_data=_cxr14_inputs,
        outputs=("eval/inference/predictions.csv",),
        inference={"num_workers": 0, "batch_size": 2},
    ),
}


def _case(name: str) -> BundleCase:
    """The bundle's test case; fails (not skips) for a bundle without one."""
    if name not in CASES:
        pytest.fail(f"bundle {name} has no test case: add a BundleCase for it to CASES in {Path(__file__).name}")
    return CASES[name]


def _run_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """The overrides a bundle run takes (the ``_meta_#`` ones only adapt the metadata for the checks)."""
    return {k: v for k, v in overrides.items() if not k.startswith("_meta_#")}


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a command in the clean environment; fail the test with its output when it fails."""
    proc = subprocess.run(cmd, cwd=cwd, env=user_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
    return proc


def _stage(name: str, root: Path) -> Path:
    """A copy of the repository's layout (``shared/`` and ``bundles/<name>``, symlinks kept); returns ``bundles/``."""
    shutil.copytree(REPO / "shared", root / "shared", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "bundles" / name, root / "bundles" / name, symlinks=True)
    return root / "bundles"


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# 1. packaging
# ---------------------------------------------------------------------------------------------------------------


# files a bundle folder collects in use (runs, evaluations, checkpoints, caches, tests) that must not be packaged
LITTER = (
    "runs/events.out.tfevents.1.host.0.0",
    "runs/reconstruction_epoch0001.png",
    "eval/case_seg.nii.gz",
    "models/checkpoint.pt",
    "models/mae_checkpoint.pt",
    "models/model.previous-20261207-101500.pt",
    "models/mae.previous-20261207-101500.pt",
    "models/verify_model.ts",
    "models/.tmp_abc.pt",
    "scripts/__pycache__/mae.cpython-311.pyc",
    "scripts/stale.pyc",
    "scripts/tests/test_mae.py",
    "tests/test_something.py",
    "configs/.DS_Store",
)


@pytest.fixture
def staged_bundle(tmp_path: Path) -> tuple[str, Path]:
    """The first bundle staged in a temporary repository layout, littered with files that must not be packaged."""
    if not BUNDLES:
        pytest.fail("no bundle found under bundles/")
    name = BUNDLES[0]
    bundles_dir = _stage(name, tmp_path / "repo")
    bundle = bundles_dir / name
    for rel in LITTER:
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_bytes(b"not for the zip")
    (bundle / "models" / "model.pt").write_bytes(os.urandom(2048))
    return name, bundles_dir


def test_package_zip_layout_and_model_info(staged_bundle: tuple[str, Path], tmp_path: Path) -> None:
    name, bundles_dir = staged_bundle
    shared = bundles_dir.parent / "shared"
    dist = tmp_path / "dist"
    (result,) = package_bundles.package(name, str(dist), "https://host/bundles/", bundles_dir=str(bundles_dir),
                                        quiet=True)
    version = package_bundles.read_metadata(bundles_dir / name)["version"]
    assert result.zip_path == dist / f"{name}_v{version}.zip"

    with zipfile.ZipFile(result.zip_path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        assert {n.split("/", 1)[0] for n in infos} == {name}
        assert {f"{name}/configs/metadata.json", f"{name}/configs/inference.json", f"{name}/LICENSE"} <= set(infos)
        assert f"{name}/models/model.pt" in infos  # small weights, no URL: packaged, not in large_files.yml
        assert f"{name}/large_files.yml" not in infos
        # scripts/ is a real copy, byte for byte, of the modules of shared/ that the bundle's configs use
        scripts = {n[len(f"{name}/scripts/"):]: i for n, i in infos.items() if n.startswith(f"{name}/scripts/")}
        assert {"__init__.py", "networks/__init__.py", "networks/mae.py", "networks/patches.py"} <= set(scripts)
        assert not {"data/cxr14.py", "data/brats.py", "networks/vit_classifier.py"} & set(scripts)
        for rel, info in scripts.items():
            assert stat.S_ISREG(info.external_attr >> 16), f"scripts/{rel} is not a regular file"
            assert zf.read(info) == (shared / rel).read_bytes()
        leaked = sorted({f"{name}/{rel}" for rel in LITTER} & set(infos))
        assert not leaked, f"packaged files that must be excluded: {leaked}"
        assert {i.date_time for i in infos.values()} == {package_bundles.ZIP_DATE_TIME}
        assert list(infos) == sorted(infos)

    info = json.loads((dist / "model_info.json").read_text())
    assert info == {f"{name}_v{version}": {"checksum": _sha1(result.zip_path),
                                           "source": f"https://host/bundles/{name}_v{version}.zip"}}


def test_package_warns_about_local_file_sources(staged_bundle: tuple[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    """Without a base URL each source in model_info.json is a local file:// URI that nobody else can download: the
    packager warns on stderr (even quietly); with one it does not."""
    name, bundles_dir = staged_bundle
    (result,) = package_bundles.package(name, str(tmp_path / "local"), bundles_dir=str(bundles_dir), quiet=True)
    source = json.loads((tmp_path / "local" / "model_info.json").read_text())[result.key]["source"]
    assert source.startswith("file://")
    warning = capsys.readouterr().err
    assert "WARNING" in warning and "file://" in warning and "--base_url" in warning, warning
    package_bundles.package(name, str(tmp_path / "published"), "https://host/bundles", bundles_dir=str(bundles_dir),
                            quiet=True)
    assert "WARNING" not in capsys.readouterr().err


def test_package_is_deterministic(staged_bundle: tuple[str, Path], tmp_path: Path) -> None:
    name, bundles_dir = staged_bundle
    first = package_bundles.package_bundle(name, tmp_path / "a", bundles_dir)
    for path in (bundles_dir / name).rglob("*"):
        os.utime(path, (1e9, 1e9), follow_symlinks=False)
    second = package_bundles.package_bundle(name, tmp_path / "b", bundles_dir)
    assert first.checksum == second.checksum == _sha1(second.zip_path)
    assert first.zip_path.read_bytes() == second.zip_path.read_bytes()


def test_package_large_weights_go_to_large_files_yml(staged_bundle: tuple[str, Path], tmp_path: Path) -> None:
    name, bundles_dir = staged_bundle
    weights = bundles_dir / name / "models" / "model.pt"
    with pytest.raises(ValueError, match="placeholder|absolute"):
        package_bundles.package_bundle(name, tmp_path, bundles_dir, "https://host/<upload here>", 0.0)
    result = package_bundles.package_bundle(name, tmp_path, bundles_dir, "https://host/w/{name}_v{version}.pt", 0.0)
    with zipfile.ZipFile(result.zip_path) as zf:
        assert f"{name}/models/model.pt" not in zf.namelist()
        text = zf.read(f"{name}/large_files.yml").decode()
    assert 'path: "models/model.pt"' in text
    assert f'url: "https://host/w/{name}_v{result.version}.pt"' in text
    assert f'hash_val: "{hashlib.sha256(weights.read_bytes()).hexdigest()}"' in text
    assert 'hash_type: "sha256"' in text
    (bundles_dir / name / "models" / "mae.pt").write_bytes(os.urandom(3 * 2**20))  # pre-training's weights, 3 MB
    result = package_bundles.package_bundle(name, tmp_path, bundles_dir, "https://host/w/{name}_v{version}.pt", 1.0,
                                            overwrite=True)
    assert [note.split(" (")[0] for note in result.notes] == ["models/mae.pt included in the zip"]


def test_a_packaged_version_is_not_replaced_by_other_content(staged_bundle: tuple[str, Path], tmp_path: Path) -> None:
    """The same sources packaged again pass quietly (same bytes); other content under the same version, which may
    have been published, is refused (by its zip, or by its entry in model_info.json once the zip is gone), leaving
    the zip, model_info.json and no temporary behind, unless ``overwrite``."""
    name, bundles_dir = staged_bundle
    dist = tmp_path / "dist"
    (first,) = package_bundles.package(name, str(dist), bundles_dir=str(bundles_dir), quiet=True)
    published, info = first.zip_path.read_bytes(), (dist / "model_info.json").read_text()
    (again,) = package_bundles.package(name, str(dist), bundles_dir=str(bundles_dir), quiet=True)
    assert again.checksum == first.checksum and first.zip_path.read_bytes() == published

    (bundles_dir / name / "docs").mkdir(exist_ok=True)
    (bundles_dir / name / "docs" / "note.md").write_text("changed after publishing")
    with pytest.raises(ValueError, match=f"version already packaged with other content: {first.zip_path} "
                                         f"\\(sha1 {first.checksum}, now [0-9a-f]{{40}}\\).*--overwrite"):
        package_bundles.package(name, str(dist), bundles_dir=str(bundles_dir), quiet=True)
    assert first.zip_path.read_bytes() == published and (dist / "model_info.json").read_text() == info
    assert sorted(p.name for p in dist.iterdir()) == sorted([first.zip_path.name, "model_info.json"])

    first.zip_path.unlink()
    with pytest.raises(ValueError, match="version already packaged with other content"):
        package_bundles.package_bundle(name, dist, bundles_dir)
    assert not first.zip_path.exists()
    (changed,) = package_bundles.package(name, str(dist), bundles_dir=str(bundles_dir), quiet=True, overwrite=True)
    assert changed.checksum != first.checksum == json.loads(info)[f"{name}_v{first.version}"]["checksum"]
    assert json.loads((dist / "model_info.json").read_text())[f"{name}_v{first.version}"]["checksum"] == _sha1(
        changed.zip_path) == changed.checksum


# distributions whose import name is not their name (lower case, "-" as "_"); the metadata names distributions
IMPORT_NAMES = {"pytorch-ignite": "ignite", "pillow": "PIL", "scikit-learn": "sklearn", "scikit-image": "skimage",
                "pyyaml": "yaml", "opencv-python": "cv2"}
# what every bundle has through its monai_version, pytorch_version and numpy_version; scripts is the bundle itself
BASE_MODULES = frozenset({"monai", "torch", "numpy", "scripts"})


def _imported_modules(source: Path) -> set[str]:
    """The top-level modules that ``source`` imports absolutely, anywhere (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("name", BUNDLES)
def test_packaged_modules_import_only_declared_packages(name: str) -> None:
    """Every third-party package that the bundle's packaged Python files import is declared in its metadata, since
    the zoo's CI installs the bundle's packages from ``required_packages_version`` (and ``optional_packages_version``)
    alone: e.g. pydicom for the DICOM series reader of ``scripts/data/dicom_series.py``."""
    bundle_dir = REPO / "bundles" / name
    meta = package_bundles.read_metadata(bundle_dir)
    declared = {**meta.get("required_packages_version", {}), **meta.get("optional_packages_version", {})}
    importable = BASE_MODULES | {IMPORT_NAMES.get(d.lower(), d.lower().replace("-", "_")) for d in declared}
    undeclared: dict[str, list[str]] = {}
    for arc, source in package_bundles.collect_files(bundle_dir).items():
        if arc.endswith(".py"):
            for module in _imported_modules(source) - importable - set(sys.stdlib_module_names):
                undeclared.setdefault(module, []).append(arc)
    assert not undeclared, (f"{name}: packaged files import packages that configs/metadata.json does not declare in "
                            f"required_packages_version: {undeclared}")


def test_package_rejects_unlisted_version_and_bad_json(staged_bundle: tuple[str, Path], tmp_path: Path) -> None:
    name, bundles_dir = staged_bundle
    meta_file = bundles_dir / name / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["version"] = "9.9.9"
    meta_file.write_text(json.dumps(meta, indent=4) + "\n")
    with pytest.raises(ValueError, match="9.9.9.*changelog"):
        package_bundles.package(name, str(tmp_path / "dist"), bundles_dir=str(bundles_dir), quiet=True)
    meta["changelog"]["9.9.9"] = "test"
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    with pytest.raises(ValueError, match="4-space"):
        package_bundles.package(name, str(tmp_path / "dist"), bundles_dir=str(bundles_dir), quiet=True)
    assert not (tmp_path / "dist").exists()  # nothing is written when a check fails


# ---------------------------------------------------------------------------------------------------------------
# 2. download round trip
# ---------------------------------------------------------------------------------------------------------------


def _make_weights(bundle: Path, case: BundleCase, data_dir: Path) -> Path:
    """``models/model.pt`` of the staged bundle: a tiny training run of its ``train.json``, or random weights.

    Both run in this process (a MONAI import costs seconds per subprocess); the bundle's users are exercised by the
    download and inference subprocesses.
    """
    with bundle_importable(bundle):
        if case.train is None:
            check_bundles.create_random_weights(str(bundle), case.network)
        else:
            overrides = {**_run_overrides(case.network), **case.train, "dataset_dir": str(data_dir)}
            workflow = bundle_workflow([bundle / "configs" / "train.json"], bundle, **overrides)
            workflow.run()
            workflow.finalize()
    assert (bundle / "models" / "model.pt").is_file()
    return bundle / "models" / "model.pt"


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLES)
def test_download_round_trip(name: str, tmp_path: Path) -> None:
    case = _case(name)
    work = tmp_path / "work"  # working directory of every command: outside the repository
    work.mkdir()
    assert REPO not in work.resolve().parents
    bundles_dir = _stage(name, tmp_path / "repo")
    data_dir = case.make_data(tmp_path / "data")
    weights = _make_weights(bundles_dir / name, case, data_dir)

    dist = tmp_path / "dist"
    dist.mkdir()
    version = package_bundles.read_metadata(bundles_dir / name)["version"]
    with http_server(dist) as base:
        weights_url = f"{base}/{name}_v{version}_model.pt"
        shutil.copy(weights, dist / f"{name}_v{version}_model.pt")  # "uploaded" next to the zip
        (result,) = package_bundles.package(name, str(dist), base, weights_url, large_file_threshold_mb=0.0,
                                            bundles_dir=str(bundles_dir), quiet=True)
        downloads = tmp_path / "downloads"
        downloads.mkdir()
        _run([sys.executable, "-m", "monai.bundle", "download", "--name", name, "--url",
              f"{base}/{result.zip_path.name}", "--bundle_dir", str(downloads)], cwd=work)
        bundle = downloads / name
        assert (bundle / "large_files.yml").is_file() and not (bundle / "models" / "model.pt").exists()
        download_large_files(bundle_path=str(bundle))  # what `python -m monai.bundle download_large_files` runs
    assert (bundle / "models" / "model.pt").read_bytes() == weights.read_bytes()
    assert (bundle / "scripts" / "__init__.py").is_file() and not (bundle / "scripts").is_symlink()

    probe = subprocess.run([sys.executable, "-c", "import shared"], cwd=work, env=user_env(), capture_output=True,
                           text=True)
    assert probe.returncode != 0 and "No module named 'shared'" in probe.stderr

    overrides = {**_run_overrides(case.network), **case.inference, "dataset_dir": str(data_dir)}
    _run(bundle_command([bundle / "configs" / "inference.json"], {"bundle_root": str(bundle), **overrides}), cwd=work)
    for pattern in case.outputs:
        found = sorted(bundle.glob(pattern))
        assert found and all(p.stat().st_size > 0 for p in found), f"inference wrote nothing matching {pattern}"


# ---------------------------------------------------------------------------------------------------------------
# 3. offline model-zoo checks
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUNDLES)
def test_zoo_checks_pass(name: str, capsys: pytest.CaptureFixture) -> None:
    case = _case(name)
    results = check_bundles.check(name, overrides={name: case.network}, device="cpu")
    table = capsys.readouterr().out
    statuses = {r.check: r.status for r in results}
    assert not check_bundles.has_failures(results), table
    for required in ("version", "json_format", "package", "required_files", "verify_net_in_out"):
        assert statuses.get(required) == check_bundles.PASS, table
    # the metadata schema is a team hand-out beside the repository (../shared/schemas); a clone alone has no copy
    # and the check says it skipped, it does not pass
    expected = check_bundles.PASS if check_bundles.DEFAULT_SCHEMA.is_file() else check_bundles.SKIP
    assert statuses.get("verify_metadata") == expected, table
    assert statuses.get("weights") in (check_bundles.PASS, check_bundles.TEMP), table
    if statuses.get("torchscript") != check_bundles.EXCLUDED:
        assert statuses.get("torchscript") == statuses.get("jit_load") == check_bundles.PASS, table


def test_zoo_checks_report_failures(staged_bundle: tuple[str, Path], tmp_path: Path) -> None:
    name, bundles_dir = staged_bundle
    bundle = bundles_dir / name
    (bundle / "LICENSE").unlink()
    results = check_bundles.check_bundle(name, tmp_path / "work", bundles_dir)
    rows = {r.check: r for r in results}
    assert rows["required_files"].status == check_bundles.FAIL and "LICENSE" in rows["required_files"].detail
    assert "verify_metadata" not in rows  # the bundle-environment checks do not run on an incomplete bundle

    scripts = bundle / "scripts"
    scripts.unlink()
    scripts.symlink_to(tmp_path)
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    meta["version"] = "0.0.0-unlisted"
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta, indent=4) + "\n")
    rows = {r.check: r for r in check_bundles.check_bundle(name, tmp_path / "work", bundles_dir)}
    assert rows["version"].status == rows["scripts_link"].status == check_bundles.FAIL
    assert rows["package"].status == check_bundles.SKIP
    assert "FAIL" in check_bundles.format_table(list(rows.values()))


_NETS = '''import torch


class Scriptable(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class TraceOnly(Scriptable):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(*[x])  # a starred call: TorchScript cannot compile it, tracing records it
'''


def _export_bundle(root: Path, network: str) -> Path:
    """A minimal bundle whose ``network_def`` is ``scripts.nets.<network>``, with its weights."""
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "__init__.py").write_text("")
    (root / "scripts" / "nets.py").write_text(_NETS)
    (root / "configs").mkdir()
    config = {"network_def": {"_target_": f"scripts.nets.{network}"}}
    (root / "configs" / "inference.json").write_text(json.dumps(config))
    tensor = {"num_channels": 1, "spatial_shape": [8, 8], "dtype": "float32"}
    meta = {"network_data_format": {"inputs": {"image": tensor}, "outputs": {"pred": {**tensor, "num_channels": 2}}}}
    (root / "configs" / "metadata.json").write_text(json.dumps(meta))
    with bundle_importable(root):
        check_bundles.create_random_weights(str(root))
    return root


def test_zoo_export_check_fails_a_network_that_only_traces(tmp_path: Path) -> None:
    """The zoo's verify_torchscript scripts ``network_def`` and never traces: a network that only traces fails the
    check (the row says tracing would work), unless the bundle is a documented exclusion; one that scripts passes."""
    root = _export_bundle(tmp_path / "trace_only", "TraceOnly")
    with bundle_importable(root):
        status, detail = check_bundles._check_export(root, {}, None)
        assert status == check_bundles.FAIL and "scripting fails" in detail and "tracing works" in detail, detail
        status, detail = check_bundles._check_export(root, {}, "dynamic control flow")
        assert status == check_bundles.EXCLUDED and "documented exclusion (dynamic control flow)" in detail, detail
    root = _export_bundle(tmp_path / "scriptable", "Scriptable")
    with bundle_importable(root):
        assert check_bundles._check_export(root, {}, None) == (check_bundles.PASS, "ckpt_export by scripting")


def test_zoo_checks_fail_a_file_over_1_mb_in_the_zip(staged_bundle: tuple[str, Path], tmp_path: Path) -> None:
    """The zoo's pre-commit check-added-large-files --maxkb=1024 refuses a file over 1 MB: one in the zip is a
    ``file_sizes`` FAIL carrying the packager's advice; large weights behind --weights_url pass; other notes of the
    packager are WARN rows."""
    name, bundles_dir = staged_bundle
    bundle = bundles_dir / name
    (bundle / "models" / "mae.pt").write_bytes(os.urandom(3 * 2**20))  # pre-training's MAE weights, 3 MB
    _, rows = check_bundles.package_and_extract(name, bundles_dir, tmp_path / "work")
    assert [(r.check, r.status) for r in rows] == [("package", "PASS"), ("file_sizes", "FAIL")]
    assert "models/mae.pt (3.00 MB)" in rows[1].detail and "check-added-large-files" in rows[1].detail
    assert "large_files.yml" in rows[1].detail  # the packager's note: what to do

    (bundle / "models" / "mae.pt").unlink()
    (bundle / "models" / "model.pt").write_bytes(os.urandom(2 * 2**20))
    _, rows = check_bundles.package_and_extract(name, bundles_dir, tmp_path / "work")
    assert rows[1].status == check_bundles.FAIL and "models/model.pt (2.00 MB)" in rows[1].detail
    root, rows = check_bundles.package_and_extract(name, bundles_dir, tmp_path / "work",
                                                   "https://host/w/{name}_v{version}_model.pt")
    assert [(r.check, r.status) for r in rows] == [("package", "PASS"), ("file_sizes", "PASS")]
    assert (root / "large_files.yml").is_file() and not (root / "models" / "model.pt").exists()

    (bundle / "models" / "model.pt").write_bytes(os.urandom(2048))
    result = package_bundles.package_bundle(name, tmp_path / "notes", bundles_dir)
    result.notes = ("something the user should know",)
    assert check_bundles.package_rows(result)[2:] == [
        check_bundles.CheckResult(name, "package_note", check_bundles.WARN, "something the user should know")]


def test_fake_input_shape_entries() -> None:
    assert [check_bundles._shape_entry(e, n=2, p=3, any_size=5) for e in (96, "8*n", "2**p", "*")] == [96, 16, 8, 5]
    with pytest.raises(ValueError, match="unsupported"):
        check_bundles._shape_entry("__import__('os')")
