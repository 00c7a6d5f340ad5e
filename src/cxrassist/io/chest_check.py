""" "Is this a frontal chest radiograph?" - from DICOM metadata when it says so, from the image itself otherwise.

The image path looks for what every frontal chest film shows, on a 128 x 128 thumbnail:
- a smooth, grey radiograph: wide histogram, strongly correlated neighbouring pixels (not noise, not a flat card);
- in the band of rows through the lungs, a column profile with two wide darker valleys (the lung fields) either side
  of a brighter central ridge (mediastinum and spine);
- below the lung fields, brighter rows again (diaphragm and abdomen).
A limb radiograph fails on the valleys (narrow strips of air, not wide lung fields) or on the diaphragm (the dark
strip runs the whole height); a gradient or noise fails on smoothness or on the ridge.

Thresholds were set on the real radiographs of ``../shared/data`` and the pydicom test films (see the tests).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cxrassist.types import ChestCheck, View, XRay

#: Body part values that mean chest, and values that mean something else, for (0018,0015) BodyPartExamined.
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "LUNGS", "RIBS", "CHEST_LAT", "CHESTPA", "CHEST PA", "TORAX"})
RADIOGRAPHY = frozenset({"CR", "DX", "DR", "RG"})

_THUMB = 128
BAND = (0.2, 0.6)  # rows through the lung fields, as fractions of the height
# Image-statistics thresholds (intensity units: the thumbnail's own 2nd-98th percentile range = 1).
MIN_ASPECT, MAX_ASPECT = 0.6, 1.7  # height / width
MIN_SPREAD = 0.06  # standard deviation of pixels in [0, 1]
MIN_SMOOTHNESS = 0.75  # lag-1 autocorrelation of the thumbnail
MIN_RIDGE = 0.04  # the mediastinal ridge is brighter than the brighter of the two lung valleys
MIN_LUNG_WIDTH = 0.12  # each lung field covers at least this fraction of the width
MIN_DIAPHRAGM = 0.04  # rows below the lungs brighter than the lung rows, at the lung columns
MAX_CENTRE_SHIFT = 0.12  # the ridge lies within this distance of the image centre (fraction of width)
MAX_VALLEY_ASYMMETRY = 0.12  # the two lung valleys sit symmetrically about the centre (laterals often do not)


# Pixel checks made whatever the metadata says (set on the films of ../shared/data: 922 films of 8 sets had a
# 1-99 % range >= 0.25, >= 122 grey levels, <= 0.67 of their pixels near the extremes; see tests/io).
MIN_RANGE = 0.02  # 1st-99th percentile range of the pixels in [0, 1]: below it the image is blank
MIN_LEVELS = 16  # distinct grey levels: at or below it the image is binarised / posterised
MAX_NEAR_EXTREMES = 0.85  # fraction of pixels within 2 % of the range of the darkest or brightest value


def check_chest(xray: XRay) -> ChestCheck:
    """Decide whether ``xray`` is a frontal chest radiograph; ``reason`` says why in one sentence.

    The pixels are always checked, whatever the metadata says (metadata can lie: a blank or inverted image with a
    CHEST PA header is still refused); the metadata then decides chest / frontal where it can.
    """
    stats = image_features(xray.pixels)
    stats_ok, stats_reason = _judge_stats(stats)
    pixel_stats = pixel_statistics(xray.pixels)
    evidence: dict[str, Any] = {
        "modality": xray.modality,
        "body_part": xray.body_part,
        "view": xray.view.value,
        "source": "metadata",
        "image": stats,
        "image_says_chest": stats_ok,
        "pixels": pixel_stats,
    }
    problem = pixel_problem(pixel_stats) or (None if stats_ok else _inverted(xray.pixels, stats))
    if problem is not None:
        evidence["source"] = "pixel check"
        reason = f"{problem[0].upper()}{problem[1:]} (a pixel check, made whatever the metadata says)."
        return ChestCheck(False, None, reason, evidence)
    meta = _judge_metadata(xray)
    if meta is not None:
        is_chest, is_frontal, reason = meta
        if is_chest and is_frontal is None:  # chest by metadata, projection unknown: ask the image
            is_frontal = True if stats_ok else None
            reason += "; projection not recorded" + (", the image looks frontal" if stats_ok else "")
        return ChestCheck(is_chest, is_frontal, reason + ".", evidence)
    evidence["source"] = "image statistics"
    if xray.view == View.LATERAL:
        return ChestCheck(stats_ok, False, "The image is recorded as a lateral view, not frontal.", evidence)
    if stats_ok:
        return ChestCheck(
            True, True, f"No usable metadata; the image looks like a frontal chest film ({stats_reason}).", evidence
        )
    return ChestCheck(
        False,
        None,
        f"No usable metadata and the image does not look like a frontal chest film: {stats_reason}.",
        evidence,
    )


def pixel_statistics(pixels: np.ndarray) -> dict[str, Any]:
    """Range, grey levels and saturation of the image (on a subsample of at most ~512 x 512 pixels)."""
    step = max(1, int(np.ceil(max(pixels.shape) / 512)))
    sub = np.asarray(pixels[::step, ::step], dtype=np.float32)
    lo, hi = (float(v) for v in np.percentile(sub, [1, 99]))
    mn, mx = float(sub.min()), float(sub.max())
    tol = 0.02 * (mx - mn)
    near = float((sub <= mn + tol).mean() + (sub >= mx - tol).mean()) if mx > mn else 1.0
    return {
        "range_1_99": round(hi - lo, 4),
        "grey_levels": int(np.unique(sub).size),
        "near_extremes": round(min(near, 1.0), 4),
    }


def pixel_problem(p: dict[str, Any]) -> str | None:
    """Why these pixel statistics cannot be a radiograph (blank, binarised, posterised, clipped), or None."""
    if p["range_1_99"] < MIN_RANGE:
        return f"the image is blank or nearly constant (98 % of its pixels within {p['range_1_99']:.3f} of each other)"
    if p["grey_levels"] <= 2:
        return "the image is binarised (only 2 grey levels): a radiograph has hundreds"
    if p["grey_levels"] <= MIN_LEVELS:
        return f"the image is posterised (only {p['grey_levels']} grey levels): a radiograph has hundreds"
    if p["near_extremes"] > MAX_NEAR_EXTREMES:
        return (
            f"the image is clipped or binarised ({100 * p['near_extremes']:.0f} % of its pixels sit at the darkest "
            "or brightest value)"
        )
    return None


def _inverted(pixels: np.ndarray, stats: dict[str, Any]) -> str | None:
    """A frontal chest film shown negative: as it is, the region below the lungs is darker than the lungs (soft
    tissue can never be darker than aerated lung), and its negative passes every test of a frontal chest film."""
    if stats["diaphragm"] >= 0:
        return None
    flipped = image_features(1.0 - pixels)
    if flipped["diaphragm"] >= MIN_DIAPHRAGM and _judge_stats(flipped)[0]:
        return (
            "it looks inverted (lungs brighter than the abdomen below them; its negative looks like a frontal "
            "chest film): is the photometric interpretation (MONOCHROME1/2) wrong?"
        )
    return None


def _judge_metadata(xray: XRay) -> tuple[bool, bool | None, str] | None:
    """A decision from DICOM tags, or None when the tags do not settle it."""
    modality = (xray.modality or "").upper()
    part = (xray.body_part or "").upper().strip()
    if modality and modality not in RADIOGRAPHY and modality not in ("OT", "SC"):
        return False, None, f"Modality {modality} is not projection radiography"
    if modality in RADIOGRAPHY and part:
        if part not in CHEST_BODY_PARTS:
            return False, None, f"DICOM metadata: {modality} of body part {part}, not the chest"
        view = xray.view
        if view.is_frontal:
            return True, True, f"DICOM metadata: {modality}, body part {part}, {view.value} view"
        if view == View.LATERAL:
            return True, False, f"DICOM metadata: {modality} chest, but a lateral view, not frontal"
        return True, None, f"DICOM metadata: {modality}, body part {part}"
    return None


def _judge_stats(f: dict[str, Any]) -> tuple[bool, str]:
    """Apply the thresholds; the first failing test is the reason."""
    tests = (
        (
            MIN_ASPECT <= f["aspect"] <= MAX_ASPECT,
            f"aspect ratio {f['aspect']:.2f} is outside {MIN_ASPECT}-{MAX_ASPECT}",
        ),
        (f["spread"] >= MIN_SPREAD, f"almost no contrast (std {f['spread']:.3f})"),
        (
            f["smoothness"] >= MIN_SMOOTHNESS,
            f"it is noise-like, not a smooth radiograph (autocorrelation {f['smoothness']:.2f})",
        ),
        (
            f["ridge"] >= MIN_RIDGE and f["centre_shift"] <= MAX_CENTRE_SHIFT,
            f"no bright mediastinum between two darker lung fields (ridge {f['ridge']:.3f}, "
            f"shift {f['centre_shift']:.2f})",
        ),
        (
            f["valley_asymmetry"] <= MAX_VALLEY_ASYMMETRY,
            f"the two dark fields are not symmetric about the midline (offset {f['valley_asymmetry']:.2f}; "
            "a lateral view?)",
        ),
        (
            min(f["lung_width_left"], f["lung_width_right"]) >= MIN_LUNG_WIDTH,
            "the dark fields beside the midline are too narrow for lungs "
            f"(width {min(f['lung_width_left'], f['lung_width_right']):.2f})",
        ),
        (
            f["diaphragm"] >= MIN_DIAPHRAGM,
            f"no brighter diaphragm/abdomen below the dark fields (step {f['diaphragm']:.3f})",
        ),
    )
    for ok, why in tests:
        if not ok:
            return False, why
    return True, (
        f"mediastinal ridge {f['ridge']:.2f}, "
        f"lung fields {f['lung_width_left']:.2f}/{f['lung_width_right']:.2f} "
        f"of the width, diaphragm step {f['diaphragm']:.2f}"
    )


def _thumbnail(pixels: np.ndarray, size: int = _THUMB) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F")
    return np.asarray(img.resize((size, size), Image.Resampling.BOX), dtype=np.float64)


def _smooth(v: np.ndarray, k: int = 5) -> np.ndarray:
    pad = np.pad(v, k // 2, mode="edge")
    return np.convolve(pad, np.ones(k) / k, mode="valid")


def _trim_uniform_borders(t: np.ndarray, min_std: float = 0.03) -> tuple[slice, slice]:
    """Rows/columns at the edges that are flat (padding, collimator shutters, a strip of air) are cut away."""

    def span(stds: np.ndarray) -> slice:
        keep = np.flatnonzero(stds >= min_std)
        if keep.size == 0:
            return slice(0, stds.size)
        return slice(int(keep[0]), int(keep[-1]) + 1)

    return span(t.std(axis=1)), span(t.std(axis=0))


def image_features(pixels: np.ndarray) -> dict[str, Any]:
    """The numbers the image-statistics path decides on (JSON-able floats)."""
    h, w = pixels.shape
    big = _thumbnail(pixels, 2 * _THUMB)
    rows_sl, cols_sl = _trim_uniform_borders(big)
    crop = big[rows_sl, cols_sl]
    crop_h = (rows_sl.stop - rows_sl.start) / big.shape[0] * h
    crop_w = (cols_sl.stop - cols_sl.start) / big.shape[1] * w
    t = _thumbnail(crop.astype(np.float32)) if min(crop.shape) >= 8 else _thumbnail(big.astype(np.float32))
    n = t.shape[0]
    spread = float(t.std())
    centred = t - t.mean()
    denom = float((centred**2).sum()) or 1.0
    smooth = float(((centred[:, 1:] * centred[:, :-1]).sum() + (centred[1:, :] * centred[:-1, :]).sum()) / (2 * denom))
    lo, hi = np.percentile(t, [2, 98])
    u = np.clip((t - lo) / max(hi - lo, 1e-6), 0.0, 1.0)

    band = u[int(BAND[0] * n) : int(BAND[1] * n)]
    prof = _smooth(band.mean(axis=0))
    a, b = int(0.12 * n), int(0.46 * n)
    c, d = int(0.54 * n), int(0.88 * n)
    pl = a + int(np.argmin(prof[a:b]))
    pr = c + int(np.argmin(prof[c:d]))
    ridge_pos = pl + int(np.argmax(prof[pl : pr + 1]))
    ridge_val = float(prof[ridge_pos])
    vl, vr = float(prof[pl]), float(prof[pr])
    ridge = ridge_val - max(vl, vr)
    # Lung width: the run of columns around each valley darker than halfway between valley and ridge.
    width_l = _run_width(prof, pl, vl + 0.5 * (ridge_val - vl), 0, ridge_pos) / n
    width_r = _run_width(prof, pr, vr + 0.5 * (ridge_val - vr), ridge_pos, n) / n
    # Diaphragm: at the lung columns, the lowest rows are brighter than the lung rows.
    cols = np.r_[max(pl - 3, 0) : pl + 4, pr - 3 : min(pr + 4, n)]
    rows = _smooth(u[:, cols].mean(axis=1))
    lung_rows = float(rows[int(0.25 * n) : int(0.55 * n)].mean())
    below = float(rows[int(0.7 * n) :].max())
    return {
        "height": int(h),
        "width": int(w),
        "field": [int(round(crop_h)), int(round(crop_w))],
        "aspect": round(crop_h / max(crop_w, 1e-6), 4),
        "spread": round(spread, 4),
        "smoothness": round(smooth, 4),
        "ridge": round(ridge, 4),
        "centre_shift": round(abs(ridge_pos / n - 0.5), 4),
        "valley_asymmetry": round(abs((pl + pr) / 2 / n - 0.5), 4),
        "lung_width_left": round(width_l, 4),
        "lung_width_right": round(width_r, 4),
        "diaphragm": round(below - lung_rows, 4),
    }


def _run_width(prof: np.ndarray, start: int, level: float, lo: int, hi: int) -> int:
    i = j = start
    while i - 1 >= lo and prof[i - 1] < level:
        i -= 1
    while j + 1 < hi and prof[j + 1] < level:
        j += 1
    return j - i + 1
