"""Turning raw network outputs into things a reader can look at.

Lung masks: a segmentation network leaves speckles outside the thorax and holes where dense pathology (effusion,
consolidation) darkens the lung. Keeping the two largest connected components and filling holes is the usual cleanup
(the JSRT / Montgomery literature does the same) and is what the lung areas are measured on.

Heatmaps: a colour map and an alpha-blended overlay in plain numpy, so the report needs no matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cxrassist.preprocess import SpatialRecord


def clean_lung_mask(mask: np.ndarray, *, keep: int = 2, min_fraction: float = 0.002) -> np.ndarray:
    """Keep the ``keep`` largest connected components of a binary mask and fill their holes.

    Components smaller than ``min_fraction`` of the image are dropped even when they are among the largest (a
    mask that is all speckle becomes empty rather than two dots).
    """
    binary = np.asarray(mask, dtype=bool)
    if not binary.any():
        return binary.copy()
    labels, count = ndimage.label(binary)
    if count == 0:
        return np.zeros_like(binary)
    sizes = np.bincount(labels.ravel())[1:]  # size of component 1..count
    order = np.argsort(sizes)[::-1][:keep]
    min_size = max(1, int(min_fraction * binary.size))
    kept = [i + 1 for i in order if sizes[i] >= min_size]
    out = np.isin(labels, kept)
    return ndimage.binary_fill_holes(out)


@dataclass(frozen=True)
class LungAreas:
    """Lung areas per side. Sides are the PATIENT's, assuming the standard display (patient's right on image left)."""

    right_px: int
    left_px: int
    right_cm2: float | None
    left_cm2: float | None

    @property
    def total_px(self) -> int:
        return self.right_px + self.left_px

    def to_dict(self) -> dict[str, float | int | None]:
        total_cm2 = None
        if self.right_cm2 is not None and self.left_cm2 is not None:
            total_cm2 = round(self.right_cm2 + self.left_cm2, 2)
        return {
            "right_px": self.right_px,
            "left_px": self.left_px,
            "total_px": self.total_px,
            "right_cm2": self.right_cm2,
            "left_cm2": self.left_cm2,
            "total_cm2": total_cm2,
        }


def lung_areas(mask: np.ndarray, pixel_spacing_mm: tuple[float, float] | None = None) -> LungAreas:
    """Area of each lung in pixels (and cm² when the pixel spacing is known and positive).

    Each connected component is assigned to a side by its centroid column relative to the image centre; in a
    PA/AP radiograph shown in the standard orientation the image's left half is the patient's right lung.
    """
    binary = np.asarray(mask, dtype=bool)
    w = binary.shape[1]
    labels, count = ndimage.label(binary)
    right = left = 0
    if count:
        # each component's pixel count and mean column: ~10 ms for the two lungs of a 2k x 2k film, where
        # ndimage.center_of_mass spent ~190 ms of a 0.7 s analysis (one pass per component while there are few)
        columns = np.arange(w, dtype=np.float64)
        if count <= 8:
            per_column = np.stack([np.count_nonzero(labels == i, axis=0) for i in range(1, count + 1)])
        else:
            flat = labels.ravel()
            per_column = np.zeros((count, w), dtype=np.int64)
            np.add.at(per_column, (flat[flat > 0] - 1, np.nonzero(flat)[0] % w), 1)
        sizes = per_column.sum(axis=1)
        for size, mean_col in zip(sizes, (per_column @ columns) / sizes, strict=True):
            if mean_col < w / 2.0:
                right += int(size)
            else:
                left += int(size)
    right_cm2 = left_cm2 = None
    if pixel_spacing_mm and all(s and s > 0 for s in pixel_spacing_mm):
        px_cm2 = float(pixel_spacing_mm[0]) * float(pixel_spacing_mm[1]) / 100.0
        right_cm2 = round(right * px_cm2, 2)
        left_cm2 = round(left * px_cm2, 2)
    return LungAreas(right, left, right_cm2, left_cm2)


def lung_tilt_deg(mask: np.ndarray, *, min_ratio: float = 0.1) -> float | None:
    """How far (0-90 degrees) the two lungs of a mask are turned together off an upright frontal film.

    Two measures of the turn, each about 0 on an upright film: the line through the two largest components'
    centroids against the horizontal, and the mean of their long axes (second moments) against the vertical. A
    rotated film turns both the same way; a lung the mask only partly covers (consolidation, effusion) tilts the
    centroid line alone. The result is the smaller of the two when they agree in direction, else 0: on 1,871 train
    films of ../shared/data the centroid line alone passed 20 degrees on 18 (mostly abnormal films), the combined
    measure on 1 (15 degrees: 2).

    None when there are not two lungs (the second component under ``min_ratio`` of the first): a collapsed or
    removed lung, a massive effusion or a film that is not a chest say nothing about the film's rotation. Angles
    are the same on a letterboxed copy (uniform scaling), so the model-space mask serves.
    """
    labels, count = ndimage.label(np.asarray(mask, dtype=bool))
    if count < 2:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    first, second = np.argsort(sizes)[::-1][:2]
    if sizes[second] < min_ratio * sizes[first]:
        return None
    lungs = []
    for index in (first, second):
        ys, xs = np.nonzero(labels == index + 1)
        cx, cy = float(xs.mean()), float(ys.mean())
        _, vectors = np.linalg.eigh(np.cov(np.stack([xs - cx, ys - cy])))
        ax, ay = vectors[:, 1] if vectors[1, 1] >= 0 else -vectors[:, 1]  # the long axis, pointing down
        lungs.append((cx, cy, float(np.degrees(np.arctan2(ay, ax))) - 90.0))
    (x1, y1, axis1), (x2, y2, axis2) = sorted(lungs)
    line = float(np.degrees(np.arctan2(y2 - y1, x2 - x1)))  # signed, the same sense as the axes
    axes = (axis1 + axis2) / 2.0
    if line * axes <= 0:
        return 0.0
    return min(abs(line), abs(axes))


@dataclass(frozen=True)
class CardiacMeasure:
    """The cardiothoracic ratio of a frontal film, from the heart and lung outlines (pixels of the stored film)."""

    ratio: float
    heart_width_px: int  # transverse cardiac diameter: the heart outline's horizontal extent
    thorax_width_px: int  # internal thoracic diameter: the widest row across both lungs' outer edges

    def to_dict(self) -> dict[str, float | int]:
        return {
            "ratio": round(self.ratio, 3),
            "heart_width_px": self.heart_width_px,
            "thorax_width_px": self.thorax_width_px,
        }


#: Below this the outline is not a heart (adult ratios run ~0.35-0.75): on an NIH val film read as cardiomegaly the
#: heart model outlined a 34-px sliver of the mediastinum (ratio 0.10) on an over-exposed film.
MIN_PLAUSIBLE_CTR = 0.3

#: The heart outline is opened with a disk of this share of the thorax width before it is measured: a mass or an
#: opacity that touches the heart border through a narrow neck is not heart (on RG1, a right basal mass took the
#: ratio from 0.54 to 0.61). Chosen as the smallest of 0.02/0.03/0.04 that removed RG1's and kept the JSRT val Dice
#: of the outlines against their ground truth (0.940 -> 0.941); the NIH films were not consulted.
HEART_OPENING = 0.04


def heart_outline(heart_mask: np.ndarray, thorax_width_px: int) -> np.ndarray:
    """The heart model's mask as measured: opened (:data:`HEART_OPENING`), then its largest connected part."""
    heart = np.asarray(heart_mask, dtype=bool)
    r = max(1, int(round(HEART_OPENING * thorax_width_px)))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    opened = ndimage.binary_opening(heart, structure=xx * xx + yy * yy <= r * r)
    labels, count = ndimage.label(opened)
    if count <= 1:
        return opened
    return labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))


