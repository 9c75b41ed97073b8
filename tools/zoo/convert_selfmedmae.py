"""Convert checkpoints of the official SelfMedMAE code (Zhou et al., ISBI 2023; github.com/cvlab-stonybrook/SelfMedMAE)
into this project's weights.

Two kinds of official checkpoint are recognised from their keys:

- **MAE3D pre-training** (``checkpoint_NNNN.pth.tar`` = ``{epoch, arch, state_dict, optimizer, scaler}``) becomes a
  :class:`shared.networks.mae.MaskedAutoencoderViT` state dict (encoder and decoder). Its encoder can then be carried
  into a MONAI ``UNETR``/``ViT`` by ``shared.networks.encoder_transfer.load_mae_encoder`` (``MAEEncoderLoader`` in a
  bundle).
- **UNETR3D fine-tuning** (``best_model.pth.tar`` / ``checkpoint_NNNN.pth.tar`` of ``SegTrainer``) becomes a
  ``monai.networks.nets.UNETR`` state dict: the ViT encoder and the CNN decoder (the official ``UNETR_decoder`` is
  built from MONAI's ``UnetrBasicBlock``/``UnetrPrUpBlock``/``UnetrUpBlock``/``UnetOutBlock`` with the same
  attribute names as MONAI's ``UNETR``, so its keys carry over unchanged).

Key mapping (``i`` = block index, ``X`` = ``weight``/``bias``; MAE = ``MaskedAutoencoderViT``)::

    official (timm / SelfMedMAE)             -> MAE                                        | UNETR
    encoder.patch_embed.proj.X               -> encoder.patch_embedding.patch_embeddings.X | vit.patch_embedding.(same)
    encoder_pos_embed (1, N, D)              -> encoder.patch_embedding.position_embeddings | -
    encoder.pos_embed (1, 1 + N, D)          -> -                                          | vit.patch_embedding.
                                                                                              position_embeddings
                                                                                              (cls slot dropped)
    encoder.cls_token                        -> cls_token (cls_token=True)                 | dropped
    encoder.blocks.i.norm1.X                 -> encoder.blocks.i.norm1.X                   | vit.blocks.i.(same)
    encoder.blocks.i.attn.qkv.X              -> encoder.blocks.i.attn.qkv.X                | vit.blocks.i.(same)
    encoder.blocks.i.attn.proj.X             -> encoder.blocks.i.attn.out_proj.X           | vit.blocks.i.(same)
    encoder.blocks.i.norm2.X                 -> encoder.blocks.i.norm2.X                   | vit.blocks.i.(same)
    encoder.blocks.i.mlp.fc1.X               -> encoder.blocks.i.mlp.linear1.X             | vit.blocks.i.(same)
    encoder.blocks.i.mlp.fc2.X               -> encoder.blocks.i.mlp.linear2.X             | vit.blocks.i.(same)
    encoder.norm.X                           -> encoder.norm.X                             | vit.norm.X
    encoder_to_decoder.X                     -> decoder_embed.X                            | -
    mask_token                               -> mask_token                                 | -
    decoder_pos_embed                        -> decoder_pos_embed                          | -
    decoder.blocks.i.* (as encoder blocks)   -> decoder_blocks.i.*                         | -
    decoder.norm.X                           -> decoder_norm.X                             | -
    decoder.head.X                           -> decoder_pred.X (rows permuted, see below)  | -
    decoder.<m>.*, m = encoder1..4,          -> -                                          | <m>.* (same names)
        decoder5..2, out
    (none)                                   -> *.norm_cross_attn.X (filled)               | (same)

Differences the conversion takes care of, or that the user must know about:

- **qkv bias.** timm's attention has a qkv bias (the official ``qkv_bias=True``); MONAI's ``ViT``/``UNETR`` default to
  ``qkv_bias=False``. The converted weights are for networks built with ``qkv_bias=True`` (the converter says so and
  records it in the ``network_kwargs`` it writes next to the weights). With ``qkv_bias=False`` the biases are
  removed with a warning: the key bias is dropped (exact: it adds a per-query constant that softmax ignores), the
  value bias is folded into ``attn.out_proj.bias`` (exact: attention rows sum to one), the query bias is dropped
  (NOT exact: the outputs change).
- **Position embeddings.** The official MAE3D ``encoder_pos_embed``/``decoder_pos_embed`` are fixed 3D sin-cos
  tables without a class-token slot; they are copied as they are (MONAI's own 3D sin-cos table orders the axis
  blocks ``w, h, d`` where the official one uses ``h, w, d``, so the copied table is kept, not rebuilt; the
  pre-training grid is read from it, here and by the encoder transfer). The official
  UNETR3D ``pos_embed`` is learnable with a class-token slot in front; the slot is dropped.
- **Class token.** The official encoder always prepends a class token (with a zero position embedding). For the MAE it
  is kept (build ``MaskedAutoencoderViT(cls_token=True)``; ``keep_cls_token=False`` drops it); both decoders run it
  through their blocks without a position embedding and drop its prediction. MONAI's ``UNETR`` has no class token,
  so it is dropped from UNETR3D checkpoints although it took part in the official encoder's attention: the
  converted UNETR's outputs differ slightly from the official model's (a short fine-tune, or an evaluation, tells by
  how much).
- **Patch flattening order.** The official 3D patchify flattens a patch channels-last, ``(p1, p2, p3, C)``; this
  project flattens ``(C, p1, p2, p3)`` (``shared/patches.py``). The decoder's output layer rows are permuted
  accordingly (a no-op for one channel). The patch-embedding convolution needs no change: the official code reshapes
  each token back to ``(C, p1, p2, p3)`` before its Conv3d.
- **Reconstruction target.** The official loss normalises each patch over all its voxels and channels jointly
  (``LayerNorm(C * p^3)``); this project's ``norm_pix_loss`` normalises per channel. Identical for one channel.
- **LayerNorm eps.** Official LayerNorms use ``eps=1e-6``, MONAI's ``nn.LayerNorm`` default ``1e-5``. A state dict
  cannot carry eps; :func:`set_layer_norm_eps` sets it on a built network when exact agreement matters.
- **Unused MONAI tensors.** MONAI 1.6's ``TransformerBlock`` always owns a ``norm_cross_attn`` LayerNorm (used only
  with cross-attention, which these networks do not use); it is filled with LayerNorm defaults (ones, zeros).

Checkpoints are read with ``torch.load(weights_only=True)``. Official files hold only tensors and plain Python values
(``epoch``, ``arch``, optimizer and scaler state), which that accepts. If a file also holds numpy scalars (e.g. a
``metric`` from ``SegTrainer``) or an ``argparse.Namespace``, those data-only types are allow-listed for a second
``weights_only=True`` attempt, and the conversion says so; anything else is refused with an explanation
(``weights_only=False`` is never used).

Usage::

    python -m tools.zoo.convert_selfmedmae convert ckpts/checkpoint_9999.pth.tar models/mae_btcv.pt
    python -m tools.zoo.convert_selfmedmae convert best_model.pth.tar bundles/unetr_btcv_seg/models/model.pt \\
        --num_heads 12
    python -m tools.zoo.convert_selfmedmae convert ckpt.pth.tar out.pt --dry_run        # report only, write nothing

Python::

    from tools.zoo.convert_selfmedmae import convert_checkpoint
    result = convert_checkpoint("checkpoint_0799.pth.tar", "mae.pt")
    net = MaskedAutoencoderViT(**result.network_kwargs); net.load_state_dict(torch.load("mae.pt"))

Next to the weights a ``<name>.json`` records the network class, its constructor arguments and the notes. An existing
output (e.g. a bundle's trained ``models/model.pt``) and its ``.json`` are not lost: each is kept beside it as
``<name>.previous-<date><ext>`` (as a training run keeps the model it replaces; packaging leaves these out), and the
log names it.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from shared.handlers.checkpoint import keep_previous
from shared.networks.encoder_transfer import isotropic_grid, sincos_patch_grid
from shared.networks.mae import MaskedAutoencoderViT
from shared.utils.atomic import save_atomically, write_json_atomically

__all__ = [
    "ConversionResult",
    "load_official_checkpoint",
    "detect_kind",
    "official_to_project_patch_order",
    "convert_mae3d_state_dict",
    "convert_unetr3d_state_dict",
    "convert_state_dict",
    "convert_checkpoint",
    "set_layer_norm_eps",
]

logger = logging.getLogger("convert_selfmedmae")

OFFICIAL_LAYER_NORM_EPS = 1e-6
# timm Block sub-module names -> MONAI TransformerBlock sub-module names
BLOCK_NAMES = {
    "norm1": "norm1",
    "attn.qkv": "attn.qkv",
    "attn.proj": "attn.out_proj",
    "norm2": "norm2",
    "mlp.fc1": "mlp.linear1",
    "mlp.fc2": "mlp.linear2",
}
UNETR_DECODER_MODULES = (
    "encoder1", "encoder2", "encoder3", "encoder4", "decoder5", "decoder4", "decoder3", "decoder2", "out",
)
_BLOCK_KEY = re.compile(r"^(\d+)\.(.+)\.(weight|bias)$")


class NotSelfMedMAECheckpointError(ValueError):
    """The file or state dict is not a checkpoint of the official SelfMedMAE MAE3D or UNETR3D."""


@dataclass
class ConversionResult:
    """What a conversion produced and how to use it.

    Attributes:
        kind: ``"mae3d"`` or ``"unetr3d"``.
        network: dotted name of the class the state dict is for.
        network_kwargs: constructor arguments of that class that the state dict loads into with ``strict=True``.
        state_dict: the converted tensors.
        mapping: official key -> project key, for every copied tensor.
        dropped: official key -> why it was not carried over.
        filled: project key -> what it was filled with (tensors with no official counterpart).
        notes: caveats, for the user.
        meta: ``epoch``/``arch`` found in the checkpoint, and how it was read.
    """

    kind: str
    network: str
    network_kwargs: dict
    state_dict: dict[str, torch.Tensor]
    mapping: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    filled: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def summary(self) -> str:
        kwargs = ", ".join(f"{k}={v!r}" for k, v in self.network_kwargs.items())
        lines = [
            f"SelfMedMAE {self.kind} checkpoint" + (f" ({self.meta})" if self.meta else ""),
            f"-> {len(self.state_dict)} tensors for {self.network}({kwargs})",
            f"   {len(self.mapping)} copied from official tensors",
        ]
        lines += _grouped("dropped", self.dropped)
        lines += _grouped("filled ", self.filled)
        lines += [f"NOTE: {n}" for n in self.notes]
        return "\n".join(lines)

    def config(self) -> dict:
        """JSON-serialisable description written next to the weights."""
        return {
            "source": "cvlab-stonybrook/SelfMedMAE",
            "kind": self.kind,
            "network": self.network,
            "network_kwargs": self.network_kwargs,
            "official_layer_norm_eps": OFFICIAL_LAYER_NORM_EPS,
            "meta": self.meta,
            "dropped": self.dropped,
            "filled": self.filled,
            "notes": self.notes,
        }


def _grouped(verb: str, reasons: dict[str, str]) -> list[str]:
    """One line per reason: ``<verb> <key>`` or ``<verb> <n> tensors (<first key>, ...)``."""
    by_reason: dict[str, list[str]] = {}
    for key, why in reasons.items():
        by_reason.setdefault(why, []).append(key)
    lines = []
    for why, keys in by_reason.items():
        what = keys[0] if len(keys) == 1 else f"{len(keys)} tensors ({keys[0]}, ...)"
        lines.append(f"   {verb} {what}: {why}")
    return lines


# ----------------------------------------------------------------------------------------------------------------
# reading


def _data_only_globals() -> list:
    """Types that official checkpoints may hold besides tensors and that carry data only (no code on load).

    Listed under both numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``) module names, because a file pickled
    with numpy 1 names the former.
    """
    import numpy as np

    try:
        multiarray = np._core.multiarray  # numpy 2
    except AttributeError:  # numpy 1
        multiarray = np.core.multiarray
    allowed: list = [argparse.Namespace, np.dtype]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed.append((multiarray.scalar, f"{module}.scalar"))
        allowed.append((multiarray._reconstruct, f"{module}._reconstruct"))
    allowed.append(np.ndarray)
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "BoolDType"):
        dtype_class = getattr(getattr(np, "dtypes", None), name, None)
        if dtype_class is not None:
            allowed.append(dtype_class)
    return allowed


def _unpickling_reason(error: Exception) -> str:
    """The informative line of torch's weights-only error (which global or opcode it refused)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "global" in line.lower() or "operand" in line.lower():
            return line.split("WeightsUnpickler error:")[-1].strip()
    return lines[-1] if lines else type(error).__name__


