"""The one canonical preprocessing, shared by training and inference.

Model input contract (every network of the system; recorded in each model card as ``input``):

1. Start from ``XRay.pixels``: float32 (H, W) in [0, 1], 1 = most attenuating (bone white).
2. ``letterbox(pixels, size)``: aspect-preserving resize so the long side equals ``size`` (bilinear, antialiased),
   centred on a ``size`` x ``size`` canvas padded with 0 (air black). The returned :class:`SpatialRecord` maps
   anything computed in model space (heatmaps, masks) back onto the original pixels.
3. ``normalize(x) = (x - 0.5) / 0.25``, channel by channel, applied to the tensor just before the network.

Derived channels (lung-segmented image = image x lung mask, bone-subtracted image = predicted bone image) are
computed in the [0, 1] domain of step 2 and normalized by step 3 like the radiograph itself.

``apply_level`` is the window/level function used by the viewer presets and by training augmentation alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

MODEL_SIZE = 512
NORM_MEAN = 0.5
NORM_STD = 0.25


@dataclass(frozen=True)
class SpatialRecord:
    """Where the original image sits inside the model-space square, so the mapping can be inverted exactly.

    Model-space pixel (row r, col c) covers original rows ``(r - top) / scale`` ... and cols ``(c - left) / scale``.
    """

    orig_h: int
    orig_w: int
    size: int
    scale: float  # model px per original px
    new_h: int  # height of the resized image inside the canvas
    new_w: int
    top: int  # padding above / left of it
    left: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def for_shape(cls, orig_h: int, orig_w: int, size: int = MODEL_SIZE) -> SpatialRecord:
        scale = size / max(orig_h, orig_w)
        new_h = max(1, min(size, round(orig_h * scale)))
        new_w = max(1, min(size, round(orig_w * scale)))
        return cls(orig_h, orig_w, size, scale, new_h, new_w, (size - new_h) // 2, (size - new_w) // 2)

    def crop_valid(self, model_map: np.ndarray) -> np.ndarray:
        """The part of a model-space map (..., size, size) that covers the image (the padding cut away)."""
        return model_map[..., self.top : self.top + self.new_h, self.left : self.left + self.new_w]

    def to_original(self, model_map: np.ndarray, *, nearest: bool = False) -> np.ndarray:
        """Map a model-space (size, size) array (heatmap or mask) onto the original (orig_h, orig_w) pixel grid.

        ``nearest=True`` for label masks (values kept exactly), bilinear otherwise (heatmaps, probabilities).
        A map of lower resolution than ``size`` (a CAM) is first brought to ``size`` bilinearly.
        """
        arr = np.asarray(model_map, dtype=np.float32)
        if arr.ndim != 2:
            raise ValueError(f"expected a 2-D map, got shape {arr.shape}")
        if arr.shape != (self.size, self.size):
            arr = resize(arr, (self.size, self.size), nearest=nearest)
        valid = self.crop_valid(arr)
        return resize(valid, (self.orig_h, self.orig_w), nearest=nearest)

    def mask_to_original(self, mask: np.ndarray) -> np.ndarray:
        """A model-space boolean mask on the original pixel grid: ``to_original(mask, nearest=True) > 0.5``, done
        on 8-bit images (a 2k film: 4 MB per copy instead of 16, several times faster)."""
        valid = np.ascontiguousarray(self.crop_valid(np.asarray(mask, dtype=bool)), dtype=np.uint8)
        big = Image.fromarray(valid, mode="L").resize((self.orig_w, self.orig_h), Image.Resampling.NEAREST)
        return np.asarray(big) > 0

    def mask_to_model(self, mask: np.ndarray) -> np.ndarray:
        """An original-grid boolean mask in model space, padded with False: ``to_model(mask, nearest=True) > 0.5``
        done on 8-bit images (a 2k lung mask: ~4x faster, no 16 MB float copy)."""
        arr = np.asarray(mask, dtype=bool)
        if arr.shape != (self.orig_h, self.orig_w):
            raise ValueError(f"expected shape {(self.orig_h, self.orig_w)}, got {arr.shape}")
        canvas = np.zeros((self.size, self.size), dtype=bool)
        small = Image.fromarray(arr.astype(np.uint8), mode="L").resize(
            (self.new_w, self.new_h), Image.Resampling.NEAREST
        )
        canvas[self.top : self.top + self.new_h, self.left : self.left + self.new_w] = np.asarray(small) > 0
        return canvas

    def to_model(self, original_map: np.ndarray, *, nearest: bool = False, pad_value: float = 0.0) -> np.ndarray:
        """Map an original-grid array (e.g. a ground-truth mask) into model space, padded like the image."""
        arr = np.asarray(original_map, dtype=np.float32)
        if arr.shape != (self.orig_h, self.orig_w):
            raise ValueError(f"expected shape {(self.orig_h, self.orig_w)}, got {arr.shape}")
        canvas = np.full((self.size, self.size), pad_value, dtype=np.float32)
        canvas[self.top : self.top + self.new_h, self.left : self.left + self.new_w] = resize(
            arr, (self.new_h, self.new_w), nearest=nearest
        )
        return canvas


def resize(arr: np.ndarray, shape: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    """Resize a float 2-D array to ``shape`` (h, w) with Pillow (antialiased bilinear, or nearest for labels)."""
    h, w = shape
    if arr.shape == (h, w):
        return arr.astype(np.float32, copy=True)
    img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32), mode="F")
    out = img.resize((w, h), Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.float32)


def letterbox(
    pixels: np.ndarray,
    size: int = MODEL_SIZE,
    *,
    nearest: bool = False,
    detail: int | None = None,
    reductions: Reductions | None = None,
) -> tuple[np.ndarray, SpatialRecord]:
    """Aspect-preserving resize to ``size`` x ``size`` with zero padding; returns the canvas and its record.

    ``detail`` (a model card's ``input.effective_size``): the image is first reduced so its long side is at most
    ``detail`` pixels, then brought to the canvas. Films stored at 224 px and at 512 px then carry the same detail, so
    a model cannot tell the sources apart by resolution (a shortcut: the 224-px sets are mostly normal). The record
    is the original's either way, so maps still go back onto the original pixels. ``reductions``: this film's
    :class:`Reductions`, so a reduction several models read is made once.
    """
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {pixels.shape}")
    record = SpatialRecord.for_shape(int(pixels.shape[0]), int(pixels.shape[1]), size)
    small = reduce_detail(pixels, detail) if reductions is None else reductions.of(pixels, detail)
    if small is pixels:
        return record.to_model(pixels, nearest=nearest), record
    canvas = np.zeros((size, size), dtype=np.float32)
    canvas[record.top : record.top + record.new_h, record.left : record.left + record.new_w] = resize(
        small, (record.new_h, record.new_w), nearest=nearest
    )
    return canvas, record


def reduce_detail(pixels: np.ndarray, detail: int | None) -> np.ndarray:
    """``pixels`` with the long side reduced to ``detail`` (antialiased); the same array when ``detail`` is None or
    the image is already that small."""
    h, w = pixels.shape
    if detail is None or max(h, w) <= detail:
        return pixels
    if detail < 8:
        raise ValueError(f"effective size must be >= 8 px, got {detail}")
    s = detail / max(h, w)
    return resize(pixels, (max(1, round(h * s)), max(1, round(w * s))), nearest=False)


class Reductions:
    """One film's ``reduce_detail`` results, each made once: the gate, the classifier and triage all read the film
    at the same effective size, and each antialiased reduction of a 2k film costs ~11 ms on 2 cores."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels
        self._by_detail: dict[int | None, np.ndarray] = {}

    def of(self, pixels: np.ndarray, detail: int | None) -> np.ndarray:
        """``reduce_detail(pixels, detail)``, from the memo; ``pixels`` must be this film's own array."""
        if pixels is not self.pixels:
            raise ValueError("these reductions belong to another image")
        if detail not in self._by_detail:
            self._by_detail[detail] = reduce_detail(pixels, detail)
        return self._by_detail[detail]


def normalize(x: Any) -> Any:
    """[0, 1] image (numpy array or torch tensor) -> network input domain."""
    return (x - NORM_MEAN) / NORM_STD


def denormalize(x: Any) -> Any:
    """Inverse of :func:`normalize`."""
    return x * NORM_STD + NORM_MEAN


# Window/level presets in the [0, 1] intensity domain of XRay.pixels: (center, width).
LEVEL_PRESETS: dict[str, tuple[float, float]] = {
    "default": (0.5, 1.0),
    "lung": (0.35, 0.6),
    "bone": (0.7, 0.5),
    "soft_tissue": (0.55, 0.35),
}


def apply_level(pixels: Any, center: float, width: float) -> Any:
    """Window/level: map [center - width/2, center + width/2] linearly onto [0, 1] and clip.

    Works on numpy arrays and torch tensors. The viewer's presets (``LEVEL_PRESETS``, mirrored in the viewer's JS)
    and the random level augmentation of training both call this, so what a reader sees at a preset is what the
    model was trained to see.
    """
    if width <= 0:
        raise ValueError(f"window width must be > 0, got {width}")
    low = center - width / 2.0
    out = (pixels - low) / width
    return out.clip(0.0, 1.0)


def to_model_input(pixels: np.ndarray, size: int = MODEL_SIZE) -> tuple[np.ndarray, SpatialRecord]:
    """Steps 2 and 3 of the contract for a single-channel image: (size, size) normalized array and its record."""
    boxed, record = letterbox(pixels, size)
    return normalize(boxed).astype(np.float32), record
