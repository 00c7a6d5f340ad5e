"""The finding vocabulary: the 13 CheXpert findings in one fixed order, and maps from other label sets.

Everything that names a finding (models, training, evaluation, reports, the viewer) imports it from here, so the
output order of every model and the columns of every report agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    code: str
    name: str
    critical: bool = False  # raises worklist priority when positive


FINDINGS: tuple[Finding, ...] = (
    Finding("AT", "Atelectasis"),
    Finding("CA", "Cardiomegaly"),
    Finding("CO", "Consolidation"),
    Finding("ED", "Edema", critical=True),
    Finding("PE", "Pleural Effusion"),
    Finding("PN", "Pneumonia"),
    Finding("PX", "Pneumothorax", critical=True),
    Finding("EC", "Enlarged Cardiomediastinum"),
    Finding("LL", "Lung Lesion"),
    Finding("AO", "Lung Opacity"),
    Finding("PO", "Pleural Other"),
    Finding("FR", "Fracture"),
    Finding("SD", "Support Devices"),
)

FINDING_NAMES: tuple[str, ...] = tuple(f.name for f in FINDINGS)
FINDING_CODES: tuple[str, ...] = tuple(f.code for f in FINDINGS)
NUM_FINDINGS = len(FINDINGS)
CRITICAL_CODES: frozenset[str] = frozenset(f.code for f in FINDINGS if f.critical)
#: Findings whose evidence lies in the lung fields: their heatmaps are judged (and trained) against the lung mask.
LUNG_FIELD_CODES: tuple[str, ...] = ("AT", "CO", "ED", "PN", "PX", "LL", "AO")

_BY_NAME = {f.name.lower(): f for f in FINDINGS}
_BY_CODE = {f.code: f for f in FINDINGS}


def finding(key: str) -> Finding:
    """Look a finding up by code ("PX") or name ("Pneumothorax", case-insensitive)."""
    if key.upper() in _BY_CODE:
        return _BY_CODE[key.upper()]
    try:
        return _BY_NAME[key.lower()]
    except KeyError:
        raise KeyError(f"unknown finding {key!r}; known: {', '.join(FINDING_CODES)}") from None


def index_of(key: str) -> int:
    """Position of a finding in the fixed output order."""
    return FINDINGS.index(finding(key))


# ChestX-ray14 (NIH) label -> CheXpert finding names. Labels with no CheXpert counterpart map to nothing:
# Emphysema, Fibrosis and Hernia are real findings but not in our 13, so they only count as "abnormal" for triage.
# Infiltration is the NIH term closest to CheXpert's "Lung Opacity" (CheXpert's own mapping of NIH labels does this).
CHESTXRAY14_MAP: Mapping[str, tuple[str, ...]] = {
    "Atelectasis": ("Atelectasis",),
    "Cardiomegaly": ("Cardiomegaly",),
    "Effusion": ("Pleural Effusion",),
    "Infiltration": ("Lung Opacity",),
    "Mass": ("Lung Lesion",),
    "Nodule": ("Lung Lesion",),
    "Pneumonia": ("Pneumonia",),
    "Pneumothorax": ("Pneumothorax",),
    "Consolidation": ("Consolidation",),
    "Edema": ("Edema",),
    "Emphysema": (),
    "Fibrosis": (),
    "Pleural_Thickening": ("Pleural Other",),
    "Hernia": (),
}
CHESTXRAY14_LABELS: tuple[str, ...] = tuple(CHESTXRAY14_MAP)

# Free-text / dataset labels of the sets in ../shared/data and similar public sets.
DATASET_LABEL_MAP: Mapping[str, tuple[str, ...]] = {
    "nodule": ("Lung Lesion",),  # JSRT
    "tb": ("Lung Opacity",),  # Shenzhen/Montgomery TB: the visible sign is opacity; TB itself is not a CheXpert class
    "covid-19": ("Pneumonia", "Lung Opacity"),
    "pneumonia": ("Pneumonia", "Lung Opacity"),
    "normal": (),
    "no finding": (),
}


def map_labels(source: Mapping[str, float | int | None], mapping: Mapping[str, tuple[str, ...]]) -> list[float]:
    """Turn a row of source labels into the 13-vector (1 positive, 0 negative, NaN unknown).

    A target finding is positive if any source label mapping to it is positive, negative if at least one source
    label mapping to it is known (present, not None/NaN) and none is positive, and unknown (NaN) otherwise - i.e. if
    no source label mapping to it is present in ``source`` with a known value.
    """
    nan = float("nan")
    out = [nan] * NUM_FINDINGS
    for src_name, targets in mapping.items():
        if src_name not in source:
            continue
        value = source[src_name]
        if value is None or value != value:  # None or NaN
            continue
        for target in targets:
            i = index_of(target)
            if float(value) > 0:
                out[i] = 1.0
            elif out[i] != out[i]:
                out[i] = 0.0
    return out


def chestxray14_to_findings(row: Mapping[str, float | int | None]) -> list[float]:
    """NIH ChestX-ray14 14-label row -> our 13 findings (NaN where NIH says nothing)."""
    return map_labels(row, CHESTXRAY14_MAP)


# Data sets of ../shared/data whose films are NIH ChestX-ray14 films (the NIH sample and the RSNA-read NIH films):
# "validated" and the headline figures are measured on these (one source, so no set-telling can lift them).
NIH_SOURCE_DATASETS: frozenset[str] = frozenset({"nih_cxr14_sample", "rsna_normal", "rsna_lung_opacity"})
