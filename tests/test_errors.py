"""The last line of a failed bundle run is the project's message naming the file and the problem, and importing the
bundle code changes nothing in the importing process. Through ``python -m monai.bundle run``, as a user runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.networks.nets import UNETR

from shared.utils.errors import cause_line, is_bundle_run
from shared.utils.scripts_package import ScriptsShadowedError, check_scripts_package
from tests.helpers import BUNDLES, REPO, SEG, SMALL, TINY_ENCODER, TINY_UNETR, bundle_run, user_env
from tools import synthetic

CXR = BUNDLES / "vit_cxr14_cls" / "configs"


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def train_overrides(root: Path, data: Path, **more) -> dict:
    return {"bundle_root": str(root), "dataset_dir": str(data), "epochs": 1, "batch_size": 1, "num_samples": 1,
            "pretrained_encoder": "", **SMALL, **TINY_UNETR, **more}


@pytest.mark.parametrize("package", ["shared", "scripts"])
def test_importing_the_bundle_code_leaves_the_process_alone(package):
    code = f"import sys; hook = sys.excepthook; import {package}; print(sys.excepthook is hook)"
    cwd = REPO if package == "shared" else BUNDLES / "unetr_btcv_seg"
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=user_env(), capture_output=True, text=True)
    assert result.stdout.strip() == "True", result.stderr
    assert is_bundle_run(["/x/site-packages/monai/bundle/__main__.py", "run", "--config_file", "c.json"])
    assert not is_bundle_run(["/x/bin/monailabel", "start_server"])


def test_a_corrupt_checkpoint_is_named_on_the_last_line(btcv, tmp_path):
    models = tmp_path / "bundle" / "models"
    models.mkdir(parents=True)
    (models / "checkpoint.pt").write_bytes(b"not a checkpoint")
    output = bundle_run([SEG / "train.json"], train_overrides(tmp_path / "bundle", btcv), expect_failure=True)
    assert last_line(output).startswith(f"error: RuntimeError: cannot resume from {models / 'checkpoint.pt'} (")
    assert "terminate called" not in output


def test_a_truncated_encoder_is_named_on_the_last_line(btcv, tmp_path):
    encoder = tmp_path / "mae.pt"
    torch.save(UNETR(1, 14, 32, feature_size=8, **TINY_ENCODER).state_dict(), encoder)
    encoder.write_bytes(encoder.read_bytes()[:1000])
    output = bundle_run([SEG / "train.json"], train_overrides(tmp_path / "bundle", btcv,
                                                              pretrained_encoder=str(encoder)), expect_failure=True)
    assert last_line(output).startswith(f"error: ValueError: Cannot read MAE checkpoint '{encoder}' (")


def test_an_unknown_finding_is_named_on_the_last_line(tmp_path):
    data = Path(synthetic.make_cxr14(str(tmp_path / "cxr14"), num_images=8, size=64))
    csv = data / "Data_Entry_2017.csv"
    lines = csv.read_text().splitlines()
    fields = lines[2].split(",")
    fields[1] = "Masss"
    lines[2] = ",".join(fields)
    csv.write_text("\n".join(lines) + "\n")
    output = bundle_run([CXR / "train.json"], {"bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(data),
                                               "epochs": 1, "num_workers": 0}, expect_failure=True)
    assert last_line(output).startswith(f"error: ValueError: {csv}, line 3: 'Finding Labels' of ")
    assert "unknown finding 'Masss'" in last_line(output)


def test_the_context_of_raise_from_none_is_not_the_cause():
    try:
        try:
            raise StopIteration(628)
        except StopIteration:
            raise ValueError("the message that names the file") from None
    except ValueError as e:
        assert cause_line(e) == "error: ValueError: the message that names the file"


@pytest.fixture()
def folder_with_its_own_scripts(tmp_path) -> Path:
    """A user's working folder with a ``scripts`` package of its own."""
    (tmp_path / "work" / "scripts").mkdir(parents=True)
    (tmp_path / "work" / "scripts" / "__init__.py").write_text("MINE = True\n")
    return tmp_path / "work"


@pytest.mark.parametrize("config", ["inference.json", "train.json"])
def test_a_working_folder_with_its_own_scripts_package_is_named_with_the_bundles(
        btcv, folder_with_its_own_scripts, tmp_path, config):
    """Without the check, MONAI's last line is "Cannot locate class or function path: 'scripts.data....'"."""
    root = tmp_path / "bundle"
    output = bundle_run([SEG / config], {"bundle_root": str(root), "dataset_dir": str(btcv), "epochs": 1, **SMALL,
                                         **TINY_UNETR}, cwd=folder_with_its_own_scripts, expect_failure=True)
    assert last_line(output) == (
        f"error: ImportError: Python imports the package 'scripts' from {folder_with_its_own_scripts / 'scripts'}, "
        f"not the bundle's code in {BUNDLES / 'unetr_btcv_seg' / 'scripts'}: the working folder "
        f"{folder_with_its_own_scripts} is earlier on Python's path (sys.path) and has its own 'scripts', which "
        "shadows the bundle's. Run the bundle from another folder (--config_file and --bundle_root take paths), or "
        "rename that 'scripts'.")
    assert not (root / "models").exists()  # refused before the lock or anything else touched the bundle root


def test_a_working_folder_that_is_another_downloaded_bundle_is_named_too(btcv, tmp_path):
    """A downloaded bundle has its own copy of the code, this check included: run from its folder, another bundle's
    config must not check that copy against itself (and then run the other bundle's code under its names)."""
    other = tmp_path / "mae_pretrain_ct"
    shutil.copytree(REPO / "shared", other / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
    output = bundle_run([SEG / "inference.json"], {"bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(btcv)},
                        cwd=other, expect_failure=True)
    assert last_line(output).startswith(
        f"error: ImportError: Python imports the package 'scripts' from {other / 'scripts'}, not the bundle's code in "
        f"{BUNDLES / 'unetr_btcv_seg' / 'scripts'}: the working folder {other} is earlier")


def test_outside_a_bundle_run_a_shadowing_scripts_package_is_an_import_error(folder_with_its_own_scripts,
                                                                              monkeypatch):
    monkeypatch.syspath_prepend(str(folder_with_its_own_scripts))
    monkeypatch.delitem(sys.modules, "scripts", raising=False)
    with pytest.raises(ScriptsShadowedError, match=f"from {folder_with_its_own_scripts / 'scripts'}, not the "
                                                    f"bundle's code in {REPO}"):
        check_scripts_package()


def test_the_scripts_check_finds_the_bundle_in_the_working_folder_when_monai_put_another_folder_first(
        tmp_path, monkeypatch):
    """Run from the bundle's folder with a config kept outside its ``configs``: MONAI's ``run`` puts the config's
    folder at ``sys.path[1]``, and the bundle's code is found in the working folder (``sys.path[0]``), searched last."""
    parser = ConfigParser()
    parser.read_config(str(SEG / "inference.json"))
    monkeypatch.setattr(sys, "path", [str(BUNDLES / "unetr_btcv_seg"), str(tmp_path), *sys.path])
    monkeypatch.delitem(sys.modules, "scripts", raising=False)
    assert parser.get_parsed_content("check_scripts_package") is None  # found, and the bundle's own: no error
