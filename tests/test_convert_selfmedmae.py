"""tools/zoo/convert_selfmedmae.py: official SelfMedMAE MAE3D / UNETR3D checkpoints -> this project's / MONAI's
networks.

The official checkpoints are imitated with state dicts that carry the official key names and shapes (timm ``Block``s,
``PatchEmbed3D``, ``MAE3D``, ``ViTBackbone`` + ``UNETR_decoder``) at small widths. The official encoder's forward pass
is re-written here from its definition (channels-last patchify, per-token Conv3d, class token with a zero position
embedding, pre-norm blocks, LayerNorm eps 1e-6) to check that the converted network computes the same thing.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.networks.blocks.pos_embed_utils import build_sincos_position_embedding
from monai.networks.nets import UNETR

from shared.networks.encoder_transfer import interpolate_position_embedding, load_mae_encoder, sincos_patch_grid
from shared.networks.mae import MaskedAutoencoderViT
from shared.networks.patches import patchify, unpatchify
from tools.zoo.convert_selfmedmae import (
    NotSelfMedMAECheckpointError,
    convert_checkpoint,
    convert_state_dict,
    load_official_checkpoint,
    official_to_project_patch_order,
    set_layer_norm_eps,
)

REPO = Path(__file__).resolve().parents[1]
D, HEADS, MLP = 48, 4, 96  # tiny encoder
DD, DHEADS = 24, 2  # tiny decoder
PATCH = 16


def _block(prefix: str, width: int, mlp: int, qkv_bias: bool = True) -> dict[str, torch.Tensor]:
    """One timm ``Block``'s tensors under the official names, random but well-scaled."""
    state = {
        f"{prefix}norm1.weight": 1 + 0.1 * torch.randn(width),
        f"{prefix}norm1.bias": 0.1 * torch.randn(width),
        f"{prefix}attn.qkv.weight": torch.randn(3 * width, width) / math.sqrt(width),
        f"{prefix}attn.proj.weight": torch.randn(width, width) / math.sqrt(width),
        f"{prefix}attn.proj.bias": 0.1 * torch.randn(width),
        f"{prefix}norm2.weight": 1 + 0.1 * torch.randn(width),
        f"{prefix}norm2.bias": 0.1 * torch.randn(width),
        f"{prefix}mlp.fc1.weight": torch.randn(mlp, width) / math.sqrt(width),
        f"{prefix}mlp.fc1.bias": 0.1 * torch.randn(mlp),
        f"{prefix}mlp.fc2.weight": torch.randn(width, mlp) / math.sqrt(mlp),
        f"{prefix}mlp.fc2.bias": 0.1 * torch.randn(width),
    }
    if qkv_bias:
        state[f"{prefix}attn.qkv.bias"] = 0.1 * torch.randn(3 * width)
    return state


def _official_encoder(in_chans: int, depth: int, num_tokens: int, qkv_bias: bool = True) -> dict[str, torch.Tensor]:
    state = {
        "encoder.patch_embed.proj.weight": torch.randn(D, in_chans, *(PATCH,) * 3) / math.sqrt(in_chans * PATCH**3),
        "encoder.patch_embed.proj.bias": 0.1 * torch.randn(D),
        "encoder.cls_token": 0.02 * torch.randn(1, 1, D),
        "encoder.norm.weight": 1 + 0.1 * torch.randn(D),
        "encoder.norm.bias": 0.1 * torch.randn(D),
    }
    for i in range(depth):
        state.update(_block(f"encoder.blocks.{i}.", D, MLP, qkv_bias))
    return state


