import pytest
import torch
from monai.networks.nets import UNETR, ViT

from shared.networks.mae import MAEReconstructionNet, MaskedAutoencoderViT
from shared.networks.patches import expand_patch_mask, patchify
from tests.helpers import TINY_DECODER, TINY_ENCODER, tiny_mae


@pytest.mark.parametrize(
    "spatial_dims,in_channels,img_size,num_patches",
    [(3, 1, 32, 8), (3, 4, (32, 48, 16), 6), (2, 1, 64, 16), (2, 3, (32, 64), 8)],
)
def test_output_shapes(spatial_dims, in_channels, img_size, num_patches):
    net = tiny_mae(in_channels, img_size, spatial_dims)
    spatial = (img_size,) * spatial_dims if isinstance(img_size, int) else img_size
    x = torch.rand(2, in_channels, *spatial)
    out = net(x)
    assert out["loss"].shape == () and torch.isfinite(out["loss"])
    assert out["pred"].shape == (2, num_patches, in_channels * 16**spatial_dims)
    assert out["mask"].shape == (2, num_patches) and out["mask"].dtype == torch.bool
    assert out["reconstruction"].shape == x.shape


@pytest.mark.parametrize("mask_ratio,expected", [(0.75, 162), (0.875, 189), (0.125, 27), (0.5, 108)])
def test_mask_ratio_is_the_exact_hidden_fraction(mask_ratio, expected):
    net = tiny_mae(img_size=96, mask_ratio=mask_ratio)
    mask = net.random_masking(5, "cpu")
    assert mask.sum(dim=1).tolist() == [expected] * 5
    assert not torch.equal(mask[0], mask[1])  # independent per sample


def test_encoder_sees_the_visible_patches_only():
    net = tiny_mae(img_size=(64, 64, 32), mask_ratio=0.75)  # 32 patches, 8 visible
    mask = net.random_masking(2, "cpu")
    assert net.forward_encoder(torch.rand(2, 1, 64, 64, 32), mask).shape == (2, 8, TINY_ENCODER["hidden_size"])
    net = tiny_mae(img_size=(64, 64, 32), cls_token=True)
    assert net.forward_encoder(torch.rand(2, 1, 64, 64, 32), mask).shape == (2, 9, TINY_ENCODER["hidden_size"])


def test_visible_patch_content_only_reaches_the_encoder_through_visible_positions():
    """Changing hidden patches of the input must not change the prediction (the encoder never sees them)."""
    net = tiny_mae(img_size=32).eval()
    x = torch.rand(1, 1, 32, 32, 32)
    mask = torch.tensor([[True, False, True, True, False, True, True, True]])
    y = x.clone()
    y[..., :16, :16, :16] += 1.0  # patch 0 is hidden
    torch.testing.assert_close(net(x, mask)["pred"], net(y, mask)["pred"])
    y = x.clone()
    y[..., :16, :16, 16:] += 1.0  # patch 1 is visible
    assert not torch.allclose(net(x, mask)["pred"], net(y, mask)["pred"])


def test_loss_ignores_visible_patches():
    net = tiny_mae(img_size=32)
    x = torch.rand(2, 1, 32, 32, 32)
    mask = net.random_masking(2, "cpu")
    pred = torch.rand(2, 8, 16**3)
    loss = net.forward_loss(x, pred, mask)
    worse_visible = pred + 10.0 * (~mask).unsqueeze(-1)
    torch.testing.assert_close(net.forward_loss(x, worse_visible, mask), loss)
    worse_hidden = pred + 10.0 * mask.unsqueeze(-1)
    assert net.forward_loss(x, worse_hidden, mask) > loss + 50
    perfect = patchify(x, net.patch_size)
    assert net.forward_loss(x, perfect, mask) == 0


def test_given_mask_is_used():
    net = tiny_mae(img_size=(64, 32, 32))
    mask = net.random_masking(2, "cpu")
    assert torch.equal(net(torch.rand(2, 1, 64, 32, 32), mask)["mask"], mask)


def test_a_mask_of_another_ratio_or_shape_is_refused():
    """With more hidden patches than the network's count the encoder would see hidden ones; with fewer, visible ones
    would be replaced by mask tokens: neither is silent."""
    net = tiny_mae(img_size=(64, 32, 32), mask_ratio=0.75)  # 16 patches, 12 hidden
    x = torch.rand(2, 1, 64, 32, 32)
    mask = net.random_masking(2, "cpu")
    for wrong in (mask.clone().fill_(True), mask & (torch.arange(16) < 8)):
        with pytest.raises(ValueError, match=r"hides \[.*\] of 16 patches per image; this network hides 12"):
            net(x, wrong)
    with pytest.raises(ValueError, match=r"the mask is \(1, 16\); expected \(2, 16\)"):
        net(x, mask[:1])


