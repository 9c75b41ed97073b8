"""Mixed precision on the CPU: every network call of a wrapped inferer runs under autocast, outputs come back in
float32, and bfloat16 inference gives the float32 label maps."""

from __future__ import annotations

import json

import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.engines import SupervisedTrainer
from monai.inferers import SimpleInferer, SlidingWindowInferer
from monai.losses import DiceCELoss
from monai.networks.nets import UNETR

from shared.inferers.autocast import AutocastInferer, autocast_dtype, autocast_pays_off, needs_grad_scaler
from shared.networks.mae import mae_loss
from tests.helpers import BUNDLES, TINY_ENCODER, bundle_importable, tiny_mae


def tiny_unetr() -> UNETR:
    return UNETR(1, 4, 32, feature_size=8, **TINY_ENCODER)


def test_network_runs_under_autocast_and_outputs_are_float32():
    seen = []

    def network(x):
        seen.append(torch.is_autocast_enabled("cpu"))
        return {"logits": x.mean() * torch.ones(2, 2, dtype=torch.bfloat16), "ids": torch.arange(3)}

    out = AutocastInferer(SimpleInferer(), enabled=True)(torch.rand(2, 3), network)
    assert seen == [True] and out["logits"].dtype == torch.float32 and out["ids"].dtype == torch.int64
    out = AutocastInferer(SimpleInferer(), enabled=False)(torch.rand(2, 3), network)
    assert seen == [True, False] and out["logits"].dtype == torch.bfloat16
    with pytest.raises(ValueError, match="bfloat16 or float16"):
        AutocastInferer(dtype="float32")
    assert AutocastInferer(dtype="torch.bfloat16").dtype == torch.bfloat16  # as needs_grad_scaler reads it


@pytest.mark.parametrize("enabled", [True, False])
def test_the_network_gets_plain_tensors_and_sliding_window_outputs_keep_the_input_metadata(enabled):
    seen = []

    def network(x):
        seen.append(type(x))
        return x * 2

    image = MetaTensor(torch.rand(1, 1, 20, 20, 20), affine=torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0])))
    out = AutocastInferer(SimpleInferer(), enabled=enabled)(image, network)
    assert seen == [torch.Tensor] and type(out) is torch.Tensor
    assert torch.allclose(out, image.as_tensor() * 2, atol=0.02)
    out = AutocastInferer(SlidingWindowInferer(16, overlap=0.25), enabled=enabled)(image, network)
    assert set(seen) == {torch.Tensor} and isinstance(out, MetaTensor) and torch.equal(out.affine, image.affine)


def test_bfloat16_and_float32_sliding_window_label_maps_agree():
    net = tiny_unetr().eval()
    image = torch.rand(1, 1, 48, 40, 36)
    window = SlidingWindowInferer(32, sw_batch_size=2, overlap=0.5)
    with torch.no_grad():
        mixed = AutocastInferer(window, enabled=True)(image, net)
        full = AutocastInferer(window, enabled=False)(image, net)
    assert mixed.dtype == torch.float32
    agreement = (mixed.argmax(1) == full.argmax(1)).float().mean().item()
    assert agreement >= 0.99, agreement


@pytest.mark.parametrize("kind", ["unetr", "mae"])
def test_a_training_step_under_cpu_autocast_updates_the_weights_with_a_float32_loss(kind):
    if kind == "unetr":
        net, loss = tiny_unetr(), DiceCELoss(to_onehot_y=True, softmax=True)
        batch = {"image": torch.rand(2, 1, 32, 32, 32), "label": torch.randint(0, 4, (2, 1, 32, 32, 32)).float()}
    else:
        net, loss = tiny_mae(), mae_loss
        batch = {"image": torch.rand(2, 1, 32, 32, 32), "label": torch.zeros(2)}
    before = [p.detach().clone() for p in net.parameters()]
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=[batch], network=net,
        optimizer=torch.optim.AdamW(net.parameters(), 1e-3, fused=True), loss_function=loss,
        inferer=AutocastInferer(SimpleInferer(), enabled=True), decollate=False,
    )
    trainer.run()
    assert trainer.state.output["loss"].dtype == torch.float32 and torch.isfinite(trainer.state.output["loss"])
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))


def test_cpu_defaults_and_every_config_has_an_amp_switch():
    assert autocast_dtype("cpu") == "bfloat16"
    assert isinstance(autocast_pays_off("cpu"), bool)
    for path in sorted(BUNDLES.glob("*/configs/*.json")):
        config = json.loads(path.read_text())
        if path.name in ("train.json", "pretrain.json", "inference.json"):
            assert config["amp"]["_target_"].endswith("autocast_pays_off"), path
            # mae_pretrain_ct's validate holds only the health check's data: no evaluator, no inferer
            inferers = [config[k]["inferer"] for k in ("train", "validate") if "inferer" in config.get(k, {})] + (
                [config["inferer"]] if "inferer" in config else [])
            assert inferers and all(i["_target_"].endswith("AutocastInferer") for i in inferers), path


def test_amp_false_on_the_command_line_turns_autocast_off():
    """``python -m monai.bundle run ... --amp false`` passes the string "false" (not a bool): it must mean off."""
    root = BUNDLES / "unetr_btcv_seg"
    for value, expected in (("false", False), ("true", True), (False, False)):
        with bundle_importable(root):
            parser = ConfigParser()
            parser.read_config([str(root / "configs" / "train.json")])
            parser.update({"amp": value, "amp_dtype": "float16"})
            assert parser.get_parsed_content("validate#inferer").enabled is expected, value
            assert parser.get_parsed_content("train#trainer#amp") is expected, value  # fp16 scales the loss
    assert needs_grad_scaler("true", "bfloat16") is False
    with pytest.raises(ValueError, match="amp must be true or false, got 'maybe'"):
        AutocastInferer(enabled="maybe")
