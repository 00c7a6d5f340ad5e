"""Weights format: ``<dir>/model.safetensors`` + ``<dir>/card.json`` (a :class:`ModelCard`), sha256-verified.

Shipped weights live in ``cxrassist/weights/shipped/<name>/``. :func:`load_model` never unpickles code. The card
module is torch-free; the save/load functions import torch when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from cxrassist.weights.card import CARD_FILE, INPUT_DOMAIN, INTENDED_USE, WEIGHTS_FILE, ModelCard
from cxrassist.weights.catalog import list_shipped, sha256_file, shipped_dir

_LAZY = ("save_weights", "load_model")

__all__ = [
    "CARD_FILE",
    "INPUT_DOMAIN",
    "INTENDED_USE",
    "WEIGHTS_FILE",
    "ModelCard",
    "list_shipped",
    "sha256_file",
    "shipped_dir",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("cxrassist.weights.store"), name)
    raise AttributeError(f"module 'cxrassist.weights' has no attribute {name!r}")
