"""Reconstruction pictures for MAE pre-training: masked input, reconstruction and original, side by side."""

from __future__ import annotations

import os
from collections.abc import Sequence

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.utils import ensure_tuple_rep
from PIL import Image

from .patches import expand_patch_mask

__all__ = ["reconstruction_panel", "ReconstructionSnapshotHandler"]


def _slices(volume: torch.Tensor, num_slices: int) -> list[torch.Tensor]:
    """2D pictures of a ``(*spatial)`` tensor: itself in 2D, ``num_slices`` evenly spaced planes of the last axis
    (axial for RAS volumes) in 3D."""
    if volume.dim() == 2:
        return [volume]
    depth = volume.shape[-1]
    positions = np.linspace(0, depth - 1, num_slices + 2)[1:-1].round().astype(int)
    return [volume[..., p] for p in positions]


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


class ReconstructionSnapshotHandler:
    """Every ``interval`` epochs, save a :func:`reconstruction_panel` of the first sample of the last iteration as
    ``<output_dir>/reconstruction_epoch<NNNN>.png`` and, when a ``summary_writer`` is given, to TensorBoard.

    Only rank 0 writes under ``torch.distributed``. Needs a trainer built with ``decollate=False`` whose network
    returns the dict of :class:`MaskedAutoencoderViT`.

    Args:
        output_dir: folder for the PNG files.
        patch_size: the network's patch size.
        interval: epochs between pictures.
        num_slices: slices per channel of 3D images.
        summary_writer: optional ``torch.utils.tensorboard.SummaryWriter``.
        tag: TensorBoard tag.
        min_tile_size: the PNG shows each picture enlarged (nearest neighbour) to at least this height.
    """

    def __init__(
        self,
        output_dir: str,
        patch_size: Sequence[int] | int,
        interval: int = 1,
        num_slices: int = 3,
        summary_writer=None,
        tag: str = "reconstruction (masked | reconstructed | original)",
        min_tile_size: int = 128,
    ) -> None:
        self.output_dir = output_dir
        self.patch_size = patch_size
        self.interval = interval
        self.num_slices = num_slices
        self.summary_writer = summary_writer
        self.tag = tag
        self.min_tile_size = min_tile_size

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Engine) -> None:
        if idist.get_rank() != 0:
            return
        output = engine.state.output
        if not isinstance(output, dict) or not isinstance(output.get("pred"), dict):
            raise TypeError("ReconstructionSnapshotHandler needs decollate=False and an MAE network output dict.")
        panel = reconstruction_panel(
            output["image"][0], output["pred"]["reconstruction"][0], output["pred"]["mask"][0],
            self.patch_size, self.num_slices,
        )
        os.makedirs(self.output_dir, exist_ok=True)
        picture = Image.fromarray(panel)
        zoom = max(1, -(-self.min_tile_size // output["image"].shape[2]))  # small crops are shown enlarged
        picture = picture.resize((picture.width * zoom, picture.height * zoom), Image.NEAREST)
        picture.save(os.path.join(self.output_dir, f"reconstruction_epoch{engine.state.epoch:04d}.png"))
        if self.summary_writer is not None:
            self.summary_writer.add_image(self.tag, panel[None], global_step=engine.state.epoch, dataformats="CHW")
            self.summary_writer.flush()