def load_official_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read an official checkpoint file safely and return its state dict and ``{epoch, arch, read}`` metadata.

    Accepts the trainers' ``{..., "state_dict": ...}`` files and bare state dicts; strips DDP's ``module.`` prefix.

    Raises:
        FileNotFoundError: no such file.
        NotSelfMedMAECheckpointError: not a PyTorch file, no state dict in it, or Python objects that
            ``weights_only=True`` refuses even with numpy scalars and ``argparse.Namespace`` allowed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint {path!r} does not exist.")
    meta: dict = {"read": "torch.load(weights_only=True)"}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first_error = _unpickling_reason(e)
        if "Weights only load failed" not in str(e) or "global" not in first_error.lower():
            raise NotSelfMedMAECheckpointError(
                f"{path} is not a PyTorch checkpoint (or is damaged): {first_error}"
            ) from e
        try:
            with torch.serialization.safe_globals(_data_only_globals()):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e2:
            detail = _unpickling_reason(e2)
            raise NotSelfMedMAECheckpointError(
                f"{path} holds Python objects that a safe load (torch.load(weights_only=True)) refuses: {detail}\n"
                "This converter never unpickles arbitrary objects. If, and only if, you trust the file, extract its "
                "tensors once with:\n"
                f"  python -c \"import torch; c = torch.load('{path}', map_location='cpu', weights_only=False); "
                f"torch.save(c.get('state_dict', c), '{path}.state_dict.pt')\"\n"
                "and convert the .state_dict.pt file."
            ) from e2
        meta["read"] = (
            "torch.load(weights_only=True) with data-only types allowed (numpy scalars/arrays, argparse.Namespace); "
            f"first attempt said: {first_error}"
        )
    except Exception as e:  # torch raises many types for files that are not checkpoints (IndexError, RuntimeError...)
        raise NotSelfMedMAECheckpointError(f"{path} is not a PyTorch checkpoint (or is damaged): {e!r}") from e

    if not isinstance(obj, Mapping):
        raise NotSelfMedMAECheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict.")
    for key in ("epoch", "arch"):
        if isinstance(obj.get(key), (int, str)):
            meta[key] = obj[key]
    state = obj.get("state_dict", obj)
    if not isinstance(state, Mapping):
        raise NotSelfMedMAECheckpointError(f"{path}: 'state_dict' is a {type(state).__name__}, not a mapping.")
    tensors = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise NotSelfMedMAECheckpointError(f"{path} holds no tensors (top-level keys: {sorted(obj)[:8]}).")
    return tensors, meta


