"""Probability calibration read from a model card: Platt scaling of the model's own probability.

A network trained on a mix of sources (one mostly normal, others enriched for findings) gives scores whose scale
says little about how often a finding is really present. Each card may carry, per label, a logistic map fitted on
validation data (``card.calibration[label] = {"a": ..., "b": ...}``): ``p' = sigmoid(a * logit(p) + b)``. It is
monotone, so ranking (AUROC) is unchanged; thresholds in the card are on ``p'`` when a label has an entry.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cxrassist.weights.settings import card_dict, read_calibration

_EPS = 1e-6


def platt(p: Any, a: float, b: float) -> Any:
    """sigmoid(a * logit(p) + b) for a float or a numpy array of probabilities."""
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    z = a * np.log(q / (1 - q)) + b
    out = 1.0 / (1.0 + np.exp(-z))
    return float(out) if np.ndim(out) == 0 else out


def label_calibration(card: Any, label: str) -> tuple[float, float] | None:
    """(a, b) for ``label`` from the card's ``calibration`` table, or None. A malformed entry is refused
    (:class:`~cxrassist.errors.CardError`, a ValueError); the pipeline reads it once, via ``card_settings``."""
    table = card_dict(card).get("calibration") or {}
    return read_calibration(label, table.get(label))


def calibrated(card: Any, label: str, p: float) -> float:
    """The card's calibrated probability for one label (``p`` itself when the card has no calibration for it)."""
    ab = label_calibration(card, label)
    return float(p) if ab is None else float(platt(p, *ab))
