"""What an inference run writes: outputs never overwrite an input (or each other), are written atomically, a failed
write fails the input, and a volume stays a volume. Through ``python -m monai.bundle run``, as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from shared.data.inputs import check_outputs
from shared.utils.atomic import TEMPORARY_PREFIX
from tests.helpers import MAE, SEG, SMALL, TINY_MAE, TINY_UNETR, bundle_run


def seg_overrides(root: Path, **more) -> dict:
    return {"bundle_root": str(root), **SMALL, **TINY_UNETR, **more}


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def test_an_output_that_would_overwrite_an_input_is_refused_before_any_work(btcv, seg_bundle, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    ct, ct_seg = folder / "ct.nii.gz", folder / "ct_seg.nii.gz"  # a second CT whose name is the first one's output
    shutil.copy(btcv / "imagesTs" / "img0061.nii.gz", ct)
    shutil.copy(btcv / "imagesTs" / "img0061.nii.gz", ct_seg)
    before = ct_seg.read_bytes()
    output = bundle_run([SEG / "inference.json"], seg_overrides(seg_bundle, input_files=[str(ct), str(ct_seg)],
                                                                output_dir=str(folder)), expect_failure=True)
    assert ct_seg.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["ct.nii.gz", "ct_seg.nii.gz"]
    assert f"the output {ct_seg} of {ct} would overwrite the input {ct_seg}" in last_line(output)

    # the MAE writes three outputs per input: the same rule for each
    mae_output = folder / "ct_reconstruction.nii.gz"
    ct_seg.rename(mae_output)
    output = bundle_run([MAE / "inference.json"], {
        "bundle_root": str(tmp_path / "mae"), "input_files": [str(ct), str(mae_output)], "output_dir": str(folder),
        **SMALL, **TINY_MAE}, expect_failure=True)
    assert f"the output {mae_output} of {ct} would overwrite the input {mae_output}" in last_line(output)


def test_a_rerun_into_the_input_folder_does_not_segment_the_previous_outputs(btcv, seg_bundle, tmp_path):
    data = tmp_path / "data"
    (data / "imagesTs").mkdir(parents=True)
    shutil.copy(btcv / "imagesTs" / "img0061.nii.gz", data / "imagesTs")
    overrides = seg_overrides(seg_bundle, dataset_dir=str(data), output_dir=str(data / "imagesTs"))
    bundle_run([SEG / "inference.json"], overrides)  # the first run writes img0061_seg.nii.gz beside its input
    output = bundle_run([SEG / "inference.json"], overrides, expect_failure=True)
    assert "img0061_seg.nii.gz of" in last_line(output) and "would overwrite the input" in last_line(output)
    assert not (data / "imagesTs" / "img0061_seg_seg.nii.gz").exists()


def test_outputs_of_two_inputs_never_share_a_file():
    with pytest.raises(ValueError, match="b/ct.nii.gz and a/ct.nii.gz would both be written to out/ct_seg.nii.gz"):
        check_outputs(["a/ct.nii.gz", "b/ct.nii.gz"], "out", ["seg"])


def test_a_full_disk_fails_the_input_and_leaves_no_file(btcv, seg_bundle, tmp_path):
    out = tmp_path / "out"
    good = btcv / "imagesTs" / "img0061.nii.gz"
    output = bundle_run([SEG / "inference.json"], seg_overrides(seg_bundle, input_files=[str(good)],
                                                                output_dir=str(out)),
                        expect_failure=True, via=("tests.disk_full", str(out)))
    assert last_line(output).startswith(f"error: InputError: {good}: its output {out / 'img0061_seg.nii.gz'} could "
                                         "not be written (OSError: [Errno 28] No space left on device")
    assert list(out.iterdir()) == []  # neither an empty file under the final name nor a temporary


def as_a_user() -> tuple[str, ...]:
    """A command prefix under which file permissions hold: root loses its right to write anywhere."""
    if os.geteuid() != 0:
        return ()
    prefix = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")
    if not shutil.which("setpriv") or subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root and cannot drop the right to write anywhere: no read-only folder can be made")
    return prefix


def test_a_read_only_output_folder_fails_the_input_naming_the_output(btcv, seg_bundle, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    good = btcv / "imagesTs" / "img0061.nii.gz"
    output = bundle_run([SEG / "inference.json"], seg_overrides(seg_bundle, input_files=[str(good)],
                                                                output_dir=str(out)),
                        expect_failure=True, prefix=as_a_user())
    assert last_line(output).startswith(f"error: InputError: {good}: its output {out / 'img0061_seg.nii.gz'} could "
                                         "not be written (PermissionError: [Errno 13] Permission denied")
    assert list(out.iterdir()) == []


def test_a_one_slice_volume_is_segmented_as_a_volume(btcv, seg_bundle, tmp_path):
    image = nib.load(btcv / "imagesTs" / "img0061.nii.gz")
    one_slice = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj)[:, :, 10:11], image.affine), str(one_slice))
    bundle_run([SEG / "inference.json"], seg_overrides(seg_bundle, input_files=[str(one_slice)],
                                                       output_dir=str(tmp_path / "out")))
    written = nib.load(tmp_path / "out" / "slice_seg.nii.gz")
    assert written.shape == (*image.shape[:2], 1) and np.allclose(written.affine, image.affine)
    assert not list((tmp_path / "out").glob(TEMPORARY_PREFIX + "*"))


def test_the_image_writer_copies_and_refuses_arguments_that_would_name_its_outputs_otherwise(tmp_path):
    """A post-processing chain is deep-copied and pickled (e.g. by MONAI Label, or worker processes): the writer
    survives both; MONAI's other ways to choose the output path would be ignored, so they are refused."""
    import copy
    import pickle

    import torch
    from monai.data import MetaTensor

    from shared.transforms.io import SaveImaged

    saver = SaveImaged("pred", output_dir=str(tmp_path), output_postfix="seg", separate_folder=False, resample=False)
    for twin in (copy.deepcopy(saver), pickle.loads(pickle.dumps(saver))):
        twin({"pred": MetaTensor(torch.zeros(1, 4, 4, 4), meta={"filename_or_obj": "/in/ct.nii.gz"})})
    assert [p.name for p in tmp_path.iterdir()] == ["ct_seg.nii.gz"]
    for refused in ({"separate_folder": True}, {"output_name_formatter": lambda meta, saver: {}},
                    {"data_root_dir": "/in"}):
        with pytest.raises(ValueError, match=f"does not take \\['{next(iter(refused))}'\\]"):
            SaveImaged("pred", output_dir=str(tmp_path), **refused)
