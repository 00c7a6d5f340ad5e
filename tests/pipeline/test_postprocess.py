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


@pytest.mark.parametrize("threshold", [0.6, 0.75])
def test_lung_areas_side_by_centroid_matches_scipy(threshold: float) -> None:
    """The fast per-component sums give what ndimage.center_of_mass gives, with few components and with many."""
    from scipy import ndimage

    rng = np.random.default_rng(7)
    for _ in range(10):
        h, w = (int(v) for v in rng.integers(20, 200, 2))
        mask = ndimage.binary_opening(rng.random((h, w)) > threshold)
        labels, count = ndimage.label(mask)
        right = left = 0
        if count:
            sizes = np.bincount(labels.ravel())
            for i, (_, col) in enumerate(ndimage.center_of_mass(mask, labels, range(1, count + 1)), start=1):
                if col < w / 2:
                    right += int(sizes[i])
                else:
                    left += int(sizes[i])
        areas = lung_areas(mask)
        assert (areas.right_px, areas.left_px) == (right, left)


@pytest.mark.parametrize(("h", "w", "size"), [(1955, 1841, 256), (300, 500, 256), (77, 1000, 256), (2000, 1500, 64)])
def test_boolean_mask_mappings_equal_the_float_ones(h: int, w: int, size: int) -> None:
    """The 8-bit fast paths for masks (lung step, classifier input) give exactly the float nearest mappings."""
    from scipy import ndimage

    rng = np.random.default_rng(h + w)
    rec = SpatialRecord.for_shape(h, w, size)
    small = ndimage.binary_opening(rng.random((size, size)) > 0.5)
    big = ndimage.binary_opening(rng.random((h, w)) > 0.5)
    np.testing.assert_array_equal(
        rec.mask_to_original(small), rec.to_original(small.astype(np.float32), nearest=True) > 0.5
    )
    np.testing.assert_array_equal(rec.mask_to_model(big), rec.to_model(big.astype(np.float32), nearest=True) > 0.5)
    with pytest.raises(ValueError, match="expected shape"):
        rec.mask_to_model(big[:-1])
