"""Progress of a study: one line per epoch with the elapsed time and an estimate of the time left for the study."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ignite.engine import Engine, Events

__all__ = ["PlannedStage", "StudyClock", "StageProgress", "format_seconds"]


def format_seconds(seconds: float) -> str:
    """``75`` -> ``"1m15s"``."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@dataclass
class PlannedStage:
    """One stage of a study's plan as the clock counts it: a kind of work (``"pretrain"``, ``"finetune"``,
    ``"evaluate"``), a name, its number of epochs (1 for an evaluation), of iterations per epoch (what the time
    estimate counts) and of epochs done. The configs a stage runs are a ``tools.study.tasks.Stage``."""

    kind: str
    name: str
    epochs: int
    iterations_per_epoch: int = 1
    done: int = 0


@dataclass
class StudyClock:
    """Estimates the time left from the stages done so far: seconds per iteration are measured per kind of stage,
    a kind not run yet is assumed to cost as much per iteration as the kinds measured so far on average, and
    ``workers`` stages run at once."""

    stages: Sequence[PlannedStage]
    workers: int = 1
    start: float = field(default_factory=time.perf_counter)
    _seconds: dict[str, float] = field(default_factory=dict)
    _iterations: dict[str, int] = field(default_factory=dict)

    def record(self, stage: PlannedStage, seconds: float) -> None:
        """One epoch of ``stage`` took ``seconds``."""
        stage.done += 1
        self._measure(stage.kind, seconds, stage.iterations_per_epoch)

    def finish(self, stage: PlannedStage, seconds: float) -> None:
        """The whole of ``stage`` (all its epochs, run as a job with a clock of its own) took ``seconds``."""
        stage.done = stage.epochs
        self._measure(stage.kind, seconds, stage.epochs * stage.iterations_per_epoch)

    def _measure(self, kind: str, seconds: float, iterations: int) -> None:
        self._seconds[kind] = self._seconds.get(kind, 0.0) + seconds
        self._iterations[kind] = self._iterations.get(kind, 0) + iterations

    def seconds_per_iteration(self, kind: str) -> float:
        if self._iterations.get(kind):  # a stage of no iterations (e.g. scoring a given encoder) measures nothing
            return self._seconds[kind] / self._iterations[kind]
        total = sum(self._iterations.values())
        return sum(self._seconds.values()) / total if total else 0.0

    def remaining(self) -> float:
        return sum(max(s.epochs - s.done, 0) * s.iterations_per_epoch * self.seconds_per_iteration(s.kind)
                   for s in self.stages) / self.workers

    def fraction_done(self) -> float:
        total = sum(s.epochs * s.iterations_per_epoch for s in self.stages)
        done = sum(min(s.done, s.epochs) * s.iterations_per_epoch for s in self.stages)
        return done / total if total else 1.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def line(self, text: str) -> str:
        return (f"[{self.fraction_done():4.0%}] {text} | {format_seconds(self.elapsed())} elapsed, "
                f"ETA {format_seconds(self.remaining())}")


class StageProgress:
    """Ignite handler of a training stage: records every epoch's mean loss, feeds the study clock and prints a
    progress line per epoch, or every few epochs so that a stage prints at most ``max_lines`` lines (and its last;
    none when ``max_lines`` is 0).

    Args:
        clock: the study's clock.
        stage: the stage this trainer runs.
        label: prefix of the printed lines.
        max_lines: most lines printed for the stage.
    """

    def __init__(self, clock: StudyClock, stage: PlannedStage, label: str, max_lines: int = 10) -> None:
        self.clock, self.stage, self.label = clock, stage, label
        self.every = max(1, -(-stage.epochs // max_lines)) if max_lines else 0
        self.fingerprints: list[float] = []  # one number per batch: two runs that saw the same data agree
        self.losses: list[float] = []
        self._batch_losses: list[float] = []
        self._epoch_start = time.perf_counter()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _epoch_started(self, engine: Engine) -> None:
        self._epoch_start, self._batch_losses = time.perf_counter(), []

    def _iteration_completed(self, engine: Engine) -> None:
        output = engine.state.output
        output = output[0] if isinstance(output, list) else output
        self._batch_losses.append(float(output["loss"]))
        batch = engine.state.batch  # MONAI decollates it into a list of items after the iteration
        items = batch if isinstance(batch, list) else [batch]
        images = [item["image"] for item in items if isinstance(item, dict) and "image" in item]
        if images:
            self.fingerprints.append(float(sum(image.double().sum() for image in images)))

    def _epoch_completed(self, engine: Engine) -> None:
        self.clock.record(self.stage, time.perf_counter() - self._epoch_start)
        self.losses.append(sum(self._batch_losses) / max(len(self._batch_losses), 1))
        epoch, last = engine.state.epoch, engine.state.max_epochs
        if self.every and (epoch % self.every == 0 or epoch == last):
            print(self.clock.line(f"{self.label}: epoch {epoch}/{last} loss {self.losses[-1]:.4f}"), flush=True)