def test_norm_pix_loss_normalises_each_channel_of_each_patch():
    net = tiny_mae(in_channels=2, img_size=32, norm_pix_loss=True)
    x = torch.rand(2, 2, 32, 32, 32)
    x[:, 1] = 100 * x[:, 1] + 50  # a channel on another scale
    target = net.normalize_patches(patchify(x, net.patch_size))
    per_channel = net.split_channels(target)
    torch.testing.assert_close(per_channel.mean(-1), torch.zeros(per_channel.shape[:3]), atol=1e-4, rtol=0)
    std = per_channel.std(-1, unbiased=False)
    torch.testing.assert_close(std, torch.ones(per_channel.shape[:3]), atol=1e-3, rtol=0)
    # predicting the normalised target exactly gives zero loss and reconstructs the image
    mask = net.random_masking(2, "cpu")
    assert net.forward_loss(x, target, mask) == 0
    torch.testing.assert_close(net.reconstruct(x, target), x, rtol=1e-4, atol=1e-3)


def test_every_channel_is_reconstructed():
    net = tiny_mae(in_channels=4, img_size=32)
    out = net(torch.rand(1, 4, 32, 32, 32))
    assert out["reconstruction"].shape[1] == 4
    assert net.decoder_pred.out_features == 4 * 16**3


def test_backward_reaches_encoder_and_decoder():
    net = tiny_mae(img_size=32, cls_token=True)
    net(torch.rand(2, 1, 32, 32, 32))["loss"].backward()
    assert net.encoder.patch_embedding.patch_embeddings.weight.grad.abs().sum() > 0
    assert net.cls_token.grad.abs().sum() > 0
    assert net.mask_token.grad.abs().sum() > 0
    assert not net.encoder.patch_embedding.position_embeddings.requires_grad  # fixed sin-cos


def test_the_class_token_goes_through_the_decoder():
    """As in the reference MAE the class token is decoded with the patches (its prediction dropped after): the loss
    reaches the encoder's last output at the class token, which a ViT classifier reads (it was cut before the
    decoder, so pre-training never trained that output)."""
    net = tiny_mae(img_size=32, cls_token=True)
    images = torch.rand(2, 1, 32, 32, 32)
    mask = net.random_masking(2, "cpu")
    latent = net.forward_encoder(images, mask).detach().requires_grad_()
    pred = net.forward_decoder(latent, mask)
    assert pred.shape == (2, net.num_patches, 16**3)
    net.forward_loss(images, pred, mask).backward()
    assert latent.grad[:, 0].abs().sum() > 0


