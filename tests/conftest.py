"""Shared fixtures: tiny networks that keep the CPU test suite fast."""

from __future__ import annotations

import pytest
import torch

from shared.networks.mae import MaskedAutoencoderViT

TINY_ENCODER = {"hidden_size": 48, "mlp_dim": 96, "num_heads": 4}
TINY_DECODER = {"decoder_hidden_size": 24, "decoder_num_layers": 1, "decoder_num_heads": 2}


def tiny_mae(in_channels: int = 1, img_size=32, spatial_dims: int = 3, num_layers: int = 2, **kwargs):
    """A small MAE whose encoder matches ``tiny_unetr``/``tiny_vit`` when ``num_layers=12``."""
    return MaskedAutoencoderViT(
        in_channels, img_size, 16, num_layers=num_layers, spatial_dims=spatial_dims, **TINY_ENCODER, **TINY_DECODER,
        **kwargs,
    )


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
