"""UNETR with 8- or 4-voxel patches: MONAI's ``UNETR`` (which fixes the patch at 16) with tokens at 1/8 or 1/4 of the
input's resolution.

Small patches keep the paper's token geometry in a small crop. The paper's 96^3 crops of 16^3 patches at 1.5x1.5x2 mm
span 144x144x192 mm in 216 tokens of 24x24x32 mm; so do 48^3 crops of 8^3 patches at 3x3x4 mm (``UNETRPatch8``) and
24^3 crops of 4^3 patches at 6x6x8 mm (``UNETRPatch4``). The decoders follow the official SelfMedMAE
``UNETRx8_decoder`` (``lib/networks/unetr_decoder.py``): UNETR's decoder with one up-sampling stage less per halving
of the patch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks.dynunet_block import UnetOutBlock
from monai.networks.blocks.unetr_block import UnetrBasicBlock, UnetrPrUpBlock, UnetrUpBlock
from monai.networks.nets.vit import ViT
from monai.utils import ensure_tuple_rep

__all__ = ["UNETRPatch4", "UNETRPatch8"]

NUM_LAYERS = 12


class _SmallPatchUNETR(nn.Module, ABC):
    """What both small-patch UNETRs share: the arguments of MONAI's ``UNETR``, their checks, the ViT encoder (``.vit``,
    with the token grid as ``.feat_size``, so that a :class:`~shared.networks.mae.MaskedAutoencoderViT` encoder of the
    same patch loads into it with :func:`~shared.networks.encoder_transfer.load_mae_encoder` and
    :func:`~shared.optimizers.layer_decay.param_groups` finds its blocks), the full-resolution ``encoder1`` and the
    ``out`` block. A subclass sets ``PATCH_SIZE``, ``NUM_SKIPS`` and ``DEFAULT_SKIP_BLOCKS``, creates the blocks
    between the tokens and ``encoder1`` in :meth:`build_decoder` and wires them in :meth:`decode`.

    Args:
        in_channels: number of input channels.
        out_channels: number of output channels.
        img_size: spatial size of the input; every side a multiple of the patch size.
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
        skip_blocks: the transformer blocks (1-based) whose outputs feed the skip paths; the class's
            ``DEFAULT_SKIP_BLOCKS`` when None.
    """

    PATCH_SIZE: int
    NUM_SKIPS: int
    DEFAULT_SKIP_BLOCKS: tuple[int, ...]

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
        skip_blocks: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        skip_blocks = self.DEFAULT_SKIP_BLOCKS if skip_blocks is None else tuple(skip_blocks)
        if not 0 <= dropout_rate <= 1:
            raise ValueError("dropout_rate should be between 0 and 1.")
        if hidden_size % num_heads != 0:
            raise ValueError("hidden_size should be divisible by num_heads.")
        img_size = ensure_tuple_rep(img_size, spatial_dims)
        if any(side % self.PATCH_SIZE for side in img_size):
            raise ValueError(f"every side of img_size must be a multiple of {self.PATCH_SIZE}, got {img_size}.")
        if len(skip_blocks) != self.NUM_SKIPS or not all(1 <= b < NUM_LAYERS for b in skip_blocks):
            raise ValueError(f"skip_blocks must be {self.NUM_SKIPS} block number(s) in 1..{NUM_LAYERS - 1}, "
                             f"got {skip_blocks}.")
        self.num_layers = NUM_LAYERS
        self.patch_size = ensure_tuple_rep(self.PATCH_SIZE, spatial_dims)
        self.feat_size = tuple(side // p for side, p in zip(img_size, self.patch_size))
        self.hidden_size = hidden_size
        self.classification = False
        self.skip_blocks = skip_blocks
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
        self.proj_axes = (0, spatial_dims + 1) + tuple(d + 1 for d in range(spatial_dims))
        self.proj_view_shape = list(self.feat_size) + [self.hidden_size]
        block = {"spatial_dims": spatial_dims, "kernel_size": 3, "norm_name": norm_name, "res_block": res_block}
        self.encoder1 = UnetrBasicBlock(in_channels=in_channels, out_channels=feature_size, stride=1, **block)
        skip = {"stride": 1, "upsample_kernel_size": 2, "conv_block": conv_block, **block}
        self.build_decoder(feature_size, skip=skip, up={"upsample_kernel_size": 2, **block})
        self.out = UnetOutBlock(spatial_dims=spatial_dims, in_channels=feature_size, out_channels=out_channels)

    @abstractmethod
    def build_decoder(self, feature_size: int, skip: dict, up: dict) -> None:
        """Create the skip paths and up-sampling blocks between the tokens and ``encoder1``'s resolution.

        Args:
            feature_size: width ``F`` of the CNN blocks at full resolution.
            skip: arguments of every ``UnetrPrUpBlock`` but the channels and ``num_layer``.
            up: arguments of every ``UnetrUpBlock`` but the channels.
        """

    @abstractmethod
    def decode(self, tokens: torch.Tensor, hidden_states_out: list[torch.Tensor], enc1: torch.Tensor) -> torch.Tensor:
        """The decoder's full-resolution features.

        Args:
            tokens: the ViT's normed output as a feature map, ``(B, E, *feat_size)``.
            hidden_states_out: the outputs of the 12 transformer blocks, each ``(B, N, E)``.
            enc1: ``encoder1``'s features, ``(B, F, *img_size)``.

        Returns:
            ``(B, F, *img_size)``.
        """

    def forward(self, x_in: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x_in: ``(B, in_channels, *img_size)``.

        Returns:
            ``(B, out_channels, *img_size)`` logits.
        """
        x, hidden_states_out = self.vit(x_in)
        return self.out(self.decode(self.proj_feat(x), hidden_states_out, self.encoder1(x_in)))

    def proj_feat(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, E)`` tokens -> ``(B, E, *feat_size)`` feature map."""
        return x.view([x.size(0)] + self.proj_view_shape).permute(self.proj_axes).contiguous()

    def skip(self, hidden_states_out: list[torch.Tensor], i: int) -> torch.Tensor:
        """The feature map of the ``i``-th skip (0-based) of ``skip_blocks``."""
        return self.proj_feat(hidden_states_out[self.skip_blocks[i] - 1])


class UNETRPatch8(_SmallPatchUNETR):
    """UNETR (Hatamizadeh et al. 2022) whose 12-block ViT cuts the image into 8-voxel patches.

    Shapes for a ``(B, C, H, W, D)`` input, ``F = feature_size``, ``E = hidden_size``, tokens on the
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
        as :class:`_SmallPatchUNETR` (MONAI ``UNETR``'s arguments); ``img_size`` every side a multiple of 8;
        ``skip_blocks`` the two transformer blocks (1-based) whose outputs feed ``encoder2`` and ``encoder3``.
        Defaults to (4, 8).

    Example::

        >>> net = UNETRPatch8(in_channels=1, out_channels=14, img_size=48, feature_size=8, hidden_size=96,
        ...                   mlp_dim=384, num_heads=4)
        >>> net(torch.rand(2, 1, 48, 48, 48)).shape, net.feat_size
        (torch.Size([2, 14, 48, 48, 48]), (6, 6, 6))
    """

    PATCH_SIZE = 8
    NUM_SKIPS = 2
    DEFAULT_SKIP_BLOCKS = (4, 8)

    def build_decoder(self, feature_size: int, skip: dict, up: dict) -> None:
        # num_layer extra up-samplings after the first: 1/8 -> 1/2 and 1/8 -> 1/4
        self.encoder2 = UnetrPrUpBlock(in_channels=self.hidden_size, out_channels=feature_size * 2, num_layer=1, **skip)
        self.encoder3 = UnetrPrUpBlock(in_channels=self.hidden_size, out_channels=feature_size * 4, num_layer=0, **skip)
        self.decoder4 = UnetrUpBlock(in_channels=self.hidden_size, out_channels=feature_size * 4, **up)
        self.decoder3 = UnetrUpBlock(in_channels=feature_size * 4, out_channels=feature_size * 2, **up)
        self.decoder2 = UnetrUpBlock(in_channels=feature_size * 2, out_channels=feature_size, **up)

    def decode(self, tokens: torch.Tensor, hidden_states_out: list[torch.Tensor], enc1: torch.Tensor) -> torch.Tensor:
        enc2 = self.encoder2(self.skip(hidden_states_out, 0))
        enc3 = self.encoder3(self.skip(hidden_states_out, 1))
        dec3 = self.decoder4(tokens, enc3)
        dec2 = self.decoder3(dec3, enc2)
        return self.decoder2(dec2, enc1)


class UNETRPatch4(_SmallPatchUNETR):
    """UNETR (Hatamizadeh et al. 2022) whose 12-block ViT cuts the image into 4-voxel patches: :class:`UNETRPatch8`
    with one up-sampling stage less, and one skip from the middle of the depth.

    Shapes for a ``(B, C, H, W, D)`` input, ``F = feature_size``, ``E = hidden_size``, tokens on the ``(H/4, W/4, D/4)``
    grid, ``z_k`` the output of transformer block ``k`` (1-based) reshaped to that grid::

        encoder1  UnetrBasicBlock(x)                       (B, F,  H,   W,   D)
        encoder2  UnetrPrUpBlock(z_6), 1 up-sampling        (B, 2F, H/2, W/2, D/2)
        decoder3  UnetrUpBlock(norm(z_12), encoder2)        (B, 2F, H/2, W/2, D/2)
        decoder2  UnetrUpBlock(decoder3, encoder1)          (B, F,  H,   W,   D)
        out       UnetOutBlock(decoder2)                    (B, out_channels, H, W, D)

    Args:
        as :class:`_SmallPatchUNETR` (MONAI ``UNETR``'s arguments); ``img_size`` every side a multiple of 4;
        ``skip_blocks`` the one transformer block (1-based) whose output feeds ``encoder2``. Defaults to (6,).

    Example::

        >>> net = UNETRPatch4(in_channels=1, out_channels=14, img_size=24, feature_size=8, hidden_size=96,
        ...                   mlp_dim=384, num_heads=4)
        >>> net(torch.rand(2, 1, 24, 24, 24)).shape, net.feat_size
        (torch.Size([2, 14, 24, 24, 24]), (6, 6, 6))
    """

    PATCH_SIZE = 4
    NUM_SKIPS = 1
    DEFAULT_SKIP_BLOCKS = (6,)

    def build_decoder(self, feature_size: int, skip: dict, up: dict) -> None:
        self.encoder2 = UnetrPrUpBlock(in_channels=self.hidden_size, out_channels=feature_size * 2, num_layer=0, **skip)
        self.decoder3 = UnetrUpBlock(in_channels=self.hidden_size, out_channels=feature_size * 2, **up)
        self.decoder2 = UnetrUpBlock(in_channels=feature_size * 2, out_channels=feature_size, **up)

    def decode(self, tokens: torch.Tensor, hidden_states_out: list[torch.Tensor], enc1: torch.Tensor) -> torch.Tensor:
        enc2 = self.encoder2(self.skip(hidden_states_out, 0))
        dec2 = self.decoder3(tokens, enc2)
        return self.decoder2(dec2, enc1)
