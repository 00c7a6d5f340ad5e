"""The one Dataset class of training and evaluation: records -> model-space tensors per task.

Every image goes through the model input contract of :mod:`cxrassist.preprocess` (letterbox to ``size``, 0
padding, then ``normalize`` right before the network); targets are letterboxed with the same geometry. Per-sample
randomness is a ``numpy.random.Generator`` seeded from (seed, epoch, index): workers, resumes and DDP ranks all see
the same augmentation for the same sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from cxrassist.data.augment import AugmentConfig, JointAugment, random_crop
from cxrassist.data.cache import ImageCache
from cxrassist.data.records import Record
from cxrassist.errors import DatasetError
from cxrassist.preprocess import normalize
from cxrassist.weights.settings import BONE_SUBTRACTED, LUNG_SEGMENTED, RADIOGRAPH, channels_of

TASKS = ("segmentation", "bone", "triage", "classifier")


class CxrDataset(Dataset):
    """Items are dicts: ``image`` (C, S, S) normalized, plus per task ``mask`` (1, S, S) in {0, 1}, ``bone``
    (1, S, S) bone image in the [0, 1] radiograph domain, ``target`` (1,) triage, ``labels`` (13,) with NaN = unknown,
    ``lateral`` (1, S, S) + ``has_lateral`` for dual-view models, and ``index``. With ``lung_mask``, ``lung``
    (1, S, S): the lung mask the lung_segmented channel was made with, after the same augmentation.

    ``image01`` (the augmented [0, 1] radiograph before normalization) is kept for the bone task, whose losses and
    metrics live in the intensity domain.
    """

    def __init__(
        self,
        records: Sequence[Record],
        *,
        task: str,
        size: int,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        crop: int | None = None,
        cache: ImageCache | None = None,
        derived: Any | None = None,
        channels: int | Sequence[str] = 1,
        lateral: bool = False,
        detail: int | None = None,
        lung_mask: bool = False,
    ) -> None:
        if task not in TASKS:
            raise DatasetError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
        self.records = list(_usable(records, task))
        if not self.records:
            raise DatasetError(f"no records usable for task {task!r} (check mask/bone_suppressed/label columns)")
        self.task = task
        self.size = int(size)
        self.augment = JointAugment(augment, self.size) if augment is not None and augment.enabled else None
        self.seed = int(seed)
        self.crop = crop
        self.cache = cache or ImageCache(None)
        self.derived = derived
        # the input channels BY NAME (a count n means the first n of weights.settings.INPUT_CHANNELS, what
        # ModelCard.new writes for in_chans=n), built as the pipeline builds them (cxrassist.channels)
        self.channel_names = channels_of(channels, "dataset")
        self.channels = len(self.channel_names)
        self.lateral = lateral
        self.detail = detail  # effective size of radiograph channels (preprocess.letterbox); targets are exact
        self.lung_mask = lung_mask  # also return the (augmented) lung mask as "lung" (training.lung_prior)
        self.epoch = 0
        if self.channel_names != (RADIOGRAPH,) and derived is None:
            raise DatasetError(
                f"input channels {', '.join(self.channel_names)} need derived lung/bone channels "
                "(lung and bone weights)"
            )
        if lung_mask and (task not in ("triage", "classifier") or LUNG_SEGMENTED not in self.channel_names):
            raise DatasetError("lung_mask needs a triage/classifier task whose channels include lung_segmented")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        rng = self.rng(index)
        detail = self.detail if self.task in ("triage", "classifier") else None
        x = torch.from_numpy(self.cache.image(rec.image, self.size, detail))[None]
        item: dict[str, Any] = {"index": index}
        if self.task == "segmentation":
            m = torch.from_numpy(self.cache.mask(rec.mask, self.size))[None]  # type: ignore[arg-type]
            parts = self.augment(rng, x, masks=m) if self.augment else {"image": x, "masks": m}
            if self.crop:
                parts = random_crop(rng, parts, self.crop)
            x, item["mask"] = parts["image"], parts["masks"]
        elif self.task == "bone":
            s = torch.from_numpy(self.cache.image(rec.bone_suppressed, self.size))[None]  # type: ignore[arg-type]
            parts = self.augment(rng, x, paired=s) if self.augment else {"image": x, "paired": s}
            if self.crop:
                parts = random_crop(rng, parts, self.crop)
            x, s = parts["image"], parts["paired"]
            item["bone"] = bone_target(x, s)
            item["image01"] = x
        else:
            x, lung = self._classification_input(rec, x, rng)
            if self.lung_mask:
                item["lung"] = lung
            if self.task == "triage":
                item["target"] = torch.tensor([rec.abnormal], dtype=torch.float32)
            else:
                item["labels"] = torch.tensor(rec.findings, dtype=torch.float32)
                item["teacher"] = torch.tensor(
                    rec.extra.get("teacher", (math.nan,) * len(rec.findings)), dtype=torch.float32
                )
            if self.lateral:
                if rec.lateral is not None:
                    lat = torch.from_numpy(self.cache.image(rec.lateral, self.size, detail))[None]
                    if self.augment:
                        lat = self.augment(rng, lat)["image"]
                    item["lateral"] = normalize(lat).float()
                    item["has_lateral"] = torch.tensor(True)
                else:
                    item["lateral"] = torch.zeros(1, self.size, self.size)
                    item["has_lateral"] = torch.tensor(False)
        item["image"] = normalize(x).float()
        return item

    def _classification_input(
        self, rec: Record, x: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The named channels: radiograph, lung_segmented (radiograph x lung mask), bone_subtracted (predicted bone
        image), as ``channels.classifier_planes`` builds them for inference (ARCHITECTURE.md); and the lung mask used
        (None for a radiograph-only model)."""
        if self.channel_names == (RADIOGRAPH,):
            return (self.augment(rng, x)["image"] if self.augment else x), None
        lung, bone = self.derived.get(rec.image, self.size)  # type: ignore[union-attr]
        lung_t = torch.from_numpy(lung)[None]
        bone_t = torch.from_numpy(bone)[None]
        if self.augment:
            parts = self.augment(rng, x, masks=lung_t, passive=bone_t)
            x, lung_t, bone_t = parts["image"], parts["masks"], parts["passive"]
        planes = {RADIOGRAPH: x, LUNG_SEGMENTED: x * lung_t, BONE_SUBTRACTED: bone_t}
        return torch.cat([planes[name] for name in self.channel_names], 0), lung_t


def bone_target(image01: torch.Tensor, suppressed01: torch.Tensor) -> torch.Tensor:
    """The bone image the generator learns: radiograph - bone-suppressed radiograph, clipped to [0, 1].

    With the BSE-JSRT pairs the difference is the rib/clavicle signal (>= 0 where bone adds attenuation); the few
    slightly negative pixels are resampling/quantization noise of the 8-bit pairs, so clipping loses no anatomy and
    keeps the target in the generator's [0, 1] output domain (suppressed = clip(radiograph - bone, 0, 1)).
    """
    return (image01 - suppressed01).clamp(0.0, 1.0)


def _usable(records: Sequence[Record], task: str) -> list[Record]:
    if task == "segmentation":
        return [r for r in records if r.mask is not None]
    if task == "bone":
        return [r for r in records if r.bone_suppressed is not None]
    if task == "triage":
        return [r for r in records if not math.isnan(r.abnormal)]
    return [r for r in records if r.has_findings]


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Default collate that keeps Python ints as a tensor and stacks everything else."""
    out: dict[str, Any] = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        out[key] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else torch.tensor(vals)
    return out
