import logging
import sys

import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Engine
from monai.networks.blocks.pos_embed_utils import build_sincos_position_embedding
from monai.networks.nets import UNETR, ViT

from shared.handlers.encoder_loader import MAEEncoderLoader
from shared.networks.encoder_transfer import (
    interpolate_position_embedding,
    load_mae_encoder,
    sincos_patch_grid,
)
from shared.networks.vit_classifier import ViTClassifier
from tests.helpers import TINY_ENCODER, tiny_mae


def _trained_mae(steps=3, **kwargs):
    net = tiny_mae(num_layers=12, **kwargs)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    spatial = net.img_size
    for _ in range(steps):
        opt.zero_grad()
        net(torch.rand(2, net.in_channels, *spatial))["loss"].backward()
        opt.step()
    return net


def _unetr(img_size=32, in_channels=1):
    return UNETR(in_channels, 14, img_size, feature_size=8, **TINY_ENCODER)


def test_trained_encoder_loads_into_unetr_with_every_tensor_equal(tmp_path):
    mae = _trained_mae()
    path = tmp_path / "mae.pt"
    torch.save(mae.state_dict(), path)
    unetr = _unetr()
    decoder_before = {k: v.clone() for k, v in unetr.state_dict().items() if not k.startswith("vit.")}
    report = load_mae_encoder(unetr, path)
    encoder_state = mae.encoder.state_dict()
    assert sorted(report.loaded) == sorted(encoder_state)
    for key, value in encoder_state.items():
        assert torch.equal(unetr.vit.state_dict()[key], value), key
    for key, value in decoder_before.items():  # the CNN decoder is untouched
        assert torch.equal(unetr.state_dict()[key], value), key
    assert not report.missing and not report.interpolated
    assert "decoder_embed.weight" in report.skipped and "mask_token" in report.skipped


def test_vit_classifier_gets_position_embedding_and_class_token():
    mae = _trained_mae(img_size=64, spatial_dims=2, cls_token=True, in_channels=3)
    vit = ViT(3, 64, 16, num_layers=12, spatial_dims=2, classification=True, num_classes=14, **TINY_ENCODER)
    head_before = vit.classification_head[0].weight.clone()
    report = load_mae_encoder(vit, mae.state_dict())
    assert torch.equal(vit.cls_token, mae.cls_token)
    assert torch.equal(vit.patch_embedding.position_embeddings, mae.encoder.patch_embedding.position_embeddings)
    for key, value in mae.encoder.state_dict().items():
        assert torch.equal(vit.state_dict()[key], value), key
    assert len(report.loaded) == len(mae.encoder.state_dict()) + 1
    assert torch.equal(vit.classification_head[0].weight, head_before)


def test_position_embedding_is_interpolated_to_another_roi():
    mae = tiny_mae(img_size=32, num_layers=12)  # grid 2^3
    unetr = _unetr(img_size=64)  # grid 4^3
    report = load_mae_encoder(unetr, mae.state_dict())
    assert "patch_embedding.position_embeddings" in report.interpolated
    source = mae.encoder.patch_embedding.position_embeddings.detach()
    expected = F.interpolate(source.reshape(1, 2, 2, 2, -1).permute(0, 4, 1, 2, 3), size=(4, 4, 4), mode="trilinear")
    expected = expected.permute(0, 2, 3, 4, 1).reshape(1, 64, -1)
    torch.testing.assert_close(unetr.vit.patch_embedding.position_embeddings.detach(), expected)


def test_interpolation_to_the_same_grid_is_identity_and_anisotropic_grids_work():
    pe = torch.randn(1, 4 * 6 * 2, 12)
    torch.testing.assert_close(interpolate_position_embedding(pe, (4, 6, 2), (4, 6, 2)), pe)
    assert interpolate_position_embedding(pe, (8, 6, 4), (4, 6, 2)).shape == (1, 192, 12)
    with pytest.raises(ValueError, match="source_grid"):
        interpolate_position_embedding(pe, (8, 8, 8))


def test_interpolation_keeps_each_axis_in_its_place():
    source, target = (4, 6, 2), (8, 6, 4)
    coordinates = torch.stack(torch.meshgrid(*(torch.arange(n).float() for n in source), indexing="ij"), dim=-1)
    resized = interpolate_position_embedding(coordinates.reshape(1, -1, 3), target, source).reshape(*target, 3)
    for axis in range(3):
        along = resized[..., axis].movedim(axis, 0)
        assert (along.diff(dim=0) >= 0).all() and (along.diff(dim=0) > 0).any(), axis  # grows along its own axis
        for other in {0, 1, 2} - {axis}:
            assert torch.allclose(resized[..., axis].diff(dim=other), torch.zeros(())), (axis, other)  # not elsewhere


