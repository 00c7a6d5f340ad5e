"""One record per training/evaluation case, whatever dataset it came from.

Every loader (generic manifest, CheXpert, MIMIC-CXR, ChestX-ray14, ...) returns ``list[Record]`` so that the one
Dataset class, the splitter and the evaluation code never need to know the source layout.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cxrassist.errors import ConfigError
from cxrassist.labels import NUM_FINDINGS

NAN = float("nan")


@dataclass(frozen=True)
class Record:
    """A case: the frontal image and whatever targets the source provides (absent targets are ``None``/NaN).

    ``findings`` is the 13-vector in :data:`cxrassist.labels.FINDINGS` order (1 positive, 0 negative, NaN unknown);
    ``abnormal`` is the triage target (1 abnormal, 0 normal, NaN unknown).
    """

    id: str
    image: Path
    dataset: str = ""
    split: str = ""
    patient_id: str | None = None
    mask: Path | tuple[Path, ...] | None = None  # a tuple = parts to unite (left + right lung files)
    bone_suppressed: Path | None = None
    lateral: Path | None = None
    findings: tuple[float, ...] = field(default=(NAN,) * NUM_FINDINGS)
    abnormal: float = NAN
    view: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def with_(self, **changes: Any) -> Record:
        return replace(self, **changes)

    @property
    def has_findings(self) -> bool:
        return any(not math.isnan(v) for v in self.findings)

    @property
    def has_abnormal(self) -> bool:
        return not math.isnan(self.abnormal)

    @property
    def group(self) -> str:
        """The unit that must not straddle splits: the patient if known, else the case itself."""
        return f"{self.dataset}:{self.patient_id}" if self.patient_id else f"{self.dataset}:{self.id}"


def select(records: Iterable[Record], split: str | Sequence[str] | None) -> list[Record]:
    """Records of one split (or of several; ``None``/"all" = every record)."""
    if split is None or split == "all":
        return list(records)
    wanted = {split} if isinstance(split, str) else set(split)
    return [r for r in records if r.split in wanted]


def _check_counts(records: Sequence[Record], counts: Mapping[str, int], option: str) -> None:
    """Refuse a count below 1 and a dataset name that none of the records has (a typo would silently do nothing)."""
    present = {r.dataset for r in records}
    for name, n in counts.items():
        if name not in present:
            raise ConfigError(
                f"data.{option} names dataset {name!r}, which is not among the training records "
                f"({', '.join(sorted(present))})"
            )
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"data.{option}[{name!r}] must be an integer >= 1, got {n!r}")


def repeat_datasets(records: Sequence[Record], repeat: Mapping[str, int]) -> list[Record]:
    """Each record of dataset ``name`` ``repeat[name]`` times (oversampling a small set); order kept."""
    _check_counts(records, repeat, "repeat")
    return [r for r in records for _ in range(repeat.get(r.dataset, 1))]


def subsample_datasets(records: Sequence[Record], subsample: Mapping[str, int], seed: int = 0) -> list[Record]:
    """At most ``subsample[name]`` records of dataset ``name`` (a fixed random subset, ``seed``); order kept.

    For a large set that would otherwise dominate the epoch (e.g. 6,534 radiologist-normal films beside 449 NIH
    films with findings) when the budget is short.
    """
    _check_counts(records, subsample, "subsample")
    keep: set[int] = set()
    for name, count in subsample.items():
        idx = [i for i, r in enumerate(records) if r.dataset == name]
        keep.update(random.Random(f"{seed}|{name}").sample(idx, min(count, len(idx))))
    return [r for i, r in enumerate(records) if r.dataset not in subsample or i in keep]


def describe(records: Sequence[Record]) -> dict[str, Any]:
    """Counts for logs and model cards (no identifiers)."""
    by_dataset: dict[str, int] = {}
    for r in records:
        by_dataset[r.dataset] = by_dataset.get(r.dataset, 0) + 1
    return {
        "n": len(records),
        "datasets": by_dataset,
        "with_mask": sum(r.mask is not None for r in records),
        "with_bone_suppressed": sum(r.bone_suppressed is not None for r in records),
        "with_lateral": sum(r.lateral is not None for r in records),
        "abnormal": sum(r.abnormal == 1 for r in records),
        "normal": sum(r.abnormal == 0 for r in records),
    }
