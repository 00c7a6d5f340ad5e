"""Operating points chosen on data disjoint from what they are reported on, calibration, and the ONE rule for
"validated" (used by ``cxr evaluate --write-thresholds`` and by the ship script alike).

Method (two-fold cross-fitting, patient-wise):

* The fitting population is the NIH-source validation films (:data:`cxrassist.labels.NIH_SOURCE_DATASETS`, labels
  known for the label in question): one source, so neither the threshold nor the calibration can lean on telling
  data sets apart.
* Each of those films falls in fold 0 or 1 by a hash of its patient (:func:`fold_of`). For fold f, the Platt
  calibration and the threshold are fitted on the other fold and applied to fold f: every reported sensitivity,
  specificity and calibration error of an NIH-source film comes from an operating point that never saw it.
  Films of other sources were never fitted on, so the operating point fitted on all NIH-source films applies to them.
* What ships is the operating point fitted on all NIH-source films; the cross-fitted figures estimate how it behaves.

"Validated" (:func:`is_validated`): at least ``VALIDATION_MIN_POSITIVES`` NIH-source positives and a bootstrap 95 % CI
of the AUROC on NIH-source films whose lower bound is at least ``VALIDATION_MIN_CI_LOW``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cxrassist.calibration import platt
from cxrassist.evaluation.metrics import sensitivity_specificity, threshold_at_sensitivity, youden_threshold

VALIDATION_MIN_POSITIVES = 10
VALIDATION_MIN_CI_LOW = 0.65
FINDING_RULE = "spec=0.90"  # a finding is called at specificity 0.90 among NIH-source films without it
TRIAGE_RULE = "sens=0.95"  # a worklist must not bury abnormal films
VALIDATION_RULE = (
    f"AUROC on NIH-source val films with >= {VALIDATION_MIN_POSITIVES} positives and a bootstrap "
    f"95% CI lower bound >= {VALIDATION_MIN_CI_LOW}"
)


def is_validated(n_pos: int, ci_low: float | None) -> bool:
    """The one rule: enough NIH-source positives, and an AUROC whose CI lower bound clears the floor."""
    return bool(
        n_pos >= VALIDATION_MIN_POSITIVES
        and ci_low is not None
        and ci_low == ci_low
        and ci_low >= VALIDATION_MIN_CI_LOW
    )


def fold_of(group: str, k: int = 2) -> int:
    """Stable patient-wise fold (sha1 of the patient key): the same patient is always in the same fold."""
    return int(hashlib.sha1(group.encode()).hexdigest()[:8], 16) % k


def threshold_at_specificity(y: np.ndarray, p: np.ndarray, specificity: float) -> float:
    """The lowest threshold whose specificity reaches ``specificity`` (so sensitivity is as high as possible)."""
    neg = np.sort(np.asarray(p, float)[np.asarray(y) == 0])
    if neg.size == 0:
        return float("nan")
    # calls are p >= t; specificity = share of negatives below t. The k-th smallest negative must be below t.
    k = int(math.ceil(specificity * neg.size - 1e-9))
    if k <= 0:
        return float(neg[0])
    if k >= neg.size:
        return float(np.nextafter(neg[-1], np.inf))
    return float(np.nextafter(neg[k - 1], np.inf)) if neg[k] == neg[k - 1] else float((neg[k - 1] + neg[k]) / 2)


def choose_threshold(rule: str, y: np.ndarray, p: np.ndarray) -> float:
    """``spec=X``, ``sens=X`` or ``youden`` on (y, p)."""
    if rule == "youden":
        return youden_threshold(y, p)
    kind, _, value = rule.partition("=")
    try:
        target = float(value)
    except ValueError:
        target = -1.0
    if kind not in ("spec", "sens") or not 0.0 < target <= 1.0:
        raise ValueError(f"threshold rule must be 'spec=<0..1>', 'sens=<0..1>' or 'youden', got {rule!r}")
    return threshold_at_specificity(y, p, target) if kind == "spec" else threshold_at_sensitivity(y, p, target)


def platt_fit(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Logistic regression of the label on logit(p) (nearly unregularised); identity when it cannot be fitted or
    would reverse the ranking (slope <= 0)."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y, float)
    if y.size < 4 or y.min() == y.max():
        return 1.0, 0.0
    q = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    z = np.log(q / (1 - q))[:, None]
    lr = LogisticRegression(C=1e4, max_iter=1000).fit(z, y.astype(int))
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    return (a, b) if a > 0 and math.isfinite(b) else (1.0, 0.0)


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: bin-size-weighted |mean p - positive rate| over equal-width bins."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    if y.size == 0:
        return float("nan")
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(p[m].mean() - y[m].mean())
    return float(total / y.size)


@dataclass
class OperatingPoint:
    """The shipped point (fitted on all fitting films) and the cross-fitted calls/probabilities of every film."""

    threshold: float
    a: float
    b: float
    calls: np.ndarray  # bool [N]: out-of-fold for fitting films, the shipped point for the others
    calibrated: np.ndarray  # float [N]: same rule

    def to_card(self) -> dict[str, float]:
        return {"a": self.a, "b": self.b}


def cross_fit(y: np.ndarray, p: np.ndarray, fit_mask: np.ndarray, folds: np.ndarray, rule: str) -> OperatingPoint:
    """Calibrate (Platt) and choose the threshold by ``rule`` with two-fold cross-fitting (see the module docstring).

    ``y`` may hold NaN (unknown): those films are neither fitted on nor judged, but still get calls.
    """
    y, p = np.asarray(y, float), np.asarray(p, float)
    known = ~np.isnan(y)
    fit = np.asarray(fit_mask, bool) & known

    def fit_on(m: np.ndarray) -> tuple[float, float, float]:
        a, b = platt_fit(y[m], p[m])
        thr = choose_threshold(rule, y[m], platt(p[m], a, b)) if _both_classes(y[m]) else float("nan")
        return a, b, thr

    a, b, thr = fit_on(fit)
    cal = np.asarray(platt(p, a, b), float).reshape(-1)
    calls = cal >= thr if thr == thr else np.zeros_like(cal, bool)
    for f in (0, 1):
        test = fit & (folds == f)
        train = fit & (folds != f)
        if not test.any():
            continue
        fa, fb, fthr = fit_on(train) if _both_classes(y[train]) else (1.0, 0.0, float("nan"))
        cal[test] = np.asarray(platt(p[test], fa, fb), float).reshape(-1)
        calls[test] = cal[test] >= fthr if fthr == fthr else False
    return OperatingPoint(float(thr), a, b, calls, cal)


def _both_classes(y: np.ndarray) -> bool:
    return y.size > 0 and np.nanmin(y) != np.nanmax(y)


def call_figures(y: np.ndarray, calls: np.ndarray) -> dict[str, Any]:
    """Sensitivity and specificity of binary calls against known labels, with the counts behind them."""
    y = np.asarray(y, float)
    known = ~np.isnan(y)
    yk, ck = y[known], np.asarray(calls, bool)[known]
    sens, spec = sensitivity_specificity(yk, ck.astype(float), 0.5) if yk.size else (math.nan, math.nan)
    return {"sensitivity": sens, "specificity": spec, "n": int(yk.size), "n_pos": int((yk == 1).sum())}


def group_masks(datasets: Sequence[str], nih_sources: frozenset[str]) -> dict[str, np.ndarray]:
    """One boolean mask per data set, plus ``nih_source`` (all NIH-source sets together)."""
    names = np.asarray(datasets)
    masks = {str(n): names == n for n in sorted(set(names.tolist()))}
    masks["nih_source"] = np.isin(names, list(nih_sources))
    # the two RSNA-read sets went through the same 1024 -> 299 -> 224 px chain: their comparison cannot lean on
    # processing differences (the NIH sample came 1024 -> 512 px, another look)
    rsna = np.isin(names, ["rsna_normal", "rsna_lung_opacity"])
    if rsna.any():
        masks["rsna_matched"] = rsna
    return masks


def per_group(
    y: np.ndarray,
    values: np.ndarray,
    masks: dict[str, np.ndarray],
    fn: Callable[[np.ndarray, np.ndarray], dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """``fn(y[m], values[m])`` for every group mask with at least one known label."""
    out = {}
    for name, m in masks.items():
        if m.any() and (~np.isnan(np.asarray(y, float)[m])).any():
            out[name] = fn(np.asarray(y)[m], np.asarray(values)[m])
    return out
