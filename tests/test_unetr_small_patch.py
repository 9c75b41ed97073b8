"""UNETR with 8- and 4-voxel patches: shapes, the skips they read, the MAE encoder they take, layer decay, and a bundle
run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.networks.nets import UNETR

from shared.networks.encoder_transfer import load_mae_encoder
from shared.networks.mae import MaskedAutoencoderViT
from shared.networks.unetr_small_patch import UNETRPatch4, UNETRPatch8
from shared.optimizers.layer_decay import param_groups, vit_layer_id
from tests.helpers import BUNDLES, REPO, SEG, TINY_DECODER, TINY_ENCODER, TINY_UNETR, bundle_importable, bundle_run
from tools import synthetic
from tools.zoo.package_bundles import scripts_files

TARGET = "scripts.networks.unetr_small_patch.UNETRPatch8"
TARGET4 = "scripts.networks.unetr_small_patch.UNETRPatch4"


def tiny_unetr8(img_size=48, out_channels: int = 3, **kwargs) -> UNETRPatch8:
    return UNETRPatch8(1, out_channels, img_size, feature_size=8, **TINY_ENCODER, **kwargs)


def tiny_unetr4(img_size=24, out_channels: int = 3, **kwargs) -> UNETRPatch4:
    return UNETRPatch4(1, out_channels, img_size, feature_size=8, **TINY_ENCODER, **kwargs)


def tiny_mae8(img_size=48) -> MaskedAutoencoderViT:
    return MaskedAutoencoderViT(1, img_size, 8, num_layers=12, **TINY_ENCODER, **TINY_DECODER)


def tiny_mae4(img_size=24) -> MaskedAutoencoderViT:
    return MaskedAutoencoderViT(1, img_size, 4, num_layers=12, **TINY_ENCODER, **TINY_DECODER)


@pytest.mark.parametrize("roi", [(48, 48, 48), (32, 48, 16)])
def test_output_has_the_input_size(roi):
    net = tiny_unetr8(roi)
    assert net.feat_size == tuple(side // 8 for side in roi)
    assert net(torch.rand(2, 1, *roi)).shape == (2, 3, *roi)


@pytest.mark.parametrize("roi", [(24, 24, 24), (16, 24, 8)])
def test_patch4_output_has_the_input_size(roi):
    net = tiny_unetr4(roi)
    assert net.feat_size == tuple(side // 4 for side in roi)
    assert net(torch.rand(2, 1, *roi)).shape == (2, 3, *roi)


def test_patch4_bad_sizes_and_skips_are_refused():
    with pytest.raises(ValueError, match="multiple of 4"):
        tiny_unetr4((24, 24, 22))
    with pytest.raises(ValueError, match="skip_blocks"):
        tiny_unetr4(skip_blocks=(4, 8))


def test_2d_output_and_bad_sizes_are_refused():
    net = UNETRPatch8(1, 2, (32, 48), feature_size=8, spatial_dims=2, **TINY_ENCODER)
    assert net(torch.rand(1, 1, 32, 48)).shape == (1, 2, 32, 48)
    with pytest.raises(ValueError, match="multiple of 8"):
        tiny_unetr8((48, 48, 44))
    with pytest.raises(ValueError, match="skip_blocks"):
        tiny_unetr8(skip_blocks=(4, 12))


@pytest.mark.parametrize("config", ["unetr_btcv_seg/configs/train.json", "unetr_btcv_seg/configs/inference.json",
                                    "unetr_brats_seg/configs/train.json", "unetr_brats_seg/configs/inference.json"])
@pytest.mark.parametrize("target, tokens", [(TARGET, (4, 4, 4)), (TARGET4, (8, 8, 8))])
def test_the_bundles_network_def_builds_it_with_one_override(config, target, tokens):
    parser = ConfigParser()
    parser.read_config(BUNDLES / config)
    parser.update({"network_def#_target_": target, "roi_size": [32, 32, 32], **TINY_UNETR})
    with bundle_importable(BUNDLES / config.split("/")[0]):
        net = parser.get_parsed_content("network_def", instantiate=True)
    assert type(net).__name__ == target.rsplit(".", 1)[1] and net.feat_size == tokens


def test_accepts_every_argument_of_the_bundles_unetr():
    arguments = dict(in_channels=1, out_channels=14, img_size=[32, 32, 32], feature_size=8, proj_type="conv",
                     norm_name="instance", res_block=True, conv_block=True, dropout_rate=0.0, qkv_bias=False,
                     spatial_dims=3, save_attn=False, mlp_dim=96, hidden_size=48, num_heads=4)
    UNETR(**arguments)
    net = UNETRPatch8(**arguments)
    assert isinstance(net.vit, type(UNETR(**arguments).vit)) and net.patch_size == (8, 8, 8)


@pytest.mark.parametrize("make, skip_blocks", [(tiny_unetr8, (4, 8)), (tiny_unetr8, (5, 9)), (tiny_unetr4, (6,)),
                                               (tiny_unetr4, (3,))])
def test_decoder_reads_the_skip_blocks_and_the_normed_last_block(make, skip_blocks):
    """Every hidden state the ViT returns is replaced by a leaf; only the skips' and the final output's get a
    gradient from the segmentation."""
    net = make(32, skip_blocks=skip_blocks)
    leaves = {}

    def as_leaves(module, args, output):
        x, hidden = output
        leaves["x"] = x.detach().requires_grad_()
        leaves["hidden"] = [h.detach().requires_grad_() for h in hidden]
        return leaves["x"], leaves["hidden"]

    net.vit.register_forward_hook(as_leaves)
    net(torch.rand(1, 1, 32, 32, 32)).square().sum().backward()
    reached = [i + 1 for i, h in enumerate(leaves["hidden"]) if h.grad is not None and h.grad.abs().sum() > 0]
    assert reached == list(skip_blocks)
    assert leaves["x"].grad.abs().sum() > 0


@pytest.mark.parametrize("make", [tiny_unetr8, tiny_unetr4])
def test_gradients_reach_the_patch_embedding_and_every_block(make):
    net = make(32)
    net(torch.rand(1, 1, 32, 32, 32)).square().sum().backward()
    used = [n for n, _ in net.vit.named_parameters() if "cross_attn" not in n]  # MONAI's blocks carry an unused one
    params = dict(net.vit.named_parameters())
    for name in used:
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name


@pytest.mark.parametrize("config", ["unetr_btcv_seg/configs/train.json", "unetr_brats_seg/configs/inference.json"])
def test_memory_format_keeps_the_default_layout_or_gives_channels_last_with_the_same_output(config):
    outputs = {}
    for memory_format in ("$torch.preserve_format", "$torch.channels_last_3d"):
        parser = ConfigParser()
        parser.read_config(BUNDLES / config)
        parser.update({"network_def#_target_": TARGET, "roi_size": [32, 32, 32], "device": "$torch.device('cpu')",
                       "memory_format": memory_format, **TINY_UNETR})
        torch.manual_seed(0)
        with bundle_importable(BUNDLES / config.split("/")[0]):
            net = parser.get_parsed_content("network")
        weight = net.decoder2.conv_block.conv1.conv.weight
        channels_last = weight.is_contiguous(memory_format=torch.channels_last_3d) and not weight.is_contiguous()
        assert channels_last == (memory_format == "$torch.channels_last_3d")
        in_channels = net.vit.patch_embedding.patch_embeddings.in_channels
        image = torch.rand(1, in_channels, 32, 32, 32, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            outputs[memory_format] = net.eval()(image)
    assert torch.allclose(*outputs.values(), atol=1e-4)


@pytest.mark.parametrize("make_mae, make_unetr", [(tiny_mae8, tiny_unetr8), (tiny_mae4, tiny_unetr4)])
def test_mae_encoder_of_the_same_patch_loads_strictly(make_mae, make_unetr):
    mae, net = make_mae(48), make_unetr(48)
    report = load_mae_encoder(net, mae.state_dict(), strict=True)
    assert report.missing == {} and report.interpolated == {}
    encoder = mae.encoder.state_dict()
    assert sorted(report.loaded) == sorted(net.vit.state_dict())
    for key, value in net.vit.state_dict().items():
        assert torch.equal(value, encoder[key]), key


@pytest.mark.parametrize("mae_patch, make_unetr", [(16, tiny_unetr8), (8, tiny_unetr4)])
def test_mae_encoder_of_another_patch_is_refused(mae_patch, make_unetr):
    mae = MaskedAutoencoderViT(1, 48, mae_patch, num_layers=12, **TINY_ENCODER, **TINY_DECODER)
    with pytest.raises(ValueError, match="patch_embeddings.weight"):
        load_mae_encoder(make_unetr(48), mae.state_dict())


def test_layer_decay_groups_cover_every_parameter_at_its_depth():
    net = tiny_unetr8(32)
    groups = param_groups(net, lr=1.0, layer_decay=0.5)
    grouped = [id(p) for group in groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in net.parameters())
    depth = {name: vit_layer_id(name, "vit.", 12) for name, _ in net.named_parameters()}
    assert depth["vit.patch_embedding.patch_embeddings.weight"] == 0
    assert depth["vit.patch_embedding.position_embeddings"] == 0
    assert {d for n, d in depth.items() if n.startswith("vit.blocks.")} == set(range(1, 13))
    assert depth["vit.blocks.3.attn.qkv.weight"] == 4
    assert all(d == 13 for n, d in depth.items() if not n.startswith(("vit.blocks.", "vit.patch_embedding.")))
    scales = {id(p): group["lr_scale"] for group in groups for p in group["params"]}
    params = dict(net.named_parameters())
    for name, d in depth.items():
        assert scales[id(params[name])] == pytest.approx(0.5 ** (13 - d)), name


def test_packaging_ships_the_module_when_a_config_names_it(tmp_path: Path):
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "scripts").symlink_to(REPO / "shared")
    (bundle / "configs" / "train.json").write_text(f'{{"network_def": {{"_target_": "{TARGET}"}}}}')
    files = scripts_files(bundle)
    expected = {"scripts/networks/unetr_small_patch.py", "scripts/networks/__init__.py", "scripts/__init__.py"}
    assert expected <= set(files)


def test_btcv_training_step_through_the_bundle_cli(tmp_path: Path):
    """One iteration of the BTCV fine-tuning bundle with the network swapped by an override, starting from a patch-4
    MAE encoder (the study's geometry), as a user runs it."""
    data = synthetic.make_btcv(str(tmp_path / "btcv"), num_train=1, num_val=1, num_test=0, shape=(48, 48, 32),
                                body_scale=0.1)
    root = tmp_path / "run"
    (root / "models").mkdir(parents=True)
    torch.save(tiny_mae4(32).state_dict(), root / "models" / "mae.pt")
    overrides = {
        **TINY_UNETR, "network_def#_target_": TARGET4, "roi_size": [32, 32, 32], "bundle_root": str(root),
        "dataset_dir": data, "epochs": 1, "batch_size": 1, "num_samples": 1, "warmup_epochs": 1, "num_workers": 0,
        "val_interval": 2,
    }
    log = bundle_run([SEG / "train.json"], overrides, cwd=root)
    assert re.search(r"MAE encoder from .*mae.pt: loaded 161 encoder tensors", log), log[-3000:]
    assert "NOT loaded" not in log
    assert re.search(r"Epoch\[1\] Complete", log)
    saved = torch.load(root / "models" / "checkpoint.pt", weights_only=True)["model"]
    assert "decoder3.transp_conv.conv.weight" in saved and "decoder4.transp_conv.conv.weight" not in saved
