import pytest
import torch
from monai.networks.blocks import PatchEmbeddingBlock

from shared.networks.patches import grid_size, num_masked_patches, patchify, unpatchify


@pytest.mark.parametrize(
    "shape,patch", [((2, 3, 32, 48), (16, 16)), ((2, 1, 32, 16, 48), (16, 16, 16)), ((1, 4, 8, 12, 4), (4, 2, 4))]
)
def test_round_trip(shape, patch):
    x = torch.randn(shape)
    patches = patchify(x, patch)
    num_patches = torch.Size(grid_size(shape[2:], patch)).numel()
    assert patches.shape == (shape[0], num_patches, shape[1] * torch.Size(patch).numel())
    assert torch.equal(unpatchify(patches, patch, shape[2:]), x)


def test_pixel_order_inside_a_patch_2d():
    """Patch n of grid (gh, gw) holds x[:, :, i*p:(i+1)*p, j*p:(j+1)*p] flattened as (channel, row, column)."""
    x = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).reshape(2, 3, 8, 12)
    patches = patchify(x, (4, 4))  # grid 2 x 3
    for n in range(6):
        i, j = divmod(n, 3)
        expected = x[:, :, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].reshape(2, -1)
        assert torch.equal(patches[:, n], expected)


def test_pixel_order_inside_a_patch_3d():
    x = torch.arange(2 * 2 * 4 * 6 * 8, dtype=torch.float32).reshape(2, 2, 4, 6, 8)
    patches = patchify(x, (2, 3, 4))  # grid 2 x 2 x 2
    for n in range(8):
        i, rest = divmod(n, 4)
        j, k = divmod(rest, 2)
        expected = x[:, :, 2 * i : 2 * i + 2, 3 * j : 3 * j + 3, 4 * k : 4 * k + 4].reshape(2, -1)
        assert torch.equal(patches[:, n], expected)


@pytest.mark.parametrize("spatial_dims,channels", [(2, 3), (3, 2)])
def test_patchify_matches_the_convolutional_patch_embedding(spatial_dims, channels):
    """A linear map on patchify's output must equal the conv the encoder uses; a scrambled patch order fails."""
    img = (16,) * spatial_dims
    embed = PatchEmbeddingBlock(channels, img, 8, hidden_size=12, num_heads=2, pos_embed_type="none",
                                spatial_dims=spatial_dims)
    x = torch.randn(2, channels, *img)
    conv = embed.patch_embeddings
    via_patches = patchify(x, (8,) * spatial_dims) @ conv.weight.flatten(1).T + conv.bias
    torch.testing.assert_close(via_patches, embed(x), rtol=1e-4, atol=1e-5)


def test_num_masked_patches():
    assert num_masked_patches(216, 0.75) == 162
    assert num_masked_patches(196, 0.75) == 147
    assert num_masked_patches(8, 0.125) == 1
    with pytest.raises(ValueError, match="at least one"):
        num_masked_patches(8, 0.01)
    with pytest.raises(ValueError, match="at least one"):
        num_masked_patches(8, 0.99)


def test_grid_size_rejects_indivisible_sizes():
    with pytest.raises(ValueError, match="must divide"):
        grid_size((96, 90), (16, 16))