def test_the_pre_training_grid_is_read_from_the_sincos_embedding():
    mae = tiny_mae(img_size=(32, 64, 128))
    embedding = mae.encoder.patch_embedding.position_embeddings
    assert sincos_patch_grid(embedding, 3) == (2, 4, 8)
    assert sincos_patch_grid(embedding.to(torch.bfloat16), 3) == (2, 4, 8)
    assert sincos_patch_grid(torch.randn_like(embedding), 3) is None
    assert sincos_patch_grid(torch.randn(1, 64, 50), 3) is None  # a width no 3-D sin-cos embedding has
    large = build_sincos_position_embedding([24, 20, 16], 96, 3)  # 7,680 tokens: read without trying every grid
    assert sincos_patch_grid(large, 3) == (24, 20, 16)
    assert sincos_patch_grid(build_sincos_position_embedding([8, 32], 64, 2), 2) == (8, 32)


@pytest.mark.parametrize("spatial_dims, img_size", [(2, (128, 512)), (3, (32, 64, 128))])
def test_a_network_of_the_mae_s_own_anisotropic_grid_gets_the_embedding_as_it_is(spatial_dims, img_size):
    """A square or cube number of tokens does not make a grid isotropic: the classifier knows its grid, and a plain
    ``ViT`` (no ``feat_size``) with as many tokens takes the embedding unchanged."""
    mae = _trained_mae(steps=0, img_size=img_size, spatial_dims=spatial_dims, cls_token=True)
    for network in (ViTClassifier(1, img_size, 16, num_classes=14, num_layers=12, spatial_dims=spatial_dims,
                                  **TINY_ENCODER),
                    ViT(1, img_size, 16, num_layers=12, spatial_dims=spatial_dims, **TINY_ENCODER)):
        report = load_mae_encoder(network, mae.state_dict())
        assert not report.interpolated, type(network).__name__
        assert torch.equal(network.patch_embedding.position_embeddings, mae.encoder.patch_embedding.position_embeddings)


@pytest.mark.parametrize(
    "mae_size, unetr_size",
    [((32, 64, 128), 64), ((32, 32, 64), (64, 32, 32))],
    ids=["anisotropic grid, cube token count", "same token count, other grid"],
)
def test_position_embedding_of_another_grid_is_resampled_even_with_as_many_tokens(mae_size, unetr_size):
    mae = tiny_mae(img_size=mae_size, num_layers=12)
    unetr = _unetr(img_size=unetr_size)
    report = load_mae_encoder(unetr, mae.state_dict())
    assert "patch_embedding.position_embeddings" in report.interpolated
    source = mae.encoder.patch_embedding.position_embeddings.detach()
    expected = interpolate_position_embedding(source, unetr.feat_size, mae.grid_size)
    torch.testing.assert_close(unetr.vit.patch_embedding.position_embeddings.detach(), expected)


def test_partial_load_is_refused_unless_asked(tmp_path):
    state = tiny_mae(img_size=32, num_layers=12).state_dict()
    del state["encoder.blocks.3.mlp.linear1.weight"]
    unetr = _unetr()
    with pytest.raises(ValueError, match="blocks.3.mlp.linear1.weight"):
        load_mae_encoder(unetr, state)
    torch.save(state, tmp_path / "mae.pt")
    with pytest.raises(ValueError, match=f"partial load of the MAE encoder in {tmp_path / 'mae.pt'}: pre-train with"):
        load_mae_encoder(unetr, tmp_path / "mae.pt")
    report = load_mae_encoder(unetr, state, strict=False)
    assert list(report.missing) == ["blocks.3.mlp.linear1.weight"]


def test_encoder_tensors_the_target_lacks_are_refused():
    """qkv biases of a qkv_bias=True MAE have no place in a qkv_bias=False UNETR: not silently dropped."""
    state = tiny_mae(img_size=32, num_layers=12, qkv_bias=True).state_dict()
    with pytest.raises(ValueError, match=r"blocks.0.attn.qkv.bias.*qkv_bias=True"):
        load_mae_encoder(_unetr(), state)
    report = load_mae_encoder(_unetr(), state, strict=False)
    assert len([k for k in report.missing if k.endswith("qkv.bias")]) == 12
    unetr = UNETR(1, 14, 32, feature_size=8, qkv_bias=True, **TINY_ENCODER)
    assert not load_mae_encoder(unetr, state).missing


def test_class_token_of_the_mae_is_skipped_for_unetr():
    report = load_mae_encoder(_unetr(), tiny_mae(img_size=32, num_layers=12, cls_token=True).state_dict())
    assert "cls_token" in report.skipped and not report.missing


