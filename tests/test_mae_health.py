"""The label-free MAE health check: its baselines, its verdict on trained and broken MAEs, its handler in a real
pre-training run and the function the study calls on a finished run."""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine

from shared.data.inputs import datalist_split
from shared.handlers.mae_health import MAEHealthHandler
from shared.metrics.mae_health import (
    MAEHealth,
    baseline_loss,
    fixed_masks,
    mae_health,
    nearest_visible_ids,
    nearest_visible_patch_baseline,
    reconstruction_loss,
    visible_mean_baseline,
)
from shared.networks.mae import MaskedAutoencoderViT
from shared.networks.patches import patchify
from shared.utils.errors import InputError
from tests.helpers import MAE, TINY_DECODER, TINY_ENCODER, TINY_MAE, bundle_run
from tools.measure.mae_health import check_checkpoint


def tiny_mae_2d(norm_pix_loss: bool = True) -> MaskedAutoencoderViT:
    """32x32 images, 8x8 patches: a 4x4 grid, 12 hidden and 4 visible patches."""
    return MaskedAutoencoderViT(1, 32, 8, num_layers=2, spatial_dims=2, norm_pix_loss=norm_pix_loss, **TINY_ENCODER,
                                **TINY_DECODER)


def pattern(n: int, noise: float = 0.05, seed: int | None = None) -> torch.Tensor:
    """A repeating pattern (period 12 pixels, so neighbouring 8-pixel patches differ) with a little noise."""
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    image = torch.sin(2 * math.pi * x / 12) * torch.cos(2 * math.pi * y / 12)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return image.expand(n, 1, 32, 32) + noise * torch.randn(n, 1, 32, 32, generator=generator)


def test_nearest_visible_ids_on_a_line_and_ties_to_the_lower_index():
    mask = torch.tensor([[False, True, True, False, True]])
    assert nearest_visible_ids(mask, (5,)).tolist() == [[0, 0, 3, 3, 3]]
    mask = torch.tensor([[False, True, False]])
    assert nearest_visible_ids(mask, (3,)).tolist() == [[0, 0, 2]]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_nearest_visible_patch_baseline_is_exact_on_constant_regions(spatial_dims):
    """Two constant halves split between patch columns 1 and 2 of a 4-wide grid; columns 1 and 2 hidden: each
    hidden patch's nearest visible one lies in its own half, so the copy is exact and the loss zero."""
    size = (16,) * spatial_dims
    image = torch.ones(1, 2, *size)
    image[:, :, ..., 8:] = 3.0
    image[:, 1] *= -1  # a second channel
    grid = (4,) * spatial_dims
    column = torch.arange(4).expand(*grid).reshape(-1)  # last grid axis
    mask = ((column == 1) | (column == 2)).unsqueeze(0)
    pred = nearest_visible_patch_baseline(image, mask, (4,) * spatial_dims)
    assert torch.equal(pred, patchify(image, (4,) * spatial_dims))
    for norm_pix_loss in (False, True):
        mae = MaskedAutoencoderViT(2, 16, 4, num_layers=1, spatial_dims=spatial_dims, norm_pix_loss=norm_pix_loss,
                                   mask_ratio=mask.float().mean().item(), **TINY_ENCODER, **TINY_DECODER)
        assert baseline_loss(mae, image, mask) == 0.0


def test_visible_mean_baseline_is_the_mean_of_the_visible_pixels_per_channel():
    image = torch.stack([torch.full((8, 8), 2.0), torch.arange(64.0).reshape(8, 8)]).unsqueeze(0)
    mask = torch.tensor([[True, False, True, True]])  # 2x2 grid of 4x4 patches, the top right one visible
    pred = visible_mean_baseline(image, mask, (4, 4)).reshape(1, 4, 2, 16)
    assert torch.all(pred[:, :, 0] == 2.0)
    assert torch.allclose(pred[:, :, 1], image[0, 1, :4, 4:].mean())


def test_fixed_masks_depend_on_the_seed_only():
    masks = fixed_masks(5, 16, 12, seed=3)
    assert torch.equal(masks, fixed_masks(5, 16, 12, seed=3)) and not torch.equal(masks, fixed_masks(5, 16, 12, 4))
    assert masks.sum(dim=1).tolist() == [12] * 5


@pytest.fixture(scope="module")
def trained() -> tuple[MaskedAutoencoderViT, MaskedAutoencoderViT, torch.Tensor, torch.Tensor]:
    """A tiny MAE briefly trained on the repeating pattern, its initial copy, held-out images and fixed masks."""
    torch.manual_seed(0)
    net = tiny_mae_2d()
    untrained = copy.deepcopy(net)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    for _ in range(40):
        loss = net(pattern(8))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    images = pattern(8, seed=1)
    return net, untrained, images, fixed_masks(8, net.num_patches, net.num_masked, seed=0)


def test_a_trained_mae_beats_every_reference(trained):
    net, untrained, images, masks = trained
    health = mae_health(net, images, masks, untrained)
    assert health.learning, health
    assert health.summary().endswith(": learning")
    assert health.untrained == reconstruction_loss(untrained, images, masks)  # fixed masks: the same every time
    assert mae_health(net, images, masks, untrained) == health


