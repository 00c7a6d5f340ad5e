"""Checkpoints that resume exactly: modules, optimizers, schedulers, RNG states, epoch/step and early-stopping state.

Data order and augmentation are functions of (seed, epoch, index) and need no state; the global torch RNG (dropout,
weight init of lazily built parts) is saved and restored. Files are written atomically (tmp + rename), so a run
killed while saving keeps its previous checkpoint.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrassist.errors import ConfigError


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The bare module under DDP / torch.compile wrappers."""
    while hasattr(module, "module") and isinstance(module.module, torch.nn.Module):  # DDP
        module = module.module
    return getattr(module, "_orig_mod", module)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: Path,
    *,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, Any],
    schedulers: dict[str, Any],
    progress: dict[str, Any],
) -> None:
    payload = {
        "modules": {k: unwrap(m).state_dict() for k, m in modules.items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
        "progress": dict(progress),
        "rng": rng_state(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(
    path: Path,
    *,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, Any] | None = None,
    schedulers: dict[str, Any] | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load into the given objects; returns the saved ``progress`` dict."""
    if not Path(path).is_file():
        raise ConfigError(f"checkpoint not found: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    for k, m in modules.items():
        unwrap(m).load_state_dict(payload["modules"][k])
    for k, o in (optimizers or {}).items():
        o.load_state_dict(payload["optimizers"][k])
    for k, s in (schedulers or {}).items():
        s.load_state_dict(payload["schedulers"][k])
    if restore_rng:
        set_rng_state(payload["rng"])
    return payload["progress"]
