"""``tools/zoo/download_bundle.py`` installs a packaged bundle only when the zip has the published checksum."""

from __future__ import annotations

import zipfile

import pytest

from tests.helpers import http_server
from tools.zoo.download_bundle import download_bundle, main
from tools.zoo.package_bundles import package


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
