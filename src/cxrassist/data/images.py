"""The one image loader of training and evaluation.

8-bit grayscale PNG/JPEG (every image of the shared data sets and of the JPEG releases of CheXpert/MIMIC) is read
with Pillow directly, which is several times faster than the full :func:`cxrassist.io.read_xray` path; the result
is the same [0, 1] float image (value / 255) that ``read_xray`` returns for such files (tested). Anything else
(DICOM, 16-bit PNG, TIFF, colour containers) goes through ``read_xray`` so that one implementation decides.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cxrassist.errors import DatasetError

_FAST_SUFFIXES = {".png", ".jpg", ".jpeg"}


def load_image01(path: str | Path) -> np.ndarray:
    """Radiograph -> float32 (H, W) in [0, 1], 1 = bone white."""
    path = Path(path)
    if path.suffix.lower() in _FAST_SUFFIXES:
        try:
            with Image.open(path) as img:
                if img.mode == "L":
                    return np.asarray(img, dtype=np.float32) / np.float32(255.0)
        except FileNotFoundError:
            raise DatasetError(f"image file missing: {path}") from None
        except OSError as exc:
            raise DatasetError(f"cannot decode image {path}: {exc}") from None
    if not path.is_file():
        raise DatasetError(f"image file missing: {path}")
    from cxrassist.io import read_xray  # the general path (DICOM, 16-bit, RGB containers)

    return np.asarray(read_xray(path).pixels, dtype=np.float32)


def load_mask(path: str | Path | tuple[Path, ...]) -> np.ndarray:
    """Binary mask file (0/255 or 0/1, any mode) -> float32 (H, W) in {0, 1}; a tuple of files (left and right
    lung) is united."""
    if isinstance(path, tuple):
        parts = [load_mask(p) for p in path]
        return np.maximum.reduce(parts) if len(parts) > 1 else parts[0]
    path = Path(path)
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("L") if img.mode not in ("L", "1", "I", "I;16") else img)
    except FileNotFoundError:
        raise DatasetError(f"mask file missing: {path}") from None
    except OSError as exc:
        raise DatasetError(f"cannot decode mask {path}: {exc}") from None
    if arr.dtype == bool:
        return arr.astype(np.float32)
    threshold = 0.5 if arr.max(initial=0) <= 1 else 127
    return (arr > threshold).astype(np.float32)