@pytest.mark.parametrize("cls_token", [False, True])
def test_evaluation_is_deterministic_with_dropout(cls_token):
    """MONAI's fused attention drops attention weights in eval() too; with dropout the unfused path is taken."""
    net = tiny_mae(img_size=32, dropout_rate=0.3, cls_token=cls_token).eval()
    assert not any(b.attn.use_flash_attention for b in [*net.encoder.blocks, *net.decoder_blocks])
    x, mask = torch.rand(2, 1, 32, 32, 32), net.random_masking(2, "cpu")
    torch.testing.assert_close(net(x, mask)["pred"], net(x, mask)["pred"], rtol=0, atol=0)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_runs_under_bf16_autocast(spatial_dims):
    """MONAI's MaskedAutoEncoderViT fails here ("Index put requires the source and destination dtypes match")."""
    net = tiny_mae(img_size=32, spatial_dims=spatial_dims, cls_token=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(torch.rand(2, 1, *(32,) * spatial_dims))
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_forward_creates_no_host_side_tensor():
    """On the meta device any CPU-side tensor (or .item() host sync) in the forward pass raises."""
    with torch.device("meta"):
        net = tiny_mae(img_size=(32, 48, 32), cls_token=True, norm_pix_loss=True)
    out = net(torch.empty(2, 1, 32, 48, 32, device="meta"))
    assert all(v.device.type == "meta" for v in out.values())


def test_attention_uses_scaled_dot_product_attention():
    net = tiny_mae(img_size=32)
    assert all(b.attn.use_flash_attention for b in [*net.encoder.blocks, *net.decoder_blocks])
    eager = tiny_mae(img_size=32, use_flash_attention=False)
    eager.load_state_dict(net.state_dict())
    x, mask = torch.rand(2, 1, 32, 32, 32), net.random_masking(2, "cpu")
    torch.testing.assert_close(net(x, mask)["pred"], eager(x, mask)["pred"], rtol=1e-4, atol=1e-5)


def test_encoder_loads_strictly_into_monai_vit_and_unetr():
    net = tiny_mae(img_size=32, num_layers=12)
    encoder_state = net.encoder.state_dict()
    unetr = UNETR(1, 14, 32, feature_size=8, **TINY_ENCODER)
    unetr.vit.load_state_dict(encoder_state, strict=True)
    vit = ViT(1, 32, 16, num_layers=12, **TINY_ENCODER)
    vit.load_state_dict(encoder_state, strict=True)
    for key, value in encoder_state.items():
        assert torch.equal(unetr.vit.state_dict()[key], value), key
        assert torch.equal(vit.state_dict()[key], value), key


def test_rejects_bad_configuration():
    with pytest.raises(ValueError, match="spatial_dims"):
        tiny_mae(spatial_dims=1)
    with pytest.raises(ValueError, match="must divide"):
        tiny_mae(img_size=40)
    with pytest.raises(ValueError, match="at least one"):
        tiny_mae(img_size=32, mask_ratio=0.99)


def test_decoder_puts_each_token_back_at_its_grid_position():
    """Without decoder blocks, the prediction of a hidden patch is the mask token plus its position's embedding, and
    of a visible patch its encoded token plus its position's embedding: both hold only if the decoder restores the
    grid order of the tokens it received as [visible..., hidden...]."""
    decoder = {**TINY_DECODER, "decoder_num_layers": 0}
    net = MaskedAutoencoderViT(1, (64, 32, 32), 16, num_layers=2, **TINY_ENCODER, **decoder).eval()  # 16 patches
    images = torch.rand(2, 1, 64, 32, 32)
    mask = net.random_masking(2, "cpu")
    with torch.no_grad():
        latent = net.forward_encoder(images, mask)
        pred = net.forward_decoder(latent, mask)
        position = net.decoder_pos_embed[0]
        for b in range(2):
            hidden, visible = mask[b].nonzero().flatten(), (~mask[b]).nonzero().flatten()
            expected_hidden = net.decoder_pred(net.decoder_norm(net.mask_token[0, 0] + position[hidden]))
            expected_visible = net.decoder_pred(net.decoder_norm(net.decoder_embed(latent[b]) + position[visible]))
            torch.testing.assert_close(pred[b, hidden], expected_hidden)
            torch.testing.assert_close(pred[b, visible], expected_visible)


def test_reconstruction_net_shows_the_masked_input_and_keeps_visible_patches_as_given():
    net = MAEReconstructionNet(2, 32, 16, num_layers=2, **TINY_ENCODER, **TINY_DECODER).eval()
    images = torch.rand(2, 2, 32, 32, 32)
    mask = net.random_masking(2, "cpu")
    hidden = expand_patch_mask(mask, net.patch_size, net.img_size).expand_as(images)
    with torch.no_grad():
        out = net(images, mask)
        predicted = MaskedAutoencoderViT.forward(net, images, mask)["reconstruction"]
    masked_input, reconstruction = out[:, :2], out[:, 2:]
    assert out.shape == (2, 4, 32, 32, 32)
    assert torch.equal(masked_input[~hidden], images[~hidden]) and (masked_input[hidden] == 0).all()
    assert torch.equal(reconstruction[~hidden], images[~hidden])
    torch.testing.assert_close(reconstruction[hidden], predicted[hidden])


@pytest.mark.parametrize("spatial_dims,norm_pix_loss,cls_token", [(3, True, False), (3, False, True), (2, True, True)])
def test_reconstruction_net_scripts_with_torchscript(spatial_dims, norm_pix_loss, cls_token):
    """The model zoo's CI scripts ``network_def`` (``ckpt_export`` without tracing): the scripted network keeps the
    parameter names (existing weights load) and gives exactly the eager outputs, which are the composition of
    :class:`MaskedAutoencoderViT`'s outputs that the reconstruction network has always returned."""
    img_size, patch = (32, 16) if spatial_dims == 3 else (48, 8)
    args = dict(in_channels=2, img_size=img_size, patch_size=patch, num_layers=2, spatial_dims=spatial_dims,
                norm_pix_loss=norm_pix_loss, cls_token=cls_token, **TINY_ENCODER, **TINY_DECODER)
    net = MAEReconstructionNet(**args).eval()
    MaskedAutoencoderViT(**args).load_state_dict(net.state_dict(), strict=True)  # the same weights, both ways
    scripted = torch.jit.script(net)
    assert list(scripted.state_dict()) == list(net.state_dict())
    images = torch.rand(2, 2, *(img_size,) * spatial_dims)
    mask = net.random_masking(2, "cpu")
    with torch.no_grad():
        for given in (mask, None):  # a given mask, and one drawn in the forward from the same seed
            torch.manual_seed(7)
            eager = net(images, given)
            torch.manual_seed(7)
            assert torch.equal(scripted(images, given), eager)
            torch.manual_seed(7)
            base = MaskedAutoencoderViT.forward(net, images, given)
            hidden = expand_patch_mask(base["mask"], net.patch_size, net.img_size)
            expected = torch.cat([images.masked_fill(hidden, 0.0), torch.where(hidden, base["reconstruction"], images)],
                                 dim=1)
            assert torch.equal(eager, expected)
    with pytest.raises(torch.jit.Error, match=r"the mask is \(1, \d+\); expected \(2, \d+\)"):
        scripted(images, mask[:1])
    with pytest.raises(torch.jit.Error, match=r"the mask hides \[\d+\] of \d+ patches per image"):
        scripted(images, torch.zeros_like(mask))