def test_mismatched_width_or_channels_is_refused():
    with pytest.raises(ValueError, match="shape"):
        load_mae_encoder(_unetr(in_channels=4), tiny_mae(img_size=32, num_layers=12).state_dict())


def test_3d_mae_without_class_token_into_a_classifier_needs_strict_false():
    state = tiny_mae(img_size=32, num_layers=12).state_dict()
    vit = ViT(1, 32, 16, num_layers=12, classification=True, **TINY_ENCODER)
    with pytest.raises(ValueError, match="cls_token"):
        load_mae_encoder(vit, state)
    assert list(load_mae_encoder(vit, state, strict=False).missing) == ["cls_token"]


def test_wrapped_checkpoints_and_plain_encoder_state(tmp_path):
    mae = tiny_mae(img_size=32, num_layers=12)
    ddp_style = {"module." + k: v for k, v in mae.state_dict().items()}
    torch.save({"model": ddp_style, "epoch": 3}, tmp_path / "ckpt.pt")
    assert not load_mae_encoder(_unetr(), tmp_path / "ckpt.pt").missing
    assert not load_mae_encoder(_unetr(), mae.encoder.state_dict()).missing
    assert not load_mae_encoder(_unetr(), _unetr().state_dict()).missing  # a UNETR checkpoint ("vit.*")


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_mae_encoder(_unetr(), tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_mae_encoder(_unetr(), tmp_path / "bad.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 64)  # a header length far beyond the file
    with pytest.raises(ValueError, match="Cannot read MAE checkpoint .*bad.safetensors"):
        load_mae_encoder(_unetr(), tmp_path / "bad.safetensors")
    with pytest.raises(TypeError, match="ViT"):
        load_mae_encoder(torch.nn.Linear(2, 2), {})


def test_a_pt_checkpoint_loads_without_the_safetensors_package(tmp_path, monkeypatch):
    """A bundle's required packages do not list safetensors (the zoo installs only those): only a .safetensors file
    needs it, and its absence is said."""
    torch.save(tiny_mae(img_size=32, num_layers=12).state_dict(), tmp_path / "mae.pt")
    monkeypatch.setitem(sys.modules, "safetensors", None)  # import safetensors raises ImportError
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    assert not load_mae_encoder(_unetr(), tmp_path / "mae.pt").missing
    (tmp_path / "mae.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ImportError, match="reading .*mae.safetensors needs the safetensors package"):
        load_mae_encoder(_unetr(), tmp_path / "mae.safetensors")


def test_handler_loads_when_attached(tmp_path):
    mae = tiny_mae(img_size=32, num_layers=12)
    torch.save(mae.state_dict(), tmp_path / "mae.pt")
    unetr = _unetr()
    loader = MAEEncoderLoader(str(tmp_path / "mae.pt"), unetr)
    loader.attach(Engine(lambda e, b: None))
    assert len(loader.report.loaded) == len(mae.encoder.state_dict())
    assert torch.equal(unetr.vit.blocks[5].attn.qkv.weight, mae.encoder.blocks[5].attn.qkv.weight)


def test_the_handler_says_when_the_mae_is_that_of_an_unfinished_pre_training(tmp_path, caplog):
    """The pre-training writes its MAE every epoch: fine-tuning from the MAE of a stopped pre-training is warned of,
    with the epochs it had; a finished one is logged as such."""
    torch.save(tiny_mae(img_size=32, num_layers=12).state_dict(), tmp_path / "mae.pt")
    pretraining = Engine(lambda engine, batch: None)
    for done, expected in ((37, "stopped after 37 of its 800 epochs"), (800, "a finished pre-training (800 epochs)")):
        pretraining.state.iteration, pretraining.state.epoch_length, pretraining.state.max_epochs = done * 2, 2, 800
        torch.save({"trainer": pretraining.state_dict()}, tmp_path / "mae_checkpoint.pt")
        caplog.clear()
        with caplog.at_level(logging.INFO):
            loader = MAEEncoderLoader(str(tmp_path / "mae.pt"), _unetr(),
                                      pretraining_checkpoint=str(tmp_path / "mae_checkpoint.pt"))
            loader.attach(Engine(lambda e, b: None))
        assert expected in caplog.text
        assert ("WARNING" in caplog.text) == (done < 800)


def test_encoder_files_that_cannot_be_used_say_why(tmp_path):
    from monai.networks.nets import UNETR

    unetr = UNETR(1, 14, 32, feature_size=8, **TINY_ENCODER)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"is empty \(0 bytes\)"):
        load_mae_encoder(unetr, empty)
    mae_2d = tiny_mae(img_size=32, spatial_dims=2, num_layers=12)
    with pytest.raises(ValueError, match=r"holds a 2-D encoder .* the network is 3-D"):
        load_mae_encoder(unetr, mae_2d.state_dict())
