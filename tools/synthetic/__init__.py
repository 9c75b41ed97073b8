"""
Synthetic stand-ins for BTCV, BraTS 2021 / MSD Task01 and NIH ChestX-ray14, written in their public on-disk layouts.

The generated folders can be read by exactly the same loading code as the real data sets, which lets the bundles
of this repository be trained, evaluated and tested end to end without access to the (registration-only) data.
The images are phantoms, not patients: anatomy is drawn from ellipsoids, tubes and smooth random fields with
per-case jitter of position, size, shape and intensity, so that a model has something consistent to learn.

Layouts written (the "Data" section of the repository's README.md; ``shared/data/brats.py`` and
``shared/data/cxr14.py`` read them):

- ``btcv``: ``imagesTr/img0001.nii.gz``, ``labelsTr/label0001.nii.gz``, ``imagesTs/img0061.nii.gz`` and
  ``dataset_0.json`` with the keys of the MONAI/UNETR BTCV datalist. int16 Hounsfield units, uint8 labels 0-13
  with the BTCV ids, anisotropic spacing and an LPS-like (ITK/DICOM-derived) affine with a nonzero origin.
- ``brats --layout brats2021``: ``BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz``; int16 images,
  uint8 labels 0/1/2/4 (NCR/ED/ET), 1 mm isotropic, skull-stripped (zero outside the brain).
- ``brats --layout msd``: ``imagesTr/BRATS_001.nii.gz`` (4-D, channel last: FLAIR, T1w, t1gd, T2w; float32),
  ``labelsTr/BRATS_001.nii.gz`` (uint8 0 background, 1 edema, 2 non-enhancing tumour, 3 enhancing tumour),
  ``imagesTs/`` and the Task01 ``dataset.json``.
- ``cxr14``: ``images/00000001_000.png`` (8-bit grey, square), ``Data_Entry_2017.csv`` with the real columns,
  ``train_val_list.txt`` and ``test_list.txt`` split patient-wise.

Each folder also holds a marker, ``.synthetic_data``: a generator writes only into a new or empty folder or one it
marked, which it replaces whole, so that it never overwrites a real data set given as ``out_dir`` by mistake.

Phantom coordinates are normalised to the field of view (the body or head fills the image whatever its size),
so voxel spacings are realistic but physical sizes in millimetres are only realistic for realistic array shapes.
All randomness comes from ``numpy.random.default_rng`` seeded with ``(seed, data set, case index)``: the same
seed gives byte-identical files, and a case does not change when the number of cases changes.

Command line (``python -m tools.synthetic``, ``__main__.py``; python-fire)::

    python -m tools.synthetic btcv --out_dir /data/btcv_synth --num_train 8 --shape "[128,128,64]"
    python -m tools.synthetic brats --out_dir /data/brats21_synth --layout brats2021 --num_cases 8
    python -m tools.synthetic brats --out_dir /data/Task01_synth --layout msd --num_cases 8 --num_test 2
    python -m tools.synthetic cxr14 --out_dir /data/cxr14_synth --num_images 200 --size 256
"""

from .brats import MSD_BRATS_LABELS, brain_tumour_phantom, make_brats
from .btcv import BTCV_LABELS, btcv_phantom, make_btcv
from .common import SYNTHETIC_MARKER
from .cxr14 import (
    CXR14_COLUMNS,
    CXR14_FINDINGS,
    NO_FINDING,
    chest_xray_phantom,
    make_cxr14,
)

__all__ = [
    "BTCV_LABELS",
    "CXR14_COLUMNS",
    "CXR14_FINDINGS",
    "MSD_BRATS_LABELS",
    "NO_FINDING",
    "SYNTHETIC_MARKER",
    "btcv_phantom",
    "brain_tumour_phantom",
    "chest_xray_phantom",
    "make_btcv",
    "make_brats",
    "make_cxr14",
]
