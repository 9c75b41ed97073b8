"""``shared/handlers/tracking.py``: the experiment trackers log one base learning rate, found by their class."""

import pytest
import torch
from ignite.engine import Engine, Events
from monai import handlers as monai_handlers

from shared.handlers.tracking import TrackBaseLearningRate, attached_trackers


def _trainer() -> Engine:
    engine = Engine(lambda engine, batch: None)
    weights = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    engine.optimizer = torch.optim.SGD([{"params": weights[:1], "lr": 0.01}, {"params": weights[1:], "lr": 0.001}])
    return engine


def _tracker(tmp_path) -> monai_handlers.MLFlowHandler:
    pytest.importorskip("mlflow")
    return monai_handlers.MLFlowHandler(tracking_uri=f"sqlite:///{tmp_path}/mlruns.db", optimizer_param_names="lr")


def test_trackers_are_found_by_class_whatever_they_are_named(tmp_path):
    engine = _trainer()
    tracker = _tracker(tmp_path)
    other = monai_handlers.StatsHandler(name="StatsHandler_like_MLFlowHandler")
    for handler in (TrackBaseLearningRate(), other, tracker):
        handler.attach(engine)
    assert attached_trackers(engine) == [tracker]


def test_trackers_log_the_base_rate_once_per_epoch_instead_of_each_group(tmp_path):
    engine = _trainer()
    handler, tracker = TrackBaseLearningRate(), _tracker(tmp_path)
    handler.attach(engine)
    tracker.attach(engine)
    handler.quiet_group_rates(engine)
    assert tracker.optimizer_param_names == []
    handler.record_base_rate(engine)
    assert engine.state.metrics["learning_rate"] == pytest.approx(0.01)


def test_all_groups_attaches_nothing_and_without_trackers_nothing_is_recorded():
    engine = _trainer()
    every_group = TrackBaseLearningRate(all_groups="true")
    every_group.attach(engine)
    assert not engine.has_event_handler(every_group.quiet_group_rates, Events.STARTED)
    assert not engine.has_event_handler(every_group.record_base_rate, Events.EPOCH_COMPLETED)

    alone, handler = _trainer(), TrackBaseLearningRate()
    handler.attach(alone)
    handler.quiet_group_rates(alone)
    handler.record_base_rate(alone)
    assert "learning_rate" not in alone.state.metrics
