"""A logits-only MONAI ViT classifier.

MONAI's ``ViT`` returns ``(logits, hidden_states)``; :class:`ViTClassifier` is the same network (same parameter
names, so its state dict is a plain ``ViT`` state dict and :func:`load_mae_encoder` fills it) whose forward returns
the logits alone, which is what ``SupervisedTrainer``, ``SupervisedEvaluator``, ``verify_net_in_out`` and
``ckpt_export`` expect.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import ViT
from monai.utils import ensure_tuple_rep

from .attention import fused_attention
from .patches import grid_size

__all__ = ["ViTClassifier"]


class ViTClassifier(ViT):
    """``monai.networks.nets.ViT`` with ``classification=True`` whose forward returns the logits ``(B, num_classes)``
    only, and whose token grid is ``feat_size``. Same arguments as ``ViT`` (``classification`` is forced on) except:

    Args:
        post_activation: None (default) gives raw logits, for ``BCEWithLogitsLoss``; ``"Tanh"`` as in ``ViT``.
        use_flash_attention: compute attention with ``scaled_dot_product_attention`` (same weights, same result);
            not taken with dropout (see :func:`fused_attention`), refused with ``save_attn`` (the fused kernel keeps
            no attention map).
    """

    def __init__(
        self,
        in_channels: int,
        img_size: Sequence[int] | int,
        patch_size: Sequence[int] | int,
        num_classes: int,
        post_activation: str | None = None,
        use_flash_attention: bool = False,
        **kwargs,
    ) -> None:
        kwargs.pop("classification", None)
        if use_flash_attention and kwargs.get("save_attn", False):
            raise ValueError("save_attn needs the attention map, which use_flash_attention does not keep; "
                             "set use_flash_attention to False.")
        super().__init__(
            in_channels, img_size, patch_size, classification=True, num_classes=num_classes,
            post_activation=post_activation, **kwargs,
        )
        spatial_dims = kwargs.get("spatial_dims", 3)
        # the token grid, as in MONAI's UNETR: load_mae_encoder compares it with the pre-training grid
        self.feat_size = grid_size(ensure_tuple_rep(img_size, spatial_dims), ensure_tuple_rep(patch_size, spatial_dims))
        if fused_attention(use_flash_attention, kwargs.get("dropout_rate", 0.0)):
            for block in self.blocks:
                block.attn.use_flash_attention = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``ViT.forward`` without collecting the hidden states (written out, not through ``super()``, so that the
        network can be scripted with TorchScript).

        In eval mode the classification head runs in float32 with autocast off (:meth:`_head_in_float32`); in
        training it runs as autocast chooses.
        """
        x = self.patch_embedding(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        if self.training or torch.jit.is_scripting():
            return self.classification_head(x[:, 0])
        return self._head_in_float32(x[:, 0])

    @torch.jit.unused
    def _head_in_float32(self, features: torch.Tensor) -> torch.Tensor:
        """The classification head on ``features`` in float32, autocast disabled.

        Under autocast (e.g. :class:`scripts.inferers.autocast.AutocastInferer`) the head's ``Linear`` would run in
        bfloat16, whose 8-bit mantissa leaves the logits about three significant digits: over a large test set a
        rare finding's probabilities take a few hundred distinct values, with ties in ``predictions.csv`` and coarse
        ROC curves. Evaluation and inference call it; training keeps autocast's choice, so its numerics are those
        of the runs already reported. (A TorchScript copy of the network runs its head as autocast chooses.)

        A head whose weights were converted to half precision (e.g. ``net.to(torch.bfloat16)``) runs as it is.

        Args:
            features: ``(B, hidden_size)`` class-token features after the final norm.

        Returns:
            ``(B, num_classes)`` logits, float32 unless the head's weights are in another dtype.
        """
        if next(self.classification_head.parameters()).dtype != torch.float32:
            return self.classification_head(features)
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.classification_head(features.float())
