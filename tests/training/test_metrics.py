"""Metric functions against scikit-learn, brute-force references and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.metrics import roc_auc_score

from cxrassist.evaluation import metrics as M


def test_dice_iou_by_hand() -> None:
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[0:4, 0:5] = True  # 20 px
    b[2:6, 0:5] = True  # 20 px, overlap 10
    assert M.dice(a, b) == pytest.approx(2 * 10 / 40)
    assert M.iou(a, b) == pytest.approx(10 / 30)
    assert M.dice(a, a) == 1.0 and M.dice(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert M.dice(a, np.zeros_like(a)) == 0.0


def _surface_points(m: np.ndarray) -> np.ndarray:
    pts = []
    h, w = m.shape
    for y, x in zip(*np.nonzero(m), strict=True):
        nb = [(y + dy, x + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        if any(not (0 <= yy < h and 0 <= xx < w) or not m[yy, xx] for yy, xx in nb):
            pts.append((y, x))
    return np.array(pts, float)


def test_hd95_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:40]
    a = (yy - 18) ** 2 + (xx - 20) ** 2 < 100
    b = ((yy - 21) / 1.2) ** 2 + (xx - 17) ** 2 < 90
    b[rng.integers(0, 40, 5), rng.integers(0, 40, 5)] = True  # a few stray pixels
    pa, pb = _surface_points(a), _surface_points(b)
    d = cdist(pa, pb)
    expected = max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))
    assert M.hd95(a, b) == pytest.approx(expected, rel=1e-6)
    assert M.hd95(a, a) == 0.0
    assert math.isnan(M.hd95(a, np.zeros_like(a)))


def test_psnr_and_bone_ratio_by_hand() -> None:
    x = np.zeros((8, 8))
    assert M.psnr(x + 0.1, x) == pytest.approx(20.0)
    assert M.psnr(x, x) == math.inf
    t = np.array([[0.2, 0.0], [0.1, 0.0]])
    assert M.bone_suppression_ratio(np.zeros_like(t), t) == pytest.approx(0.0)
    assert M.bone_suppression_ratio(t, t) == pytest.approx(1.0)
    assert M.bone_suppression_ratio(t / 2, t) == pytest.approx(1 - 0.25)


def _ssim_reference(x: np.ndarray, y: np.ndarray, win: int = 11, sigma: float = 1.5) -> float:
    """Explicit per-window Gaussian-weighted statistics (Wang et al. 2004, eq. 13-15), loops only."""
    ax = np.arange(win) - (win - 1) / 2
    g = np.exp(-(ax**2) / (2 * sigma**2))
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for i in range(x.shape[0] - win + 1):
        for j in range(x.shape[1] - win + 1):
            px, py = x[i : i + win, j : j + win], y[i : i + win, j : j + win]
            mx, my = (w * px).sum(), (w * py).sum()
            vx = (w * (px - mx) ** 2).sum()
            vy = (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            vals.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_ssim_matches_reference_and_hand_values() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((20, 22))
    y = np.clip(x * 0.7 + 0.1 + rng.normal(0, 0.05, x.shape), 0, 1)
    assert M.ssim(x, y) == pytest.approx(_ssim_reference(x, y), abs=1e-9)
    assert M.ssim(x, x) == pytest.approx(1.0)
    a, b = 0.3, 0.6  # constant images: only the luminance term is left
    expected = (2 * a * b + 1e-4) / (a * a + b * b + 1e-4)
    assert M.ssim(np.full((16, 16), a), np.full((16, 16), b)) == pytest.approx(expected)


def test_auroc_thresholds_against_sklearn() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200).astype(float)
    s = y * 0.6 + rng.random(200)
    assert M.auroc(y, s) == pytest.approx(roc_auc_score(y, s))
    y_nan = y.copy()
    y_nan[:10] = np.nan
    assert M.auroc(y_nan, s) == pytest.approx(roc_auc_score(y[10:], s[10:]))
    assert math.isnan(M.auroc(np.zeros(5), np.arange(5.0)))
    lo, hi = M.bootstrap_auroc_ci(y, s, n=200, seed=0)
    assert lo < M.auroc(y, s) < hi and (lo, hi) == M.bootstrap_auroc_ci(y, s, n=200, seed=0)
    # hand example: scores 0.1 0.4 | 0.35 0.8 -> Youden picks 0.35 (sens 1, spec 0.5) or 0.8 (0.5, 1): tie -> first
    yy = np.array([0, 0, 1, 1.0])
    ss = np.array([0.1, 0.4, 0.35, 0.8])
    t = M.youden_threshold(yy, ss)
    sens, spec = M.sensitivity_specificity(yy, ss, t)
    assert sens + spec - 1 == pytest.approx(0.5)
    t90 = M.threshold_at_sensitivity(yy, ss, 1.0)
    assert t90 == pytest.approx(0.35) and M.sensitivity_specificity(yy, ss, t90) == (1.0, 0.5)


def test_roc_png(tmp_path) -> None:
    from PIL import Image

    from cxrassist.evaluation.roc_plot import draw_roc

    p = draw_roc(
        np.array([0, 0.2, 1]),
        np.array([0, 0.8, 1]),
        tmp_path / "r.png",
        title="PX",
        auc=0.8,
        ci=(0.7, 0.9),
        point=(0.2, 0.8),
    )
    img = np.asarray(Image.open(p).convert("RGB"))
    red = (img[..., 0] > 150) & (img[..., 1] < 100) & (img[..., 2] < 100)
    assert img.shape == (480, 480, 3) and red.sum() > 100  # the red curve is drawn
