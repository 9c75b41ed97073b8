"""Masked autoencoder (He et al. 2022) with a MONAI ViT encoder, for 2D and 3D medical images.

The encoder is built from MONAI's ``PatchEmbeddingBlock`` and ``TransformerBlock`` and its parameters carry the names
of ``monai.networks.nets.ViT``, so ``MaskedAutoencoderViT.encoder.state_dict()`` loads with ``strict=True`` into
``ViT(classification=False)`` and into ``UNETR(...).vit``: the downstream networks of Zhou et al., "Self Pre-training
with Masked Autoencoders for Medical Image Classification and Segmentation" (ISBI 2023).

The forward pass follows the reference implementation step by step: draw (or take) a mask, embed the patches, run
the encoder on the visible patches only, fill the hidden positions with a mask token, decode every patch, and score
the reconstruction on the hidden patches only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks import PatchEmbeddingBlock, TransformerBlock
from monai.networks.blocks.pos_embed_utils import build_sincos_position_embedding
from monai.utils import ensure_tuple_rep

from .attention import fused_attention
from .patches import expand_patch_mask, grid_size, num_masked_patches, patchify, shape_text, unpatchify

__all__ = ["MAEEncoder", "MaskedAutoencoderViT", "MAEReconstructionNet", "mae_loss"]


class MAEEncoder(nn.Module):
    """The encoder half of the masked autoencoder: patch embedding, transformer blocks and final norm.

    Its submodules are named as in ``monai.networks.nets.ViT`` (``patch_embedding``, ``blocks``, ``norm``), so its
    state dict is a ViT state dict. The position embedding is the fixed sin-cos one; it is stored in the state dict
    and becomes the (learnable) starting point of the downstream network's position embedding.

    Args:
        in_channels: number of input channels.
        img_size: spatial size of the input.
        patch_size: spatial size of a patch.
        hidden_size: token width.
        mlp_dim: width of the transformer MLPs.
        num_layers: number of transformer blocks.
        num_heads: number of attention heads.
        qkv_bias: bias in the attention's qkv projection (``ViT``/``UNETR`` default: False).
        dropout_rate: dropout in the embedding and the blocks.
        spatial_dims: 2 or 3.
        use_flash_attention: attention through ``torch.nn.functional.scaled_dot_product_attention``; not taken with
            dropout (see :func:`fused_attention`).
    """

    def __init__(
        self,
        in_channels: int,
        img_size: Sequence[int],
        patch_size: Sequence[int],
        hidden_size: int = 768,
        mlp_dim: int = 3072,
        num_layers: int = 12,
        num_heads: int = 12,
        qkv_bias: bool = False,
        dropout_rate: float = 0.0,
        spatial_dims: int = 3,
        use_flash_attention: bool = True,
    ) -> None:
        super().__init__()
        use_flash_attention = fused_attention(use_flash_attention, dropout_rate)
        self.patch_embedding = PatchEmbeddingBlock(
            in_channels=in_channels,
            img_size=img_size,
            patch_size=patch_size,
            hidden_size=hidden_size,
            num_heads=num_heads,
            proj_type="conv",
            pos_embed_type="sincos",
            dropout_rate=dropout_rate,
            spatial_dims=spatial_dims,
        )
        self.blocks = nn.ModuleList(
            TransformerBlock(
                hidden_size=hidden_size,
                mlp_dim=mlp_dim,
                num_heads=num_heads,
                dropout_rate=dropout_rate,
                qkv_bias=qkv_bias,
                use_flash_attention=use_flash_attention,
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Run the transformer blocks and the final norm on ``(B, L, hidden_size)`` tokens."""
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)


