"""Carry a pre-trained MAE encoder into MONAI's ``UNETR`` (segmentation) or ``ViT`` (classification).

What is carried: the patch embedding, the position embedding (interpolated when the target's patch grid differs,
e.g. another ROI; the pre-training grid is read from the fixed sin-cos embedding itself), every transformer block,
the final norm and, for a ``ViT`` classifier, the class token. What is not: the MAE decoder. Every target encoder
tensor must be found in the checkpoint, or the load is refused unless ``strict=False`` is asked for; the returned
:class:`TransferReport` lists what was loaded, skipped and why.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks.pos_embed_utils import build_sincos_position_embedding

__all__ = [
    "TransferReport",
    "read_state_dict",
    "extract_encoder_state",
    "interpolate_position_embedding",
    "isotropic_grid",
    "SINCOS_AXIS_ORDERS",
    "sincos_patch_grid",
    "load_mae_encoder",
]

POSITION_EMBEDDING_KEY = "patch_embedding.position_embeddings"
ENCODER_PREFIXES = ("patch_embedding.", "blocks.", "norm.")
CLS_TOKEN_KEY = "cls_token"
CHECKPOINT_WRAPPER_KEYS = ("model", "network", "state_dict")

logger = logging.getLogger(__name__)


@dataclass
class TransferReport:
    """Which keys a transfer loaded, which it interpolated, which it skipped (with the reason) and which encoder
    keys it could not carry (with the reason): target tensors it could not fill, checkpoint tensors with no place."""

    loaded: list[str] = field(default_factory=list)
    interpolated: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line per interpolated or missing key; skipped keys counted per reason."""
        lines = [f"loaded {len(self.loaded)} encoder tensors"]
        lines += [f"  interpolated {k}: {why}" for k, why in self.interpolated.items()]
        by_reason: dict[str, list[str]] = {}
        for key, why in self.skipped.items():
            by_reason.setdefault(why, []).append(key)
        lines += [f"  skipped {len(keys)} ({why}), e.g. {keys[0]}" for why, keys in by_reason.items()]
        lines += [f"  NOT loaded {k}: {why}" for k, why in self.missing.items()]
        return "\n".join(lines)


def _state_dict_reader(path: str) -> Callable[[str], Any]:
    """What reads the file ``path``: safetensors' ``load_file`` for a ``.safetensors`` file (the package is needed
    only then: it is not among a bundle's required packages, and its absence is an ``ImportError`` naming ``path``),
    else ``torch.load`` with ``weights_only=True``."""
    if not path.endswith(".safetensors"):
        return partial(torch.load, map_location="cpu", weights_only=True)
    try:
        from safetensors.torch import load_file
    except ImportError as e:
        raise ImportError(f"reading {path} needs the safetensors package: pip install safetensors") from e
    return load_file


