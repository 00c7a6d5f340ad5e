"""Tiny configurations of every named model, so the whole registry can be exercised on a CPU in seconds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tests/models/blobs.py, tiny_models.py


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
