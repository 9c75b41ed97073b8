"""The label-free MAE health check of a finished pre-training run: its checkpoint against the untrained MAE, copying
the nearest visible patch and predicting the visible mean, on held-out images (see ``shared/metrics/mae_health.py``).

The network and the crops come from the pre-training config the run used, with the same overrides (network widths,
``roi_size``, ...): the checkpoint is loaded into ``network_def``, the untrained reference is ``network_def`` built
after ``set_determinism(seed)`` as the run builds it, and the crops are made by ``train#preprocessing`` with a fixed
random state (random crops, no labels). Example::

    python -m tools.measure.mae_health --config_file bundles/mae_pretrain_ct/configs/train.json \\
        --checkpoint runs/mae/models/model.pt --image_files "['/data/BTCV/imagesTr/img0035.nii.gz']" \\
        --overrides "{'roi_size': [48, 48, 48], 'patch_size': 8}"

From Python (the study): ``check_checkpoint(checkpoint, image_files, config_file, overrides)`` returns an
:class:`MAEHealth` (``trained``, ``untrained``, ``nearest_visible``, ``visible_mean``, ``learning``, ``summary()``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import fire
from monai.bundle import ConfigParser
from monai.utils import set_determinism

from shared.metrics.mae_health import MAEHealth, fixed_masks, held_out_crops, mae_health
from shared.networks.encoder_transfer import read_state_dict
from tools.bundle_runner import bundle_importable

__all__ = ["check_checkpoint"]


def check_checkpoint(
    checkpoint: str | os.PathLike,
    image_files: Sequence[str | Sequence[str]],
    config_file: str | os.PathLike,
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    num_images: int = 8,
    batch_size: int = 4,
) -> MAEHealth:
    """The held-out losses of an MAE checkpoint and of its references.

    Args:
        checkpoint: the MAE weights the pre-training wrote (``models/model.pt`` or ``models/mae.pt``; a checkpoint
            dict with a ``model`` entry works too).
        image_files: held-out images, one path or a list with one entry per image (a list of files for a
            multi-file image, e.g. the four BraTS 2021 contrasts).
        config_file: the pre-training config of the run, e.g. ``bundles/mae_pretrain_ct/configs/train.json``.
        overrides: the config overrides of the run.
        seed: the run's seed (the untrained reference) and the random state of the crops and masks.
        num_images: number of held-out crops.
        batch_size: crops per forward pass.
    """
    if isinstance(image_files, (str, os.PathLike)):
        image_files = [image_files]
    config_file = Path(config_file).resolve()
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser.update({"label_guided_crops": False, "device": "$torch.device('cpu')", **(overrides or {})})
    with bundle_importable(config_file.parents[1]):
        set_determinism(seed=seed)
        untrained = parser.get_parsed_content("network_def", lazy=False)
        trained = parser.get_parsed_content("network_def", lazy=False)
        trained.load_state_dict(read_state_dict(checkpoint))
        transform = parser.get_parsed_content("train#preprocessing")
        items = [{"image": os.fspath(f) if isinstance(f, (str, os.PathLike)) else list(f)} for f in image_files]
        images = held_out_crops(items, transform, num_images, seed)
        set_determinism(seed=None)
    if len(images) == 0:
        raise ValueError("no held-out image given.")
    masks = fixed_masks(len(images), trained.num_patches, trained.num_masked, seed)
    return mae_health(trained, images, masks, untrained, batch_size)


def main(checkpoint: str, image_files: Sequence[str], config_file: str, overrides: dict | None = None,
         seed: int = 0, num_images: int = 8) -> None:
    """Print the check's line; exit status 1 when the MAE does not beat every reference."""
    health = check_checkpoint(checkpoint, image_files, config_file, overrides, seed, num_images)
    print(f"MAE health of {checkpoint}: {health.summary()}")
    if not health.learning:
        sys.exit(1)


if __name__ == "__main__":
    fire.Fire(main, name="tools.measure.mae_health")