def official_mae3d_state(in_chans=1, img=32, depth=2, decoder_depth=1, qkv_bias=True) -> dict[str, torch.Tensor]:
    """State dict with the keys and shapes of the official ``MAE3D(MAEViTEncoder, MAEViTDecoder)``."""
    n = (img // PATCH) ** 3
    state = _official_encoder(in_chans, depth, n, qkv_bias)
    state.update(
        {
            "encoder_pos_embed": torch.randn(1, n, D),
            "decoder_pos_embed": torch.randn(1, n, DD),
            "encoder_to_decoder.weight": torch.randn(DD, D) / math.sqrt(D),
            "encoder_to_decoder.bias": 0.1 * torch.randn(DD),
            "mask_token": 0.02 * torch.randn(1, 1, DD),
            "decoder.norm.weight": 1 + 0.1 * torch.randn(DD),
            "decoder.norm.bias": 0.1 * torch.randn(DD),
            "decoder.head.weight": torch.randn(in_chans * PATCH**3, DD) / math.sqrt(DD),
            "decoder.head.bias": 0.1 * torch.randn(in_chans * PATCH**3),
        }
    )
    for i in range(decoder_depth):
        state.update(_block(f"decoder.blocks.{i}.", DD, 4 * DD, qkv_bias))
    return state


def official_unetr3d_state(in_chans=1, num_classes=14, img=32, feature_size=8) -> dict[str, torch.Tensor]:
    """State dict with the keys and shapes of the official ``UNETR3D(ViTBackbone, UNETR_decoder)``.

    The official ``UNETR_decoder`` is assembled from MONAI's UNETR blocks under MONAI's attribute names, so its
    tensors are those of a MONAI ``UNETR`` without ``vit.``, under ``decoder.``.
    """
    n = (img // PATCH) ** 3
    state = _official_encoder(in_chans, 12, n)
    state["encoder.pos_embed"] = 0.02 * torch.randn(1, n + 1, D)
    cnn = UNETR(in_chans, num_classes, img, feature_size=feature_size, hidden_size=D, mlp_dim=MLP, num_heads=HEADS)
    for key, value in cnn.state_dict().items():
        if not key.startswith("vit."):
            state[f"decoder.{key}"] = torch.randn_like(value)
    return state


def official_encoder_forward(state, images, visible_ids, num_heads=HEADS):
    """The official ``MAEViTEncoder`` on the visible patches (``visible_ids``: (B, V) in any order), from its
    definition: channels-last patchify, Conv3d per token, class token with zero position embedding, timm blocks."""
    b, c = images.shape[:2]
    grid = [s // PATCH for s in images.shape[2:]]
    x = images.reshape(b, c, grid[0], PATCH, grid[1], PATCH, grid[2], PATCH)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, math.prod(grid), PATCH**3 * c)  # (p, p, p, C) per token
    x = torch.gather(x, 1, visible_ids[..., None].expand(-1, -1, x.shape[-1]))
    v = x.shape[1]
    tokens = x.reshape(b * v, PATCH, PATCH, PATCH, c).permute(0, 4, 1, 2, 3)
    weight, bias = state["encoder.patch_embed.proj.weight"], state["encoder.patch_embed.proj.bias"]
    tokens = F.conv3d(tokens, weight, bias, stride=PATCH)
    tokens = tokens.reshape(b, v, -1)
    pos = torch.gather(state["encoder_pos_embed"].expand(b, -1, -1), 1, visible_ids[..., None].expand(-1, -1, D))
    tokens = torch.cat([state["encoder.cls_token"].expand(b, -1, -1), tokens], 1)
    tokens = tokens + torch.cat([torch.zeros(b, 1, D), pos], 1)
    depth = len({k.split(".")[2] for k in state if k.startswith("encoder.blocks.")})
    for i in range(depth):
        p = f"encoder.blocks.{i}."
        h = F.layer_norm(tokens, (D,), state[p + "norm1.weight"], state[p + "norm1.bias"], eps=1e-6)
        qkv = F.linear(h, state[p + "attn.qkv.weight"], state.get(p + "attn.qkv.bias"))
        q, k, vv = qkv.reshape(b, -1, 3, num_heads, D // num_heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (D // num_heads) ** -0.5).softmax(-1)
        h = (attn @ vv).transpose(1, 2).reshape(b, -1, D)
        tokens = tokens + F.linear(h, state[p + "attn.proj.weight"], state[p + "attn.proj.bias"])
        h = F.layer_norm(tokens, (D,), state[p + "norm2.weight"], state[p + "norm2.bias"], eps=1e-6)
        h = F.gelu(F.linear(h, state[p + "mlp.fc1.weight"], state[p + "mlp.fc1.bias"]))
        h = F.linear(h, state[p + "mlp.fc2.weight"], state[p + "mlp.fc2.bias"])
        tokens = tokens + h
    return F.layer_norm(tokens, (D,), state["encoder.norm.weight"], state["encoder.norm.bias"], eps=1e-6)


def _mae_from(result) -> MaskedAutoencoderViT:
    net = MaskedAutoencoderViT(**result.network_kwargs)
    net.load_state_dict(result.state_dict, strict=True)
    return net.eval()


def _mask(net, batch=2):
    torch.manual_seed(1)
    return net.random_masking(batch, "cpu")


# ---------------------------------------------------------------------------------------------------------------


def test_mae3d_converts_into_a_strict_qkv_bias_network_with_every_tensor_in_place():
    state = official_mae3d_state(depth=2, decoder_depth=2)
    result = convert_state_dict(state, num_heads=HEADS, decoder_num_heads=DHEADS)
    assert result.kind == "mae3d"
    kw = result.network_kwargs
    assert kw["qkv_bias"] is True and kw["cls_token"] is True
    assert (kw["in_channels"], kw["img_size"], kw["patch_size"], kw["hidden_size"], kw["mlp_dim"]) == (
        1, [32, 32, 32], [16, 16, 16], D, MLP,
    )
    decoder = (kw["num_layers"], kw["decoder_hidden_size"], kw["decoder_num_layers"], kw["decoder_mlp_dim"])
    assert decoder == (2, DD, 2, 4 * DD)
    net = _mae_from(result)  # strict=True
    with pytest.raises(RuntimeError, match="qkv.bias"):  # MONAI's default qkv_bias=False cannot take them
        MaskedAutoencoderViT(**{**kw, "qkv_bias": False}).load_state_dict(result.state_dict, strict=True)
    sd = net.state_dict()
    pairs = {
        "encoder.patch_embed.proj.weight": "encoder.patch_embedding.patch_embeddings.weight",
        "encoder_pos_embed": "encoder.patch_embedding.position_embeddings",
        "encoder.cls_token": "cls_token",
        "encoder.blocks.1.attn.qkv.weight": "encoder.blocks.1.attn.qkv.weight",
        "encoder.blocks.1.attn.qkv.bias": "encoder.blocks.1.attn.qkv.bias",
        "encoder.blocks.0.attn.proj.weight": "encoder.blocks.0.attn.out_proj.weight",
        "encoder.blocks.0.mlp.fc1.bias": "encoder.blocks.0.mlp.linear1.bias",
        "encoder.blocks.1.mlp.fc2.weight": "encoder.blocks.1.mlp.linear2.weight",
        "encoder.norm.weight": "encoder.norm.weight",
        "encoder_to_decoder.weight": "decoder_embed.weight",
        "mask_token": "mask_token",
        "decoder_pos_embed": "decoder_pos_embed",
        "decoder.blocks.1.attn.qkv.bias": "decoder_blocks.1.attn.qkv.bias",
        "decoder.blocks.0.norm2.bias": "decoder_blocks.0.norm2.bias",
        "decoder.norm.bias": "decoder_norm.bias",
        "decoder.head.weight": "decoder_pred.weight",  # one channel: no permutation
    }
    for official, ours in pairs.items():
        assert torch.equal(sd[ours], state[official]), official
        assert result.mapping[official] == ours
    assert set(result.mapping) == set(state)  # every official tensor is used
    assert all(".norm_cross_attn." in k for k in result.filled)
    assert torch.equal(sd["encoder.blocks.0.norm_cross_attn.weight"], torch.ones(D))
    assert any("qkv_bias=True" in n for n in result.notes)


def test_converted_encoder_computes_the_official_encoder_for_four_channels():
    state = official_mae3d_state(in_chans=4, depth=2)
    net = set_layer_norm_eps(_mae_from(convert_state_dict(state, num_heads=HEADS, decoder_num_heads=DHEADS)))
    images = torch.randn(2, 4, 32, 32, 32)
    mask = _mask(net)
    with torch.no_grad():
        ours = net.forward_encoder(images, mask)
        official = official_encoder_forward(state, images, net.visible_ids(mask))
    torch.testing.assert_close(ours, official, atol=1e-5, rtol=1e-5)


def test_decoder_output_rows_are_permuted_from_channels_last_for_four_channels():
    in_chans, patch_voxels = 4, PATCH**3
    state = official_mae3d_state(in_chans=in_chans)
    net = _mae_from(convert_state_dict(state, num_heads=HEADS, decoder_num_heads=DHEADS))
    features = torch.randn(1, 8, DD)  # decoder features of the 8 patches of a 32^3 volume
    with torch.no_grad():
        official_out = F.linear(features, state["decoder.head.weight"], state["decoder.head.bias"])
        ours_out = net.decoder_pred(features)
    # the official head's output read as the official layout: token -> (p1, p2, p3, C)
    official_img = official_out.reshape(1, 2, 2, 2, PATCH, PATCH, PATCH, in_chans)
    official_img = official_img.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(1, in_chans, 32, 32, 32)
    ours_img = unpatchify(ours_out, (PATCH,) * 3, (32, 32, 32))  # the project's (C, p1, p2, p3) layout
    assert torch.equal(ours_img, official_img)
    assert not torch.equal(ours_out, official_out)  # four channels: a real permutation
    # and the permutation maps the official patchify of an image onto the project's
    images = torch.randn(1, in_chans, 32, 32, 32)
    official_patches = images.reshape(1, in_chans, 2, PATCH, 2, PATCH, 2, PATCH).permute(0, 2, 4, 6, 3, 5, 7, 1)
    official_patches = official_patches.reshape(1, 8, -1)
    order = official_to_project_patch_order(in_chans, patch_voxels)
    assert torch.equal(official_patches[..., order], patchify(images, (PATCH,) * 3))


def test_qkv_bias_false_removes_biases_exactly_when_the_query_bias_is_zero(caplog):
    state = official_mae3d_state(depth=2)
    for key in [k for k in state if k.endswith("attn.qkv.bias")]:
        state[key][: state[key].shape[0] // 3] = 0  # no query bias: the removal is exact
    with_bias = set_layer_norm_eps(_mae_from(convert_state_dict(state, num_heads=HEADS, decoder_num_heads=DHEADS)))
    result = convert_state_dict(state, num_heads=HEADS, decoder_num_heads=DHEADS, qkv_bias=False)
    assert result.network_kwargs["qkv_bias"] is False
    assert not any(k.endswith("qkv.bias") for k in result.state_dict)
    assert "encoder.blocks.0.attn.qkv.bias" in result.dropped
    assert any("NOT identical" in n for n in result.notes)
    without = set_layer_norm_eps(_mae_from(result))
    images = torch.randn(2, 1, 32, 32, 32)
    mask = _mask(with_bias)
    with torch.no_grad():
        torch.testing.assert_close(without(images, mask)["pred"], with_bias(images, mask)["pred"], atol=1e-5, rtol=1e-4)


def test_converted_mae_encoder_transfers_into_a_qkv_bias_unetr():
    state = official_mae3d_state(depth=12)
    result = convert_state_dict(state, num_heads=HEADS, decoder_num_heads=DHEADS)
    unetr = UNETR(1, 14, 32, feature_size=8, hidden_size=D, mlp_dim=MLP, num_heads=HEADS, qkv_bias=True)
    report = load_mae_encoder(unetr, result.state_dict)
    assert not report.missing
    assert torch.equal(unetr.vit.blocks[11].attn.qkv.bias, state["encoder.blocks.11.attn.qkv.bias"])
    assert torch.equal(unetr.vit.patch_embedding.position_embeddings, state["encoder_pos_embed"])


def official_sincos_table(grid: tuple[int, int, int], width: int) -> torch.Tensor:
    """The official MAE3D's fixed sin-cos table (``build_3d_sincos_position_embedding``), from its definition: an 'ij'
    mesh of (h, w, d), ``omega_k = 1 / 10000^(k / (width / 6))``, channels ``[sin h, cos h, sin w, cos w, sin d,
    cos d]`` (MONAI puts w first)."""
    mesh = torch.meshgrid(*(torch.arange(size, dtype=torch.float32) for size in grid), indexing="ij")
    pos_dim = width // 6
    omega = 1.0 / 10000 ** (torch.arange(pos_dim, dtype=torch.float32) / pos_dim)
    channels = []
    for axis in mesh:
        angles = axis.flatten()[:, None] * omega[None]
        channels += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(channels, dim=1)[None]


def test_an_official_sincos_table_gives_its_grid_to_the_conversion_and_the_encoder_transfer():
    """An MAE3D pre-trained on a 32x64x128 ROI (2x4x8 patches, 64 tokens): the conversion reads that ROI from the table
    (it took the 64 tokens for 4x4x4) and refuses a transposed img_size; the transfer resamples the table from its
    own grid onto a fine-tuning network's (it took it for 4x4x4)."""
    table = official_sincos_table((2, 4, 8), D)
    assert not torch.allclose(table, build_sincos_position_embedding([2, 4, 8], D, 3).data, atol=1e-2)
    assert sincos_patch_grid(table, 3) == (2, 4, 8)
    state = {**official_mae3d_state(depth=12), "encoder_pos_embed": table, "decoder_pos_embed": torch.randn(1, 64, DD)}
    result = convert_state_dict(state, num_heads=HEADS, decoder_num_heads=DHEADS)
    assert result.network_kwargs["img_size"] == [32, 64, 128]
    with pytest.raises(NotSelfMedMAECheckpointError, match=r"sin-cos table of the \(2, 4, 8\) grid"):
        convert_state_dict(state, num_heads=HEADS, decoder_num_heads=DHEADS, img_size=[128, 64, 32])
    unetr = UNETR(1, 14, (64, 64, 32), feature_size=8, hidden_size=D, mlp_dim=MLP, num_heads=HEADS, qkv_bias=True)
    report = load_mae_encoder(unetr, result.state_dict)
    assert "of the (2, 4, 8) grid resampled to the (4, 4, 2) patch grid" in report.summary()
    expected = interpolate_position_embedding(table, (4, 4, 2), (2, 4, 8))
    assert torch.equal(unetr.vit.patch_embedding.position_embeddings.data, expected)


def test_unetr3d_converts_into_a_strict_qkv_bias_unetr():
    state = official_unetr3d_state(in_chans=4, num_classes=3)
    result = convert_state_dict(state, num_heads=HEADS)
    assert result.kind == "unetr3d"
    kw = result.network_kwargs
    shape = (kw["in_channels"], kw["out_channels"], kw["img_size"], kw["feature_size"], kw["qkv_bias"])
    assert shape == (4, 3, [32] * 3, 8, True)
    unetr = UNETR(**kw)
    unetr.load_state_dict(result.state_dict, strict=True)
    sd = unetr.state_dict()
    assert torch.equal(sd["vit.patch_embedding.position_embeddings"], state["encoder.pos_embed"][:, 1:])
    assert torch.equal(sd["vit.blocks.7.attn.qkv.weight"], state["encoder.blocks.7.attn.qkv.weight"])
    assert torch.equal(sd["vit.blocks.7.attn.qkv.bias"], state["encoder.blocks.7.attn.qkv.bias"])
    assert torch.equal(sd["vit.blocks.3.attn.out_proj.weight"], state["encoder.blocks.3.attn.proj.weight"])
    assert torch.equal(sd["vit.patch_embedding.patch_embeddings.weight"], state["encoder.patch_embed.proj.weight"])
    decoder_keys = [k for k in state if k.startswith("decoder.")]
    assert decoder_keys
    for key in decoder_keys:
        assert torch.equal(sd[key[len("decoder.") :]], state[key]), key
    assert "encoder.cls_token" in result.dropped
    with pytest.raises(RuntimeError, match="qkv.bias"):
        UNETR(**{**kw, "qkv_bias": False}).load_state_dict(result.state_dict, strict=True)
    with torch.no_grad():
        assert unetr.eval()(torch.randn(1, 4, 32, 32, 32)).shape == (1, 3, 32, 32, 32)


def test_checkpoint_file_is_read_safely_and_written_atomically(tmp_path):
    state = official_mae3d_state(in_chans=4)
    src = tmp_path / "checkpoint_0799.pth.tar"
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))])
    torch.save({"epoch": 800, "arch": "vit_base", "state_dict": state, "optimizer": opt.state_dict(),
                "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 0}}, src)
    dst = tmp_path / "out" / "mae.pt"
    result = convert_checkpoint(src, dst, num_heads=HEADS, decoder_num_heads=DHEADS)
    assert result.meta == {"read": "torch.load(weights_only=True)", "epoch": 800, "arch": "vit_base"}
    loaded = torch.load(dst, weights_only=True)
    MaskedAutoencoderViT(**result.network_kwargs).load_state_dict(loaded, strict=True)
    config = __import__("json").loads(dst.with_suffix(".json").read_text())
    assert config["network"] == "shared.networks.mae.MaskedAutoencoderViT"
    assert config["network_kwargs"]["qkv_bias"] is True
    assert not [p for p in dst.parent.iterdir() if p.name.startswith(".tmp_")]


def test_an_existing_output_is_kept_as_a_previous_file(tmp_path, caplog):
    """Converting into a bundle's trained ``models/model.pt`` keeps that model (and its ``.json``) beside it, and the
    log says where, as a training run does."""
    src = tmp_path / "checkpoint_0799.pth.tar"
    torch.save({"state_dict": official_mae3d_state()}, src)
    dst = tmp_path / "models" / "model.pt"
    dst.parent.mkdir()
    dst.write_bytes(b"a trained best model")
    dst.with_suffix(".json").write_text('{"earlier": true}')
    with caplog.at_level(logging.WARNING, logger="convert_selfmedmae"):
        convert_checkpoint(src, dst, num_heads=HEADS, decoder_num_heads=DHEADS)
    (kept,) = dst.parent.glob("model.previous-*.pt")
    (kept_json,) = dst.parent.glob("model.previous-*.json")
    assert kept.read_bytes() == b"a trained best model" and kept_json.read_text() == '{"earlier": true}'
    assert isinstance(torch.load(dst, weights_only=True), dict)
    assert f"{dst} exists: the earlier file is kept as {kept}" in caplog.text


def _rewrite_pickle(path: Path, old: bytes, new: bytes) -> None:
    """Replace bytes in the data.pkl of a torch zip file (to imitate a file written with numpy 1)."""
    with zipfile.ZipFile(path) as z:
        items = {n: z.read(n) for n in z.namelist()}
    name = next(n for n in items if n.endswith("data.pkl"))
    assert old in items[name]
    items[name] = items[name].replace(old, new)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for n, data in items.items():
            z.writestr(n, data)


@pytest.mark.parametrize("numpy1_names", [False, True])
def test_numpy_scalars_and_namespace_are_allowed_as_data(tmp_path, numpy1_names):
    import argparse

    src = tmp_path / "best_model.pth.tar"
    torch.save({"epoch": 5, "state_dict": official_unetr3d_state(), "metric": np.float64(0.81),
                "args": argparse.Namespace(lr=1e-4)}, src)
    if numpy1_names and np.__version__.startswith("2"):
        _rewrite_pickle(src, b"cnumpy._core.multiarray\nscalar\n", b"cnumpy.core.multiarray\nscalar\n")
    state, meta = load_official_checkpoint(src)
    assert "data-only types allowed" in meta["read"] and meta["epoch"] == 5
    assert "encoder.pos_embed" in state


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_other_python_objects_are_refused_with_an_explanation(tmp_path):
    src = tmp_path / "evil.pth.tar"
    with open(src, "wb") as f:
        torch.save({"state_dict": official_mae3d_state(), "x": _Payload()}, f, pickle_module=pickle)
    with pytest.raises(NotSelfMedMAECheckpointError, match="weights_only=False"):
        load_official_checkpoint(src)


def test_clear_errors_for_files_that_are_not_selfmedmae_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError):
        convert_checkpoint(tmp_path / "missing.pth.tar")
    junk = tmp_path / "junk.pth.tar"
    junk.write_bytes(b"this is not a checkpoint\n" * 10)
    with pytest.raises(NotSelfMedMAECheckpointError, match="not a PyTorch checkpoint"):
        convert_checkpoint(junk)
    other = tmp_path / "monai_unetr.pt"
    torch.save(UNETR(1, 2, 32, feature_size=8, hidden_size=D, mlp_dim=MLP, num_heads=HEADS).state_dict(), other)
    with pytest.raises(NotSelfMedMAECheckpointError, match="Not a SelfMedMAE MAE3D checkpoint"):
        convert_checkpoint(other)
    ours = tmp_path / "ours.pt"
    torch.save({"model": {"encoder.norm.weight": torch.ones(3)}}, ours)
    with pytest.raises(NotSelfMedMAECheckpointError):
        convert_checkpoint(ours)
    mae2d = official_mae3d_state()
    mae2d["encoder.patch_embed.proj.weight"] = torch.randn(D, 3, 16, 16)
    with pytest.raises(NotSelfMedMAECheckpointError, match="2D SelfMedMAE"):
        convert_state_dict(mae2d)
    incomplete = official_mae3d_state()
    del incomplete["encoder.norm.bias"]
    with pytest.raises(NotSelfMedMAECheckpointError, match="encoder.norm.bias"):
        convert_state_dict(incomplete, num_heads=HEADS, decoder_num_heads=DHEADS)
    extra = official_mae3d_state()
    extra["encoder.head.weight"] = torch.randn(10, D)
    with pytest.raises(NotSelfMedMAECheckpointError, match="no counterpart"):
        convert_state_dict(extra, num_heads=HEADS, decoder_num_heads=DHEADS)
    with pytest.raises(ValueError, match="divisible"):
        convert_state_dict(official_mae3d_state(), num_heads=5, decoder_num_heads=DHEADS)
    with pytest.raises(NotSelfMedMAECheckpointError, match="unetr3d"):
        convert_state_dict(official_mae3d_state(), kind="unetr3d")


def test_cli_converts_and_says_which_network_to_build(tmp_path):
    src = tmp_path / "checkpoint_0000.pth.tar"
    torch.save({"epoch": 1, "arch": "vit_base", "state_dict": official_mae3d_state()}, src)
    dst = tmp_path / "mae.pt"
    run = subprocess.run(
        [sys.executable, "-m", "tools.zoo.convert_selfmedmae", "convert", str(src), str(dst),
         "--num_heads", str(HEADS), "--decoder_num_heads", str(DHEADS)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "qkv_bias=True" in run.stdout and "MaskedAutoencoderViT(" in run.stdout
    assert dst.is_file() and dst.with_suffix(".json").is_file()