def detect_kind(state: Mapping[str, torch.Tensor]) -> str:
    """``"mae3d"`` or ``"unetr3d"``, from the keys of an official state dict.

    Raises:
        NotSelfMedMAECheckpointError: neither (including the official 2D MAE and ViT classifier, not supported).
    """
    keys = set(state)
    patch_weight = state.get("encoder.patch_embed.proj.weight")
    if patch_weight is not None and patch_weight.dim() != 5:
        raise NotSelfMedMAECheckpointError(
            f"encoder.patch_embed.proj.weight is {patch_weight.dim() - 2}D: a 2D SelfMedMAE checkpoint (MAE on "
            "ChestX-ray14/ImageNet or the ViT classifier). Only the 3D MAE3D and UNETR3D checkpoints are supported."
        )
    if {"encoder_pos_embed", "encoder_to_decoder.weight", "decoder.head.weight", "mask_token"} <= keys:
        return "mae3d"
    if {"encoder.pos_embed", "encoder.patch_embed.proj.weight", "decoder.out.conv.conv.weight"} <= keys:
        return "unetr3d"
    if "patch_embed.proj.weight" in keys or "pos_embed" in keys:
        raise NotSelfMedMAECheckpointError(
            "This looks like a bare official encoder state dict (no 'encoder.' prefix); pass the full MAE3D or "
            "UNETR3D checkpoint."
        )
    sample = ", ".join(sorted(keys)[:6])
    raise NotSelfMedMAECheckpointError(
        "Not a SelfMedMAE MAE3D checkpoint (needs encoder_pos_embed, encoder_to_decoder.*, mask_token, "
        "decoder.head.*) nor a UNETR3D checkpoint (needs encoder.pos_embed, encoder.patch_embed.proj.*, "
        f"decoder.out.*); keys: {sample}..."
    )


