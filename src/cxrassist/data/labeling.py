"""Turn the label columns of a source row into our targets (13 findings with NaN = unknown, and the triage bit).

Policy (documented because it decides what the models learn):

* NIH ChestX-ray14 columns go through :func:`cxrassist.labels.chestxray14_to_findings`; columns already named like
  one of our 13 findings are taken as they are; a ``label`` (or, failing that, ``finding``) text goes through
  :data:`cxrassist.labels.DATASET_LABEL_MAP`. Several sources for one finding combine as "positive if any positive".
* A case known to be normal (``label`` = normal, or ``No Finding`` = 1) is negative for every finding that is still
  unknown, except Support Devices: "no finding" in CheXpert/NIH speaks about pathology, not about lines and tubes.
* Triage: abnormal = 1 for any non-normal ``label`` (tb, nodule, abnormal, covid-19...), ``No Finding`` = 0 means
  abnormal, and any positive finding means abnormal. Otherwise unknown (NaN) and the case is left out of triage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from cxrassist.labels import (
    CHESTXRAY14_LABELS,
    DATASET_LABEL_MAP,
    FINDING_NAMES,
    NUM_FINDINGS,
    chestxray14_to_findings,
    index_of,
    map_labels,
)

NAN = float("nan")
NORMAL_WORDS = frozenset({"normal", "no finding", "no findings", "negative"})
_SD = index_of("SD")


def parse_value(text: object) -> float:
    """A CSV cell -> float (empty / non-numeric -> NaN)."""
    if text is None:
        return NAN
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip()
    if not s:
        return NAN
    try:
        return float(s)
    except ValueError:
        return NAN


def combine(a: list[float], b: list[float]) -> list[float]:
    """Element-wise merge of two 13-vectors: positive wins, then negative, NaN only if both unknown."""
    out = []
    for x, y in zip(a, b, strict=True):
        if x == 1.0 or y == 1.0:
            out.append(1.0)
        elif math.isnan(x):
            out.append(y)
        else:
            out.append(x)  # x is a known negative
    return out


def findings_and_triage(row: Mapping[str, str]) -> tuple[tuple[float, ...], float]:
    """Targets of one manifest row: (13 findings with NaN = unknown, abnormal in {0, 1, NaN})."""
    findings = [NAN] * NUM_FINDINGS
    if any(k in row for k in CHESTXRAY14_LABELS):
        nih = {k: parse_value(row.get(k)) for k in CHESTXRAY14_LABELS if k in row}
        findings = combine(findings, chestxray14_to_findings(nih))
    direct = [parse_value(row.get(name)) if name in row else NAN for name in FINDING_NAMES]
    direct = [1.0 if v > 0 else 0.0 if v == 0 else NAN for v in direct]  # CheXpert -1 (uncertain) -> unknown here
    findings = combine(findings, direct)

    label = (row.get("label") or "").strip().lower()
    text_source = label if label in DATASET_LABEL_MAP else (row.get("finding") or "").strip().lower()
    if text_source in DATASET_LABEL_MAP:
        findings = combine(findings, map_labels({text_source: 1.0}, DATASET_LABEL_MAP))

    no_finding = parse_value(row.get("No Finding"))
    known_normal = label in NORMAL_WORDS or no_finding == 1.0
    if known_normal:
        findings = [0.0 if (math.isnan(v) and i != _SD) else v for i, v in enumerate(findings)]

    if label:
        abnormal = 0.0 if label in NORMAL_WORDS else 1.0
    elif not math.isnan(no_finding):
        abnormal = 0.0 if no_finding == 1.0 else 1.0
    elif any(v == 1.0 for i, v in enumerate(findings) if i != _SD):
        abnormal = 1.0
    else:
        abnormal = NAN
    return tuple(findings), abnormal
