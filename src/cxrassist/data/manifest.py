"""The generic ``manifest.csv`` format (the layout of ``../shared/data/*/manifest.csv``).

Columns (all optional except an image column): ``image`` (or ``frontal``), ``lateral``, ``mask``,
``bone_suppressed``, ``label`` (normal/tb/nodule/abnormal/...), finding columns (NIH ChestX-ray14 names or our 13
CheXpert names), ``No Finding``, ``id``, ``patient_id``, ``view``/``frontal_view``, ``split``. File paths are relative
to the CSV's folder (absolute paths are kept). Label handling is described in :mod:`cxrassist.data.labeling`.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable
from pathlib import Path

from cxrassist.data.labeling import findings_and_triage
from cxrassist.data.records import Record
from cxrassist.errors import DatasetError

log = logging.getLogger(__name__)

_EXTRA_KEEP = ("label", "finding", "sex", "age", "nodule")


# Sets that hold the same patients under the same case ids, and the set whose split decides for them: `jsrt` and
# `bse_jsrt` are the same JSRT cases, split separately upstream (21 `jsrt` val cases are `bse_jsrt` train cases, so the
# bone channel had seen them). The bone-pair set decides, so the bone model never saw a case that any model is
# validated on, and each patient sits on one side everywhere.
SPLIT_AUTHORITY: dict[str, str] = {"jsrt": "bse_jsrt"}


def _authority_splits(base: Path, name: str) -> dict[str, str]:
    """case id -> split in the authority set next to ``base`` (empty when there is none)."""
    other = SPLIT_AUTHORITY.get(name)
    path = base.parent / other / "manifest.csv" if other else None
    if path is None or not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        return {(r.get("id") or "").strip(): (r.get("split") or "").strip() for r in csv.DictReader(fh)}


def _path(base: Path, value: str | None) -> Path | None:
    value = (value or "").strip()
    if not value:
        return None
    p = Path(value)
    return p if p.is_absolute() else base / p


#: The manifest column holding each segmentation label's masks (the label is the model card's).
MASK_COLUMNS: dict[str, str] = {"Lung": "mask", "Heart": "heart_mask"}


def load_manifest(
    path: str | Path, *, dataset: str | None = None, check_files: bool = True, mask_column: str = "mask"
) -> list[Record]:
    """Read one manifest CSV into records. ``dataset`` defaults to the CSV's folder name.

    ``mask_column``: the column read into :attr:`Record.mask` (``heart_mask`` for the heart model; a manifest
    without that column gives records without a mask).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"manifest not found: {path}")
    base = path.parent
    name = dataset or base.name
    records: list[Record] = []
    authority = _authority_splits(base, name)
    moved = 0
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or ())
        image_col = "image" if "image" in cols else "frontal" if "frontal" in cols else None
        if image_col is None:
            raise DatasetError(f"manifest {path} has neither an 'image' nor a 'frontal' column")
        for row in reader:
            image = _path(base, row.get(image_col))
            if image is None:
                continue
            findings, abnormal = findings_and_triage(row)
            rid = (row.get("id") or "").strip() or image.stem
            split = (row.get("split") or "").strip()
            if authority.get(rid) and authority[rid] != split:
                split, moved = authority[rid], moved + 1
            records.append(
                Record(
                    id=rid,
                    image=image,
                    dataset=name,
                    split=split,
                    patient_id=(row.get("patient_id") or "").strip() or None,
                    mask=_path(base, row.get(mask_column)),
                    bone_suppressed=_path(base, row.get("bone_suppressed")),
                    lateral=_path(base, row.get("lateral")),
                    findings=findings,
                    abnormal=abnormal,
                    view=(row.get("view") or row.get("frontal_view") or "").strip() or None,
                    extra={k: row[k] for k in _EXTRA_KEEP if row.get(k)},
                )
            )
    if not records:
        raise DatasetError(f"manifest {path} has no rows with an image")
    if check_files:
        missing = [r.image for r in records[:50] if not r.image.is_file()]
        if missing:
            raise DatasetError(f"manifest {path}: image file missing, e.g. {missing[0]}")
    if moved:
        log.info("manifest %s: %d cases take their split from %s (same patients)", path, moved, SPLIT_AUTHORITY[name])
    log.info("manifest %s: %d records", path, len(records))
    return records


def load_manifests(paths: Iterable[str | Path], **kw: object) -> list[Record]:
    """Several manifests combined (ids stay unique through the dataset name in :attr:`Record.group`)."""
    out: list[Record] = []
    for p in paths:
        out.extend(load_manifest(p, **kw))  # type: ignore[arg-type]
    if not out:
        raise DatasetError("no manifest given")
    return out