def test_an_mae_with_a_zeroed_decoder_is_flagged(trained):
    net, untrained, images, masks = trained
    broken = copy.deepcopy(net)
    torch.nn.init.zeros_(broken.decoder_pred.weight)
    torch.nn.init.zeros_(broken.decoder_pred.bias)
    health = mae_health(broken, images, masks, untrained)
    assert not health.learning
    assert "NOT LEARNING, no better than predicting the visible mean" in health.summary()


def test_an_mae_whose_weights_were_randomised_after_training_is_flagged(trained):
    net, untrained, images, masks = trained
    broken = copy.deepcopy(net)
    torch.manual_seed(123)
    broken.initialize_weights()
    health = mae_health(broken, images, masks, untrained)
    assert not health.learning and "NOT LEARNING" in health.summary()


def test_the_verdict_needs_every_reference_beaten():
    assert MAEHealth(0.5, 1.0, 0.6, 1.0).learning
    assert not MAEHealth(0.6, 1.0, 0.6, 1.0).learning  # a tie is no better
    assert "no better than the untrained MAE nor" in MAEHealth(1.1, 1.0, 0.9, 1.2).summary()


def test_handler_keeps_the_initial_weights_for_the_untrained_reference(caplog):
    """The reference is the network as it was when the handler was built, even after the weights change (a
    resume); the check runs at the chosen epochs and once at completion, and warns when the MAE does not learn."""
    torch.manual_seed(0)
    net = tiny_mae_2d()
    initial = copy.deepcopy(net)
    items = [{"image": image} for image in pattern(3, seed=2)]
    handler = MAEHealthHandler(net, items, transform=lambda item: item, interval=1, num_images=3, seed=5)
    torch.nn.init.zeros_(net.decoder_pred.weight)  # a "resume" that broke the decoder
    torch.nn.init.zeros_(net.decoder_pred.bias)
    engine = Engine(lambda engine, batch: None)
    handler.attach(engine)
    with caplog.at_level(logging.INFO):
        engine.run([0], max_epochs=2)
    masks = fixed_masks(3, net.num_patches, net.num_masked, 5)
    assert handler.references["untrained"] == reconstruction_loss(initial, pattern(3, seed=2), masks)
    assert [epoch for epoch, _ in handler.history] == [1, 2]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and warnings[0].startswith("MAE health (epoch 1): held-out loss")


def test_handler_without_held_out_images_is_off(caplog):
    handler = MAEHealthHandler(tiny_mae_2d(), [], transform=lambda item: item, interval=1)
    engine = Engine(lambda engine, batch: None)
    handler.attach(engine)
    with caplog.at_level(logging.WARNING):
        engine.run([0], max_epochs=1)
    assert handler.history == [] and "no held-out images" in caplog.text


def test_datalist_split_reads_a_split_or_nothing(tmp_path: Path):
    (tmp_path / "a.nii.gz").touch()
    datalist = tmp_path / "dataset.json"
    datalist.write_text(json.dumps({"training": [{"image": "a.nii.gz", "label": "b.nii.gz"}]}))
    assert datalist_split(datalist, "validation", ["image"]) == []
    assert datalist_split(datalist, "training", ["image"]) == [{"image": str(tmp_path / "a.nii.gz")}]
    assert datalist_split({"validation": [{"image": "/x", "label": "/y"}]}, "validation", ["image"]) == [
        {"image": "/x"}]
    with pytest.raises(InputError, match=f"{datalist}: entry 0 of 'training'.* has no 'mask'"):
        datalist_split(datalist, "training", ["image", "mask"])
    datalist.write_text('{"training": [')
    with pytest.raises(InputError, match=f"{datalist}: not valid JSON"):
        datalist_split(datalist, "training", ["image"])


RUN = {**TINY_MAE, "network_def#num_layers": 2, "roi_size": [32, 32, 32], "batch_size": 2, "num_samples": 2,
       "num_workers": 0, "warmup_epochs": 1}


@pytest.fixture(scope="module")
def pretraining(btcv, tmp_path_factory) -> tuple[Path, Path, str]:
    """Three epochs of the CT pre-training bundle, the health check every second epoch."""
    root = tmp_path_factory.mktemp("mae")
    log = bundle_run([MAE / "train.json"], {"bundle_root": str(root), "dataset_dir": str(btcv), "epochs": 3,
                                            "health_interval": 2, **RUN}, cwd=root)
    return root, btcv, log


def test_pretraining_bundle_logs_the_health_check(pretraining):
    _, _, log = pretraining
    number = r"[0-9.e+-]+"
    assert re.search(rf"MAE health: 8 held-out crops, references untrained {number}, nearest_visible", log), log
    lines = re.findall(rf"MAE health \(epoch (\d)\): held-out loss {number} \(untrained {number}, "
                       rf"nearest-visible-patch {number}, visible-mean {number}\): (learning|NOT LEARNING)", log)
    assert [epoch for epoch, _ in lines] == ["2", "3"]  # every second epoch, and at the end


def test_check_checkpoint_scores_a_finished_run(pretraining):
    root, data, log = pretraining
    health = check_checkpoint(root / "models" / "model.pt", [str(data / "imagesTr" / "img0003.nii.gz")],
                              MAE / "train.json", RUN, num_images=2)
    assert all(math.isfinite(v) for v in (health.trained, health.untrained, health.nearest_visible))
    last = re.findall(r"MAE health \(epoch 3\): held-out loss ([0-9.]+)", log)[0]
    assert health.trained == pytest.approx(float(last), abs=0.2)  # other crops, same network
