"""PNG / JPEG / TIFF (and BMP) radiographs -> XRay, via Pillow and tifffile.

Raster files carry no radiological metadata: modality, view and spacing stay unknown, and the chest check falls
back on image statistics.

Bit depth of 16-bit files (our choice, documented in ``XRay.extra["bit_depth_source"]``):
1. an explicit statement wins: the PNG ``sBIT`` chunk, or the TIFF ``MaxSampleValue`` tag when below 65535;
2. otherwise a 16-bit container whose largest value is <= 4095 is read as 12-bit data (what DICOM exports of 12-bit
   detectors look like; scaling them by 65535 would give an almost black image);
3. otherwise it is scaled by 65535.
8-bit files are scaled by 255. A TIFF with PhotometricInterpretation MINISWHITE is inverted like MONOCHROME1.
"""

from __future__ import annotations

import logging
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from cxrassist.errors import (
    ColourPhotoError,
    DecompressionBombError,
    MultiFrameError,
    NotAnImageError,
    TruncatedFileError,
)
from cxrassist.io.limits import DEFAULT_MAX_PIXELS, check_dimensions
from cxrassist.io.quiet import collecting, reduce_message
from cxrassist.types import XRay

log = logging.getLogger(__name__)

#: A colour image counts as grey when its channels differ by at most this much (in 8-bit units) for 99 % of the
#: pixels - enough for JPEG chroma noise, far below any real colour photo.
GRAY_TOLERANCE_8BIT = 6.0

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"BM", "bmp"),
)


def sniff_raster(head: bytes) -> str | None:
    """Format name from the first bytes, or None."""
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    return None


def gray_from_rgb(arr: np.ndarray) -> np.ndarray | None:
    """(H, W, 3) array -> (H, W) grey (channel mean, same dtype family) if the channels agree, else None."""
    rgb = np.asarray(arr)[..., :3]
    scale = 255.0 / (65535.0 if rgb.dtype == np.uint16 else 255.0 if np.issubdtype(rgb.dtype, np.integer) else 1.0)
    step = max(1, int(np.ceil(max(rgb.shape[:2]) / 512)))  # decide on a subsample: fast for big images
    sub = rgb[::step, ::step].astype(np.float32) * scale
    spread = sub.max(axis=-1) - sub.min(axis=-1)
    if float(np.percentile(spread, 99)) > GRAY_TOLERANCE_8BIT:
        return None
    gray = rgb.astype(np.float64).mean(axis=-1)
    if np.issubdtype(rgb.dtype, np.integer):
        gray = np.rint(gray).astype(rgb.dtype)
    return gray


