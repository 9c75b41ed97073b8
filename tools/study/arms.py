"""The arms of a study (how the fine-tuned encoder starts) and the contrasts between them.

Every arm fine-tunes the same bundle config with the same data, seed and budget; an arm only chooses the file given as
``pretrained_encoder`` (through the bundle's own loading path) and its recipe overrides (the task's, see
``Task.recipes``):

- ``scratch`` (S): no encoder file, MONAI's initialisation;
- ``mae`` (M): the encoder of the MAE pre-trained on the study's training images (labels unused): the paper's claim;
- ``supervised`` (P, positive control): the encoder of the same segmentation network trained *with labels* on a
  disjoint stream of cases: an encoder known to carry the task, so the study must see it beat scratch;
- ``untrained`` (N, negative control): the MAE's encoder at its initialisation (xavier weights, fixed sin-cos position
  embedding), never trained: what the MAE arm would be if pre-training learnt nothing.

The contrasts are read in order: P - S first (does the design have the power to see an encoder that helps?), then
M - S (the paper's claim) and M - N (did pre-training itself add anything over the MAE's initialisation).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Arm", "ARMS", "ARM_NAMES", "Contrast", "CONTRASTS"]


@dataclass(frozen=True)
class Arm:
    """One arm: its name (config and file names), its letter and what it is, in words."""

    name: str
    letter: str
    description: str


ARMS = (
    Arm("scratch", "S", "from scratch"),
    Arm("mae", "M", "MAE self pre-training"),
    Arm("supervised", "P", "positive control: supervised encoder"),
    Arm("untrained", "N", "negative control: untrained MAE initialisation"),
)
ARM_NAMES = tuple(arm.name for arm in ARMS)


@dataclass(frozen=True)
class Contrast:
    """``first - second`` over paired runs, and the question it answers."""

    first: str
    second: str
    question: str

    @property
    def name(self) -> str:
        letters = {arm.name: arm.letter for arm in ARMS}
        return f"{letters[self.first]} - {letters[self.second]}"


CONTRASTS = (
    Contrast("supervised", "scratch", "can the design see an encoder that helps? (positive control)"),
    Contrast("mae", "scratch", "does MAE self pre-training help? (the paper's claim)"),
    Contrast("mae", "untrained", "did pre-training add anything over the MAE's initialisation?"),
)
