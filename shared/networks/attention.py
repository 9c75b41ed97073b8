"""When transformer blocks may compute attention with ``torch.nn.functional.scaled_dot_product_attention``."""

from __future__ import annotations

import logging

__all__ = ["fused_attention"]

logger = logging.getLogger(__name__)


def fused_attention(use_flash_attention: bool, dropout_rate: float) -> bool:
    """Whether MONAI's attention blocks may take the fused path (``use_flash_attention``).

    MONAI's ``SABlock`` (1.6) passes its ``dropout_rate`` to ``scaled_dot_product_attention`` in evaluation mode too,
    so with dropout the fused path would drop attention weights at inference and give a different result on every
    call; the unfused path, whose dropout layers follow ``train()``/``eval()``, is used instead.

    Args:
        use_flash_attention: the fused path is asked for.
        dropout_rate: the blocks' dropout.

    Returns:
        ``use_flash_attention``, or False (with a warning) when it is asked for together with dropout.
    """
    if use_flash_attention and dropout_rate > 0:
        logger.warning(
            f"dropout_rate {dropout_rate} with use_flash_attention: attention is computed without the fused kernel "
            "(MONAI's fused attention would also drop attention weights in evaluation)."
        )
        return False
    return use_flash_attention
