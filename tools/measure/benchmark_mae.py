"""Training-step time of this project's 3D MAE next to MONAI's ``MaskedAutoEncoderViT``, measured in one run.

The paper's configuration by default: one-channel 96^3 crops, batch 2, ViT-B encoder (768 wide, 12 layers,
12 heads), decoder 384 wide, 8 layers, 12 heads, 75% of the patches hidden. A step is forward, loss on the hidden
patches, backward and an AdamW step. Each network runs in fp32 and under bf16 autocast; the report gives median
step times and their ratios. Example::

    python -m tools.measure.benchmark_mae                      # paper sizes (about a minute on 2 CPU cores)
    python -m tools.measure.benchmark_mae --steps 3 --hidden_size 192 --num_heads 4 --decoder_hidden_size 96
"""

from __future__ import annotations

import statistics
import time

import fire
import torch
from monai.networks.nets import MaskedAutoEncoderViT

from shared.networks.mae import MaskedAutoencoderViT
from shared.networks.patches import patchify


def ours_step(net: MaskedAutoencoderViT, images: torch.Tensor) -> torch.Tensor:
    return net(images)["loss"]


def monai_step(net: MaskedAutoEncoderViT, images: torch.Tensor, patch_size: int) -> torch.Tensor:
    pred, mask = net(images)
    target = patchify(images, (patch_size,) * 3)
    # MONAI flattens a patch as (p1 p2 p3 c); for one channel this equals our (c p1 p2 p3) order
    per_patch = (pred.float() - target).pow(2).mean(-1)
    return (per_patch * mask).sum() / mask.sum()


def time_steps(step, net: torch.nn.Module, images: torch.Tensor, steps: int, warmup: int, bf16: bool) -> list[float]:
    """Run ``warmup + steps`` optimisation steps and return the last ``steps`` durations in seconds."""
    device_type = images.device.type
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=True)
    durations = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            loss = step(net, images)
        loss.backward()
        optimizer.step()
        if device_type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            durations.append(time.perf_counter() - start)
    return durations


def main(
    img_size: int = 96,
    batch_size: int = 2,
    patch_size: int = 16,
    hidden_size: int = 768,
    num_layers: int = 12,
    num_heads: int = 12,
    decoder_hidden_size: int = 384,
    decoder_num_layers: int = 8,
    decoder_num_heads: int = 12,
    steps: int = 5,
    warmup: int = 2,
    device: str = "cuda" if torch.cuda.is_available() else "cpu",
) -> None:
    """Print the median step time (s) of each network and precision, and the ratios.

    "ours" is the bundles' configuration (attention through ``scaled_dot_product_attention``); "ours, explicit
    attention" computes attention as MONAI's default ``TransformerBlock`` does, to show what the kernel choice costs.
    """
    torch.manual_seed(0)
    sizes = dict(in_channels=1, img_size=img_size, patch_size=patch_size, hidden_size=hidden_size,
                 mlp_dim=4 * hidden_size, num_layers=num_layers, num_heads=num_heads,
                 decoder_hidden_size=decoder_hidden_size, decoder_mlp_dim=4 * decoder_hidden_size,
                 decoder_num_layers=decoder_num_layers, decoder_num_heads=decoder_num_heads)
    networks = {
        "ours": (MaskedAutoencoderViT(**sizes, mask_ratio=0.75).to(device), ours_step),
        "ours, explicit attention": (
            MaskedAutoencoderViT(**sizes, mask_ratio=0.75, use_flash_attention=False).to(device), ours_step),
        "MONAI MaskedAutoEncoderViT": (MaskedAutoEncoderViT(**sizes, masking_ratio=0.75).to(device),
                                       lambda n, x: monai_step(n, x, patch_size)),
    }
    images = torch.rand(batch_size, 1, img_size, img_size, img_size, device=device)
    print(f"{torch.__version__=} device={device} threads={torch.get_num_threads()} batch={batch_size} "
          f"img={img_size}^3 encoder={hidden_size}/{num_layers}/{num_heads} decoder={decoder_hidden_size}/"
          f"{decoder_num_layers}/{decoder_num_heads}")
    results: dict[str, float | str] = {}
    for bf16 in (False, True):
        precision = "bf16" if bf16 else "fp32"
        for name, (net, step) in networks.items():
            key = f"{name}, {precision}"
            try:
                results[key] = statistics.median(time_steps(step, net, images, steps, warmup, bf16))
                print(f"{key:45s} {results[key]:.3f} s/step", flush=True)
            except RuntimeError as e:
                results[key] = f"fails: {str(e).splitlines()[0]}"
                print(f"{key:45s} {results[key]}", flush=True)
    print("ratios (measured in this run):")
    for numerator, denominator in (("ours, bf16", "MONAI MaskedAutoEncoderViT, fp32"), ("ours, bf16", "ours, fp32"),
                                   ("ours, fp32", "MONAI MaskedAutoEncoderViT, fp32"),
                                   ("ours, explicit attention, bf16", "ours, bf16")):
        a, b = results.get(numerator), results.get(denominator)
        if isinstance(a, float) and isinstance(b, float):
            print(f"  {numerator} / {denominator}: {a / b:.2f}")


if __name__ == "__main__":
    fire.Fire(main, name="tools.measure.benchmark_mae")
