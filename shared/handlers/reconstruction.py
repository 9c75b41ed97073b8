"""Handler saving MAE reconstruction pictures (masked input | reconstruction | original) during pre-training."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ignite.engine import Engine, Events
from PIL import Image

from ..utils.atomic import atomic_path, naming_failures
from ..utils.dist import is_main_process
from ..visualize.reconstruction import reconstruction_panel

__all__ = ["ReconstructionSnapshotHandler"]


class ReconstructionSnapshotHandler:
    """Every ``interval`` epochs, save a :func:`reconstruction_panel` of the first sample of the last iteration as
    ``<output_dir>/reconstruction_epoch<NNNN>.png`` and, when a ``summary_writer`` is given, to TensorBoard.

    Only rank 0 writes under ``torch.distributed``. Needs a trainer whose network returns the dict of
    :class:`MaskedAutoencoderViT` (its output decollated, MONAI's default, or not).

    Args:
        output_dir: folder for the PNG files.
        patch_size: the network's patch size.
        interval: epochs between pictures.
        num_slices: slices per channel of 3D images.
        summary_writer: optional ``torch.utils.tensorboard.SummaryWriter``.
        tag: TensorBoard tag.
        min_tile_size: the PNG shows each picture enlarged (nearest neighbour) to at least this height.
    """

    def __init__(
        self,
        output_dir: str,
        patch_size: Sequence[int] | int,
        interval: int = 1,
        num_slices: int = 3,
        summary_writer=None,
        tag: str = "reconstruction (masked | reconstructed | original)",
        min_tile_size: int = 128,
    ) -> None:
        self.output_dir = output_dir
        self.patch_size = patch_size
        self.interval = interval
        self.num_slices = num_slices
        self.summary_writer = summary_writer
        self.tag = tag
        self.min_tile_size = min_tile_size

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    @staticmethod
    def _first_sample(output: object) -> tuple:
        """Image, reconstruction and mask of the first sample of a trainer output, decollated (a list of items, the
        default) or not (a batch dict)."""
        if isinstance(output, list) and output and isinstance(output[0].get("pred"), dict):
            item = output[0]
            return item["image"], item["pred"]["reconstruction"], item["pred"]["mask"]
        if isinstance(output, dict) and isinstance(output.get("pred"), dict):
            return output["image"][0], output["pred"]["reconstruction"][0], output["pred"]["mask"][0]
        raise TypeError("ReconstructionSnapshotHandler needs a trainer whose network returns the MAE output dict.")

    def __call__(self, engine: Engine) -> None:
        if not is_main_process():
            return
        image, reconstruction, mask = self._first_sample(engine.state.output)
        panel = reconstruction_panel(image, reconstruction, mask, self.patch_size, self.num_slices)
        picture = Image.fromarray(panel)
        zoom = max(1, -(-self.min_tile_size // min(image.shape[1:3])))  # small crops are shown enlarged
        picture = picture.resize((picture.width * zoom, picture.height * zoom), Image.NEAREST)
        path = os.path.join(self.output_dir, f"reconstruction_epoch{engine.state.epoch:04d}.png")
        with naming_failures(path), atomic_path(path, suffix=".png") as tmp:
            picture.save(tmp)
        if self.summary_writer is not None:
            self.summary_writer.add_image(self.tag, panel[None], global_step=engine.state.epoch, dataformats="CHW")
            self.summary_writer.flush()
