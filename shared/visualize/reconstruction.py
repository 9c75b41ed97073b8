"""Reconstruction pictures for MAE pre-training: masked input, reconstruction and original, side by side."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.utils import ensure_tuple_rep

from ..networks.patches import expand_patch_mask

__all__ = ["reconstruction_panel"]


def _slices(volume: torch.Tensor, num_slices: int) -> list[torch.Tensor]:
    """2D pictures of a ``(*spatial)`` tensor: itself in 2D (``(H, W)``, as the X-ray bundle loads images); in 3D,
    ``num_slices`` evenly spaced planes of the last axis of an RAS volume (axial), each shown as radiologists view
    axial slices: anterior at the top, the patient's right on the left."""
    if volume.dim() == 2:
        return [volume]
    depth = volume.shape[-1]
    positions = np.linspace(0, depth - 1, num_slices + 2)[1:-1].round().astype(int)
    return [_radiological(volume[..., p]) for p in positions]


def _radiological(axial: torch.Tensor) -> torch.Tensor:
    """An RAS axial plane ``(x: left -> right, y: posterior -> anterior)`` as a picture ``(rows: anterior ->
    posterior, columns: right -> left)``."""
    return axial.T.flip(0, 1)


def _to_uint8(picture: torch.Tensor, low: float, high: float) -> np.ndarray:
    scaled = (picture.float().clamp(low, high) - low) / max(high - low, 1e-8)
    return (scaled * 255).round().byte().cpu().numpy()


def reconstruction_panel(
    image: torch.Tensor,
    reconstruction: torch.Tensor,
    mask: torch.Tensor,
    patch_size: Sequence[int] | int,
    num_slices: int = 3,
) -> np.ndarray:
    """A grey picture with one row per (channel, slice): masked input | reconstruction | original.

    The reconstruction shows the predicted hidden patches and the visible patches as given (the MAE paper's
    figures). Each row is scaled to the original's intensity range.

    Args:
        image: ``(C, *spatial)``.
        reconstruction: ``(C, *spatial)``, the network's prediction of every patch.
        mask: ``(N,)`` bool, True where hidden.
        patch_size: patch size.
        num_slices: slices per channel of a 3D image.

    Returns:
        ``(rows * H, 3 * W)`` uint8.
    """
    image, reconstruction = image.detach().float().cpu(), reconstruction.detach().float().cpu()
    spatial = tuple(image.shape[1:])
    hidden = expand_patch_mask(mask.detach().cpu()[None], ensure_tuple_rep(patch_size, len(spatial)), spatial)[0, 0]
    rows = []
    for channel in range(image.shape[0]):
        original = image[channel]
        masked = original.masked_fill(hidden, float(original.min()))
        pasted = torch.where(hidden, reconstruction[channel], original)
        low, high = float(original.min()), float(original.max())
        for m, r, o in zip(_slices(masked, num_slices), _slices(pasted, num_slices), _slices(original, num_slices)):
            rows.append(np.concatenate([_to_uint8(m, low, high), _to_uint8(r, low, high), _to_uint8(o, low, high)], 1))
    return np.concatenate(rows, 0)
