"""``tools/zoo/download_bundle.py`` installs a packaged bundle only when the zip has the published checksum."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tests.helpers import http_server
from tools.zoo.download_bundle import download_bundle, main
from tools.zoo.package_bundles import package, write_deterministic_zip


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


@pytest.mark.parametrize("content, problem", [
    (None, "no such file"),
    ('{"unetr_btcv_seg_v1.0.0": ', "not valid JSON: Expecting value at line 1, column 27"),
    ('["unetr_btcv_seg_v1.0.0"]', "not a model_info.json"),
    ('{"unetr_btcv_seg_v1.0.0": {"source": "https://host/unetr_btcv_seg_v1.0.0.zip"}}',
     "the entry unetr_btcv_seg_v1.0.0 has no checksum"),
])
def test_a_bad_model_info_is_an_error_naming_the_file_and_the_problem(content, problem, tmp_path, capsys):
    model_info = tmp_path / "model_info.json"
    if content is not None:
        model_info.write_text(content)
    with pytest.raises(SystemExit) as exit_status:
        main("unetr_btcv_seg", str(tmp_path / "bundles"), model_info=str(model_info))
    assert exit_status.value.code == 1
    message = capsys.readouterr().err.strip()
    assert message.startswith("download_bundle: error: ") and str(model_info) in message and problem in message
    assert not (tmp_path / "bundles").exists()


def _published_bundle(folder: Path, weights_url: str) -> Path:
    """A tiny bundle zip ``b_v0.1.0.zip`` whose ``large_files.yml`` lists ``weights_url``, and its model_info.json."""
    large_files = (f'large_files:\n  - path: "models/model.pt"\n    url: "{weights_url}"\n'
                   f'    hash_val: "{"0" * 64}"\n    hash_type: "sha256"\n')
    zip_path = folder / "b_v0.1.0.zip"
    entries = {"b/configs/metadata.json": b"{}", "b/large_files.yml": large_files.encode()}
    sha1 = write_deterministic_zip(zip_path, entries)
    model_info = folder / "model_info.json"
    model_info.write_text(json.dumps({"b_v0.1.0": {"checksum": sha1, "source": zip_path.as_uri()}}))
    return model_info


@pytest.mark.parametrize("missing", ["weights", "zip"])
def test_a_failed_download_is_a_one_line_error_and_leaves_no_bundle(missing, tmp_path, capsys):
    """An unreachable file after the checksum (the weights of large_files.yml) or before it (the zip) is a one-line
    error; nothing is left in the bundle folder, so that trying again is not refused as 'exists'."""
    model_info = _published_bundle(tmp_path, (tmp_path / "no_such_model.pt").as_uri())
    if missing == "zip":
        (tmp_path / "b_v0.1.0.zip").unlink()
    bundles = tmp_path / "bundles"
    for _ in range(2):  # a retry fails the same way, not with "exists; remove it"
        with pytest.raises(SystemExit) as exit_status:
            main("b", str(bundles), model_info=str(model_info))
        assert exit_status.value.code == 1
        message = capsys.readouterr().err.strip()
        assert message.startswith("download_bundle: error: ") and "\n" not in message, message
        assert "No such file" in message and "exists" not in message, message
        assert not bundles.exists() or not any(bundles.iterdir()), sorted(bundles.iterdir())
