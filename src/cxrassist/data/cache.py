"""Letterboxed images at model size, optionally cached on disk as uint8 ``.npy``.

Decoding a JPEG and resizing it costs more than a compact model's forward pass on CPU; with ``cache_dir`` set each
(file, size) is letterboxed once and then memory-mapped. The cached uint8 value differs from the float letterbox by
at most 0.5/255 (quantization), which is below the 8-bit sources' own precision. Without ``cache_dir`` nothing is
written and the exact float letterbox is returned.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from cxrassist.data.images import load_image01, load_mask
from cxrassist.preprocess import letterbox


def _key(path: Path, size: int, kind: str) -> str:
    st = path.stat()
    raw = f"{path.resolve()}|{st.st_mtime_ns}|{st.st_size}|{size}|{kind}".encode()
    return hashlib.sha1(raw).hexdigest()


class ImageCache:
    """``image(path, size)`` / ``mask(path, size)`` -> float32 (size, size) letterboxed arrays."""

    def __init__(self, cache_dir: str | Path | None) -> None:
        self.dir = Path(cache_dir) if cache_dir else None

    def _cached(self, path: Path, size: int, kind: str, compute) -> np.ndarray:  # noqa: ANN001
        if self.dir is None:
            return compute()
        f = self.dir / str(size) / kind / f"{_key(path, size, kind)}.npy"
        if f.is_file():
            return np.load(f).astype(np.float32) / np.float32(255.0)
        arr = compute()
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8))
        os.replace(tmp, f)  # atomic: parallel workers/ranks never read half a file
        return np.rint(arr * 255.0).clip(0, 255).astype(np.float32) / np.float32(255.0)

    def image(self, path: Path, size: int) -> np.ndarray:
        return self._cached(Path(path), size, "image", lambda: letterbox(load_image01(path), size)[0])

    def mask(self, path: Path, size: int) -> np.ndarray:
        """A mask letterboxed with the geometry of its own shape (same as its image's when sizes agree)."""

        def compute() -> np.ndarray:
            return letterbox(load_mask(path), size, nearest=True)[0]

        return self._cached(Path(path), size, "mask", compute)
