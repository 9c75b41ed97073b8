"""A label-free health check of MAE pre-training: is the held-out reconstruction loss below two references?

The references, scored with the MAE's own loss (``forward_loss``, ``norm_pix_loss`` respected) on the same held-out
images and the same fixed masks:

- the untrained MAE: the network at its initialisation; a trained MAE that does not beat it has learnt nothing.
- copy the nearest visible patch: every hidden patch predicted as the spatially nearest visible one (patch-grid
  distance); a trained MAE that does not beat it has learnt less than "images are locally similar".
- the visible mean: every hidden patch predicted as the mean of the image's visible pixels (per channel). With
  ``norm_pix_loss`` any constant prediction scores about 1.0, and the first two references can both score above that
  (an MAE at initialisation predicts noise; neighbouring patches normalised separately can be anti-correlated), so
  an MAE that has collapsed to a constant, e.g. a zeroed decoder, would beat them: this one catches it.

A broken MAE (a decoder that outputs a constant, weights lost, a learning rate of zero, masks misaligned with the
loss) fails at least one of them, and no label is needed to see it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ..networks.patches import grid_size, patchify

__all__ = [
    "MAEHealth",
    "nearest_visible_ids",
    "nearest_visible_patch_baseline",
    "visible_mean_baseline",
    "fixed_masks",
    "reconstruction_loss",
    "baseline_loss",
    "mae_health",
    "held_out_crops",
]


@dataclass(frozen=True)
class MAEHealth:
    """Held-out reconstruction losses of an MAE and of its two references (same images, same masks).

    Attributes:
        trained: the MAE under test.
        untrained: the same architecture at its initialisation.
        nearest_visible: every hidden patch copied from the nearest visible patch.
        visible_mean: every hidden patch predicted as the mean of the visible pixels.
    """

    trained: float
    untrained: float
    nearest_visible: float
    visible_mean: float

    def references(self) -> dict[str, float]:
        """The references by the words that describe them."""
        return {"the untrained MAE": self.untrained, "copying the nearest visible patch": self.nearest_visible,
                "predicting the visible mean": self.visible_mean}

    @property
    def learning(self) -> bool:
        """True when the MAE's loss is below every reference."""
        return all(self.trained < ref for ref in self.references().values())

    def summary(self) -> str:
        """``held-out loss 0.41 (untrained 1.02, nearest-visible-patch 0.63, visible-mean 1.00): learning``, or the
        references it fails to beat."""
        line = (f"held-out loss {self.trained:.4g} (untrained {self.untrained:.4g}, nearest-visible-patch "
                f"{self.nearest_visible:.4g}, visible-mean {self.visible_mean:.4g})")
        if self.learning:
            return line + ": learning"
        failed = [name for name, ref in self.references().items() if self.trained >= ref]
        return line + f": NOT LEARNING, no better than {' nor '.join(failed)}"


def nearest_visible_ids(mask: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """For every patch, the index of the nearest visible patch on the patch grid (itself when visible).

    Distance is Euclidean in patch-grid units; among equally near patches the lowest index wins.

    Args:
        mask: ``(B, N)`` bool, True where a patch is hidden; at least one visible patch per row.
        grid: the patch grid, ``prod(grid) == N``, in the row-major order of :func:`patchify`.

    Returns:
        ``(B, N)`` long.
    """
    axes = [torch.arange(g, device=mask.device, dtype=torch.float32) for g in grid]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(grid))
    distance = torch.cdist(coords, coords)  # (N, N)
    distance = distance.unsqueeze(0).masked_fill(mask.bool().unsqueeze(1), math.inf)
    return distance.argmin(dim=-1)


def nearest_visible_patch_baseline(
    images: torch.Tensor, mask: torch.Tensor, patch_size: Sequence[int]
) -> torch.Tensor:
    """Predict every hidden patch as a copy of the nearest visible patch (see :func:`nearest_visible_ids`).

    Args:
        images: ``(B, C, *spatial)``.
        mask: ``(B, N)`` bool, True where hidden.
        patch_size: patch size per spatial axis.

    Returns:
        ``(B, N, C * prod(patch_size))`` predicted patches in image intensities, in the order of :func:`patchify`
        (visible patches are their own prediction).
    """
    patches = patchify(images.float(), patch_size)
    source = nearest_visible_ids(mask, grid_size(images.shape[2:], patch_size))
    return torch.gather(patches, 1, source.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))


def visible_mean_baseline(images: torch.Tensor, mask: torch.Tensor, patch_size: Sequence[int]) -> torch.Tensor:
    """Predict every patch as the mean of the image's visible pixels, per channel.

    Args:
        images: ``(B, C, *spatial)``.
        mask: ``(B, N)`` bool, True where hidden.
        patch_size: patch size per spatial axis.

    Returns:
        ``(B, N, C * prod(patch_size))`` in image intensities, in the order of :func:`patchify`.
    """
    patches = patchify(images.float(), patch_size)
    batch, num_patches, _ = patches.shape
    per_channel = patches.reshape(batch, num_patches, images.shape[1], -1)
    visible = (~mask.bool()).to(per_channel.dtype)[:, :, None, None]
    mean = (per_channel * visible).sum(dim=(1, 3)) / (visible.sum(dim=(1, 3)) * per_channel.shape[-1])  # (B, C)
    return mean[:, None, :, None].expand_as(per_channel).reshape(patches.shape)