class MaskedAutoencoderViT(nn.Module):
    """Masked autoencoder with a ViT encoder, for ``spatial_dims`` 2 or 3 and any number of input channels.

    Defaults are the paper's 3D configuration: ViT-B encoder (768 wide, 12 layers, 12 heads), decoder 384 wide,
    8 layers, 12 heads, patch 16, 75% of the patches hidden. For 2D the ChestX-ray14 bundle uses He et al.'s MAE decoder
    (512 wide, 8 layers, 16 heads); the paper's released CXR config has 256 wide, 8 layers, 8 heads.

    Args:
        in_channels: number of input channels; every channel is reconstructed.
        img_size: spatial size of the input, e.g. ``(96, 96, 96)`` or ``224``.
        patch_size: spatial size of a patch.
        hidden_size: encoder token width.
        mlp_dim: encoder MLP width.
        num_layers: encoder depth.
        num_heads: encoder attention heads.
        decoder_hidden_size: decoder token width.
        decoder_mlp_dim: decoder MLP width; ``4 * decoder_hidden_size`` when None.
        decoder_num_layers: decoder depth.
        decoder_num_heads: decoder attention heads.
        mask_ratio: fraction of the patches hidden from the encoder; ``round(mask_ratio * N)`` patches are hidden.
        norm_pix_loss: score the reconstruction against targets normalised per patch and per channel (zero mean,
            unit variance; biased variance, eps 1e-6, as SelfMedMAE's LayerNorm). He et al.'s ``norm_pix_loss``
            normalises all channels of a patch together with the unbiased variance: the same for one channel up to
            a scale of ``sqrt((P - 1) / P)`` over ``P`` pixels per patch; per channel keeps one MRI contrast's
            brightness from setting another's target.
        cls_token: prepend a learnable class token to the encoder sequence. Use it when the downstream network is a
            ``ViT`` classifier (which has one); leave it off for ``UNETR`` (which has none).
        qkv_bias: bias in the attention's qkv projection; must match the downstream network (``ViT``/``UNETR``
            default: False).
        dropout_rate: dropout in the encoder and decoder.
        spatial_dims: 2 or 3.
        use_flash_attention: attention through ``torch.nn.functional.scaled_dot_product_attention``; not taken with
            dropout (see :func:`fused_attention`).

    Example::

        >>> net = MaskedAutoencoderViT(in_channels=1, img_size=96, patch_size=16)
        >>> out = net(torch.rand(2, 1, 96, 96, 96))
        >>> out["loss"], out["pred"].shape, out["mask"].shape, out["reconstruction"].shape
        (tensor(...), torch.Size([2, 216, 4096]), torch.Size([2, 216]), torch.Size([2, 1, 96, 96, 96]))
    """

    def __init__(
        self,
        in_channels: int,
        img_size: Sequence[int] | int,
        patch_size: Sequence[int] | int = 16,
        hidden_size: int = 768,
        mlp_dim: int = 3072,
        num_layers: int = 12,
        num_heads: int = 12,
        decoder_hidden_size: int = 384,
        decoder_mlp_dim: int | None = None,
        decoder_num_layers: int = 8,
        decoder_num_heads: int = 12,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = False,
        cls_token: bool = False,
        qkv_bias: bool = False,
        dropout_rate: float = 0.0,
        spatial_dims: int = 3,
        use_flash_attention: bool = True,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        use_flash_attention = fused_attention(use_flash_attention, dropout_rate)
        self.img_size = ensure_tuple_rep(img_size, spatial_dims)
        self.patch_size = ensure_tuple_rep(patch_size, spatial_dims)
        self.grid_size = grid_size(self.img_size, self.patch_size)
        self.num_patches = math.prod(self.grid_size)
        self.num_masked = num_masked_patches(self.num_patches, mask_ratio)
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.in_channels = in_channels

        self.encoder = MAEEncoder(
            in_channels=in_channels,
            img_size=self.img_size,
            patch_size=self.patch_size,
            hidden_size=hidden_size,
            mlp_dim=mlp_dim,
            num_layers=num_layers,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            dropout_rate=dropout_rate,
            spatial_dims=spatial_dims,
            use_flash_attention=use_flash_attention,
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden_size)) if cls_token else None

        decoder_mlp_dim = 4 * decoder_hidden_size if decoder_mlp_dim is None else decoder_mlp_dim
        self.decoder_embed = nn.Linear(hidden_size, decoder_hidden_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_hidden_size))
        self.decoder_pos_embed = build_sincos_position_embedding(
            list(self.grid_size), decoder_hidden_size, spatial_dims
        )
        self.decoder_blocks = nn.ModuleList(
            TransformerBlock(
                hidden_size=decoder_hidden_size,
                mlp_dim=decoder_mlp_dim,
                num_heads=decoder_num_heads,
                dropout_rate=dropout_rate,
                qkv_bias=qkv_bias,
                use_flash_attention=use_flash_attention,
            )
            for _ in range(decoder_num_layers)
        )
        self.decoder_norm = nn.LayerNorm(decoder_hidden_size)
        self.decoder_pred = nn.Linear(decoder_hidden_size, in_channels * math.prod(self.patch_size))
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Initialise as the reference MAE: xavier-uniform linear and patch-embedding weights, zero biases,
        unit LayerNorms, N(0, 0.02) tokens. The sin-cos position embeddings stay fixed."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        patch_conv = self.encoder.patch_embedding.patch_embeddings
        nn.init.xavier_uniform_(patch_conv.weight.view(patch_conv.weight.shape[0], -1))
        nn.init.zeros_(patch_conv.bias)
        nn.init.normal_(self.mask_token, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)

    def random_masking(self, batch_size: int, device: torch.device | str) -> torch.Tensor:
        """Draw an independent random mask per sample, on ``device``.

        Returns:
            ``(B, N)`` bool, True where a patch is hidden; exactly ``self.num_masked`` per row.
        """
        device = torch.device(device) if isinstance(device, str) else device  # one type for TorchScript
        noise = torch.rand(batch_size, self.num_patches, device=device)
        hidden = torch.argsort(noise, dim=1)[:, : self.num_masked]
        mask = torch.zeros(batch_size, self.num_patches, dtype=torch.bool, device=device)
        return mask.scatter(1, hidden, torch.ones_like(hidden, dtype=torch.bool))  # a tensor source keeps it traceable

    def forward_encoder(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Embed every patch, keep the visible ones and encode them.

        Args:
            images: ``(B, C, *img_size)``.
            mask: ``(B, N)`` bool, True where hidden.

        Returns:
            ``(B, V, hidden_size)`` for the ``V = N - num_masked`` visible patches in grid order, preceded by the
            class token when the network has one.
        """
        tokens = self.encoder.patch_embedding(images)
        visible_ids = self.visible_ids(mask)
        tokens = torch.gather(tokens, 1, visible_ids.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)
        return self.encoder(tokens)

    def forward_decoder(self, latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Put mask tokens at the hidden positions and predict the pixels of every patch.

        The class token, when the network has one, goes through the decoder in front of the patches (without a
        position embedding) and its prediction is dropped after it, as in the reference MAE: the reconstruction
        loss then reaches the encoder's last block at the class token too, which a ``ViT`` classifier reads.

        Args:
            latent: encoder output of :meth:`forward_encoder`.
            mask: ``(B, N)`` bool, True where hidden.

        Returns:
            ``(B, N, C * prod(patch_size))`` predicted patches, in the order of :func:`patchify`.
        """
        tokens = self.decoder_embed(latent)
        num_cls = 0 if self.cls_token is None else 1
        cls, tokens = tokens[:, :num_cls], tokens[:, num_cls:]
        mask_tokens = self.mask_token.to(tokens.dtype).expand(tokens.shape[0], self.num_masked, -1)
        tokens = torch.cat([tokens, mask_tokens], dim=1)
        # tokens are [visible..., hidden...]; put each back at its grid position
        restore_ids = torch.argsort(self.shuffle_ids(mask), dim=1)
        tokens = torch.gather(tokens, 1, restore_ids.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        tokens = torch.cat([cls, tokens + self.decoder_pos_embed.to(tokens.dtype)], dim=1)
        for block in self.decoder_blocks:
            tokens = block(tokens)
        return self.decoder_pred(self.decoder_norm(tokens))[:, num_cls:]

    def forward_loss(self, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error over the hidden patches only (visible patches do not count).

        Args:
            images: ``(B, C, *img_size)``.
            pred: ``(B, N, C * prod(patch_size))``.
            mask: ``(B, N)`` bool, True where hidden.

        Returns:
            scalar loss, computed in float32.
        """
        target = patchify(images.float(), list(self.patch_size))
        if self.norm_pix_loss:
            target = self.normalize_patches(target)
        per_patch = (pred.float() - target).pow(2).mean(dim=-1)
        mask = mask.to(per_patch.dtype)
        return (per_patch * mask).sum() / mask.sum()

    def predict_patches(
        self, images: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hide patches, encode the visible ones and predict every patch: the part of :meth:`forward` that
        :class:`MAEReconstructionNet` shares (a method, not ``super().forward``, so that both script with TorchScript).

        Args:
            images: ``(B, C, *img_size)``.
            mask: optional ``(B, N)`` bool (True where hidden), see :meth:`forward`; drawn here when None.

        Returns:
            ``pred`` (``(B, N, C * prod(patch_size))``) and the ``(B, N)`` bool ``mask`` used.
        """
        if mask is None:
            mask = self.random_masking(images.shape[0], images.device)
        else:  # drawn elsewhere: its count is checked (one small host sync; a mask drawn here is right by construction)
            self.check_mask(mask, images.shape[0])
        mask = mask.to(device=images.device, dtype=torch.bool)
        latent = self.forward_encoder(images, mask)
        return self.forward_decoder(latent, mask), mask

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Hide patches, encode the visible ones, reconstruct all of them and score the hidden ones.

        Args:
            images: ``(B, C, *img_size)``.
            mask: optional ``(B, N)`` bool (True where hidden) with exactly ``round(mask_ratio * N)`` hidden patches
                per sample, e.g. drawn by :class:`RandPatchMaskd` in the data loader; drawn here when None.

        Returns:
            a dict with ``loss`` (scalar), ``pred`` (``(B, N, C * prod(patch_size))``, in the loss's target space),
            ``mask`` (``(B, N)`` bool) and ``reconstruction`` (``(B, C, *img_size)``, the prediction of every patch in
            image intensities, detached; for pictures).
        """
        pred, mask = self.predict_patches(images, mask)
        loss = self.forward_loss(images, pred, mask)
        return {"loss": loss, "pred": pred, "mask": mask, "reconstruction": self.reconstruct(images, pred)}

    def check_mask(self, mask: torch.Tensor, batch_size: int) -> None:
        """Raise a ``ValueError`` unless ``mask`` is ``(batch_size, N)`` with ``num_masked`` hidden patches per row:
        with any other count the encoder would see hidden patches, or visible ones would be replaced by mask tokens,
        without an error (e.g. a mask drawn with another ``mask_ratio`` than the network's)."""
        if list(mask.shape) != [batch_size, self.num_patches]:
            raise ValueError(f"the mask is {shape_text(list(mask.shape))}; expected "
                             f"{shape_text([batch_size, self.num_patches])} (one row of patches per image).")
        counts = mask.to(torch.bool).sum(dim=1)
        if not bool((counts == self.num_masked).all()):
            hidden_counts: list[int] = torch.unique(counts).tolist()  # sorted
            raise ValueError(f"the mask hides {hidden_counts} of {self.num_patches} patches per image; "
                             f"this network hides {self.num_masked} (mask_ratio {self.mask_ratio}): give the masking "
                             "transform and the network the same mask_ratio.")

    def reconstruct(self, images: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Turn predicted patches back into an image, undoing the per-patch normalisation of ``norm_pix_loss``.

        With ``norm_pix_loss`` the network predicts each patch's normalised pattern only, so every patch, hidden ones
        included, is shown at the mean and standard deviation of the true patch in ``images`` (as in the MAE
        reference's pictures): a hidden patch's brightness and contrast come from the input, not from the network.

        Returns:
            ``(B, C, *img_size)`` float32.
        """
        with torch.no_grad():  # a with block, not the decorator, which TorchScript cannot compile
            pred = pred.float()
            if self.norm_pix_loss:
                target = patchify(images.float(), list(self.patch_size))
                mean, std = self.patch_statistics(target)
                pred = self.split_channels(pred) * std + mean
                pred = pred.flatten(2)
            return unpatchify(pred, list(self.patch_size), list(self.img_size))

    def normalize_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Normalise each channel of each patch to zero mean and unit variance."""
        mean, std = self.patch_statistics(patches)
        return ((self.split_channels(patches) - mean) / std).flatten(2)

    def patch_statistics(self, patches: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-patch, per-channel mean and standard deviation, each ``(B, N, C, 1)``."""
        per_channel = self.split_channels(patches)
        mean = per_channel.mean(dim=-1, keepdim=True)
        var = per_channel.var(dim=-1, unbiased=False, keepdim=True)
        return mean, (var + eps).sqrt()

    def split_channels(self, patches: torch.Tensor) -> torch.Tensor:
        """``(B, N, C * P)`` -> ``(B, N, C, P)``."""
        return patches.reshape(patches.shape[0], patches.shape[1], self.in_channels, -1)

    def shuffle_ids(self, mask: torch.Tensor) -> torch.Tensor:
        """Patch indices with the visible ones first, each group in grid order: ``(B, N)``."""
        return torch.argsort(mask.to(torch.uint8), dim=1, stable=True)

    def visible_ids(self, mask: torch.Tensor) -> torch.Tensor:
        """Indices of the visible patches in grid order: ``(B, N - num_masked)``."""
        return self.shuffle_ids(mask)[:, : self.num_patches - self.num_masked]


class MAEReconstructionNet(MaskedAutoencoderViT):
    """A :class:`MaskedAutoencoderViT` (same arguments, same weights) whose forward returns pictures, not a loss.

    For inference over whole volumes with a sliding-window inferer (use ``overlap=0`` so that windows, and their
    masks, do not overlap) and for ``verify_net_in_out``/``ckpt_export``, which need a tensor output. It compiles with
    ``torch.jit.script`` (the model zoo's CI scripts ``network_def``), drawing the same masks from the same seed.
    """

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """
        Args:
            images: ``(B, C, *img_size)``.
            mask: optional ``(B, N)`` bool, True where hidden; drawn with ``mask_ratio`` when None.

        Returns:
            ``(B, 2 * C, *img_size)``: channels ``[:C]`` the input with its hidden patches set to zero, channels
            ``[C:]`` the reconstruction (predicted hidden patches, visible patches as given; with ``norm_pix_loss``
            each hidden patch at its true mean and standard deviation, see :meth:`reconstruct`).
        """
        pred, mask = self.predict_patches(images, mask)
        hidden = expand_patch_mask(mask, list(self.patch_size), list(self.img_size))
        masked_input = images.float().masked_fill(hidden, 0.0)
        reconstruction = torch.where(hidden, self.reconstruct(images, pred), images.float())
        return torch.cat([masked_input, reconstruction], dim=1)


def mae_loss(output: dict[str, torch.Tensor], target: object = None) -> torch.Tensor:
    """The loss a :class:`MaskedAutoencoderViT` computed in its forward, for MONAI's ``SupervisedTrainer``, whose
    ``loss_function(pred, label)`` receives the network output. Use it in a config as
    ``{"_target_": "scripts.networks.mae.mae_loss", "_mode_": "callable"}``."""
    return output["loss"]
