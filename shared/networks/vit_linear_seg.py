"""A ViT segmenter whose only decoder is one linear layer per token: the encoder does all the work.

Each token's normed output is mapped linearly to the class logits of every voxel of its own patch, and the patches are
put back in place (the inverse of the patch embedding, as the MAE's reconstruction head does for intensities). Nothing
but the ViT sees more than one patch, so a segmentation is only as good as the encoder's tokens: the network for
measuring an encoder under a small fine-tuning budget, where UNETR's convolutional decoder, trained from scratch in
every arm, is what limits the budget (``tools/study/tasks.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.nets.vit import ViT
from monai.utils import ensure_tuple_rep

from .patches import grid_size, unpatchify

__all__ = ["ViTLinearSeg"]


class ViTLinearSeg(nn.Module):
    """MONAI's ``ViT`` and a per-token linear head to the voxel logits of the token's patch.

    Shapes for a ``(B, C, H, W, D)`` input, ``p`` the patch size, ``K = out_channels``, ``E = hidden_size``::

        vit        ViT(x), final norm                      (B, N, E),  N = (H/p)(W/p)(D/p)
        head       Linear(E, K p^3)                         (B, N, K p^3)
        unpatchify the logits of each patch in place        (B, K, H, W, D)

    The ViT is ``.vit`` with its token grid as ``.feat_size``, as in MONAI's ``UNETR``, so that an MAE encoder of
    the same patch size loads into it with :func:`~shared.networks.encoder_transfer.load_mae_encoder` and
    :func:`~shared.optimizers.layer_decay.param_groups` finds its blocks (the head gets the full learning rate).

    Args:
        in_channels: number of input channels.
        out_channels: number of classes ``K``.
        img_size: spatial size of the input; every side a multiple of ``patch_size``.
        patch_size: spatial size of a patch (one side for cubic or square patches). Defaults to 16.
        hidden_size: token width. Defaults to 768.
        mlp_dim: transformer MLP width. Defaults to 3072.
        num_layers: transformer blocks. Defaults to 12.
        num_heads: attention heads. Defaults to 12.
        proj_type: patch embedding, ``"conv"`` or ``"perceptron"``. Defaults to ``"conv"``.
        dropout_rate: dropout of the ViT. Defaults to 0.0.
        spatial_dims: 2 or 3. Defaults to 3.
        qkv_bias: bias in the attention's qkv projection. Defaults to False.

    Example::

        >>> net = ViTLinearSeg(in_channels=1, out_channels=14, img_size=24, patch_size=4, hidden_size=96,
        ...                    mlp_dim=384, num_heads=4)
        >>> net(torch.rand(2, 1, 24, 24, 24)).shape, net.feat_size
        (torch.Size([2, 14, 24, 24, 24]), (6, 6, 6))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        img_size: Sequence[int] | int,
        patch_size: Sequence[int] | int = 16,
        hidden_size: int = 768,
        mlp_dim: int = 3072,
        num_layers: int = 12,
        num_heads: int = 12,
        proj_type: str = "conv",
        dropout_rate: float = 0.0,
        spatial_dims: int = 3,
        qkv_bias: bool = False,
    ) -> None:
        super().__init__()
        self.img_size = ensure_tuple_rep(img_size, spatial_dims)
        self.patch_size = ensure_tuple_rep(patch_size, spatial_dims)
        self.feat_size = grid_size(self.img_size, self.patch_size)
        self.out_channels = out_channels
        self.vit = ViT(
            in_channels=in_channels,
            img_size=self.img_size,
            patch_size=self.patch_size,
            hidden_size=hidden_size,
            mlp_dim=mlp_dim,
            num_layers=num_layers,
            num_heads=num_heads,
            proj_type=proj_type,
            classification=False,
            dropout_rate=dropout_rate,
            spatial_dims=spatial_dims,
            qkv_bias=qkv_bias,
        )
        self.head = nn.Linear(hidden_size, out_channels * math.prod(self.patch_size))

    def forward(self, x_in: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x_in: ``(B, in_channels, *img_size)``.

        Returns:
            ``(B, out_channels, *img_size)`` logits.
        """
        tokens, _ = self.vit(x_in)
        return unpatchify(self.head(tokens), self.patch_size, self.img_size)
