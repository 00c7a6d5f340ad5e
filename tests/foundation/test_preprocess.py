"""preprocess.py: letterbox / SpatialRecord round trips at exact pixel positions, levels, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from cxrassist.preprocess import (
    LEVEL_PRESETS,
    Reductions,
    SpatialRecord,
    apply_level,
    denormalize,
    letterbox,
    normalize,
    reduce_detail,
    to_model_input,
)


@pytest.mark.parametrize(
    ("orig", "size", "expect"),
    [
        ((256, 512), 128, {"scale": 0.25, "new_h": 64, "new_w": 128, "top": 32, "left": 0}),  # landscape
        ((512, 256), 128, {"scale": 0.25, "new_h": 128, "new_w": 64, "top": 0, "left": 32}),  # portrait
        ((200, 200), 100, {"scale": 0.5, "new_h": 100, "new_w": 100, "top": 0, "left": 0}),  # square
    ],
)
def test_record_geometry(orig, size, expect):
    rec = SpatialRecord.for_shape(*orig, size)
    for key, value in expect.items():
        assert getattr(rec, key) == value


@pytest.mark.parametrize(
    ("orig", "size", "model_box", "orig_box"),
    [
        # (rows, cols) boxes as (r0, r1, c0, c1), half-open
        ((256, 512), 128, (32 + 10, 32 + 20, 30, 50), (40, 80, 120, 200)),  # landscape: padded top and bottom
        ((512, 256), 128, (30, 50, 32 + 10, 32 + 20), (120, 200, 40, 80)),  # portrait: padded left and right
        ((200, 200), 100, (10, 30, 60, 70), (20, 60, 120, 140)),  # square: no padding
    ],
)
def test_model_space_mask_lands_on_right_original_pixels(orig, size, model_box, orig_box):
    rec = SpatialRecord.for_shape(*orig, size)
    mask = np.zeros((size, size), np.float32)
    r0, r1, c0, c1 = model_box
    mask[r0:r1, c0:c1] = 1
    back = rec.to_original(mask, nearest=True)
    assert back.shape == orig
    expected = np.zeros(orig, np.float32)
    R0, R1, C0, C1 = orig_box
    expected[R0:R1, C0:C1] = 1
    np.testing.assert_array_equal(back, expected)


@pytest.mark.parametrize("orig", [(32, 64), (64, 32), (32, 32)])
def test_upsampling_round_trip_is_exact(orig):
    """Original mask -> model space (integer upscale) -> original again gives the same mask."""
    rng = np.random.default_rng(0)
    mask = (rng.random(orig) > 0.7).astype(np.float32)
    rec = SpatialRecord.for_shape(*orig, 128)
    model = rec.to_model(mask, nearest=True)
    assert model.shape == (128, 128)
    # padding stays zero, content sits in the valid window at the right place
    k = int(round(rec.scale))
    r, c = np.argwhere(mask)[0]
    assert model[rec.top + k * r, rec.left + k * c] == 1
    assert model.sum() == mask.sum() * k * k
    np.testing.assert_array_equal(rec.to_original(model, nearest=True), mask)


def test_letterbox_places_image_and_pads_with_zero():
    img = np.full((256, 512), 0.8, np.float32)
    img[:, :256] = 0.2
    canvas, rec = letterbox(img, 128)
    assert canvas.shape == (128, 128) and canvas.dtype == np.float32
    assert np.all(canvas[:32] == 0) and np.all(canvas[96:] == 0)  # padding rows
    assert np.allclose(canvas[40:90, 5:60], 0.2) and np.allclose(canvas[40:90, 70:120], 0.8)
    assert rec.to_dict()["top"] == 32


def test_low_resolution_cam_maps_to_original_shape():
    rec = SpatialRecord.for_shape(300, 400, 64)
    cam = np.zeros((8, 8), np.float32)
    cam[:, 4:] = 1.0  # right half hot
    heat = rec.to_original(cam)
    assert heat.shape == (300, 400)
    assert heat[:, 300:].mean() > 0.9 and heat[:, :100].mean() < 0.1


def test_to_original_rejects_wrong_shapes():
    rec = SpatialRecord.for_shape(100, 100, 64)
    with pytest.raises(ValueError):
        rec.to_original(np.zeros((2, 64, 64)))
    with pytest.raises(ValueError):
        rec.to_model(np.zeros((99, 100)))


def test_normalize_and_denormalize():
    x = np.array([0.0, 0.25, 0.5, 0.75, 1.0], np.float32)
    np.testing.assert_allclose(normalize(x), [-2.0, -1.0, 0.0, 1.0, 2.0])
    np.testing.assert_allclose(denormalize(normalize(x)), x, atol=1e-7)
    boxed, rec = to_model_input(np.full((64, 32), 0.5, np.float32), 64)
    assert boxed.dtype == np.float32 and boxed[:, rec.left + 2].max() == 0.0  # image area is 0.5 -> 0
    assert boxed[0, 0] == -2.0  # padding (air black, 0) normalises to -2


def test_apply_level():
    x = np.linspace(0, 1, 11, dtype=np.float32)
    np.testing.assert_allclose(apply_level(x, 0.5, 1.0), x, atol=1e-7)
    center, width = LEVEL_PRESETS["lung"]
    y = apply_level(np.array([center - width / 2, center, center + width / 2, 0.0, 1.0]), center, width)
    np.testing.assert_allclose(y, [0.0, 0.5, 1.0, 0.0, 1.0], atol=1e-7)
    assert float(apply_level(np.float32(0.7), 0.7, 0.5)) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        apply_level(x, 0.5, 0.0)


def test_non_integer_scale_box_within_one_pixel():
    """A scale of 128/500: the mapped box matches the geometric box to one original pixel."""
    rec = SpatialRecord.for_shape(300, 500, 128)
    mask = np.zeros((128, 128), np.float32)
    mask[rec.top + 20 : rec.top + 40, 50:80] = 1
    back = rec.to_original(mask, nearest=True)
    rows, cols = np.flatnonzero(back.any(axis=1)), np.flatnonzero(back.any(axis=0))
    s = rec.scale
    assert abs(rows[0] - 20 / s) <= 1 and abs(rows[-1] + 1 - 40 / s) <= 1
    assert abs(cols[0] - 50 / s) <= 1 and abs(cols[-1] + 1 - 80 / s) <= 1


def test_shared_reductions_give_the_same_canvas_and_are_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline reduces a film once for its three 224-px readers: same canvas as reducing each time."""
    import cxrassist.preprocess as pp

    film = np.random.default_rng(0).random((700, 610), dtype=np.float32)
    expected = [letterbox(film, size, detail=224)[0] for size in (256, 320)]
    calls = []
    real = pp.reduce_detail
    monkeypatch.setattr(pp, "reduce_detail", lambda px, d: calls.append(d) or real(px, d))
    shared = Reductions(film)
    got = [letterbox(film, size, detail=224, reductions=shared)[0] for size in (256, 320, 256)]
    assert calls == [224]  # made once, read three times
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert np.array_equal(shared.of(film, 224), reduce_detail(film, 224))
    assert shared.of(film, None) is film  # no effective size: the film itself


def test_reductions_refuse_another_image() -> None:
    film = np.zeros((300, 300), dtype=np.float32)
    with pytest.raises(ValueError, match="another image"):
        letterbox(film.copy(), 128, detail=64, reductions=Reductions(film))