# ----------------------------------------------------------------------------------------------------------------
# helpers


def official_to_project_patch_order(in_channels: int, patch_voxels: int) -> torch.Tensor:
    """Index ``idx`` with ``project_vector = official_vector[..., idx]`` for one flattened patch.

    The official 3D patchify flattens a patch ``(p1, p2, p3, C)`` (channel fastest), this project ``(C, p1, p2, p3)``:
    project position ``c * P + s`` holds official position ``s * C + c``.
    """
    return torch.arange(in_channels * patch_voxels).reshape(patch_voxels, in_channels).t().reshape(-1)


def set_layer_norm_eps(network: nn.Module, eps: float = OFFICIAL_LAYER_NORM_EPS) -> nn.Module:
    """Set ``eps`` on every ``nn.LayerNorm`` of ``network`` (in place), e.g. to the official 1e-6."""
    for module in network.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = eps
    return network


def _copy_patch_embedding(state, dst_prefix, out, mapping) -> tuple[int, int, tuple[int, ...]]:
    """Copy the patch-embedding convolution (same layout in both codes) to ``<dst_prefix>patch_embedding.*``;
    return the hidden size, the input channels and the patch size it implies."""
    hidden_size, in_channels, *patch_size = state["encoder.patch_embed.proj.weight"].shape
    for kind in ("weight", "bias"):
        src, dst = f"encoder.patch_embed.proj.{kind}", f"{dst_prefix}patch_embedding.patch_embeddings.{kind}"
        out[dst] = state[src].clone()
        mapping[src] = dst
    return hidden_size, in_channels, tuple(patch_size)


def _map_blocks(state, src_prefix, dst_prefix, out, mapping) -> int:
    """Copy ``<src_prefix><i>.<timm name>.X`` to ``<dst_prefix><i>.<MONAI name>.X``; return the number of blocks."""
    depth = 0
    for key, value in state.items():
        if not key.startswith(src_prefix):
            continue
        match = _BLOCK_KEY.match(key[len(src_prefix) :])
        if match is None or match.group(2) not in BLOCK_NAMES:
            continue  # left for the unmatched-key check
        index, name, kind = match.groups()
        new_key = f"{dst_prefix}{index}.{BLOCK_NAMES[name]}.{kind}"
        out[new_key] = value.clone()
        mapping[key] = new_key
        depth = max(depth, int(index) + 1)
    return depth


