"""Shared pieces of the per-task evaluations: batching letterboxed inputs through a model."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def chunks(items: Sequence[T], n: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def progress(it: Iterable[T], total: int, desc: str, enabled: bool = True) -> Iterable[T]:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, leave=False, disable=None)


def run_model(model: Any, batch01: np.ndarray, device: Any) -> np.ndarray:
    """[B, C, S, S] images in [0, 1] -> model output as numpy (normalization applied here, as the contract says)."""
    import torch

    from cxrassist.preprocess import normalize

    with torch.no_grad():
        x = normalize(torch.from_numpy(np.ascontiguousarray(batch01, dtype=np.float32))).to(device)
        return model(x).float().cpu().numpy()
