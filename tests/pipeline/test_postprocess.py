"""Mask cleanup, lung areas, heatmap mapping and overlays."""

from __future__ import annotations

import numpy as np
import pytest

from cxrassist.postprocess import (
    as_uint8,
    clean_lung_mask,
    heatmap_to_original_u8,
    lung_areas,
    mask_contour,
    overlay_contour,
    overlay_heatmap,
)
from cxrassist.preprocess import SpatialRecord


def test_clean_lung_mask_keeps_two_largest_and_fills_holes() -> None:
    m = np.zeros((100, 100), bool)
    m[10:80, 10:40] = True  # right lung (image left)
    m[10:70, 60:90] = True  # left lung
    m[30:40, 20:30] = False  # a hole (dense pathology)
    m[90:93, 50:53] = True  # speckle, third component
    out = clean_lung_mask(m)
    assert out[35, 25]  # hole filled
    assert not out[91, 51]  # speckle gone
    assert out[10:80, 10:40].all() and out[10:70, 60:90].all()


def test_clean_lung_mask_empty_and_speckle_only() -> None:
    assert not clean_lung_mask(np.zeros((50, 50), bool)).any()
    speck = np.zeros((200, 200), bool)
    speck[5, 5] = speck[100, 100] = True
    assert not clean_lung_mask(speck).any()


def test_lung_areas_per_side_and_cm2() -> None:
    m = np.zeros((100, 100), bool)
    m[10:60, 10:40] = True  # 50 x 30 = 1500 px on the image left = patient's right
    m[10:50, 60:90] = True  # 40 x 30 = 1200 px
    a = lung_areas(m, (0.5, 0.5))
    assert (a.right_px, a.left_px, a.total_px) == (1500, 1200, 2700)
    assert a.right_cm2 == pytest.approx(1500 * 0.25 / 100) and a.left_cm2 == pytest.approx(3.0)
    unknown = lung_areas(m, None)
    assert unknown.right_cm2 is None and unknown.to_dict()["total_cm2"] is None


def test_heatmap_to_original_matches_float_mapping() -> None:
    rec = SpatialRecord.for_shape(300, 200, 128)
    cam = np.zeros((8, 8), np.float32)
    cam[2, 5] = 1.0
    fast = heatmap_to_original_u8(cam, rec).astype(np.float32) / 255
    ref = np.clip(rec.to_original(cam), 0, 1)
    assert fast.shape == (300, 200)
    assert np.abs(fast - ref).max() < 0.05
    assert np.unravel_index(fast.argmax(), fast.shape)[1] > 100  # the hot cell is right of centre


def test_overlay_is_radiograph_where_cold_and_coloured_where_hot() -> None:
    gray = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    heat = np.zeros_like(gray)
    heat[:, 32:] = 1.0
    rgb = overlay_heatmap(gray, heat)
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    g8 = as_uint8(gray)
    assert (rgb[:, :32] == g8[:, :32, None]).all()  # cold half: exactly the radiograph
    hot = rgb[:, 32:].astype(int)
    assert (np.abs(hot[..., 0] - hot[..., 2]) > 20).mean() > 0.9  # hot half: coloured
    with pytest.raises(ValueError):
        overlay_heatmap(gray, heat[:10])


def test_contour_is_outline() -> None:
    m = np.zeros((40, 40), bool)
    m[10:30, 10:30] = True
    edge = mask_contour(m, 1)
    assert edge[10, 15] and not edge[20, 20] and not edge[5, 5]
    rgb = overlay_contour(np.zeros((40, 40)), m, thickness=1)
    assert tuple(rgb[10, 15]) != (0, 0, 0) and tuple(rgb[20, 20]) == (0, 0, 0)
