"""Derived classifier channels (lung mask, predicted bone image), computed once by given models and cached on disk.

Running the lung U-Net and the bone generator for every sample of every epoch would cost more than the classifier
itself on a CPU, so each (image, size, lung weights, bone weights) is computed once and stored as a compressed
``.npz`` (lung mask as uint8 0/1, bone image as float16: the bone signal is a few hundredths of the intensity range,
too faint for 8 bits). The maps come from ``cxrassist.channels``, the functions the inference pipeline uses, so a
classifier sees the same channels in training as in use: channel 1 = radiograph x binary lung mask, channel 2 =
predicted bone image, in the [0, 1] domain of the letterboxed radiograph.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxrassist.data.cache import ImageCache
from cxrassist.data.records import Record
from cxrassist.errors import ConfigError
from cxrassist.preprocess import SpatialRecord

log = logging.getLogger(__name__)


class DerivedChannels:
    """``get(image_path, size) -> (lung_mask01, bone01)``, both float32 (size, size)."""

    def __init__(
        self,
        lung: tuple[Any, Any] | None,
        bone: tuple[Any, Any] | None,
        cache_dir: str | Path,
        device: Any = "cpu",
        batch_size: int = 8,
    ) -> None:
        if lung is None:
            raise ConfigError("derived channels need lung weights (data.lung_weights / --lung-weights)")
        self.lung_model, self.lung_card = lung
        bone_pair: tuple[Any, Any] = bone if bone is not None else (None, None)
        self.bone_model, self.bone_card = bone_pair
        self.dir = Path(cache_dir)
        self.device = device
        self.batch_size = batch_size
        self.images = ImageCache(None)
        self.tag = f"{self.lung_card.sha256}|{self.bone_card.sha256 if self.bone_card else '-'}"
        self._digests: dict[tuple[str, int, int], str] = {}

    @classmethod
    def from_weights(
        cls, lung_weights: str | None, bone_weights: str | None, *, cache_dir: str | Path, device: Any = "cpu"
    ) -> DerivedChannels:
        from cxrassist.weights import load_model

        if not lung_weights:
            raise ConfigError("a 2/3-channel classifier needs data.lung_weights (lung segmentation weights)")
        lung = load_model(lung_weights)
        bone = load_model(bone_weights, inference=True) if bone_weights else None  # folded, as in the pipeline
        for m, _ in (lung, bone) if bone else (lung,):
            m.to(device).eval()
        return cls(lung, bone, cache_dir, device)

    def _file(self, path: Path, size: int) -> Path:
        """The entry of an image: keyed by its content (not its path or time stamp), size and the weights' sha256.

        Content, because these entries cost ~0.15 s each to compute: a data set copied, re-mounted or touched keeps
        its cache (with a time stamp in the key, a re-mounted ``../shared/data`` cost 25 min of recomputing). The
        digest is remembered per (path, time stamp, size) so each file is hashed once per process.
        """
        st = path.stat()
        stamp = (str(path), st.st_mtime_ns, st.st_size)
        digest = self._digests.get(stamp)
        if digest is None:
            digest = self._digests[stamp] = hashlib.sha1(path.read_bytes()).hexdigest()
        key = f"{digest}|{size}|{self.tag}"
        return self.dir / "derived" / f"{hashlib.sha1(key.encode()).hexdigest()}.npz"

    def prepare(self, records: Sequence[Record], size: int, show_progress: bool = True) -> None:
        """Compute every missing entry in batches (called once before training/evaluation)."""
        todo = [r.image for r in records if not self._file(Path(r.image), size).is_file()]
        if not todo:
            return
        log.info("computing derived lung/bone channels for %d images (cached in %s)", len(todo), self.dir)
        it = range(0, len(todo), self.batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="derived channels", leave=False, disable=None)
        for i in it:
            self._compute(todo[i : i + self.batch_size], size)

    def _compute(self, paths: Sequence[Path], size: int) -> None:
        """Lung mask and bone image at classifier size, by the SAME functions the inference pipeline calls."""
        from cxrassist.channels import predict_bone, predict_lung_mask, to_model_space
        from cxrassist.data.images import load_image01

        for p in paths:
            image = load_image01(p)
            lung_orig = predict_lung_mask(self.lung_model, self.lung_card, image)[2]
            bone_orig = predict_bone(self.bone_model, self.bone_card, image)[2] if self.bone_model is not None else None
            rec = SpatialRecord.for_shape(image.shape[0], image.shape[1], size)
            lung, bone = to_model_space(rec, lung_mask=lung_orig, bone=bone_orig)
            if lung is None:  # to_model_space maps what it is given: a lung mask always
                raise RuntimeError("no lung mask in model space")
            if bone is None:
                bone = np.zeros((size, size), np.float32)
            f = self._file(Path(p), size)
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_name(f".{f.stem}.{os.getpid()}.tmp.npz")
            np.savez_compressed(tmp, lung=lung.astype(np.uint8), bone=bone.astype(np.float16))
            os.replace(tmp, f)

    def get(self, path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
        f = self._file(Path(path), size)
        if not f.is_file():
            self._compute([Path(path)], size)
        with np.load(f) as z:
            return z["lung"].astype(np.float32), z["bone"].astype(np.float32)
