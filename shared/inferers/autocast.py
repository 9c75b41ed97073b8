"""Mixed precision for any MONAI inferer, on the CPU as on CUDA.

MONAI's engines run their ``amp`` under ``torch.autocast("cuda")`` only, so on a CPU nothing is ever mixed precision.
:class:`AutocastInferer` wraps an inferer (``SimpleInferer``, ``SlidingWindowInferer``, ...) so that every network
call runs under ``torch.autocast`` on the device of the input, and hands back float32 outputs: losses, metrics and
sliding-window sums are then computed in float32. The network is given plain tensors: MONAI's ``MetaTensor`` tracks
metadata through every operation, which costs 10-25 % of a small network's training step on a CPU
(``tools/measure/benchmark_study.py``), and nothing reads it from the network's output (sliding-window inference
copies the input's metadata onto its output itself). In a bundle config::

    "amp": {"_target_": "scripts.inferers.autocast.autocast_pays_off", "device": "@device"},
    "amp_dtype": {"_target_": "scripts.inferers.autocast.autocast_dtype", "device": "@device"},
    "inferer": {"_target_": "scripts.inferers.autocast.AutocastInferer", "enabled": "@amp", "dtype": "@amp_dtype",
                "inferer": {"_target_": "SlidingWindowInferer", "roi_size": "@roi_size"}}

``--amp false`` turns it off (the command line passes the string ``"false"``, read here as False). float16 on a GPU
without bfloat16 needs a gradient scaler in training, which MONAI's trainer adds when its own ``amp`` argument is
True (it then scales the loss)::

    "use_grad_scaler": {"_target_": "scripts.inferers.autocast.needs_grad_scaler", "amp": "@amp",
                        "dtype": "@amp_dtype"},
    "trainer": {"_target_": "SupervisedTrainer", "amp": "@use_grad_scaler", ...}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from monai.inferers import Inferer, SimpleInferer
from monai.utils import convert_to_tensor

from ..utils.config import as_bool

__all__ = [
    "autocast_dtype", "autocast_pays_off", "needs_grad_scaler", "to_float32", "without_metadata", "AutocastInferer",
]


def _device_type(device: torch.device | str) -> str:
    return torch.device(device).type


def autocast_dtype(device: torch.device | str) -> str:
    """The autocast dtype for ``device``: ``"bfloat16"`` on CPUs and on GPUs that support it, ``"float16"`` on older
    GPUs (float16 is slow on CPUs)."""
    if _device_type(device) == "cuda" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return "float16"
    return "bfloat16"


def autocast_pays_off(device: torch.device | str) -> bool:
    """Whether mixed precision is faster than float32 on ``device``: on every CUDA GPU, and on CPUs with native
    bfloat16 arithmetic (AVX512-BF16 or AMX); elsewhere bfloat16 is emulated and slower."""
    kind = _device_type(device)
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def needs_grad_scaler(amp: bool | str, dtype: str | torch.dtype) -> bool:
    """Whether training with ``amp`` in ``dtype`` needs MONAI's gradient scaler: only float16 does (bfloat16 has
    float32's range). Give the result to the trainer's ``amp``."""
    return as_bool(amp, "amp") and str(dtype).removeprefix("torch.") == "float16"


def to_float32(value: Any) -> Any:
    """``value`` with every floating-point tensor in it (also in dicts, lists and tuples) cast to float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, Mapping):
        return {k: to_float32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_float32(v) for v in value)
    return value


def without_metadata(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as a plain ``torch.Tensor`` (a ``MetaTensor``'s metadata dropped, the data shared)."""
    return convert_to_tensor(tensor, track_meta=False)


class AutocastInferer(Inferer):
    """Run ``inferer`` with every network call under ``torch.autocast`` on the input's device, on plain tensors;
    outputs in float32.

    Args:
        inferer: the inferer to wrap (default ``SimpleInferer``).
        enabled: False (or ``"false"``, as the command line passes it) runs the network in float32 (on plain
            tensors too).
        dtype: ``"bfloat16"`` (default; CPUs and recent GPUs) or ``"float16"`` (older GPUs), or a torch dtype.
    """

    def __init__(
        self, inferer: Inferer | None = None, enabled: bool = True, dtype: str | torch.dtype = "bfloat16"
    ) -> None:
        super().__init__()
        self.inferer = inferer if inferer is not None else SimpleInferer()
        self.enabled = as_bool(enabled, "amp")
        self.dtype = getattr(torch, dtype.removeprefix("torch."), None) if isinstance(dtype, str) else dtype
        if self.dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"autocast dtype must be bfloat16 or float16, got {dtype}.")

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        device_type = inputs.device.type

        def autocast_network(x: torch.Tensor, *net_args: Any, **net_kwargs: Any) -> Any:
            with torch.autocast(device_type, dtype=self.dtype, enabled=self.enabled):
                out = network(without_metadata(x), *net_args, **net_kwargs)
            return to_float32(out) if self.enabled else out

        return self.inferer(inputs, autocast_network, *args, **kwargs)