def _remove_qkv_biases(out: dict[str, torch.Tensor], result: ConversionResult, prefix_re: str) -> None:
    """Drop every qkv bias under ``prefix_re``, exactly where possible (see the module docstring)."""
    largest_q = 0.0
    for key in [k for k in out if re.match(prefix_re + r"\d+\.attn\.qkv\.bias$", k)]:
        bias = out.pop(key)
        width = bias.shape[0] // 3
        q_bias, _k_bias, v_bias = bias[:width], bias[width : 2 * width], bias[2 * width :]
        block = key[: -len("qkv.bias")]
        out[block + "out_proj.bias"] = out[block + "out_proj.bias"] + out[block + "out_proj.weight"] @ v_bias
        largest_q = max(largest_q, float(q_bias.abs().max()))
        official = next(src for src, dst in result.mapping.items() if dst == key)
        del result.mapping[official]
        result.dropped[official] = (
            "qkv_bias=False: value bias folded into attn.out_proj.bias, key bias dropped (both exact), "
            "query bias dropped (changes the outputs)"
        )
    result.notes.append(
        f"qkv biases removed for a qkv_bias=False network; the largest |query bias| dropped is {largest_q:.3g}: "
        "outputs are NOT identical to the official model's (use qkv_bias=True to keep them)."
    )
    logger.warning(result.notes[-1])


def _template(network_class, kwargs: dict) -> dict[str, torch.Tensor]:
    """State dict (shapes only, on the meta device) of ``network_class(**kwargs)``."""
    with torch.device("meta"):
        return network_class(**kwargs).state_dict()


def _check_against_template(
    out: dict[str, torch.Tensor], state: Mapping[str, torch.Tensor], result: ConversionResult, template
) -> None:
    """Fill unused MONAI tensors; refuse unmapped official tensors, missing or misshapen target tensors."""
    unmatched = sorted(k for k in state if k not in result.mapping and k not in result.dropped)
    if unmatched:
        raise NotSelfMedMAECheckpointError(
            f"{len(unmatched)} official tensors have no counterpart in {result.network}: {unmatched[:8]}"
        )
    for key, target in template.items():
        if key in out:
            continue
        if ".norm_cross_attn." in key:
            out[key] = torch.ones(target.shape) if key.endswith(".weight") else torch.zeros(target.shape)
            result.filled[key] = "LayerNorm default (unused: MONAI's block has no cross-attention here)"
        else:
            raise NotSelfMedMAECheckpointError(
                f"{result.network} needs {key} {tuple(target.shape)}; not in the checkpoint."
            )
    extra = sorted(set(out) - set(template))
    if extra:
        raise NotSelfMedMAECheckpointError(f"Converted tensors that {result.network} does not have: {extra[:8]}")
    for key, target in template.items():
        if tuple(out[key].shape) != tuple(target.shape):
            raise NotSelfMedMAECheckpointError(
                f"{key}: shape {tuple(out[key].shape)} converted, {tuple(target.shape)} expected by {result.network}."
            )
    result.state_dict = {k: out[k].contiguous() for k in template}  # the network's own key order


