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
from cxrassist.postprocess import as_uint8
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
        q = as_uint8(arr)
        np.save(tmp, q)
        os.replace(tmp, f)  # atomic: parallel workers/ranks never read half a file
        return q.astype(np.float32) / np.float32(255.0)  # exactly what a later cache hit returns

    def image(self, path: Path, size: int, detail: int | None = None) -> np.ndarray:
        """The letterboxed radiograph; ``detail`` = the card's effective size (see ``preprocess.letterbox``)."""
        kind = "image" if detail is None else f"image-d{int(detail)}"
        return self._cached(Path(path), size, kind, lambda: letterbox(load_image01(path), size, detail=detail)[0])

    def mask(self, path: Path | tuple[Path, ...], size: int) -> np.ndarray:
        """A mask letterboxed with the geometry of its own shape (same as its image's when aspect ratios agree).

        A tuple of paths (left + right lung files) is united; the cache key is its first file plus the count.
        """

        def compute() -> np.ndarray:
            return letterbox(load_mask(path), size, nearest=True)[0]

        first = Path(path[0]) if isinstance(path, tuple) else Path(path)
        kind = f"mask{len(path)}" if isinstance(path, tuple) else "mask"
        return self._cached(first, size, kind, compute)


def preresize(records: list, out_dir: str | Path, long_side: int = 512, show_progress: bool = True) -> list:
    """Write 8-bit PNG copies with the long side at ``long_side`` (aspect kept; masks nearest and united) and return
    records pointing at them. Letterboxing a pre-resized copy gives the same geometry as letterboxing the original,
    and decoding 512-px PNGs instead of 3000-px originals makes CPU epochs several times faster."""
    from PIL import Image

    from cxrassist.preprocess import resize

    out_dir = Path(out_dir)

    def scaled(arr: np.ndarray, nearest: bool) -> np.ndarray:
        h, w = arr.shape
        s = long_side / max(h, w)
        return arr if s >= 1 else resize(arr, (max(1, round(h * s)), max(1, round(w * s))), nearest=nearest)

    def write(arr01: np.ndarray, kind: str, rec_id: str, dataset: str) -> Path:
        p = out_dir / dataset / kind / f"{rec_id.replace('/', '_')}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(as_uint8(arr01), mode="L").save(p)
        return p

    it = records
    if show_progress:
        from tqdm.auto import tqdm

        it = tqdm(records, desc="pre-resize", leave=False, disable=None)
    out = []
    for r in it:
        changes = {"image": write(scaled(load_image01(r.image), False), "images", r.id, r.dataset)}
        if r.mask is not None:
            changes["mask"] = write(scaled(load_mask(r.mask), True), "masks", r.id, r.dataset)
        if r.bone_suppressed is not None:
            changes["bone_suppressed"] = write(
                scaled(load_image01(r.bone_suppressed), False), "bone_suppressed", r.id, r.dataset
            )
        if r.lateral is not None:
            changes["lateral"] = write(scaled(load_image01(r.lateral), False), "lateral", r.id, r.dataset)
        out.append(r.with_(**changes))
    return out
