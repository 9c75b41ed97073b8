"""Does the data pipeline starve the network? A fine-tuning run of ``unetr_btcv_seg`` at the main job's sizes, with
ignite's ``BasicTimeProfiler``, for several ``num_workers``: seconds waiting for batches vs computing, per iteration.

    python -m tools.measure.benchmark_data_wait                        # synthetic BTCV, the study's small configuration
    python -m tools.measure.benchmark_data_wait --num_workers "[0,1,2,4]" --epochs 20
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import fire
from ignite.handlers import BasicTimeProfiler

from tools import synthetic
from tools.bundle_runner import run_bundle
from tools.study.tasks import btcv


def main(num_workers=(0, 1, 2, 4), epochs: int = 10, batch_size: int = 2, dataset_dir: str | None = None) -> None:
    """Print, per ``num_workers``, the mean seconds per iteration spent waiting for data and computing."""
    work = Path(tempfile.mkdtemp(prefix="benchmark_data_wait_"))
    data = Path(dataset_dir) if dataset_dir else Path(synthetic.make_btcv(str(work / "data"), **btcv.synthetic))
    results: dict[int, dict[str, Any]] = {}
    for workers in num_workers:
        profiler = BasicTimeProfiler()  # has attach(engine), as run_bundle expects of a progress handler
        overrides = {**btcv.finetune.overrides, "dataset_dir": str(data), "epochs": epochs, "warmup_epochs": 1,
                     "val_interval": epochs + 1, "batch_size": batch_size, "num_workers": workers,
                     "pretrained_encoder": "", "resume": False}
        root = work / f"workers{workers}"
        run_bundle(btcv.finetune.configs, root, root.with_suffix(".log"), overrides, profiler)
        stats = profiler.get_results()
        data_wait = float(stats["dataflow_stats"]["mean"])
        compute = float(stats["processing_stats"]["mean"])
        results[workers] = {"data_wait_s": data_wait, "compute_s": compute}
        print(f"num_workers={workers}: data wait {data_wait:.3f} s, compute {compute:.3f} s per iteration "
              f"({data_wait / (data_wait + compute):.0%} waiting)", flush=True)
    base = results[next(iter(results))]
    for workers, figures in results.items():
        total = figures["data_wait_s"] + figures["compute_s"]
        print(f"  num_workers={workers}: {total / (base['data_wait_s'] + base['compute_s']):.2f}x the iteration time "
              f"of num_workers={next(iter(results))}")


if __name__ == "__main__":
    fire.Fire(main, name="tools.measure.benchmark_data_wait")