def cardiothoracic_ratio(
    lung_mask: np.ndarray, heart_mask: np.ndarray, *, min_ratio: float = 0.1
) -> CardiacMeasure | None:
    """Heart width over thorax width, as a reader measures it on a PA film (Danzer's ratio); see
    :func:`measure_heart`, which also returns the outline that was measured."""
    return measure_heart(lung_mask, heart_mask, min_ratio=min_ratio)[0]


def measure_heart(
    lung_mask: np.ndarray, heart_mask: np.ndarray, *, min_ratio: float = 0.1
) -> tuple[CardiacMeasure | None, np.ndarray]:
    """(the cardiothoracic ratio, the heart outline it was measured on), as a reader measures it on a PA film.

    The heart's width is the horizontal extent of its outline (right border to left border, whatever the rows),
    after :func:`heart_outline` drops what hangs on it by a narrow neck; the thorax's is the widest row from one
    lung's outer edge to the other's (the inner rib margins). None when it
    cannot be measured: no heart outline, not two lungs (the second under ``min_ratio`` of the first: a lung that
    is not outlined would make the thorax look narrow), a heart as wide as the thorax, or an outline too narrow to
    be a heart (ratio under ``MIN_PLAUSIBLE_CTR``); the outline returned is then the model's mask as given.
    """
    heart = np.asarray(heart_mask, dtype=bool)
    lungs = np.asarray(lung_mask, dtype=bool)
    if heart.shape != lungs.shape:
        raise ValueError(f"heart mask {heart.shape} and lung mask {lungs.shape} differ in shape")
    labels, count = ndimage.label(lungs)
    if not heart.any() or count < 2:
        return None, heart
    sizes = np.sort(np.bincount(labels.ravel())[1:])[::-1]
    if sizes[1] < min_ratio * sizes[0]:
        return None, heart
    rows = lungs.any(1)
    first = lungs.argmax(1)
    last = lungs.shape[1] - 1 - lungs[:, ::-1].argmax(1)
    thorax = int((last - first + 1)[rows].max())
    outline = heart_outline(heart, thorax)
    cols = np.flatnonzero(outline.any(0))
    if cols.size == 0:
        return None, heart
    width = int(cols[-1] - cols[0] + 1)
    if width >= thorax or width < MIN_PLAUSIBLE_CTR * thorax:
        return None, heart
    return CardiacMeasure(width / thorax, width, thorax), outline