def read_raster(path: Path, fmt: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> XRay:
    if fmt == "tiff":
        arr, info = _read_tiff(path, max_pixels)
    else:
        arr, info = _read_pillow(path, max_pixels)
    pixels, bits, bits_source = _scale(arr, path.name, info)
    if info.pop("invert", False):
        pixels = 1.0 - pixels
    info["bit_depth_source"] = bits_source
    return XRay(
        pixels=pixels,
        bits_stored=bits,
        photometric="MONOCHROME2",
        source_path=path,
        source_format=info.pop("format"),
        extra=info,
    )


# ------------------------------------------------------------------------------------------------------------ Pillow
def _read_pillow(path: Path, max_pixels: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Header first (our size limit), then the pixels.

    Thread-safe: Pillow's process-wide ``MAX_IMAGE_PIXELS`` is left alone and no ``warnings.catch_warnings`` is
    used (the service reads on several threads). Our own limit is checked from the header before decoding; Pillow's
    ``DecompressionBombWarning`` (89-179 MP) is counted by ``quiet.collecting``, not printed, and its
    ``DecompressionBombError`` (beyond that) is refused with our own message and limit.
    """
    from PIL import Image, UnidentifiedImageError

    name = path.name
    with collecting():
        try:
            img = Image.open(path)  # lazy: reads the header only
        except Image.DecompressionBombError as exc:
            raise DecompressionBombError(_bomb_message(name, exc, max_pixels)) from exc
        except UnidentifiedImageError as exc:
            raise NotAnImageError(f"{name}: not an image Pillow can identify") from exc
        except (OSError, SyntaxError, ValueError, struct.error) as exc:
            raise TruncatedFileError(f"{name}: image header is truncated or corrupt ({reduce_message(exc)})") from exc
        with img:
            width, height = img.size
            check_dimensions(name, height, width, max_pixels=max_pixels)
            frames = int(getattr(img, "n_frames", 1))
            if frames > 1:
                raise MultiFrameError(f"{name}: {frames}-frame image; one 2-D radiograph is needed")
            fmt = (img.format or "unknown").lower()
            info: dict[str, Any] = {"format": "jpeg" if fmt == "mpo" else fmt, "mode": img.mode}
            if fmt == "png" and img.mode.startswith("I"):
                info["significant_bits"] = _png_sbit(path)
            try:
                img.load()
            except Image.DecompressionBombError as exc:
                raise DecompressionBombError(_bomb_message(name, exc, max_pixels)) from exc
            except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
                raise TruncatedFileError(f"{name}: image data is truncated or corrupt ({reduce_message(exc)})") from exc
            arr = _pillow_array(img, name)
    return arr, info


def _bomb_message(name: str, exc: BaseException, max_pixels: int) -> str:
    """Our own words and our own limit for Pillow's bomb error (whose text quotes twice Pillow's limit)."""
    match = re.search(r"\((\d+) pixels\)", str(exc))
    if match is None:
        return f"{name}: refused as a decompression bomb (more pixels than Pillow decodes safely)"
    total = int(match.group(1))
    if total > max_pixels:
        return f"{name}: header declares {_mp(total)}, over the {_mp(max_pixels)} limit (decompression bomb?)"
    return f"{name}: header declares {_mp(total)}, more than Pillow decodes safely (decompression bomb?)"


def _mp(pixels: int) -> str:
    return f"{pixels / 1e6:.0f} MP" if pixels >= 1_000_000 else f"{pixels} pixels"


def _pillow_array(img: Any, name: str) -> np.ndarray:
    mode = img.mode
    if mode in ("L", "I;16", "I;16L", "I;16B", "I", "F"):
        return np.asarray(img)
    if mode == "1":
        return np.asarray(img.convert("L"))
    if mode == "LA":
        return np.asarray(img)[..., 0]
    if mode in ("P", "PA", "CMYK", "YCbCr", "RGBA", "RGBX", "RGB", "LAB", "HSV"):
        rgb = np.asarray(img.convert("RGB"))
        gray = gray_from_rgb(rgb)
        if gray is None:
            raise ColourPhotoError(f"{name}: colour image whose channels differ (a photograph?), not a radiograph")
        return gray
    raise NotAnImageError(f"{name}: unsupported image mode {mode}")


def _png_sbit(path: Path) -> int | None:
    """Significant bits of a greyscale PNG from its sBIT chunk (Pillow does not expose it), or None."""
    with open(path, "rb") as fh:
        if fh.read(8) != b"\x89PNG\r\n\x1a\n":
            return None
        while True:
            head = fh.read(8)
            if len(head) < 8:
                return None
            length, ctype = struct.unpack(">I4s", head)
            if ctype == b"sBIT":
                data = fh.read(length)
                return int(data[0]) if data else None
            if ctype in (b"IDAT", b"IEND"):
                return None
            fh.seek(length + 4, 1)


# ---------------------------------------------------------------------------------------------------------- tifffile
def _read_tiff(path: Path, max_pixels: int) -> tuple[np.ndarray, dict[str, Any]]:
    import tifffile

    name = path.name
    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, OSError, ValueError, struct.error, IndexError) as exc:
        raise TruncatedFileError(f"{name}: TIFF header is truncated or corrupt ({exc})") from exc
    with tif:
        if not tif.pages:
            raise NotAnImageError(f"{name}: TIFF without images")
        page = tif.pages.first
        shape = tuple(int(s) for s in page.shape)
        if len(tif.pages) > 1 and not all(getattr(p, "is_reduced", False) for p in tif.pages[1:]):
            raise MultiFrameError(f"{name}: {len(tif.pages)}-page TIFF; one 2-D radiograph is needed")
        if len(shape) == 3 and shape[-1] in (3, 4):
            height, width = shape[0], shape[1]
        elif len(shape) == 2:
            height, width = shape
        else:
            raise MultiFrameError(f"{name}: TIFF image of shape {shape}; one 2-D radiograph is needed")
        check_dimensions(name, height, width, max_pixels=max_pixels)
        try:
            arr = page.asarray()
        except Exception as exc:  # tifffile raises many types on corrupt strips
            raise TruncatedFileError(f"{name}: TIFF image data is truncated or corrupt ({type(exc).__name__})") from exc
        info: dict[str, Any] = {"format": "tiff", "mode": str(arr.dtype)}
        tag = page.tags.get(281)  # MaxSampleValue
        if tag is not None:
            value = tag.value
            info["max_sample_value"] = int(value[0] if isinstance(value, (tuple, list)) else value)
        info["invert"] = int(page.photometric) == 0  # MINISWHITE
    if arr.ndim == 3:
        gray = gray_from_rgb(arr)
        if gray is None:
            raise ColourPhotoError(f"{name}: colour image whose channels differ (a photograph?), not a radiograph")
        arr = gray
    return arr, info


# ----------------------------------------------------------------------------------------------------------- scaling
def _scale(arr: np.ndarray, name: str, info: dict[str, Any]) -> tuple[np.ndarray, int, str]:
    """Integer or float array -> float32 [0, 1]; returns (pixels, bits, how the bit depth was decided)."""
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) / 255.0), 8, "8-bit container"
    if arr.dtype.kind == "f":
        finite = arr[np.isfinite(arr)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if lo >= 0.0 and hi <= 1.0:
            return np.nan_to_num(arr).astype(np.float32), 32, "float in [0, 1]"
        out = (np.nan_to_num(arr, nan=lo) - lo) / max(hi - lo, 1e-12)
        return out.astype(np.float32), 32, "float, min-max scaled"
    if arr.dtype.kind not in "iu":
        raise NotAnImageError(f"{name}: unsupported pixel type {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise NotAnImageError(f"{name}: signed pixel values are not supported in raster files")
    vmax = int(arr.max())
    sbit = info.get("significant_bits")
    max_sample = info.get("max_sample_value")
    if sbit and 8 <= sbit <= 16:
        bits, source = int(sbit), "PNG sBIT chunk"
    elif max_sample and 255 <= max_sample < 65535:
        bits, source = int(max_sample).bit_length(), "TIFF MaxSampleValue"
    elif vmax <= 4095 and arr.dtype != np.uint8:
        bits, source = 12, "16-bit container with values <= 4095: read as 12-bit"
    elif vmax <= 65535:
        bits, source = 16, "16-bit container"
    else:
        bits, source = 32, "32-bit container"
    top = float(2**bits - 1)
    if vmax > top:  # an sBIT / MaxSampleValue that lies: never let values exceed 1
        log.warning("%s: values up to %d exceed the declared %d bits; scaling by 16 bits", name, vmax, bits)
        bits, top, source = 16, 65535.0, source + " (overridden: values too large)"
    return (arr.astype(np.float32) / np.float32(top)).clip(0.0, 1.0), bits, source
