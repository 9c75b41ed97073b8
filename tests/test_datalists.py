"""Datalists a user wrote are read, never rewritten, and their errors name the file and the place (through
``python -m monai.bundle run``, as a user runs it); a rebuilt split names what it moved into validation."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from shared.data.datalist_cache import cached_datalist
from tests.helpers import BRATS, BUNDLES, SEG, SMALL, TINY_UNETR, bundle_run
from tools import synthetic

CXR = BUNDLES / "vit_cxr14_cls" / "configs"
TYPO = '{\n    "training": [\n        {"image": "a.nii.gz"},\n    ],\n    "validation": []\n}\n'  # a trailing comma


@pytest.fixture(scope="module")
def brats(tmp_path_factory) -> Path:
    return Path(synthetic.make_brats(str(tmp_path_factory.mktemp("brats")), layout="msd", num_cases=2, num_test=1,
                                     shape=(24, 24, 16)))


@pytest.fixture(scope="module")
def cxr14(tmp_path_factory) -> Path:
    return Path(synthetic.make_cxr14(str(tmp_path_factory.mktemp("cxr14")), num_images=8, size=64))


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


@pytest.mark.parametrize("bundle", ["brats", "cxr14"])
def test_a_hand_made_datalist_with_a_typo_is_named_and_never_rewritten(bundle, brats, cxr14, tmp_path):
    datalist = tmp_path / "my_datalist.json"
    datalist.write_text(TYPO)
    configs, data = (BRATS, brats) if bundle == "brats" else (CXR, cxr14)
    overrides = {"bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(data), "datalist_file": str(datalist),
                 "epochs": 1, "num_workers": 0}
    if bundle == "brats":
        overrides["dataset_layout"] = "msd"
    output = bundle_run([configs / "train.json"], overrides, expect_failure=True)
    assert datalist.read_text() == TYPO
    assert re.match(rf"error: InputError: {datalist}: not valid JSON: .* at line [34], column \d+\. The file is not "
                    "rewritten", last_line(output))


def test_a_malformed_msd_dataset_json_is_named(brats, tmp_path):
    data = tmp_path / "brats"
    data.mkdir()
    for item in brats.iterdir():
        (data / item.name).symlink_to(item)
    (data / "dataset.json").unlink()
    (data / "dataset.json").write_text('{"name": "BRATS", "training": [\n  {"image": "./imagesTr/BRATS_001.nii.gz",}]}')
    output = bundle_run([BRATS / "train.json"], {"bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(data),
                                                 "dataset_layout": "msd", "epochs": 1, "num_workers": 0},
                        expect_failure=True)
    assert last_line(output).startswith(f"error: InputError: {data / 'dataset.json'}: not valid JSON: ")
    assert "line 2, column" in last_line(output)


def test_a_btcv_datalist_with_a_typo_or_an_entry_without_a_label_is_named(btcv, tmp_path):
    datalist = tmp_path / "dataset_0.json"
    overrides = {"bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(btcv), "datalist_file": str(datalist),
                 "epochs": 1, **SMALL, **TINY_UNETR}
    datalist.write_text(TYPO)
    output = bundle_run([SEG / "train.json"], overrides, expect_failure=True)
    assert re.match(rf"error: InputError: {datalist}: not valid JSON: .* at line [34], column \d+\.$",
                    last_line(output))
    content = json.loads((btcv / "dataset_0.json").read_text())
    content["training"][0].pop("label")
    datalist.write_text(json.dumps(content))
    output = bundle_run([SEG / "train.json"], overrides, expect_failure=True)
    assert last_line(output) == (f"error: InputError: {datalist}: entry 0 of 'training' "
                                 '({"image": "imagesTr/img0001.nii.gz"}) has no \'label\'.')


def test_a_rebuilt_split_names_the_training_cases_it_moved_to_validation(tmp_path, caplog):
    """Adding or removing cases redraws a seeded split: validation cases a network was trained on are named (by
    their images: a label may have changed too)."""
    cache = str(tmp_path / "datalist.json")
    first = {"training": [{"image": "a", "label": [0]}, {"image": "b", "label": [0]}], "validation": [{"image": "c"}]}
    cached_datalist(cache, {"cases": 3}, lambda: first)
    redrawn = {"training": [{"image": n} for n in "acd"], "validation": [{"image": "b", "label": [1]}]}
    with caplog.at_level(logging.WARNING):
        assert cached_datalist(cache, {"cases": 4}, lambda: redrawn)["validation"] == redrawn["validation"]
    assert "1 of the rebuilt split's validation items was a training item before (b)" in caplog.text
    assert "delete the 'fingerprint' entry" in caplog.text
    caplog.clear()
    many = {"training": [], "validation": [{"image": n} for n in "acdefghi"]}
    with caplog.at_level(logging.WARNING):
        cached_datalist(cache, {"cases": 8}, lambda: many)
    assert "3 of the rebuilt split's validation items were training items before (a, c, d)" in caplog.text
    caplog.clear()
    kept = {"training": [{"image": "z"}], "validation": [{"image": n} for n in "acdefghi"]}
    with caplog.at_level(logging.WARNING):
        cached_datalist(cache, {"cases": 9}, lambda: kept)
    assert "rebuilding it" in caplog.text and "training item" not in caplog.text


def test_ranks_above_zero_use_the_datalist_without_writing_it(tmp_path, monkeypatch):
    """Every rank builds the same seeded split; rank 0 alone writes it (ranks above 0 wrote it too, also in a job
    refused because another held the bundle's lock)."""
    import ignite.distributed as idist

    cache = tmp_path / "runs" / "datalist.json"
    split = {"training": [{"image": "a"}], "validation": [{"image": "b"}]}
    monkeypatch.setattr(idist, "get_rank", lambda: 1)
    assert cached_datalist(str(cache), {"cases": 2}, lambda: split)["training"] == split["training"]
    assert not cache.parent.exists()
    monkeypatch.setattr(idist, "get_rank", lambda: 0)
    cached_datalist(str(cache), {"cases": 2}, lambda: split)
    assert json.loads(cache.read_text())["validation"] == split["validation"]


def test_a_test_list_of_bare_image_paths_is_read_as_monai_reads_it(tmp_path):
    """BTCV's dataset_0.json lists its unlabelled test images as bare paths; MONAI's loader reads them as images, so
    ``--datalist_key test`` (e.g. more images for MAE pre-training) works too."""
    from shared.data.inputs import decathlon_datalist
    from shared.utils.errors import InputError

    datalist = tmp_path / "dataset_0.json"
    datalist.write_text(json.dumps({"training": ["imagesTr/img0001.nii.gz"],
                                    "test": ["imagesTs/img0061.nii.gz", "imagesTs/img0062.nii.gz"]}))
    assert decathlon_datalist(str(datalist), "test") == [{"image": str(tmp_path / "imagesTs" / f"img006{i}.nii.gz")}
                                                         for i in (1, 2)]
    with pytest.raises(InputError, match=r"entry 0 of 'test' .* has no 'label'"):
        decathlon_datalist(str(datalist), "test", required=("image", "label"))
    with pytest.raises(InputError, match=r"entry 0 of 'training' \(\"imagesTr/img0001.nii.gz\"\) has no 'image'"):
        decathlon_datalist(str(datalist), "training")
