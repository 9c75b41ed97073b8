"""Patch grid helpers shared by the masked autoencoder, the masking transform and the encoder transfer.

A ``spatial_dims``-D image of shape ``(B, C, *spatial)`` is cut into non-overlapping patches of ``patch_size``.
Patches are numbered in row-major order of the patch grid (first spatial axis slowest), which is the order in which
MONAI's ``PatchEmbeddingBlock`` flattens its convolution output. Inside a patch the values are ordered
``(channel, p1, p2[, p3])``, which is the order of the flattened weight of that convolution, so that
``patchify(x) @ conv.weight.flatten(1).T + conv.bias`` equals the convolutional patch embedding.

:func:`patchify`, :func:`unpatchify` and :func:`expand_patch_mask` compile with TorchScript (the masked autoencoder's
forward calls them and the model zoo scripts it), so their sizes are ``list[int]`` to TorchScript; called from Python
they take any sequence of ints.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["grid_size", "num_masked_patches", "patchify", "unpatchify", "expand_patch_mask", "shape_text"]


def shape_text(shape: list[int]) -> str:
    """A shape as Python prints a tuple, e.g. ``(2, 216)``, also under TorchScript (which would print a list)."""
    return "(" + ", ".join([str(size) for size in shape]) + ("," if len(shape) == 1 else "") + ")"


def _prod(values: list[int]) -> int:
    """The product of ints (``math.prod``, which TorchScript lacks)."""
    result = 1
    for value in values:
        result *= value
    return result


def _grid(img_size: list[int], patch_size: list[int]) -> list[int]:
    """:func:`grid_size` as a list, compiled by TorchScript.

    Raises:
        ValueError: when the sizes differ in dimensions or a patch size does not divide the image size.
    """
    if len(img_size) != len(patch_size):
        raise ValueError(f"img_size {shape_text(img_size)} and patch_size {shape_text(patch_size)} differ in "
                         "dimensions.")
    for i, p in zip(img_size, patch_size):
        if i % p != 0:
            raise ValueError(f"patch_size {shape_text(patch_size)} must divide img_size {shape_text(img_size)}.")
    return [i // p for i, p in zip(img_size, patch_size)]


def grid_size(img_size: Sequence[int], patch_size: Sequence[int]) -> tuple[int, ...]:
    """Number of patches along each spatial axis.

    Args:
        img_size: spatial size of the image, e.g. ``(96, 96, 96)``.
        patch_size: spatial size of a patch, e.g. ``(16, 16, 16)``.

    Raises:
        ValueError: when a patch size does not divide the image size.
    """
    return tuple(_grid(list(img_size), list(patch_size)))


def num_masked_patches(num_patches: int, mask_ratio: float) -> int:
    """The number of hidden patches: ``round(mask_ratio * num_patches)``.

    ``mask_ratio`` is the fraction of patches that are hidden from the encoder (0.75 hides three patches in four).
    The network and the masking transform both use this function, so they always agree. The reference MAEs hide
    ``N - int(N * (1 - mask_ratio))``, which differs by one patch only where ``mask_ratio * N`` is not a whole number
    (never for the bundles' 0.75 of 196, 216 or 512 patches).

    Raises:
        ValueError: when no patch, or every patch, would be hidden.
    """
    num_masked = int(round(mask_ratio * num_patches))
    if not 0 < num_masked < num_patches:
        raise ValueError(
            f"mask_ratio {mask_ratio} hides {num_masked} of {num_patches} patches; at least one patch must be hidden "
            "and at least one visible."
        )
    return num_masked


def patchify(images: torch.Tensor, patch_size: list[int]) -> torch.Tensor:
    """Cut images into flattened patches.

    Args:
        images: ``(B, C, *spatial)`` with every spatial size divisible by its patch size.
        patch_size: patch size per spatial axis.

    Returns:
        ``(B, N, C * prod(patch_size))`` where ``N`` is the number of patches, in row-major grid order, each patch
        flattened in ``(channel, p1, p2[, p3])`` order.
    """
    patch_size = list(patch_size)
    batch, channels, spatial = images.shape[0], images.shape[1], list(images.shape[2:])
    grid = _grid(spatial, patch_size)
    spatial_dims = len(spatial)
    split_shape = [batch, channels]
    for g, p in zip(grid, patch_size):
        split_shape.extend([g, p])
    grid_axes = [2 + 2 * i for i in range(spatial_dims)]
    patch_axes = [3 + 2 * i for i in range(spatial_dims)]
    patches = images.reshape(split_shape).permute([0] + grid_axes + [1] + patch_axes)
    return patches.reshape(batch, _prod(grid), channels * _prod(patch_size))


def unpatchify(patches: torch.Tensor, patch_size: list[int], img_size: list[int]) -> torch.Tensor:
    """Exact inverse of :func:`patchify`.

    Args:
        patches: ``(B, N, C * prod(patch_size))``.
        patch_size: patch size per spatial axis.
        img_size: spatial size of the image the patches came from.

    Returns:
        ``(B, C, *img_size)``.
    """
    patch_size, img_size = list(patch_size), list(img_size)
    grid = _grid(img_size, patch_size)
    spatial_dims = len(grid)
    batch = patches.shape[0]
    channels = patches.shape[-1] // _prod(patch_size)
    x = patches.reshape([batch] + grid + [channels] + patch_size)
    # axes of x: 0 batch, 1..d grid, d+1 channel, d+2..2d+1 patch; interleave grid and patch axes again
    order = [0, spatial_dims + 1]
    for i in range(spatial_dims):
        order.extend([1 + i, spatial_dims + 2 + i])
    return x.permute(order).reshape([batch, channels] + img_size)


def expand_patch_mask(mask: torch.Tensor, patch_size: list[int], img_size: list[int]) -> torch.Tensor:
    """Turn a per-patch mask into a per-pixel one.

    Args:
        mask: ``(B, N)`` bool, True where a patch is hidden.
        patch_size: patch size per spatial axis.
        img_size: spatial size of the image.

    Returns:
        ``(B, 1, *img_size)`` bool.
    """
    per_pixel = mask.unsqueeze(-1).expand(-1, -1, _prod(list(patch_size)))
    return unpatchify(per_pixel, patch_size, img_size)