def fixed_masks(num_images: int, num_patches: int, num_masked: int, seed: int = 0) -> torch.Tensor:
    """Random masks that depend on ``seed`` only: ``(num_images, num_patches)`` bool, ``num_masked`` True per row."""
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.rand(num_images, num_patches, generator=generator).argsort(dim=1)[:, :num_masked]
    return torch.zeros(num_images, num_patches, dtype=torch.bool).scatter(1, hidden, True)


def _batches(images: torch.Tensor, masks: torch.Tensor, batch_size: int, device: torch.device):
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size].to(device), masks[start : start + batch_size].to(device)


def _mean_over_batches(losses: list[tuple[float, int]]) -> float:
    """Every image has the same number of hidden patches, so the image-weighted mean of batch losses is the loss of
    the whole set."""
    return sum(loss * n for loss, n in losses) / sum(n for _, n in losses)


@torch.no_grad()
def reconstruction_loss(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, batch_size: int = 4) -> float:
    """The MAE's loss on ``images`` with the given masks, in eval mode (the training mode is restored).

    Args:
        model: a :class:`~shared.networks.mae.MaskedAutoencoderViT`.
        images: ``(B, C, *img_size)``, any device.
        masks: ``(B, N)`` bool, True where hidden, ``model.num_masked`` per row.
        batch_size: images per forward pass.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        losses = []
        for x, m in _batches(images, masks, batch_size, device):
            pred = model.forward_decoder(model.forward_encoder(x, m), m)
            losses.append((model.forward_loss(x, pred, m).item(), len(x)))
    finally:
        model.train(was_training)
    return _mean_over_batches(losses)


@torch.no_grad()
def baseline_loss(
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    baseline: Callable[[torch.Tensor, torch.Tensor, Sequence[int]], torch.Tensor] = nearest_visible_patch_baseline,
    batch_size: int = 4,
) -> float:
    """The MAE's loss (``model.forward_loss``) of a baseline prediction, with the baseline's patches normalised as
    the loss's targets are when ``model.norm_pix_loss``.

    Args:
        model: the MAE whose loss, patch size and ``norm_pix_loss`` are used (its weights are not).
        images: ``(B, C, *img_size)``.
        masks: ``(B, N)`` bool, True where hidden.
        baseline: :func:`nearest_visible_patch_baseline`, :func:`visible_mean_baseline` or another function with
            their arguments.
        batch_size: images per call.
    """
    losses = []
    for x, m in _batches(images, masks, batch_size, torch.device("cpu")):
        pred = baseline(x, m, model.patch_size)
        if model.norm_pix_loss:
            pred = model.normalize_patches(pred)
        losses.append((model.forward_loss(x, pred, m).item(), len(x)))
    return _mean_over_batches(losses)


def mae_health(
    model: nn.Module, images: torch.Tensor, masks: torch.Tensor, untrained_model: nn.Module, batch_size: int = 4
) -> MAEHealth:
    """The held-out losses of :class:`MAEHealth`, all on ``images`` with the same fixed ``masks``.

    Args:
        model: the MAE under test (unwrap DDP first).
        images: ``(B, C, *img_size)`` held-out crops of the MAE's input size.
        masks: ``(B, N)`` bool, True where hidden, ``model.num_masked`` per row (see :func:`fixed_masks`).
        untrained_model: the same architecture at its initialisation.
        batch_size: images per forward pass.
    """
    return MAEHealth(
        trained=reconstruction_loss(model, images, masks, batch_size),
        untrained=reconstruction_loss(untrained_model, images, masks, batch_size),
        nearest_visible=baseline_loss(model, images, masks, nearest_visible_patch_baseline, batch_size),
        visible_mean=baseline_loss(model, images, masks, visible_mean_baseline, batch_size),
    )


def _crops_of(output: Any, key: str) -> list[torch.Tensor]:
    """The ``key`` tensors of a transform's output: one dict, or a list of them (multi-sample crops)."""
    samples = output if isinstance(output, list) else [output]
    return [torch.as_tensor(sample[key]).float() for sample in samples]


def held_out_crops(
    items: Sequence[Mapping[str, Any]],
    transform: Callable[[Mapping[str, Any]], Any],
    num_images: int,
    seed: int = 0,
    key: str = "image",
) -> torch.Tensor:
    """``num_images`` fixed crops of held-out images, made by the pre-training's own preprocessing.

    The first ``num_images`` items are used (more crops per item, by calling ``transform`` again, when there are
    fewer items); ``transform`` is copied and its random state set from ``seed``, so the crops are the same at every
    call and the caller's transform is untouched.

    Args:
        items: held-out datalist items, e.g. ``[{"image": path}]``.
        transform: the pre-training preprocessing (its random crops give the MAE's input size).
        num_images: number of crops wanted.
        seed: random state of the copied transform.
        key: the image key.

    Returns:
        ``(num_images', C, *img_size)`` float32 on the CPU, ``num_images' <= num_images`` (fewer when the items do
        not give enough crops).
    """
    items = list(items)[:num_images]
    if not items:
        return torch.empty(0)
    transform = copy.deepcopy(transform)
    if hasattr(transform, "set_random_state"):
        transform.set_random_state(seed=seed)
    per_item = math.ceil(num_images / len(items))
    crops: list[torch.Tensor] = []
    for item in items:
        item_crops: list[torch.Tensor] = []
        for _ in range(per_item):  # a transform may give fewer crops per call than wanted
            item_crops += _crops_of(transform(dict(item)), key)
            if len(item_crops) >= per_item:
                break
        crops += item_crops[:per_item]
    return torch.stack(crops[:num_images])
