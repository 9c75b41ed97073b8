"""Label-efficiency studies of MAE self pre-training, one per paper task (``tools/run_experiment.py``).

- ``tasks.py``: the three tasks (BTCV, BraTS, ChestX-ray14): data, the bundle configs of each stage, metrics.
- ``study.py``: the study itself (MAE once; both arms at every labelled size and seed; evaluation).
- ``stats.py``: the paired difference and its confidence interval.
- ``report.py``: ``summary.json``, ``report.md`` and the plots.
- ``progress.py``: progress lines with an ETA (the bundle configs run through ``tools/bundle_runner.py``).
"""
