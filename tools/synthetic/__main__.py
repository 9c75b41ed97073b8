"""Command line of :mod:`tools.synthetic`: synthetic BTCV, BraTS 2021 / MSD Task01 and ChestX-ray14 in their public
on-disk layouts (python-fire)::

    python -m tools.synthetic btcv --out_dir /data/btcv_synth --num_train 8 --shape "[128,128,64]"
    python -m tools.synthetic brats --out_dir /data/brats21_synth --layout brats2021 --num_cases 8
    python -m tools.synthetic brats --out_dir /data/Task01_synth --layout msd --num_cases 8 --num_test 2
    python -m tools.synthetic cxr14 --out_dir /data/cxr14_synth --num_images 200 --size 256
"""

import fire

from tools.synthetic import make_brats, make_btcv, make_cxr14

if __name__ == "__main__":
    fire.Fire({"btcv": make_btcv, "brats": make_brats, "cxr14": make_cxr14}, name="tools.synthetic")
