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


# ---------------------------------------------------------------------------------------------------------------
# ranks that see different files: nodes that do not share the bundle's folder
# ---------------------------------------------------------------------------------------------------------------


def ranks_see(monkeypatch: pytest.MonkeyPatch, *found: bool) -> None:
    """Simulate ranks of which rank i does (``found[i]``) or does not see the file asked about, on host node-i."""
    monkeypatch.setattr(dist_utils, "gather_objects", lambda obj: [(f, f"node-{i}") for i, f in enumerate(found)])


def test_a_file_is_found_when_every_rank_sees_it_or_none_does(gloo_group, tmp_path, monkeypatch):
    (tmp_path / "model.pt").write_bytes(b"")
    assert dist_utils.file_exists_on_all_ranks(str(tmp_path / "model.pt"))  # a real one-process group
    assert not dist_utils.file_exists_on_all_ranks(str(tmp_path / "folder"))
    ranks_see(monkeypatch, True, True)
    assert dist_utils.file_exists_on_all_ranks("checkpoint.pt")
    ranks_see(monkeypatch, False, False)
    assert not dist_utils.file_exists_on_all_ranks("checkpoint.pt")


def test_ranks_that_disagree_on_a_file_are_refused_naming_it(monkeypatch):
    ranks_see(monkeypatch, True, False, True)
    with pytest.raises(dist_utils.RanksDisagreeError, match=r"^the ranks disagree on whether /b/models/checkpoint.pt "
                       r"is a file: rank\(s\) 0 \(host node-0\), 2 \(host node-2\) see one, rank\(s\) 1 \(host "
                       r"node-1\) do not;.* on a file system that every node shares\.$"):
        dist_utils.file_exists_on_all_ranks("/b/models/checkpoint.pt")


def test_a_run_resumes_on_every_rank_or_on_none(tmp_path, monkeypatch):
    """Only rank 0 writes ``models/``: a node that does not see the checkpoint started afresh while rank 0 resumed,
    and the replicas differed without a word."""
    from ignite.engine import Engine

    from shared.handlers.checkpoint import ResumeLoader

    checkpoint = tmp_path / "models" / "checkpoint.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"")
    ranks_see(monkeypatch, True, False)
    with pytest.raises(dist_utils.RanksDisagreeError, match=f"disagree on whether {checkpoint} is a file"):
        ResumeLoader(str(checkpoint), {}).attach(Engine(lambda e, b: None))


def test_the_encoder_recorded_for_resume_is_checked_on_every_rank_first(tmp_path, monkeypatch):
    """``run_settings#encoder`` hashes the encoder when the trainer is built, before the encoder loader's check: a
    rank that lacks the file must not fail alone (its peers would wait in a collective) but with every rank."""
    from shared.handlers.encoder_loader import encoder_identity

    ranks_see(monkeypatch, True, False)
    with pytest.raises(dist_utils.RanksDisagreeError, match="disagree on whether /b/models/mae.pt is a file"):
        encoder_identity("/b/models/mae.pt")


def test_the_pre_trained_encoder_is_loaded_on_every_rank_or_on_none(tmp_path, monkeypatch):
    """``pretrained_encoder`` defaults to ``models/mae.pt`` when every rank sees it; a file given by name is loaded
    only where every rank sees it."""
    import importlib

    import torch
    from ignite.engine import Engine
    from monai.bundle import ConfigParser

    from shared.handlers.encoder_loader import MAEEncoderLoader
    from tests.helpers import SEG, bundle_importable

    mae = tmp_path / "models" / "mae.pt"
    mae.parent.mkdir()
    mae.write_bytes(b"")
    ranks_see(monkeypatch, True, False)
    with pytest.raises(dist_utils.RanksDisagreeError, match=f"disagree on whether {mae} is a file"):
        MAEEncoderLoader(str(mae), torch.nn.Linear(1, 1)).attach(Engine(lambda e, b: None))
    with bundle_importable(SEG.parent):
        bundles_dist = importlib.import_module("scripts.utils.dist")  # the copy of shared.utils.dist the config calls
        monkeypatch.setattr(bundles_dist, "gather_objects", dist_utils.gather_objects)
        parser = ConfigParser()
        parser.read_config(str(SEG / "train.json"))
        parser.update({"bundle_root": str(tmp_path)})
        with pytest.raises(RuntimeError) as refused:
            parser.get_parsed_content("pretrained_encoder")
    assert f"disagree on whether {mae} is a file" in str(refused.value.__cause__)
