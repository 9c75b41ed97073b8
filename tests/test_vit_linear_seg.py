"""The linear-head ViT segmenter: shapes, each patch's logits in place, the MAE encoder it takes, layer decay."""

from __future__ import annotations

import pytest
import torch

from shared.networks.encoder_transfer import load_mae_encoder
from shared.networks.mae import MaskedAutoencoderViT
from shared.networks.vit_linear_seg import ViTLinearSeg
from shared.optimizers.layer_decay import param_groups
from tests.helpers import TINY_DECODER, TINY_ENCODER


def tiny_linear_seg(img_size=24, out_channels: int = 3, patch_size: int = 4, **kwargs) -> ViTLinearSeg:
    return ViTLinearSeg(1, out_channels, img_size, patch_size=patch_size, num_layers=2, **TINY_ENCODER, **kwargs)


@pytest.mark.parametrize("roi, patch", [((24, 24, 24), 4), ((16, 24, 8), 4), ((32, 16, 48), 8)])
def test_output_has_the_input_size(roi, patch):
    net = tiny_linear_seg(roi, patch_size=patch)
    assert net.feat_size == tuple(side // patch for side in roi)
    assert net(torch.rand(2, 1, *roi)).shape == (2, 3, *roi)


def test_2d_output_and_a_bad_size_is_refused():
    net = ViTLinearSeg(1, 2, (32, 48), patch_size=8, num_layers=2, spatial_dims=2, **TINY_ENCODER)
    assert net(torch.rand(1, 1, 32, 48)).shape == (1, 2, 32, 48)
    anisotropic = ViTLinearSeg(1, 2, (16, 48), patch_size=(8, 16), num_layers=2, spatial_dims=2, **TINY_ENCODER)
    assert anisotropic(torch.rand(1, 1, 16, 48)).shape == (1, 2, 16, 48)
    with pytest.raises(ValueError, match="must divide img_size"):
        tiny_linear_seg((24, 24, 22))


def test_the_head_puts_each_patch_back_where_the_patch_embedding_took_it_from():
    """The output of the token of patch (i, j, k) lands on that patch's voxels (``unpatchify``), and the patch
    embedding (a strided convolution, flattened) gives that token exactly those voxels."""
    net = tiny_linear_seg((8, 12, 16), out_channels=2, patch_size=4)
    volume = torch.arange(2 * 8 * 12 * 16, dtype=torch.float32).reshape(1, 2, 8, 12, 16)
    patches = volume.reshape(1, 2, 2, 4, 3, 4, 4, 4).permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(1, 24, 2 * 64)
    net.vit.forward = lambda x: (patches, [])  # the head sees the patches themselves
    net.head = torch.nn.Identity()
    assert torch.equal(net(volume[:, :1]), volume)
    embedding = net.vit.patch_embedding.patch_embeddings
    with torch.no_grad():
        embedding.weight.zero_()
        embedding.bias.zero_()
        embedding.weight[0, 0].fill_(1.0)
    image = torch.zeros(1, 1, 8, 12, 16)
    image[..., 4:8, 8:12, 0:4] = 1.0  # patch (1, 2, 0): token 1 * 12 + 2 * 4 + 0 = 20
    assert embedding(image).flatten(2)[0, 0].nonzero().flatten().tolist() == [20]


def test_every_logit_depends_on_its_token_only_through_the_head():
    """Only the ViT mixes patches: the head's gradient of one voxel's logit reaches one token."""
    net = tiny_linear_seg((8, 8, 8))
    tokens = {}

    def keep(module, args, output):
        tokens["x"] = output[0].detach().requires_grad_()
        return tokens["x"], output[1]

    net.vit.register_forward_hook(keep)
    net(torch.rand(1, 1, 8, 8, 8))[0, 1, 5, 2, 7].backward()
    reached = tokens["x"].grad[0].abs().sum(-1).nonzero().flatten().tolist()
    assert reached == [1 * 4 + 0 * 2 + 1]  # voxel (5, 2, 7) lies in patch (1, 0, 1) of the 2x2x2 grid


def test_gradients_reach_the_patch_embedding_and_every_block():
    net = tiny_linear_seg()
    net(torch.rand(1, 1, 24, 24, 24)).square().sum().backward()
    for name, param in net.vit.named_parameters():
        if "cross_attn" not in name:  # MONAI's blocks carry an unused one
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_mae_encoder_of_the_same_patch_loads_strictly_and_another_patch_is_refused():
    net = tiny_linear_seg(32, patch_size=4)
    mae = MaskedAutoencoderViT(1, 32, 4, num_layers=2, **TINY_ENCODER, **TINY_DECODER)
    report = load_mae_encoder(net, mae.state_dict(), strict=True)
    assert report.missing == {} and sorted(report.loaded) == sorted(net.vit.state_dict())
    for key, value in net.vit.state_dict().items():
        assert torch.equal(value, mae.encoder.state_dict()[key]), key
    other = MaskedAutoencoderViT(1, 32, 8, num_layers=2, **TINY_ENCODER, **TINY_DECODER)
    with pytest.raises(ValueError, match="patch_embeddings.weight"):
        load_mae_encoder(net, other.state_dict())


def test_layer_decay_gives_the_head_the_full_rate_and_the_blocks_their_depth():
    net = tiny_linear_seg()
    groups = param_groups(net, lr=1.0, layer_decay=0.5)
    scales = {id(p): group["lr_scale"] for group in groups for p in group["params"]}
    assert sorted(scales) == sorted(id(p) for p in net.parameters())
    assert scales[id(net.head.weight)] == scales[id(net.vit.norm.weight)] == 1.0
    assert scales[id(net.vit.blocks[1].mlp.linear1.weight)] == 0.5
    assert scales[id(net.vit.patch_embedding.patch_embeddings.weight)] == 0.5**3
