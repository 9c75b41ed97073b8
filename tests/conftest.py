"""Fixtures of every test (shared helpers live in ``tests/helpers.py``)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
