"""Code shared by the MAE self pre-training bundles, grouped by role as MONAI groups its own code.

In the repository this package is ``shared``; inside each bundle it is the ``scripts`` package (``bundles/*/scripts``
links here, and the packaging tool copies in the modules a bundle's configs use), which is where MONAI bundles and
MONAI Label look for custom code. Modules import each other relatively so both names work, and no package imports
its modules eagerly: a config names what it uses by its full path, e.g. ``scripts.networks.mae.MaskedAutoencoderViT``.

- ``networks``: the masked autoencoder, the logits-only ViT classifier, UNETR with 8-voxel patches, patch helpers,
  MAE encoder -> UNETR/ViT.
- ``transforms``: MAE patch masking, random resized crop, X-ray loading, BraTS labels <-> regions, input checks.
- ``data``: data set layouts and datalists (BraTS 2021 / MSD Task01, ChestX-ray14), splits, the datalist cache.
- ``handlers``: ignite handlers (atomic checkpoints, encoder loading, reconstruction pictures, the MAE health check,
  metric savers).
- ``metrics``: per-case segmentation metrics, multi-label AUC, the label-free MAE health check.
- ``optimizers``: parameter groups with layer-wise learning-rate decay.
- ``visualize``: reconstruction pictures.
- ``utils``: atomic file writes, distributed helpers, NaN-aware statistics.
"""

from .utils.errors import install_excepthook, is_bundle_run

if is_bundle_run():  # a failed run ends with its cause, not with MONAI's "Failed to evaluate ConfigExpression"
    install_excepthook()  # (only there: an import in MONAI Label or a notebook leaves the process as it is)
