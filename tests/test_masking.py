import pytest
import torch
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, RandSpatialCropSamplesd
from monai.utils import set_determinism

from shared.transforms.masking import RandPatchMaskd


def _items(n=6, shape=(1, 64, 64, 32)):
    return [{"image": torch.rand(shape)} for _ in range(n)]


def test_exact_number_of_hidden_patches_on_the_image_grid():
    t = RandPatchMaskd("image", patch_size=16, mask_ratio=0.75)
    out = t({"image": torch.rand(1, 96, 96, 96)})
    assert out["mask"].shape == (216,) and out["mask"].dtype == torch.bool
    assert int(out["mask"].sum()) == 162
    out = t({"image": torch.rand(4, 64, 32, 48)})  # non-cubic, multi-channel: 4 x 2 x 3 grid
    assert out["mask"].shape == (24,) and int(out["mask"].sum()) == 18
    out = RandPatchMaskd("img", patch_size=(16, 16), mask_ratio=0.5, mask_key="m")({"img": torch.rand(3, 224, 224)})
    assert out["m"].shape == (196,) and int(out["m"].sum()) == 98


def test_reproducible_with_set_random_state():
    data = {"image": torch.rand(1, 64, 64, 64)}
    a = RandPatchMaskd("image").set_random_state(7)
    b = RandPatchMaskd("image").set_random_state(7)
    first = [a(data)["mask"] for _ in range(3)]
    assert all(torch.equal(x, b(data)["mask"]) for x in first)
    assert not torch.equal(first[0], first[1])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_reproducible_under_set_determinism_in_data_loader_workers(num_workers):
    transform = Compose([RandSpatialCropSamplesd("image", (32, 32, 32), num_samples=2, random_size=False),
                         RandPatchMaskd("image", patch_size=16)])

    def masks():
        set_determinism(seed=123)
        loader = DataLoader(Dataset(_items(), transform), batch_size=2, num_workers=num_workers)
        return torch.cat([batch["mask"] for batch in loader])

    first, second = masks(), masks()
    set_determinism(None)
    assert first.shape == (12, 8)
    assert torch.equal(first, second)
    assert (first.sum(1) == 6).all()
    assert len({tuple(m.tolist()) for m in first}) > 1


def test_invalid_ratio_and_missing_key():
    with pytest.raises(ValueError, match="mask_ratio"):
        RandPatchMaskd("image", mask_ratio=1.0)
    with pytest.raises(KeyError):
        RandPatchMaskd("image")({"label": torch.rand(1, 32, 32, 32)})
    assert "mask" not in RandPatchMaskd("image", allow_missing_keys=True)({"label": torch.rand(1, 32, 32, 32)})