def mask_contour(mask: np.ndarray, thickness: int = 2) -> np.ndarray:
    """Boolean outline of a mask (mask minus its erosion), ``thickness`` pixels wide."""
    binary = np.asarray(mask, dtype=bool)
    if not binary.any():
        return binary.copy()
    eroded = ndimage.binary_erosion(binary, iterations=max(1, thickness))
    return binary & ~eroded


def normalize_heatmap(cam: np.ndarray) -> np.ndarray:
    """A class activation map -> [0, 1]: negative evidence clipped, then divided by the map's own maximum.

    The heatmap therefore shows *where* the model looked for a finding, not *how likely* it is: the probability is
    reported beside it.
    """
    arr = np.maximum(np.asarray(cam, dtype=np.float32), 0.0)
    top = float(arr.max()) if arr.size else 0.0
    if not np.isfinite(top) or top <= 0:
        return np.zeros_like(arr)
    return arr / top


# "Turbo"-like anchor colours (blue -> cyan -> green -> yellow -> red), interpolated linearly.
_ANCHORS = np.array(
    [
        [0.19, 0.07, 0.23],
        [0.16, 0.47, 0.93],
        [0.10, 0.85, 0.75],
        [0.55, 0.99, 0.30],
        [0.98, 0.80, 0.18],
        [0.92, 0.33, 0.05],
        [0.48, 0.02, 0.01],
    ],
    dtype=np.float32,
)


def colormap(values01: np.ndarray) -> np.ndarray:
    """[0, 1] array (H, W) -> RGB float32 (H, W, 3) in [0, 1]."""
    v = np.clip(np.asarray(values01, dtype=np.float32), 0.0, 1.0)
    pos = v * (len(_ANCHORS) - 1)
    lo = np.floor(pos).astype(np.int32)
    hi = np.minimum(lo + 1, len(_ANCHORS) - 1)
    frac = (pos - lo)[..., None]
    return _ANCHORS[lo] * (1.0 - frac) + _ANCHORS[hi] * frac


