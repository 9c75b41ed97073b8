"""A resumed fine-tuning run starts from the same pretrained encoder as the run that wrote its checkpoint: the
checkpoint records the encoder's identity (a hash of the file's content, "" for none) and a resume with another one
(an MAE copied in after a scratch run was interrupted, or ``--pretrained_encoder ""`` after an MAE run) is refused,
naming both; a checkpoint written before the encoder was recorded still resumes, saying it could not be compared."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine
from monai.bundle import ConfigParser

from shared.handlers.checkpoint import ResumeLoader, RunSettings
from shared.handlers.encoder_loader import encoder_identity
from shared.utils.atomic import save_atomically
from tests.helpers import BUNDLES, bundle_importable

FINE_TUNING = ["unetr_btcv_seg", "unetr_brats_seg", "vit_cxr14_cls"]


@pytest.fixture()
def mae(tmp_path) -> Path:
    """An encoder file (its content is all that counts)."""
    path = tmp_path / "mae.pt"
    torch.save({"weight": torch.arange(4.0)}, path)
    return path


def write_checkpoint(path: Path, model: torch.nn.Module, encoder: dict | None) -> None:
    """A checkpoint of ``model`` whose run recorded ``encoder`` (None: written before the encoder was recorded)."""
    settings = RunSettings({"network_def": {"_target_": "Linear"}}, {"optimizer": {"lr": 0.1}}).state_dict()
    if encoder is not None:
        settings["encoder"] = encoder
    else:
        del settings["encoder"]
    save_atomically({"model": model.state_dict(), "settings": settings}, path)


def resume(path: Path, model: torch.nn.Module, encoder: str) -> None:
    """Resume ``model`` from ``path`` in a run whose ``pretrained_encoder`` has the identity ``encoder``."""
    settings = RunSettings({"network_def": {"_target_": "Linear"}}, {"optimizer": {"lr": 0.1}},
                           {"pretrained_encoder": encoder})
    ResumeLoader(str(path), {"model": model, "settings": settings})(Engine(lambda e, b: None))


def test_the_identity_is_the_contents_hash_not_the_path(mae, tmp_path):
    moved = Path(shutil.copy(mae, tmp_path / "elsewhere.pt"))
    assert encoder_identity("") == "" and len(encoder_identity(str(mae))) == 16
    assert encoder_identity(str(moved)) == encoder_identity(str(mae))
    torch.save({"weight": torch.ones(4)}, moved)
    assert encoder_identity(str(moved)) != encoder_identity(str(mae))
    with pytest.raises(FileNotFoundError, match="pretrained_encoder .*missing.pt: no such file"):
        encoder_identity(str(tmp_path / "missing.pt"))


@pytest.mark.parametrize("saved_is_mae", [False, True], ids=["scratch-then-mae", "mae-then-scratch"])
def test_a_resume_from_another_encoder_is_refused_naming_both(mae, tmp_path, saved_is_mae):
    checkpoint, identity = tmp_path / "checkpoint.pt", encoder_identity(str(mae))
    saved, now = (identity, "") if saved_is_mae else ("", identity)
    write_checkpoint(checkpoint, torch.nn.Linear(1, 1), {"pretrained_encoder": saved})
    model = torch.nn.Linear(1, 1)
    before = model.weight.detach().clone()
    with pytest.raises(RuntimeError) as refused:
        resume(checkpoint, model, now)
    message = str(refused.value)
    mae_words, scratch_words = f"the encoder file of sha256 {identity}", "no pretrained encoder (from scratch)"
    first, second = (mae_words, scratch_words) if saved_is_mae else (scratch_words, mae_words)
    assert message.startswith(f"{checkpoint} was initialised from another pretrained encoder than this run asks for "
                              f"(pretrained_encoder: {first} in the checkpoint, {second} now)")
    assert "the same --pretrained_encoder" in message and f"move {checkpoint} away" in message
    assert torch.equal(model.weight, before)  # nothing was loaded


def test_the_same_encoder_resumes_even_moved(mae, tmp_path, caplog):
    checkpoint = tmp_path / "checkpoint.pt"
    saved_model = torch.nn.Linear(1, 1)
    write_checkpoint(checkpoint, saved_model, {"pretrained_encoder": encoder_identity(str(mae))})
    moved = shutil.move(mae, tmp_path / "moved.pt")
    model = torch.nn.Linear(1, 1)
    with caplog.at_level(logging.INFO):
        resume(checkpoint, model, encoder_identity(str(moved)))
    assert torch.equal(model.weight, saved_model.weight)
    assert "resumed from" in caplog.text and "the network's weights are the checkpoint's" in caplog.text
    assert "could not be compared" not in caplog.text


def test_a_checkpoint_without_the_encoder_resumes_saying_it_could_not_be_compared(mae, tmp_path, caplog):
    checkpoint = tmp_path / "checkpoint.pt"
    saved_model = torch.nn.Linear(1, 1)
    write_checkpoint(checkpoint, saved_model, None)
    model = torch.nn.Linear(1, 1)
    with caplog.at_level(logging.INFO):
        resume(checkpoint, model, encoder_identity(str(mae)))
    assert torch.equal(model.weight, saved_model.weight)
    assert f"{checkpoint} does not record the pretrained encoder its run was initialised from" in caplog.text
    assert "pretrained_encoder could not be compared" in caplog.text
    assert "does not record the settings it was trained with" not in caplog.text  # the others were compared


@pytest.mark.parametrize("bundle", FINE_TUNING)
def test_the_fine_tuning_configs_record_the_encoder(bundle, mae):
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / "train.json"))
    with bundle_importable(BUNDLES / bundle):
        for path, expected in ((str(mae), encoder_identity(str(mae))), ("", "")):
            parser["pretrained_encoder"] = path
            parser.parse()
            assert parser.get_parsed_content("run_settings#encoder") == {"pretrained_encoder": expected}
