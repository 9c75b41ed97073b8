"""UNETR with 8-voxel patches: MONAI's ``UNETR`` (which fixes the patch at 16) with tokens at 1/8 resolution.

At 3x3x4 mm spacing a 48^3 crop with 8^3 patches has the field (144x144x192 mm) and the token size (24x24x32 mm) of the
paper's 96^3 crops of 16^3 patches at 1.5x1.5x2 mm: 216 tokens. The decoder follows the official SelfMedMAE
``UNETRx8_decoder`` (``lib/networks/unetr_decoder.py``): UNETR's decoder with one up-sampling stage less.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks.dynunet_block import UnetOutBlock
from monai.networks.blocks.unetr_block import UnetrBasicBlock, UnetrPrUpBlock, UnetrUpBlock
from monai.networks.nets.vit import ViT
from monai.utils import ensure_tuple_rep

__all__ = ["UNETRPatch8"]

PATCH_SIZE = 8
NUM_LAYERS = 12


class UNETRPatch8(nn.Module):
    """UNETR (Hatamizadeh et al. 2022) whose 12-block ViT cuts the image into 8-voxel patches.

    Like MONAI's ``UNETR`` it exposes the encoder as ``.vit`` (a ``monai.networks.nets.ViT``) and the token grid as
    ``.feat_size``, so a patch-8 :class:`~shared.networks.mae.MaskedAutoencoderViT` encoder loads into it with
    :func:`~shared.networks.encoder_transfer.load_mae_encoder` and :func:`~shared.optimizers.layer_decay.param_groups`
    finds its blocks. Shapes for a ``(B, C, H, W, D)`` input, ``F = feature_size``, ``E = hidden_size``, tokens on the
    ``(H/8, W/8, D/8)`` grid; ``z_k`` is the output of transformer block ``k`` (1-based) reshaped to that grid::

        encoder1  UnetrBasicBlock(x)                       (B, F,  H,   W,   D)
        encoder2  UnetrPrUpBlock(z_4), 2 up-samplings       (B, 2F, H/2, W/2, D/2)
        encoder3  UnetrPrUpBlock(z_8), 1 up-sampling        (B, 4F, H/4, W/4, D/4)
        decoder4  UnetrUpBlock(norm(z_12), encoder3)        (B, 4F, H/4, W/4, D/4)
        decoder3  UnetrUpBlock(decoder4, encoder2)          (B, 2F, H/2, W/2, D/2)
        decoder2  UnetrUpBlock(decoder3, encoder1)          (B, F,  H,   W,   D)
        out       UnetOutBlock(decoder2)                    (B, out_channels, H, W, D)

    MONAI's patch-16 UNETR reads blocks 4/7/10 and has a fourth stage (``encoder4``/``decoder5``) at 1/8; here the
    tokens already are at 1/8, so that stage is gone and the skips are spread over thirds of the depth. The official
    ``UNETRx8_decoder`` indexes ``hidden_states_out[4]`` and ``[8]``, which in its ``ViTBackbone`` are blocks 5 and 9:
    pass ``skip_blocks=(5, 9)`` for exactly that.

    Args:
        in_channels: number of input channels.
        out_channels: number of output channels.
        img_size: spatial size of the input; every side a multiple of 8.
        feature_size: width ``F`` of the CNN decoder at full resolution. Defaults to 16.
        hidden_size: token width. Defaults to 768.
        mlp_dim: transformer MLP width. Defaults to 3072.
        num_heads: attention heads. Defaults to 12.
        proj_type: patch embedding, ``"conv"`` or ``"perceptron"``. Defaults to ``"conv"``.
        norm_name: feature normalisation of the CNN blocks. Defaults to ``"instance"``.
        conv_block: convolutions after each up-sampling of the skip paths. Defaults to True.
        res_block: residual CNN blocks. Defaults to True.
        dropout_rate: dropout of the ViT. Defaults to 0.0.
        spatial_dims: 2 or 3. Defaults to 3.
        qkv_bias: bias in the attention's qkv projection. Defaults to False.
        save_attn: keep the attention maps in the attention blocks. Defaults to False.
        skip_blocks: the two transformer blocks (1-based) whose outputs feed ``encoder2`` and ``encoder3``.
            Defaults to (4, 8).

    Example::

        >>> net = UNETRPatch8(in_channels=1, out_channels=14, img_size=48, feature_size=8, hidden_size=96,
        ...                   mlp_dim=384, num_heads=4)
        >>> net(torch.rand(2, 1, 48, 48, 48)).shape, net.feat_size
        (torch.Size([2, 14, 48, 48, 48]), (6, 6, 6))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        img_size: Sequence[int] | int,
        feature_size: int = 16,
        hidden_size: int = 768,
        mlp_dim: int = 3072,
        num_heads: int = 12,
        proj_type: str = "conv",
        norm_name: tuple | str = "instance",
        conv_block: bool = True,
        res_block: bool = True,
        dropout_rate: float = 0.0,
        spatial_dims: int = 3,
        qkv_bias: bool = False,
        save_attn: bool = False,
        skip_blocks: Sequence[int] = (4, 8),
    ) -> None:
        super().__init__()
        if not 0 <= dropout_rate <= 1:
            raise ValueError("dropout_rate should be between 0 and 1.")
        if hidden_size % num_heads != 0:
            raise ValueError("hidden_size should be divisible by num_heads.")
        img_size = ensure_tuple_rep(img_size, spatial_dims)
        if any(side % PATCH_SIZE for side in img_size):
            raise ValueError(f"every side of img_size must be a multiple of {PATCH_SIZE}, got {img_size}.")
        if len(skip_blocks) != 2 or not all(1 <= b < NUM_LAYERS for b in skip_blocks):
            raise ValueError(f"skip_blocks must be two block numbers in 1..{NUM_LAYERS - 1}, got {skip_blocks}.")

        self.num_layers = NUM_LAYERS
        self.patch_size = ensure_tuple_rep(PATCH_SIZE, spatial_dims)
        self.feat_size = tuple(side // p for side, p in zip(img_size, self.patch_size))
        self.hidden_size = hidden_size
        self.classification = False
        self.skip_blocks = tuple(skip_blocks)
        self.vit = ViT(
            in_channels=in_channels,
            img_size=img_size,
            patch_size=self.patch_size,
            hidden_size=hidden_size,
            mlp_dim=mlp_dim,
            num_layers=self.num_layers,
            num_heads=num_heads,
            proj_type=proj_type,
            classification=self.classification,
            dropout_rate=dropout_rate,
            spatial_dims=spatial_dims,
            qkv_bias=qkv_bias,
            save_attn=save_attn,
        )
        common = {"spatial_dims": spatial_dims, "kernel_size": 3, "norm_name": norm_name, "res_block": res_block}
        skip = {"stride": 1, "upsample_kernel_size": 2, "conv_block": conv_block, **common}
        up = {"upsample_kernel_size": 2, **common}
        self.encoder1 = UnetrBasicBlock(in_channels=in_channels, out_channels=feature_size, stride=1, **common)
        # num_layer extra up-samplings after the first: 1/8 -> 1/2 and 1/8 -> 1/4
        self.encoder2 = UnetrPrUpBlock(in_channels=hidden_size, out_channels=feature_size * 2, num_layer=1, **skip)
        self.encoder3 = UnetrPrUpBlock(in_channels=hidden_size, out_channels=feature_size * 4, num_layer=0, **skip)
        self.decoder4 = UnetrUpBlock(in_channels=hidden_size, out_channels=feature_size * 4, **up)
        self.decoder3 = UnetrUpBlock(in_channels=feature_size * 4, out_channels=feature_size * 2, **up)
        self.decoder2 = UnetrUpBlock(in_channels=feature_size * 2, out_channels=feature_size, **up)
        self.out = UnetOutBlock(spatial_dims=spatial_dims, in_channels=feature_size, out_channels=out_channels)
        self.proj_axes = (0, spatial_dims + 1) + tuple(d + 1 for d in range(spatial_dims))
        self.proj_view_shape = list(self.feat_size) + [self.hidden_size]

    def proj_feat(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, E)`` tokens -> ``(B, E, *feat_size)`` feature map."""
        return x.view([x.size(0)] + self.proj_view_shape).permute(self.proj_axes).contiguous()

    def forward(self, x_in: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x_in: ``(B, in_channels, *img_size)``.

        Returns:
            ``(B, out_channels, *img_size)`` logits.
        """
        x, hidden_states_out = self.vit(x_in)
        enc1 = self.encoder1(x_in)
        enc2 = self.encoder2(self.proj_feat(hidden_states_out[self.skip_blocks[0] - 1]))
        enc3 = self.encoder3(self.proj_feat(hidden_states_out[self.skip_blocks[1] - 1]))
        dec3 = self.decoder4(self.proj_feat(x), enc3)
        dec2 = self.decoder3(dec3, enc2)
        dec1 = self.decoder2(dec2, enc1)
        return self.out(dec1)