def as_uint8(arr: np.ndarray) -> np.ndarray:
    """[0, 1] float array -> uint8: ``clip(rint(x * 255), 0, 255)``; uint8 input is returned as is.

    The one 8-bit conversion (report PNGs, DICOM Secondary Capture, viewer PNGs, the training caches): ``np.rint``
    (round half to even, = ``np.round``) in the input's own float32/float64 precision, so the training caches keep
    the exact bytes they had; other dtypes (bool, ints, float16) are taken as float32.
    """
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)


def _overlay_lut(alpha: float, floor: float) -> np.ndarray:
    """The blend as a table: index (grey << 8 | heat) -> RGB packed in a uint32 (little-endian R, G, B, 0)."""
    levels = np.linspace(0.0, 1.0, 256, dtype=np.float32)
    color = colormap(levels)  # (256 heat, 3)
    weight = alpha * np.clip((levels - floor) / max(1e-6, 1.0 - floor), 0.0, 1.0)  # (256 heat,)
    blend = levels[:, None, None] * (1.0 - weight)[None, :, None] + (color * weight[:, None])[None, :, :]
    rgba = np.zeros((256 * 256, 4), dtype=np.uint8)
    rgba[:, :3] = as_uint8(blend).reshape(256 * 256, 3)
    return rgba.view("<u4").ravel()


_LUTS: dict[tuple[float, float], np.ndarray] = {}


def overlay_heatmap(gray: np.ndarray, heat: np.ndarray, *, alpha: float = 0.5, floor: float = 0.2) -> np.ndarray:
    """Blend a heatmap over a grey radiograph; uint8 RGB (H, W, 3).

    ``gray`` and ``heat`` are [0, 1] floats or uint8. The blend weight grows with the heat (zero below ``floor``),
    so cold regions show the plain radiograph and the reader is never asked to look through colour where the model
    saw nothing. Both are quantised to 8 bits and blended through a 65536-entry table (one look-up per pixel): a
    2k x 2k overlay costs ~30 ms instead of ~1 s of float arithmetic.
    """
    g8, h8 = as_uint8(gray), as_uint8(heat)
    if g8.shape != h8.shape:
        raise ValueError(f"image {g8.shape} and heatmap {h8.shape} differ in shape")
    key = (float(alpha), float(floor))
    if key not in _LUTS:
        _LUTS[key] = _overlay_lut(*key)
    index = g8.astype(np.uint16) << 8
    index |= h8
    packed = _LUTS[key][index]
    from PIL import Image

    h, w = g8.shape
    rgbx = Image.frombuffer("RGBA", (w, h), packed, "raw", "RGBA", 0, 1)
    return np.asarray(rgbx.convert("RGB"))  # dropping the 4th byte in C: ~10x faster than a strided numpy copy


def overlay_contour(
    gray: np.ndarray, mask: np.ndarray, *, color: tuple[int, int, int] = (25, 230, 50), thickness: int = 3
) -> np.ndarray:
    """The radiograph in grey with the outline of ``mask`` drawn in ``color``; uint8 RGB (H, W, 3)."""
    g8 = as_uint8(gray)
    rgb = np.repeat(g8[..., None], 3, axis=2)
    rgb[mask_contour(mask, thickness)] = np.asarray(color, dtype=np.uint8)
    return rgb


def heatmap_to_original_u8(cam: np.ndarray, record: SpatialRecord, size: tuple[int, int] | None = None) -> np.ndarray:
    """A model-space map (any resolution, [0, 1]) -> uint8 heat on the original pixel grid.

    The same mapping as ``SpatialRecord.to_original`` (bilinear to model size, crop the padding, bilinear to the
    original size) done on 8-bit Pillow images, ~5x faster than in float for a 2k radiograph. ``size`` (width,
    height) gives the original field of view on a smaller grid instead (the report's heatmap PNGs: a CAM holds no
    detail finer than its cells, so a 2k copy is only slower to write).
    """
    from PIL import Image

    bilinear = Image.Resampling.BILINEAR
    model = Image.fromarray(as_uint8(cam), mode="L").resize((record.size, record.size), bilinear)
    valid = model.crop((record.left, record.top, record.left + record.new_w, record.top + record.new_h))
    return np.asarray(valid.resize(size or (record.orig_w, record.orig_h), bilinear))


