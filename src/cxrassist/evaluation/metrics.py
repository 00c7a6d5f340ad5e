"""Metric functions on numpy arrays (tested against scikit-learn and hand computations).

AUROC comes from scikit-learn; SSIM is Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
K2 = 0.03 and ``data_range`` 1 ([0, 1] images), the reference parameters of the paper (and of skimage's
``gaussian_weights=True, use_sample_covariance=False``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


# ---------------------------------------------------------------- segmentation
def dice(pred: np.ndarray, true: np.ndarray) -> float:
    """Dice of two binary masks; 1.0 when both are empty (nothing to find, nothing found)."""
    p, t = np.asarray(pred, bool), np.asarray(true, bool)
    denom = p.sum() + t.sum()
    return 1.0 if denom == 0 else float(2.0 * np.logical_and(p, t).sum() / denom)


def iou(pred: np.ndarray, true: np.ndarray) -> float:
    p, t = np.asarray(pred, bool), np.asarray(true, bool)
    union = np.logical_or(p, t).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, t).sum() / union)


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, structure=np.ones((3, 3), bool), border_value=0)


def hd95(pred: np.ndarray, true: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)) -> float:
    """95th-percentile symmetric Hausdorff distance between mask surfaces (in pixels, or mm with ``spacing``).

    As in MONAI's ``compute_hausdorff_distance(percentile=95)``: the 95th percentile of each directed
    surface-to-surface distance set, and the larger of the two. NaN if either mask is empty.
    """
    p, t = np.asarray(pred, bool), np.asarray(true, bool)
    if not p.any() or not t.any():
        return float("nan")
    sp, st = _surface(p), _surface(t)
    dt_t = ndimage.distance_transform_edt(~st, sampling=spacing)
    dt_p = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return float(max(np.percentile(dt_t[sp], 95), np.percentile(dt_p[st], 95)))


# ---------------------------------------------------------------- image similarity
def psnr(pred: np.ndarray, true: np.ndarray, data_range: float = 1.0) -> float:
    mse = float(np.mean((np.asarray(pred, np.float64) - np.asarray(true, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(ax**2) / (2 * sigma**2))
    w = np.outer(g, g)
    return w / w.sum()


def ssim(pred: np.ndarray, true: np.ndarray, data_range: float = 1.0, *, win: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM over the positions where the whole window fits (Wang et al. 2004, Gaussian-weighted statistics)."""
    x = np.asarray(pred, np.float64)
    y = np.asarray(true, np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"ssim expects two 2-D arrays of equal shape, got {x.shape} and {y.shape}")
    if min(x.shape) < win:
        raise ValueError(f"images smaller than the {win}x{win} SSIM window")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    w = gaussian_window(win, sigma)

    def filt(a: np.ndarray) -> np.ndarray:
        return ndimage.correlate(a, w, mode="reflect")

    mx, my = filt(x), filt(y)
    vx = filt(x * x) - mx * mx
    vy = filt(y * y) - my * my
    cxy = filt(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    pad = (win - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean())


def bone_suppression_ratio(pred_bone: np.ndarray, true_bone: np.ndarray) -> float:
    """1 - ||pred - true||^2 / ||true||^2: 1 = bone removed perfectly, 0 = no suppression (pred = 0), < 0 worse."""
    t = np.asarray(true_bone, np.float64)
    denom = float((t**2).sum())
    if denom == 0:
        return float("nan")
    return 1.0 - float(((np.asarray(pred_bone, np.float64) - t) ** 2).sum()) / denom


# ---------------------------------------------------------------- classification
def auroc(y_true: np.ndarray, score: np.ndarray) -> float:
    """scikit-learn ROC AUC; NaN when only one class is present (no positives or no negatives)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true, float)
    s = np.asarray(score, float)
    keep = ~np.isnan(y)
    y, s = y[keep], s[keep]
    if y.size == 0 or y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, s))


def bootstrap_auroc_ci(
    y_true: np.ndarray, score: np.ndarray, *, n: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap CI of the AUROC (cases resampled with replacement; one-class resamples skipped)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true, float)
    s = np.asarray(score, float)
    keep = ~np.isnan(y)
    y, s = y[keep], s[keep]
    if y.size == 0 or y.min() == y.max():
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        idx = rng.integers(0, y.size, y.size)
        yy = y[idx]
        if yy.min() == yy.max():
            continue
        vals.append(roc_auc_score(yy, s[idx]))
    if not vals:
        return (float("nan"), float("nan"))
    return (float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2)))


def youden_threshold(y_true: np.ndarray, score: np.ndarray) -> float:
    """Threshold maximizing sensitivity + specificity - 1 (scikit-learn ROC points)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(np.asarray(y_true, float), np.asarray(score, float))
    i = int(np.argmax(tpr - fpr))
    return float(min(thr[i], 1.0))


def threshold_at_sensitivity(y_true: np.ndarray, score: np.ndarray, sensitivity: float) -> float:
    """The highest threshold whose sensitivity reaches ``sensitivity`` (so specificity is as high as possible)."""
    from sklearn.metrics import roc_curve

    _, tpr, thr = roc_curve(np.asarray(y_true, float), np.asarray(score, float))
    ok = np.nonzero(tpr >= sensitivity - 1e-12)[0]
    return float(min(thr[ok[0]], 1.0))


def sensitivity_specificity(y_true: np.ndarray, score: np.ndarray, threshold: float) -> tuple[float, float]:
    """Positive call = score >= threshold."""
    y = np.asarray(y_true, float)
    pos = np.asarray(score, float) >= threshold
    tp = float(np.sum(pos & (y == 1)))
    fn = float(np.sum(~pos & (y == 1)))
    tn = float(np.sum(~pos & (y == 0)))
    fp = float(np.sum(pos & (y == 0)))
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    return sens, spec
