"""Code shared by the MAE self pre-training bundles.

In the repository this package is ``shared``; inside each bundle it is reachable as ``scripts`` (``bundles/*/scripts``
links here, and the packaging tool copies it in), which is where MONAI bundles and MONAI Label look for custom code.
Modules import each other relatively so both names work.
"""

from . import atomic, brats, checkpoint, classification, cxr14, encoder_transfer, mae, masking, metrics, optim, patches, visualization
from .checkpoint import AtomicCheckpointSaver
from .encoder_transfer import MAEEncoderLoader, load_mae_encoder
from .mae import MAEReconstructionNet, MaskedAutoencoderViT, mae_loss
from .masking import RandPatchMaskd
from .metrics import SegmentationMetricsSaver
from .optim import param_groups
from .visualization import ReconstructionSnapshotHandler

__all__ = [
    # submodules, imported so that `import scripts` makes `scripts.<module>.<name>` usable in configs
    "atomic",
    "brats",
    "checkpoint",
    "classification",
    "cxr14",
    "encoder_transfer",
    "mae",
    "masking",
    "metrics",
    "optim",
    "patches",
    "visualization",
    # the main classes and functions
    "AtomicCheckpointSaver",
    "MAEEncoderLoader",
    "MAEReconstructionNet",
    "MaskedAutoencoderViT",
    "RandPatchMaskd",
    "ReconstructionSnapshotHandler",
    "SegmentationMetricsSaver",
    "load_mae_encoder",
    "mae_loss",
    "param_groups",
]