# ---- display windows of the bone pictures
#: Percentiles of the bone image inside the thorax that set its display window, and the narrowest window allowed
#: (a bone image that is nearly empty stays dark instead of showing its noise stretched to full contrast).
BONE_WINDOW_PERCENTILES = (1.0, 99.5)
BONE_WINDOW_MIN_WIDTH = 0.01
_WINDOW_UNITS = "the radiograph's [0, 1] display domain (1 = bone white), i.e. the classifier channel's values"


@dataclass(frozen=True)
class DisplayWindow:
    """A linear display window ``[low, high] -> [0, 1]`` and how it was chosen (stated in every output).

    Windowing is for display only: the bone image that the classifier's bone channel reads stays raw.
    """

    low: float
    high: float
    method: str

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``clip((image - low) / (high - low), 0, 1)`` as float32."""
        span = max(self.high - self.low, 1e-12)
        return np.clip((np.asarray(image, dtype=np.float32) - self.low) / span, 0.0, 1.0)

    def to_dict(self) -> dict[str, object]:
        return {
            "low": round(float(self.low), 6),
            "high": round(float(self.high), 6),
            "units": _WINDOW_UNITS,
            "method": self.method,
        }

    def describe(self) -> str:
        """One line for DICOM comments and captions."""
        return f"display window {self.low:.4f}-{self.high:.4f} ({self.method})"


#: The soft-tissue (bone-suppressed) image keeps the radiograph's own mapping, so the two compare by flicking.
SOFT_TISSUE_WINDOW = DisplayWindow(0.0, 1.0, "the radiograph's own display range, as images/radiograph.png")


def thorax_box(mask: np.ndarray, margin: float = 0.1) -> tuple[slice, slice] | None:
    """Bounding box of the lung mask widened by ``margin`` of its size on each side (clavicles above the apices,
    ribs outside the lung edge, the spine between the lungs); None for an empty mask."""
    rows = np.flatnonzero(np.asarray(mask).any(1))
    cols = np.flatnonzero(np.asarray(mask).any(0))
    if rows.size == 0 or cols.size == 0:
        return None
    h, w = np.shape(mask)
    dy = int(margin * (rows[-1] - rows[0] + 1))
    dx = int(margin * (cols[-1] - cols[0] + 1))
    return (
        slice(max(0, rows[0] - dy), min(h, rows[-1] + dy + 1)),
        slice(max(0, cols[0] - dx), min(w, cols[-1] + dx + 1)),
    )


def bone_display_window(bone: np.ndarray, lung_mask: np.ndarray | None = None) -> DisplayWindow:
    """The bone-subtracted image's display window: its 1st-99.5th percentiles inside the thorax.

    The raw bone image is faint (BSE-JSRT's bone layer is mostly under 0.05 of the radiograph's range), so shown
    as is it is a black square; stretched between robust percentiles of the chest region (not of the whole film,
    whose air and collimation would dominate), ribs, clavicles and spine use the grey scale.
    """
    bone = np.asarray(bone, dtype=np.float32)
    box = thorax_box(lung_mask) if lung_mask is not None and np.shape(lung_mask) == bone.shape else None
    region = bone[box] if box is not None else bone
    step = max(1, int(np.sqrt(region.size / 1_000_000)))  # ~1 M samples are plenty for two percentiles
    low, high = (float(v) for v in np.percentile(region[::step, ::step], BONE_WINDOW_PERCENTILES))
    high = max(high, low + BONE_WINDOW_MIN_WIDTH)
    where = "inside the thorax (lung-mask box + 10 %)" if box is not None else "over the whole image"
    return DisplayWindow(
        low,
        high,
        f"bone image percentiles {BONE_WINDOW_PERCENTILES[0]:g}-{BONE_WINDOW_PERCENTILES[1]:g} {where}, linear",
    )