def read_state_dict(checkpoint: str | os.PathLike | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Read a state dict safely from a ``.pt``/``.pth`` file (``weights_only=True``), a ``.safetensors`` file or a
    mapping; unwrap ``{"model": ...}``-style checkpoints and DDP's ``module.`` prefix.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file holds no state dict.
    """
    if isinstance(checkpoint, Mapping):
        state = dict(checkpoint)
        source = "the given mapping"
    else:
        source = os.fspath(checkpoint)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"MAE checkpoint {source!r} does not exist.")
        if os.path.getsize(source) == 0:
            raise ValueError(f"MAE checkpoint {source!r} is empty (0 bytes): an interrupted copy or download?")
        read = _state_dict_reader(source)
        try:
            state = read(source)
        except Exception as e:  # torch and safetensors raise several types for corrupt or unsafe files
            raise ValueError(f"Cannot read MAE checkpoint {source!r} ({type(e).__name__}: {e})") from e
        if not isinstance(state, Mapping):
            raise ValueError(f"MAE checkpoint {source!r} holds a {type(state).__name__}, not a state dict: save the "
                             "network's state_dict() (torch.save(model.state_dict(), path)).")
    for wrapper in CHECKPOINT_WRAPPER_KEYS:
        if isinstance(state.get(wrapper), Mapping):
            state = dict(state[wrapper])
            break
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{source} does not hold a state dict of tensors (keys: {list(state)[:5]}...).")
    return {k.removeprefix("module."): v for k, v in state.items()}


def extract_encoder_state(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Pick the encoder tensors out of a state dict, named as in ``monai.networks.nets.ViT``.

    Accepts a :class:`MaskedAutoencoderViT` state dict (``encoder.*`` and ``cls_token``), a ``UNETR`` state dict
    (``vit.*``) or a plain ViT/encoder state dict.

    Returns:
        the encoder state and, for every other key, why it was left out.
    """
    for prefix in ("encoder.", "vit."):
        if any(k.startswith(prefix) for k in state):
            break
    else:
        prefix = ""
    encoder, skipped = {}, {}
    for key, value in state.items():
        name = key[len(prefix) :] if key.startswith(prefix) else key
        if name.startswith(ENCODER_PREFIXES) or name == CLS_TOKEN_KEY:
            encoder[name] = value
        else:
            skipped[key] = "not part of the encoder (MAE decoder or task head)"
    return encoder, skipped


def isotropic_grid(num_tokens: int, spatial_dims: int) -> tuple[int, ...] | None:
    """``(side,) * spatial_dims`` with ``num_tokens`` tokens, when that is a square (2-D) or a cube (3-D); else None."""
    side = round(num_tokens ** (1 / spatial_dims))
    return (side,) * spatial_dims if side**spatial_dims == num_tokens else None


def interpolate_position_embedding(
    position_embedding: torch.Tensor, target_grid: tuple[int, ...], source_grid: tuple[int, ...] | None = None
) -> torch.Tensor:
    """Resample a ``(1, N, C)`` patch position embedding to another patch grid.

    Args:
        position_embedding: ``(1, prod(source_grid), C)``.
        target_grid: patch grid of the target network, e.g. ``(8, 8, 8)``.
        source_grid: patch grid the embedding was made for; taken as isotropic (``N ** (1 / dims)`` per axis)
            when None.

    Returns:
        ``(1, prod(target_grid), C)``, (bi/tri)linearly interpolated.
    """
    dims = len(target_grid)
    num_tokens, channels = position_embedding.shape[1:]
    if source_grid is None:
        source_grid = isotropic_grid(num_tokens, dims)
        if source_grid is None:
            raise ValueError(
                f"Cannot infer the patch grid of a {num_tokens}-token position embedding; pass source_grid."
            )
    grid = position_embedding.reshape(1, *source_grid, channels).movedim(-1, 1).float()
    mode = "bilinear" if dims == 2 else "trilinear"
    resized = F.interpolate(grid, size=tuple(target_grid), mode=mode, align_corners=False)
    return resized.movedim(1, -1).reshape(1, math.prod(target_grid), channels).to(position_embedding.dtype)


def _target_vit(network: nn.Module) -> nn.Module:
    """The ViT inside ``network``: ``UNETR.vit``, or the network itself for a ``ViT``."""
    vit = getattr(network, "vit", network)
    if not hasattr(vit, "patch_embedding") or not hasattr(vit, "blocks"):
        raise TypeError(f"{type(network).__name__} is neither a MONAI ViT nor a network with a `.vit` encoder.")
    return vit


#: The order of the axes' blocks of channels in a fixed sin-cos embedding: MONAI's ``build_sincos_position_embedding``
#: (width first), and for 3-D also the paper's code (``build_3d_sincos_position_embedding`` of its MAE3D, height
#: first), whose tables ``tools/zoo/convert_selfmedmae.py`` copies as they are.
SINCOS_AXIS_ORDERS = {2: ((1, 0),), 3: ((1, 0, 2), (0, 1, 2))}


def _sincos_embedding(grid: tuple[int, ...], channels: int, axis_order: tuple[int, ...]) -> torch.Tensor:
    """``(N, channels)``: MONAI's fixed sin-cos embedding of ``grid`` with its axis blocks put in ``axis_order``."""
    spatial_dims = len(grid)
    built = build_sincos_position_embedding(list(grid), channels, spatial_dims).data[0]
    block = channels // spatial_dims
    monai_order = SINCOS_AXIS_ORDERS[spatial_dims][0]
    starts = [monai_order.index(axis) * block for axis in axis_order]
    return torch.cat([built[:, start : start + block] for start in starts], dim=1)


def sincos_patch_grid(position_embedding: torch.Tensor, spatial_dims: int) -> tuple[int, ...] | None:
    """The patch grid whose fixed sin-cos embedding ``position_embedding`` is, or None.

    The MAE's encoder keeps a fixed sin-cos embedding of its patch grid, so the grid it was pre-trained on can be read
    from the checkpoint, where the number of tokens alone is ambiguous (``(2, 4, 8)`` and ``(4, 4, 4)``). Such an
    embedding writes the channels of each axis as one block (in one of :data:`SINCOS_AXIS_ORDERS`); the number of
    distinct rows of an axis's block is its size. The grid found is confirmed by building its embedding.

    Args:
        position_embedding: ``(1, N, C)``.
        spatial_dims: 2 or 3.

    Returns:
        the grid (``N`` tokens), or None when the embedding is no such sin-cos embedding (e.g. a learned one).
    """
    num_tokens, channels = position_embedding.shape[1:]
    if channels % (2 * spatial_dims):
        return None
    values = position_embedding.detach().float().cpu()[0]
    block = channels // spatial_dims
    for axis_order in SINCOS_AXIS_ORDERS[spatial_dims]:
        grid = [0] * spatial_dims
        for index, axis in enumerate(axis_order):
            grid[axis] = len(torch.unique(values[:, index * block : (index + 1) * block], dim=0))
        if math.prod(grid) != num_tokens:
            continue
        if torch.allclose(_sincos_embedding(tuple(grid), channels, axis_order), values, atol=1e-2):  # 1e-2: bf16
            return tuple(grid)
    return None


def _guessed_grid(vit: nn.Module) -> tuple[int, ...] | None:
    """A guess at the target's patch grid from its number of position tokens: :func:`isotropic_grid`."""
    weight = getattr(vit.patch_embedding.patch_embeddings, "weight", None)
    if weight is None:  # a perceptron patch embedding: no spatial kernel to count dimensions on
        return None
    return isotropic_grid(vit.patch_embedding.position_embeddings.shape[1], weight.dim() - 2)


def _fit_position_embedding(
    value: torch.Tensor,
    target: torch.Tensor,
    source_grid: tuple[int, ...] | None,
    target_grid: tuple[int, ...] | None,
    guessed_grid: tuple[int, ...] | None,
    report: TransferReport,
) -> torch.Tensor:
    """The checkpoint's position embedding ``value`` on the target's patch grid.

    Args:
        value: the checkpoint's ``(1, N, C)`` embedding.
        target: the network's.
        source_grid: the checkpoint's grid; when None, the grid whose sin-cos embedding ``value`` is (an MAE's).
        target_grid: the network's grid, when known (``feat_size`` or given).
        guessed_grid: an isotropic guess at the network's grid, used only when the token counts differ.
        report: where a resampling is recorded.
    """
    if value.shape[-1] != target.shape[-1]:
        return value  # another width: refused by the caller
    grid = target_grid or guessed_grid
    if source_grid is None and grid is not None:
        source_grid = sincos_patch_grid(value, len(grid))
    if source_grid is not None and target_grid is not None:
        same_grid = tuple(source_grid) == tuple(target_grid)
    else:  # without the network's grid, as many tokens are taken as the same grid
        same_grid = value.shape == target.shape
    if same_grid:
        return value
    if grid is None:
        raise ValueError(f"Cannot infer the patch grid of the network ({target.shape[1]} position tokens, the "
                         f"checkpoint {value.shape[1]}); pass target_grid.")
    source = "" if source_grid is None else f" of the {tuple(source_grid)} grid"
    report.interpolated[POSITION_EMBEDDING_KEY] = f"{value.shape[1]} tokens{source} resampled to the {grid} patch grid"
    return interpolate_position_embedding(value, grid, source_grid)


def _describe(checkpoint: object) -> str:
    return "the given mapping" if isinstance(checkpoint, Mapping) else os.fspath(checkpoint)


def _check_spatial_dims(encoder_state: Mapping[str, torch.Tensor], vit: nn.Module, checkpoint: object) -> None:
    """A 2-D encoder cannot initialise a 3-D network, nor the reverse: say so instead of a list of shape errors."""
    key = "patch_embedding.patch_embeddings.weight"
    if key not in encoder_state:
        return
    target = getattr(vit.patch_embedding.patch_embeddings, "weight", None)
    if target is None:  # a perceptron patch embedding: no spatial kernel to compare
        return
    source = _describe(checkpoint)
    dims, target_dims = encoder_state[key].dim() - 2, target.dim() - 2
    if dims != target_dims:
        raise ValueError(f"{source} holds a {dims}-D encoder (patch embedding {tuple(encoder_state[key].shape)}); the "
                         f"network is {target_dims}-D. Pre-train with the {target_dims}-D MAE of this bundle.")


def load_mae_encoder(
    network: nn.Module,
    checkpoint: str | os.PathLike | Mapping[str, torch.Tensor],
    strict: bool = True,
    source_grid: tuple[int, ...] | None = None,
    target_grid: tuple[int, ...] | None = None,
) -> TransferReport:
    """Load a pre-trained MAE encoder into a MONAI ``UNETR`` or ``ViT``, in place.

    Args:
        network: ``monai.networks.nets.UNETR`` (its ``.vit`` is filled) or ``monai.networks.nets.ViT``.
        checkpoint: a file written by the MAE pre-training (full MAE state dict, exported encoder, or a MONAI
            checkpoint dict with a ``model``/``network``/``state_dict`` entry), or such a mapping.
        strict: refuse (``ValueError``) when a target encoder tensor (the class token included) cannot be filled,
            or when the checkpoint has encoder tensors the network lacks (e.g. qkv biases for a ``qkv_bias=False``
            network).
        source_grid: patch grid of the checkpoint's position embedding; when None, the grid whose fixed sin-cos
            embedding it is (an MAE's), else the target's for as many tokens, else isotropic.
        target_grid: patch grid of ``network``; its ``feat_size`` (``UNETR``, ``ViTClassifier``) when None, else
            unknown: as many tokens are then taken as the same grid, and another number as an isotropic grid.

    Returns:
        the :class:`TransferReport`.
    """
    vit = _target_vit(network)
    encoder_state, skipped = extract_encoder_state(read_state_dict(checkpoint))
    _check_spatial_dims(encoder_state, vit, checkpoint)
    report = TransferReport(skipped=skipped)
    target_grid = target_grid or getattr(network, "feat_size", None)
    new_state = vit.state_dict()
    for key, target in new_state.items():
        if not (key.startswith(ENCODER_PREFIXES) or key == CLS_TOKEN_KEY):
            continue  # e.g. the classification head: trained from scratch
        if key not in encoder_state:
            report.missing[key] = "not in the checkpoint"
            continue
        value = encoder_state.pop(key)
        if key == POSITION_EMBEDDING_KEY:
            value = _fit_position_embedding(value, target, source_grid, target_grid, _guessed_grid(vit), report)
        if value.shape != target.shape:
            report.missing[key] = f"shape {tuple(value.shape)} in the checkpoint, {tuple(target.shape)} in the network"
            continue
        new_state[key] = value.to(target.dtype)
        report.loaded.append(key)
    for key in encoder_state:
        if key == CLS_TOKEN_KEY:
            report.skipped[key] = "the network has no class token (e.g. UNETR)"
        else:
            report.missing[key] = "in the checkpoint but not in the network (a qkv bias? build it with qkv_bias=True)"
    if report.missing and strict:
        raise ValueError(
            f"Refusing a partial load of the MAE encoder in {_describe(checkpoint)}: pre-train with the encoder "
            "settings of the network it initialises (or load it anyway with strict=False, the `strict` of the "
            "bundle's MAEEncoderLoader handler):\n" + report.summary()
        )
    vit.load_state_dict(new_state, strict=True)
    return report
