"""Command line of :mod:`tools.synthetic`: synthetic BTCV, BraTS 2021 / MSD Task01 and ChestX-ray14 in their public
on-disk layouts (python-fire)::

    python tools/synthetic_data.py btcv --out_dir /data/btcv_synth --num_train 8 --shape "[128,128,64]"
    python tools/synthetic_data.py brats --out_dir /data/brats21_synth --layout brats2021 --num_cases 8
    python tools/synthetic_data.py brats --out_dir /data/Task01_synth --layout msd --num_cases 8 --num_test 2
    python tools/synthetic_data.py cxr14 --out_dir /data/cxr14_synth --num_images 200 --size 256
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable, as for every tool
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fire  # noqa: E402

from tools.synthetic import make_brats, make_btcv, make_cxr14  # noqa: E402

if __name__ == "__main__":
    fire.Fire({"btcv": make_btcv, "brats": make_brats, "cxr14": make_cxr14})