def _grid(num_tokens: int, patch_size: tuple[int, ...], img_size) -> tuple[int, ...]:
    """Patch grid from the number of position tokens (isotropic unless ``img_size`` is given)."""
    if img_size is not None:
        img_size = tuple(int(s) for s in (img_size if isinstance(img_size, (list, tuple)) else (img_size,) * 3))
        grid = tuple(s // p for s, p in zip(img_size, patch_size))
        if math.prod(grid) != num_tokens or any(s % p for s, p in zip(img_size, patch_size)):
            raise NotSelfMedMAECheckpointError(
                f"img_size {img_size} with patch {patch_size} gives {math.prod(grid)} patches; the checkpoint's "
                f"position embedding has {num_tokens}."
            )
        return grid
    grid = isotropic_grid(num_tokens, 3)
    if grid is None:
        raise NotSelfMedMAECheckpointError(
            f"{num_tokens} position tokens are not an isotropic 3D grid; pass img_size (the training ROI)."
        )
    return grid


def _mae3d_grid(encoder_pos: torch.Tensor, patch_size: tuple[int, ...], img_size) -> tuple[int, ...]:
    """The pre-training patch grid of an MAE3D: read from its fixed sin-cos ``encoder_pos_embed``, which a given
    ``img_size`` must agree with (as many patches on a transposed grid would put every position on the wrong one);
    from ``img_size`` or an isotropic grid when the table is not sin-cos (``pos_embed_type='perceptron'``)."""
    read = sincos_patch_grid(encoder_pos, 3)
    if img_size is None and read is not None:
        return read
    grid = _grid(encoder_pos.shape[1], patch_size, img_size)
    if read is not None and read != grid:
        raise NotSelfMedMAECheckpointError(
            f"img_size {img_size} gives the patch grid {grid}, but encoder_pos_embed is the sin-cos table of the "
            f"{read} grid (img_size {[g * p for g, p in zip(read, patch_size)]}); leave img_size out to use it."
        )
    return grid


def _check_heads(width: int, heads: int, what: str) -> None:
    if width % heads:
        raise ValueError(f"{what} width {width} is not divisible by {heads} heads; pass the right number of heads.")


# ----------------------------------------------------------------------------------------------------------------
# conversions


def convert_mae3d_state_dict(
    state: Mapping[str, torch.Tensor],
    num_heads: int = 12,
    decoder_num_heads: int = 12,
    img_size=None,
    qkv_bias: bool = True,
    keep_cls_token: bool = True,
) -> ConversionResult:
    """Official MAE3D state dict -> :class:`shared.networks.mae.MaskedAutoencoderViT` state dict (see the module
    docstring).

    Args:
        state: the official ``state_dict`` (``module.`` prefix already stripped).
        num_heads: encoder attention heads (not recorded in the checkpoint; the official configs use 12).
        decoder_num_heads: decoder attention heads (official: 12).
        img_size: the pre-training ROI, read from the fixed sin-cos ``encoder_pos_embed`` when None (official: 96
            for BTCV, 128 for BraTS); needed only for a learned table that is not a cube's.
        qkv_bias: keep the qkv biases (network built with ``qkv_bias=True``); False removes them (see above).
        keep_cls_token: keep the encoder's class token (network built with ``cls_token=True``).
    """
    result = ConversionResult("mae3d", "shared.networks.mae.MaskedAutoencoderViT", {}, {})
    out: dict[str, torch.Tensor] = {}

    def copy(src: str, dst: str) -> None:
        out[dst] = state[src].clone()
        result.mapping[src] = dst

    hidden_size, in_channels, patch_size = _copy_patch_embedding(state, "encoder.", out, result.mapping)
    encoder_pos = state["encoder_pos_embed"]
    if encoder_pos.dim() != 3 or encoder_pos.shape[0] != 1 or encoder_pos.shape[-1] != hidden_size:
        raise NotSelfMedMAECheckpointError(
            f"encoder_pos_embed has shape {tuple(encoder_pos.shape)}, expected (1, N, {hidden_size})."
        )
    grid = _mae3d_grid(encoder_pos, patch_size, img_size)
    copy("encoder_pos_embed", "encoder.patch_embedding.position_embeddings")
    if "encoder.cls_token" in state:
        if keep_cls_token:
            copy("encoder.cls_token", "cls_token")
        else:
            result.dropped["encoder.cls_token"] = "keep_cls_token=False (the official encoder attends to it)"
    num_layers = _map_blocks(state, "encoder.blocks.", "encoder.blocks.", out, result.mapping)
    copy("encoder.norm.weight", "encoder.norm.weight")
    copy("encoder.norm.bias", "encoder.norm.bias")

    copy("encoder_to_decoder.weight", "decoder_embed.weight")
    copy("encoder_to_decoder.bias", "decoder_embed.bias")
    copy("mask_token", "mask_token")
    copy("decoder_pos_embed", "decoder_pos_embed")
    decoder_num_layers = _map_blocks(state, "decoder.blocks.", "decoder_blocks.", out, result.mapping)
    copy("decoder.norm.weight", "decoder_norm.weight")
    copy("decoder.norm.bias", "decoder_norm.bias")
    order = official_to_project_patch_order(in_channels, math.prod(patch_size))
    if state["decoder.head.weight"].shape[0] != order.numel():
        raise NotSelfMedMAECheckpointError(
            f"decoder.head predicts {state['decoder.head.weight'].shape[0]} values per patch; "
            f"{in_channels} channels x {patch_size} patches need {order.numel()}."
        )
    out["decoder_pred.weight"] = state["decoder.head.weight"][order].clone()
    out["decoder_pred.bias"] = state["decoder.head.bias"][order].clone()
    result.mapping["decoder.head.weight"] = "decoder_pred.weight"
    result.mapping["decoder.head.bias"] = "decoder_pred.bias"

    mlp_dim = state["encoder.blocks.0.mlp.fc1.weight"].shape[0]
    decoder_hidden_size = state["encoder_to_decoder.weight"].shape[0]
    decoder_mlp_dim = state["decoder.blocks.0.mlp.fc1.weight"].shape[0]
    _check_heads(hidden_size, num_heads, "encoder")
    _check_heads(decoder_hidden_size, decoder_num_heads, "decoder")
    has_qkv_bias = "encoder.blocks.0.attn.qkv.bias" in state
    if has_qkv_bias and not qkv_bias:
        _remove_qkv_biases(out, result, r"^(encoder\.blocks|decoder_blocks)\.")
    result.network_kwargs = {
        "in_channels": int(in_channels),
        "img_size": [g * p for g, p in zip(grid, patch_size)],
        "patch_size": list(patch_size),
        "hidden_size": int(hidden_size),
        "mlp_dim": int(mlp_dim),
        "num_layers": num_layers,
        "num_heads": num_heads,
        "decoder_hidden_size": int(decoder_hidden_size),
        "decoder_mlp_dim": int(decoder_mlp_dim),
        "decoder_num_layers": decoder_num_layers,
        "decoder_num_heads": decoder_num_heads,
        "norm_pix_loss": True,
        "cls_token": "cls_token" in out,
        "qkv_bias": bool(has_qkv_bias and qkv_bias),
        "spatial_dims": 3,
    }
    _check_against_template(out, state, result, _template(MaskedAutoencoderViT, result.network_kwargs))
    if has_qkv_bias and qkv_bias:
        result.notes.append(
            "build the network with qkv_bias=True (MONAI's default is False): the official attention has qkv biases."
        )
    if "cls_token" in out:
        result.notes.append(
            "build with cls_token=True (the official encoder always has a class token)."
        )
    result.notes.append(
        "num_heads/decoder_num_heads are not stored in the checkpoint; "
        f"{num_heads}/{decoder_num_heads} assumed (official configs: 12/12)."
    )
    if in_channels > 1:
        result.notes.append(
            "decoder_pred rows were permuted from the official (p1,p2,p3,C) patch order to this project's "
            "(C,p1,p2,p3). "
            "The official target normalises a patch over all channels jointly, norm_pix_loss per channel."
        )
    result.notes.append(
        "mask_ratio is not stored in the checkpoint (official scripts pass 0.125, the configs 0.75); "
        "official LayerNorm eps is 1e-6 (MONAI 1e-5): see set_layer_norm_eps."
    )
    return result


def convert_unetr3d_state_dict(
    state: Mapping[str, torch.Tensor], num_heads: int = 12, img_size=None, qkv_bias: bool = True
) -> ConversionResult:
    """Official UNETR3D state dict -> ``monai.networks.nets.UNETR`` state dict (see the module docstring).

    Args:
        state: the official ``state_dict``.
        num_heads: attention heads (not stored; official 12).
        img_size: the fine-tuning ROI when not a cube (official: 96 BTCV, 128 BraTS).
        qkv_bias: keep the qkv biases (``UNETR(qkv_bias=True)``); False removes them (see above).
    """
    from monai.networks.nets import UNETR

    result = ConversionResult("unetr3d", "monai.networks.nets.UNETR", {}, {})
    out: dict[str, torch.Tensor] = {}

    def copy(src: str, dst: str) -> None:
        out[dst] = state[src].clone()
        result.mapping[src] = dst

    hidden_size, in_channels, patch_size = _copy_patch_embedding(state, "vit.", out, result.mapping)
    if patch_size != (16, 16, 16):
        raise NotSelfMedMAECheckpointError(f"MONAI's UNETR has 16^3 patches; the checkpoint has {patch_size}.")
    pos = state["encoder.pos_embed"]
    grid = _grid(pos.shape[1] - 1, patch_size, img_size)
    out["vit.patch_embedding.position_embeddings"] = pos[:, 1:].clone()
    result.mapping["encoder.pos_embed"] = "vit.patch_embedding.position_embeddings"
    result.notes.append("encoder.pos_embed: the class-token slot (index 0) was dropped.")
    if "encoder.cls_token" in state:
        result.dropped["encoder.cls_token"] = (
            "MONAI's UNETR has no class token (the official encoder attended to it: outputs differ slightly)"
        )
    num_layers = _map_blocks(state, "encoder.blocks.", "vit.blocks.", out, result.mapping)
    if num_layers != 12:
        raise NotSelfMedMAECheckpointError(f"MONAI's UNETR has 12 transformer blocks; the checkpoint has {num_layers}.")
    copy("encoder.norm.weight", "vit.norm.weight")
    copy("encoder.norm.bias", "vit.norm.bias")
    for key in state:
        module = key.split(".")[1] if key.startswith("decoder.") else None
        if module in UNETR_DECODER_MODULES:
            copy(key, key[len("decoder.") :])

    _check_heads(hidden_size, num_heads, "encoder")
    has_qkv_bias = "encoder.blocks.0.attn.qkv.bias" in state
    if has_qkv_bias and not qkv_bias:
        _remove_qkv_biases(out, result, r"^vit\.blocks\.")
    result.network_kwargs = {
        "in_channels": int(in_channels),
        "out_channels": int(state["decoder.out.conv.conv.weight"].shape[0]),
        "img_size": [g * p for g, p in zip(grid, patch_size)],
        "feature_size": int(state["decoder.encoder1.layer.conv1.conv.weight"].shape[0]),
        "hidden_size": int(hidden_size),
        "mlp_dim": int(state["encoder.blocks.0.mlp.fc1.weight"].shape[0]),
        "num_heads": num_heads,
        "proj_type": "conv",
        "norm_name": "instance",
        "res_block": True,
        "conv_block": True,
        "qkv_bias": bool(has_qkv_bias and qkv_bias),
        "spatial_dims": 3,
    }
    _check_against_template(out, state, result, _template(UNETR, result.network_kwargs))
    if has_qkv_bias and qkv_bias:
        result.notes.append(
            "build UNETR with qkv_bias=True (MONAI's default is False): the official attention has qkv biases."
        )
    result.notes.append(f"num_heads is not stored in the checkpoint; {num_heads} assumed (official: 12).")
    result.notes.append("official LayerNorm eps is 1e-6 (MONAI 1e-5): see set_layer_norm_eps.")
    return result


def convert_state_dict(state: Mapping[str, torch.Tensor], kind: str = "auto", **kwargs) -> ConversionResult:
    """Convert an official state dict of ``kind`` (``"auto"``, ``"mae3d"`` or ``"unetr3d"``)."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    detected = detect_kind(state)
    if kind != "auto" and kind != detected:
        raise NotSelfMedMAECheckpointError(f"kind={kind!r} was asked for but the checkpoint is a {detected} one.")
    try:
        if detected == "mae3d":
            return convert_mae3d_state_dict(state, **kwargs)
        kwargs.pop("decoder_num_heads", None)
        kwargs.pop("keep_cls_token", None)
        return convert_unetr3d_state_dict(state, **kwargs)
    except KeyError as e:
        raise NotSelfMedMAECheckpointError(f"Incomplete SelfMedMAE {detected} checkpoint: {e} is missing.") from e


def convert_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike | None = None,
    kind: str = "auto",
    num_heads: int = 12,
    decoder_num_heads: int = 12,
    img_size=None,
    qkv_bias: bool = True,
    keep_cls_token: bool = True,
    write_config: bool = True,
) -> ConversionResult:
    """Read an official checkpoint, convert it and (unless ``dst`` is None) write the state dict to ``dst``.

    Args:
        src: official ``.pth.tar`` (or a bare state dict file).
        dst: output ``.pt``; the plain state dict is written atomically. None: convert only. An existing ``dst``
            (and ``<dst stem>.json``) is kept beside it as ``<name>.previous-<date><ext>``, and the log says so.
        kind: ``"auto"``, ``"mae3d"`` or ``"unetr3d"``.
        num_heads, decoder_num_heads, img_size, qkv_bias, keep_cls_token: see :func:`convert_mae3d_state_dict` and
            :func:`convert_unetr3d_state_dict`.
        write_config: also write ``<dst stem>.json`` with the network class, its kwargs and the notes.
    """
    state, meta = load_official_checkpoint(src)
    result = convert_state_dict(
        state,
        kind,
        num_heads=num_heads,
        decoder_num_heads=decoder_num_heads,
        img_size=img_size,
        qkv_bias=qkv_bias,
        keep_cls_token=keep_cls_token,
    )
    result.meta = meta
    if dst is not None:
        dst = os.fspath(dst)
        _keep_earlier(dst)
        save_atomically(result.state_dict, dst)
        if write_config:
            _keep_earlier(Path(dst).with_suffix(".json"))
            write_json_atomically(result.config(), Path(dst).with_suffix(".json"))
    return result


def _keep_earlier(path: str | os.PathLike) -> None:
    """Keep an existing ``path`` (e.g. a bundle's trained ``models/model.pt``) as ``<name>.previous-<date><ext>``
    beside it, as a training run does with the model it replaces (:func:`shared.handlers.checkpoint.keep_previous`),
    and log where."""
    kept = keep_previous(os.fspath(path))
    if kept:
        logger.warning(f"{path} exists: the earlier file is kept as {kept}")


def main(
    src: str,
    dst: str | None = None,
    kind: str = "auto",
    num_heads: int = 12,
    decoder_num_heads: int = 12,
    img_size=None,
    qkv_bias: bool = True,
    keep_cls_token: bool = True,
    write_config: bool = True,
    dry_run: bool = False,
) -> None:
    """CLI: convert ``src`` into ``dst`` and print what was done (``--dry_run``: write nothing)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if dst is None and not dry_run:
        raise SystemExit("give an output path (dst), or --dry_run")
    result = convert_checkpoint(
        src,
        None if dry_run else dst,
        kind=kind,
        num_heads=num_heads,
        decoder_num_heads=decoder_num_heads,
        img_size=img_size,
        qkv_bias=qkv_bias,
        keep_cls_token=keep_cls_token,
        write_config=write_config,
    )
    print(result.summary())
    if not dry_run:
        print(f"wrote {dst}" + (f" and {Path(dst).with_suffix('.json')}" if write_config else ""))


if __name__ == "__main__":
    import fire

    fire.Fire({"convert": main}, name="tools.zoo.convert_selfmedmae")
