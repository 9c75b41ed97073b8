"""The prepared GPU check (``tools/measure/gpu_check.py``) runs end to end at tiny sizes on a CPU and writes its
figures."""

from __future__ import annotations

import json

import pytest

from tools.measure import gpu_check


@pytest.mark.slow
def test_gpu_check_writes_every_figure_at_tiny_sizes(tmp_path):
    output = tmp_path / "gpu_check.json"
    gpu_check.main(output=str(output), tiny=True, device="cpu")
    figures = json.loads(output.read_text())
    for key in ("ours_fp32", "ours_bf16", "monai_fp32"):
        assert figures["mae_step"][key]["seconds_per_step"] > 0, key
    for dtype in ("float32", "bfloat16"):
        assert figures["sliding_window"][dtype]["seconds"] > 0, dtype
    assert 0.5 < figures["sliding_window"]["label_agreement_bf16_vs_fp32"] <= 1.0
    epochs = figures["training_epoch"]
    assert set(epochs) == {f"{b}/{c}" for b, c, _, _ in gpu_check.TRAINING_CONFIGS}
    for name, result in epochs.items():
        assert result["seconds"] >= result["epoch_seconds"] > 0, name
        assert result["iterations"] >= 1 and result["seconds_per_iteration"] > 0, name
