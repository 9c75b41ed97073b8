"""``tools/zoo/download_bundle.py`` installs a packaged bundle only when the zip has the published checksum."""

from __future__ import annotations

import zipfile

import pytest

from tests.helpers import http_server
from tools.zoo.download_bundle import download_bundle
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
