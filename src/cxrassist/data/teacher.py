"""Soft targets from a reference model (distillation): a CSV of its probabilities joined onto records by id.

The reference in ``../shared/data/nih_cxr14_sample/teacher_chexnet_preds.csv`` is a CheXNet reproduction that never
trained on those films; its 14 NIH outputs map onto our findings where the meaning is the same (Effusion -> Pleural
Effusion, max(Mass, Nodule) -> Lung Lesion, and the same-named ones). Infiltration and Pleural_Thickening are left
out: "Lung Opacity" and "Pleural Other" are broader than them, so the teacher would pull those outputs off meaning.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from cxrassist.data.records import Record
from cxrassist.errors import DatasetError
from cxrassist.labels import NUM_FINDINGS, index_of

# our finding -> the teacher's NIH outputs whose maximum stands for it
NIH_TEACHER_MAP: Mapping[str, tuple[str, ...]] = {
    "Atelectasis": ("Atelectasis",),
    "Cardiomegaly": ("Cardiomegaly",),
    "Consolidation": ("Consolidation",),
    "Edema": ("Edema",),
    "Pleural Effusion": ("Effusion",),
    "Pneumonia": ("Pneumonia",),
    "Pneumothorax": ("Pneumothorax",),
    "Lung Lesion": ("Mass", "Nodule"),
}


def read_teacher(path: str | Path) -> dict[str, tuple[float, ...]]:
    """id -> 13-vector of teacher probabilities (NaN where the teacher has no matching output)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"teacher predictions not found: {path}")
    out: dict[str, tuple[float, ...]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or ())
        needed = {f"prob_{n}" for srcs in NIH_TEACHER_MAP.values() for n in srcs} | {"id"}
        if not needed <= cols:
            raise DatasetError(f"teacher CSV {path} lacks columns {', '.join(sorted(needed - cols))}")
        for row in reader:
            vec = [math.nan] * NUM_FINDINGS
            for finding, srcs in NIH_TEACHER_MAP.items():
                try:
                    vals = [float(row[f"prob_{n}"]) for n in srcs]
                except ValueError as exc:
                    raise DatasetError(f"teacher CSV {path}: non-numeric probability for id {row['id']!r}") from exc
                if not all(0.0 <= v <= 1.0 for v in vals):
                    raise DatasetError(f"teacher CSV {path}: probability outside [0, 1] for id {row['id']!r}")
                vec[index_of(finding)] = max(vals)
            out[row["id"].strip()] = tuple(vec)
    if not out:
        raise DatasetError(f"teacher CSV {path} has no rows")
    return out


def attach_teacher(records: Sequence[Record], teachers: Mapping[str, str | Path]) -> list[Record]:
    """Records with ``extra["teacher"]`` set where their dataset has a teacher CSV and the CSV has their id.

    A dataset named in ``teachers`` that none of the records has is refused (a typo would silently do nothing).
    """
    if not teachers:
        return list(records)
    present = {r.dataset for r in records}
    tables = {}
    for name, path in teachers.items():
        if name not in present:
            raise DatasetError(
                f"data.teacher names dataset {name!r}, which is not among the records ({', '.join(sorted(present))})"
            )
        tables[name] = read_teacher(path)
    out = []
    for r in records:
        vec = tables.get(r.dataset, {}).get(r.id)
        out.append(r.with_(extra={**r.extra, "teacher": vec}) if vec is not None else r)
    return out
