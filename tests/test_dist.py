"""``shared/utils/dist.py``: the helpers for code that runs alone or under ``torch.distributed``."""

from __future__ import annotations

import ignite.distributed as idist
import pytest
import torch.distributed as dist

from shared.utils import dist as dist_utils


@pytest.fixture
def gloo_group(tmp_path):
    """A one-process gloo group in this process, destroyed afterwards whatever the test did."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()
    idist.sync()
    assert idist.get_world_size() == 1  # the tests after this one run in a single process again


def test_gather_objects_gives_every_ranks_object(gloo_group):
    assert dist_utils.gather_objects({"cases": [1, 2]}) == [{"cases": [1, 2]}]


def test_end_process_group_destroys_a_gloo_group_then_waits_without_the_gil(gloo_group, monkeypatch):
    """gloo's worker threads still free finished collectives after ``destroy_process_group``; the main thread waits
    (``time.sleep`` releases the GIL) so that none of them needs the GIL once the interpreter shuts down."""
    waits = []
    monkeypatch.setattr(dist_utils.time, "sleep", lambda seconds: waits.append((seconds, dist.is_initialized())))
    assert dist_utils.gather_objects(1) == [1]  # ignite now follows the process group
    dist_utils.end_process_group()
    assert not dist.is_initialized() and dist_utils.is_main_process() and dist_utils.gather_objects(1) == [1]
    assert waits == [(dist_utils.GLOO_SETTLE_SECONDS, False)]  # after the destruction, not before


def test_end_process_group_without_a_group_does_nothing(monkeypatch):
    monkeypatch.setattr(dist_utils.time, "sleep", lambda seconds: pytest.fail("waited without a process group"))
    assert not dist.is_initialized()
    dist_utils.end_process_group()
