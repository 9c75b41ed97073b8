"""Where a study's jobs run: several worker processes at once, each with a fixed number of threads.

The study's small networks use two CPU cores badly: on a 2-core CPU one BTCV fine-tuning step takes 0.068 s with two
threads and 0.078 s with one, so two single-threaded runs side by side do 1.7x the work of one two-threaded run
(``python -m tools.measure.benchmark_study``). A run's result depends on its number of threads (the order of a matrix
product's sums), never on which worker ran it or how many there were: with the same ``threads_per_run`` a study gives
the same figures with one worker or eight.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["MAX_DEFAULT_WORKERS", "available_cores", "default_workers", "study_executor", "torch_threads"]


def available_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


MAX_DEFAULT_WORKERS = 8
"""Most workers started by default: each holds its own torch and MONAI (about 0.6 GB), so a many-core machine does not
start dozens of them unasked (``--workers`` starts more)."""


def default_workers(threads_per_run: int | None) -> int:
    """As many workers as their threads fill the cores, at most ``MAX_DEFAULT_WORKERS``; one when a run takes every
    core (``None``)."""
    if not threads_per_run:
        return 1
    return max(1, min(available_cores() // threads_per_run, MAX_DEFAULT_WORKERS))


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch threads (``None``: leave torch's setting), then restore the setting."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _set_worker_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


class InProcessExecutor(Executor):
    """Runs each job at once in this process, with ``threads`` torch threads: one worker without a child process (a
    test's monkeypatches and a debugger reach the job). A job's error is raised by ``submit`` itself, at once."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        with torch_threads(self.threads):
            future.set_result(fn(*args, **kwargs))
        return future


def study_executor(workers: int, threads_per_run: int | None) -> Executor:
    """``workers`` processes started fresh (``spawn``: a fork would inherit the parent's OpenMP threads), each
    running one job at a time with ``threads_per_run`` torch threads; with one worker, this process."""
    if workers <= 1:
        return InProcessExecutor(threads_per_run)
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_set_worker_threads, initargs=(threads_per_run,))
