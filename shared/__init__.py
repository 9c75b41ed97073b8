"""Code shared by the MAE self pre-training bundles, grouped by role as MONAI groups its own code.

In the repository this package is ``shared``; inside each bundle it is the ``scripts`` package (``bundles/*/scripts``
links here, and the packaging tool copies in the modules a bundle's configs use), which is where MONAI bundles and
MONAI Label look for custom code. Modules import each other relatively so both names work, and no package imports
its modules eagerly: a config names what it uses by its full path, e.g. ``scripts.networks.mae.MaskedAutoencoderViT``.

- ``networks``: the masked autoencoder (2D and 3D) and its patch helpers, MAE encoder -> UNETR/ViT
  (``encoder_transfer``), the logits-only ViT classifier, UNETR with 8- or 4-voxel patches, the ViT with a linear
  head per token (the study's segmenter), when attention may take the fused kernel (``attention``).
- ``transforms``: MAE patch masking, random resized crop, loading (errors naming the file) and saving, X-ray loading,
  BraTS labels <-> regions, input checks, the label map in the original grid (``invert``), DICOM SEG output,
  ``Spacingd`` for MONAI Label's inputs.
- ``data``: data set layouts and datalists (BraTS 2021 / MSD Task01, ChestX-ray14), X-ray files, splits, the
  datalist cache, a run's inputs and output names checked before any work (``inputs``), DICOM SEG objects.
- ``handlers``: ignite handlers: run safety (the bundle lock, resuming, atomic checkpoints), guards against NaN
  losses, encoder loading, reconstruction pictures, the MAE health check, metric and result savers, data checks,
  tracking of one learning rate.
- ``inferers``: mixed precision for any MONAI inferer, on the CPU as on CUDA.
- ``metrics``: per-case segmentation metrics, multi-label AUC, the label-free MAE health check.
- ``optimizers``: parameter groups with layer-wise learning-rate decay.
- ``visualize``: reconstruction pictures.
- ``utils``: atomic file writes, reading the files a user gives (errors naming the place), command-line values,
  distributed helpers, errors and the last line of a failed run, NaN-aware statistics.
"""

from .utils.errors import install_excepthook, is_bundle_run

if is_bundle_run():  # a failed run ends with its cause, not with MONAI's "Failed to evaluate ConfigExpression"
    install_excepthook()  # (only there: an import in MONAI Label or a notebook leaves the process as it is)
