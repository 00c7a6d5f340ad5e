"""Loaders for the official layouts of the large public chest X-ray sets -> :class:`Record` lists.

* CheXpert (``train.csv``/``valid.csv``): uncertainty policy per class (U-Ones, U-Zeros, U-Ignore); blank = not
  mentioned = negative (the CheXpert paper's convention); frontal images paired with a lateral of the same study.
* MIMIC-CXR-JPG (``mimic-cxr-2.0.0-{chexpert,split,metadata}.csv``, ``files/pXX/p<subject>/s<study>/<dicom>.jpg``):
  same label semantics as CheXpert (the same labeler); view from ``ViewPosition``; official split.
* NIH ChestX-ray14 (``Data_Entry_2017[_v2020].csv``, ``train_val_list.txt``, ``test_list.txt``): ``|``-separated
  labels mapped through :func:`cxrassist.labels.chestxray14_to_findings`; images found anywhere under the root.

Validation splits that the source does not define (NIH train_val) come from :func:`cxrassist.data.splits.patient_split`.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping
from pathlib import Path

from cxrassist.data.labeling import parse_value
from cxrassist.data.records import NAN, Record
from cxrassist.errors import DatasetError
from cxrassist.labels import CHESTXRAY14_LABELS, FINDING_NAMES, chestxray14_to_findings, finding, index_of

log = logging.getLogger(__name__)

POLICIES = ("ones", "zeros", "ignore")
#: Per-class policy commonly used with CheXpert (Irvin et al. 2019; Pham et al. 2021): U-Ones where "uncertain"
#: mostly means present (Atelectasis, Edema), U-Zeros for the others; pass ``policy="ignore"`` to mask all.
CHEXPERT_DEFAULT_POLICY: Mapping[str, str] = {"Atelectasis": "ones", "Edema": "ones"}
_SD = index_of("SD")


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise DatasetError(f"expected file not found: {path}")
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _policy_for(policy: str | Mapping[str, str], name: str, default: str) -> str:
    if isinstance(policy, str):
        p = policy
    else:
        by_name = {finding(k).name: v for k, v in policy.items()}
        p = by_name.get(name, default)
    p = {"u-ones": "ones", "u-zeros": "zeros", "u-ignore": "ignore"}.get(p.lower(), p.lower())
    if p not in POLICIES:
        raise DatasetError(f"unknown uncertainty policy {p!r}; use one of {', '.join(POLICIES)}")
    return p


def chexpert_labels(
    row: Mapping[str, str],
    policy: str | Mapping[str, str] = CHEXPERT_DEFAULT_POLICY,
    *,
    default: str = "zeros",
    blank: float = 0.0,
) -> tuple[tuple[float, ...], float]:
    """CheXpert/MIMIC label row (1, 0, -1, blank) -> (13 findings, abnormal)."""
    out = []
    for name in FINDING_NAMES:
        v = parse_value(row.get(name))
        if math.isnan(v):
            v = blank
        elif v == -1:
            v = {"ones": 1.0, "zeros": 0.0, "ignore": NAN}[_policy_for(policy, name, default)]
        out.append(float(v))
    nf = parse_value(row.get("No Finding"))
    if nf == 1:
        abnormal = 0.0
    elif any(v == 1 for i, v in enumerate(out) if i != _SD):
        abnormal = 1.0
    else:
        abnormal = NAN
    return tuple(out), abnormal


def _pair_laterals(frontals: list[Record], laterals: dict[str, Path]) -> list[Record]:
    return [r.with_(lateral=laterals.get(r.extra["study"])) for r in frontals]


def _chexpert_path(root: Path, rel: Path) -> Path:
    """CSV paths start with the release folder name (``CheXpert-v1.0-small/train/...``), which may be renamed."""
    if (root / rel).exists():
        return root / rel
    if rel.parts and (rel.parts[0] == root.name or (root.parent / rel).exists()):
        return root.parent / rel
    return root.joinpath(*rel.parts[1:]) if len(rel.parts) > 1 else root / rel


def load_chexpert(
    root: str | Path,
    *,
    splits: tuple[str, ...] = ("train", "valid"),
    policy: str | Mapping[str, str] = CHEXPERT_DEFAULT_POLICY,
    pair_lateral: bool = True,
) -> list[Record]:
    """CheXpert (full or "-small"): ``root`` is the folder holding ``train.csv`` and ``valid.csv``."""
    root = Path(root)
    frontals: list[Record] = []
    laterals: dict[str, Path] = {}
    for split in splits:
        for row in _read_csv(root / f"{split}.csv"):
            rel = Path(row["Path"])
            path = _chexpert_path(root, rel)
            parts = rel.parts
            patient = next((p for p in parts if p.startswith("patient")), None)
            study_dir = next((p for p in parts if p.startswith("study")), "")
            study = f"{patient}/{study_dir}"
            if row.get("Frontal/Lateral", "Frontal") == "Lateral":
                laterals.setdefault(study, path)
                continue
            findings, abnormal = chexpert_labels(row, policy)
            frontals.append(
                Record(
                    id=f"{study}/{rel.stem}",
                    image=path,
                    dataset="chexpert",
                    split="val" if split == "valid" else split,
                    patient_id=patient,
                    findings=findings,
                    abnormal=abnormal,
                    view=row.get("AP/PA") or None,
                    extra={"study": study, "sex": row.get("Sex", ""), "age": row.get("Age", "")},
                )
            )
    if not frontals:
        raise DatasetError(f"no frontal CheXpert images listed under {root}")
    return _pair_laterals(frontals, laterals) if pair_lateral else frontals


def mimic_path(root: Path, subject_id: str, study_id: str, dicom_id: str) -> Path:
    s = str(subject_id)
    return root / "files" / f"p{s[:2]}" / f"p{s}" / f"s{study_id}" / f"{dicom_id}.jpg"


def load_mimic_cxr(
    root: str | Path, *, policy: str | Mapping[str, str] = CHEXPERT_DEFAULT_POLICY, pair_lateral: bool = True
) -> list[Record]:
    """MIMIC-CXR-JPG 2.0.0: ``root`` holds the three CSVs (plain or .gz unpacked) and ``files/``."""
    root = Path(root)
    labels = {r["study_id"]: r for r in _read_csv(root / "mimic-cxr-2.0.0-chexpert.csv")}
    split_of = {r["dicom_id"]: r["split"] for r in _read_csv(root / "mimic-cxr-2.0.0-split.csv")}
    frontals: list[Record] = []
    laterals: dict[str, Path] = {}
    for m in _read_csv(root / "mimic-cxr-2.0.0-metadata.csv"):
        view = (m.get("ViewPosition") or "").upper()
        path = mimic_path(root, m["subject_id"], m["study_id"], m["dicom_id"])
        study = m["study_id"]
        if view in ("LATERAL", "LL", "RL"):
            laterals.setdefault(study, path)
            continue
        if view not in ("PA", "AP"):
            continue
        row = labels.get(study)
        findings, abnormal = chexpert_labels(row, policy) if row else ((NAN,) * len(FINDING_NAMES), NAN)
        split = {"validate": "val"}.get(split_of.get(m["dicom_id"], ""), split_of.get(m["dicom_id"], ""))
        frontals.append(
            Record(
                id=m["dicom_id"],
                image=path,
                dataset="mimic_cxr",
                split=split,
                patient_id=m["subject_id"],
                findings=findings,
                abnormal=abnormal,
                view=view,
                extra={"study": study},
            )
        )
    if not frontals:
        raise DatasetError(f"no frontal MIMIC-CXR images in {root}")
    return _pair_laterals(frontals, laterals) if pair_lateral else frontals


def load_chestxray14(root: str | Path, *, val_fraction: float = 0.1, seed: int = 0) -> list[Record]:
    """NIH ChestX-ray14: official test list -> "test"; train_val split patient-disjointly into train / val."""
    from cxrassist.data.splits import patient_split

    root = Path(root)
    entry = next((root / n for n in ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv") if (root / n).is_file()), None)
    if entry is None:
        raise DatasetError(f"no Data_Entry_2017(_v2020).csv in {root}")
    test = set((root / "test_list.txt").read_text().split()) if (root / "test_list.txt").is_file() else set()
    files = {p.name: p for p in root.rglob("*.png")}
    records = []
    for row in _read_csv(entry):
        name = row["Image Index"]
        if name not in files:
            continue
        labels = {x.strip() for x in row["Finding Labels"].split("|")}
        unknown = labels - set(CHESTXRAY14_LABELS) - {"No Finding"}
        if unknown:
            raise DatasetError(f"{entry}: unknown ChestX-ray14 label(s) {sorted(unknown)}")
        src = {k: float(k in labels) for k in CHESTXRAY14_LABELS}
        findings = chestxray14_to_findings(src)
        no_finding = "No Finding" in labels
        if no_finding:  # same policy as the shared-manifest loader: normal -> negative except Support Devices
            findings = [0.0 if (math.isnan(v) and i != _SD) else v for i, v in enumerate(findings)]
        records.append(
            Record(
                id=Path(name).stem,
                image=files[name],
                dataset="chestxray14",
                split="test" if name in test else "",
                patient_id=row.get("Patient ID"),
                findings=tuple(findings),
                abnormal=0.0 if no_finding else 1.0,
                view=row.get("View Position"),
            )
        )
    if not records:
        raise DatasetError(f"no ChestX-ray14 images listed in {entry} were found under {root}")
    return patient_split(records, {"train": 1 - val_fraction, "val": val_fraction}, seed=seed, only_unassigned=True)


def index_by_stem(folder: Path, suffixes: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".gif", ".bmp")) -> dict:
    out: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in suffixes:
            out.setdefault(p.stem, p)
    return out
