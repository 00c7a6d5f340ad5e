"""Limits every reader enforces before it decodes anything, so a hostile or broken file fails fast and cheaply."""

from __future__ import annotations

import os
from pathlib import Path

from cxrassist.errors import (
    DecompressionBombError,
    EmptyFileError,
    FileTooLargeError,
    ImageTooSmallError,
    MissingFileError,
)

#: Most pixels (rows x columns x frames) we agree to decode. A 43x43 cm detector at 0.1 mm is ~18 MP.
DEFAULT_MAX_PIXELS = 100_000_000
#: Largest file we open at all (1 GiB). A 100 MP 16-bit uncompressed image is ~200 MB.
DEFAULT_MAX_BYTES = 1 << 30
#: Smallest side length accepted: below this nothing anatomical can be seen (and the models' stems break).
MIN_SIDE = 64


def check_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> int:
    """Refuse missing, empty and oversized files; return the size in bytes."""
    if not path.exists():
        raise MissingFileError(f"{path.name}: no such file")
    if not path.is_file():
        raise MissingFileError(f"{path.name}: not a regular file")
    size = os.stat(path).st_size
    if size == 0:
        raise EmptyFileError(f"{path.name}: the file is empty (0 bytes)")
    if size > max_bytes:
        raise FileTooLargeError(
            f"{path.name}: file is {size / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit"
        )
    return size


def check_dimensions(
    name: str, rows: int, cols: int, *, frames: int = 1, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = MIN_SIDE
) -> None:
    """Refuse images too large to decode safely (checked from the header) or too small to read."""
    total = int(rows) * int(cols) * max(1, int(frames))
    if total > max_pixels:
        raise DecompressionBombError(
            f"{name}: header declares {cols}x{rows}"
            + (f"x{frames}" if frames > 1 else "")
            + f" = {total / 1e6:.0f} MP, over the {max_pixels / 1e6:.0f} MP limit (decompression bomb?)"
        )
    if min(rows, cols) < min_side:
        raise ImageTooSmallError(f"{name}: image is {cols}x{rows} px; at least {min_side} px per side is required")
