"""Optimizer parameter groups: weight-decay exclusions and the layer-wise learning-rate decay of MAE fine-tuning.

Use from a bundle config (the schedule is MONAI's ``WarmupCosineSchedule``, stepped every iteration)::

    "param_groups": {"_target_": "scripts.optimizers.layer_decay.param_groups", "network": "@network",
                     "lr": "@learning_rate", "weight_decay": 0.05, "layer_decay": 0.75},
    "optimizer": {"_target_": "torch.optim.AdamW", "params": "@param_groups", "lr": "@learning_rate",
                  "betas": [0.9, 0.95]},
    "lr_scheduler": {"_target_": "monai.optimizers.WarmupCosineSchedule", "optimizer": "@optimizer",
                     "warmup_steps": ..., "t_total": ...}
"""

from __future__ import annotations

import torch.nn as nn

__all__ = ["vit_layer_id", "param_groups"]

NO_WEIGHT_DECAY_NAMES = ("cls_token", "mask_token", "position_embeddings", "pos_embed")


def _vit_prefix(network: nn.Module) -> tuple[str, int]:
    """Name prefix and depth of the ViT encoder inside ``network`` (``UNETR.vit``, ``MaskedAutoencoderViT.encoder``
    or a ``ViT`` itself)."""
    for prefix in ("vit", "encoder"):
        inner = getattr(network, prefix, None)
        if isinstance(inner, nn.Module) and hasattr(inner, "blocks"):
            return prefix + ".", len(inner.blocks)
    if hasattr(network, "blocks"):
        return "", len(network.blocks)
    raise TypeError(f"{type(network).__name__} has no ViT encoder (`vit`, `encoder` or `blocks`).")


def vit_layer_id(name: str, prefix: str, num_layers: int) -> int:
    """Depth of a parameter for layer-wise decay, as in the paper's code: 0 for the patch/position embedding and the
    class token, ``i + 1`` for transformer block ``i``, ``num_layers + 1`` for everything after the blocks (final
    norm, UNETR's CNN decoder, classification head).

    Args:
        name: parameter name in ``network.named_parameters()``.
        prefix: name prefix of the ViT (``"vit."`` for UNETR, ``""`` for ViT).
        num_layers: number of transformer blocks.
    """
    if name == "cls_token" or name.startswith((prefix + "patch_embedding.", prefix + "cls_token")):
        return 0
    if name.startswith(prefix + "blocks."):
        return int(name[len(prefix + "blocks.") :].split(".")[0]) + 1
    return num_layers + 1


def param_groups(
    network: nn.Module, lr: float, weight_decay: float = 0.05, layer_decay: float = 1.0
) -> list[dict]:
    """Parameter groups for AdamW: no weight decay on biases, norms, tokens and position embeddings, and learning
    rate ``lr * layer_decay ** (num_layers + 1 - layer_id)`` (layer-wise decay; 1.0 turns it off).

    Args:
        network: a ``UNETR``, ``ViT`` or ``MaskedAutoencoderViT`` (unwrap DDP first).
        lr: base learning rate.
        weight_decay: weight decay of the decayed group.
        layer_decay: the per-block learning-rate factor; the paper fine-tunes with 0.75.

    Returns:
        a list of ``{"params", "lr", "weight_decay", "lr_scale"}`` dicts, one per (depth, decay) pair, the groups at
        the base rate first (so that what reports "the" learning rate, e.g. ``LrScheduleHandler(print_lr=True)``,
        reports the base one). Schedulers derived from ``LambdaLR`` (e.g. ``monai.optimizers.WarmupCosineSchedule``)
        keep each group's scale.
    """
    network = getattr(network, "module", network)
    prefix, num_layers = _vit_prefix(network)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in network.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim == 1 or name.endswith(".bias") or name.split(".")[-1] in NO_WEIGHT_DECAY_NAMES
        layer_id = vit_layer_id(name, prefix, num_layers) if layer_decay != 1.0 else num_layers + 1
        scale = layer_decay ** (num_layers + 1 - layer_id)
        group = groups.setdefault(
            (layer_id, no_decay),
            {"params": [], "lr": lr * scale, "weight_decay": 0.0 if no_decay else weight_decay, "lr_scale": scale},
        )
        group["params"].append(param)
    return sorted(groups.values(), key=lambda group: -group["lr_scale"])
