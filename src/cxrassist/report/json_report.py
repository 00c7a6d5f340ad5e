"""AnalysisResult -> the ``report.json`` dict (see schema.py and docs/report-schema.md)."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cxrassist import DISCLAIMER, __version__
from cxrassist.labels import CRITICAL_CODES
from cxrassist.pipeline import LUNG_TILT_METHOD, MAX_LUNG_TILT_DEG, AnalysisResult
from cxrassist.report.images import bone_windows, heatmap_legend
from cxrassist.report.impression import impression_text, not_validated_reason, priority_reason, threshold_measured
from cxrassist.report.schema import SCHEMA_VERSION

SIDE_CONVENTION = (
    "right/left are the patient's sides, assuming the standard radiographic display (patient's right on the "
    "image's left)"
)


def _round(x: float, digits: int = 4) -> float:
    return round(float(x), digits) if math.isfinite(x) else 0.0


MEASURED_KEYS = (
    "auroc",
    "auroc_ci95",
    "sensitivity",
    "specificity",
    "n_pos",
    "n",
    "measured_on",
    "threshold_rule",
    "chosen_on",
    "ece_raw",
    "ece_calibrated",
    "teacher_auroc",
    "teacher_set",
)


def measured_figures(measured: Any) -> dict[str, Any] | None:
    """How well a label was measured (from its model card), so the reader sees it beside every call."""
    if not measured:
        return None
    out: dict[str, Any] = {}
    for key in MEASURED_KEYS:
        v = measured.get(key)
        if isinstance(v, float):
            v = None if v != v else round(v, 4)
        elif isinstance(v, (list, tuple)):
            v = [None if (x is None or x != x) else round(float(x), 4) for x in v]
        out[key] = v
    return out


#: How the cardiothoracic ratio is measured (report.json -> heart.method).
CTR_METHOD = (
    "heart width (the heart outline's horizontal extent) over thorax width (the widest row across both lungs' outer "
    "edges), on the outlines of the heart and lung models; 0.5 is the usual upper limit on a PA film, and an AP "
    "film magnifies the heart"
)


def heart_section(cardiac: Any) -> dict[str, Any] | None:
    """The report's ``heart`` entry: the cardiothoracic ratio and how it was measured (None when not measured)."""
    if cardiac is None:
        return None
    return {**cardiac.to_dict(), "method": CTR_METHOD}


def build_report(
    result: AnalysisResult,
    files: dict[str, str | None],
    *,
    html: str | None = None,
    dicom: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report dict. ``files`` maps image keys to relative paths (None where PNGs were not written)."""
    frontal = result.frontal.summary()
    lateral = result.lateral.summary() if result.lateral is not None else None
    findings = []
    for i, f in enumerate(result.findings):
        measured = measured_figures(f.measured)
        findings.append(
            {
                "code": f.code,
                "name": f.name,
                "probability": _round(f.probability),
                "threshold": _round(f.threshold),
                "positive": f.positive,
                "validated": f.validated,
                "measured": measured,
                "threshold_measured": threshold_measured(measured),  # 1.4: false = the 0.5 placeholder
                "validation_note": not_validated_reason(measured, f.validated, result.untrained),  # 1.4
                "critical": f.code in CRITICAL_CODES,
                "heatmap": files.get(f"heatmap:{f.code}"),
                "heatmap_map": files.get(f"heatmap_map:{f.code}"),
                "heatmap_lateral": files.get(f"heatmap_lateral:{f.code}"),
                "heatmap_empty": bool(float(result.cams[i].max()) <= 0.0) if len(result.cams) > i else False,  # 1.4
                "method": getattr(f, "method", None),  # 1.7
            }
        )
    t = result.triage
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generator": {"name": "cxrassist", "version": __version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "disclaimer": DISCLAIMER,
        "untrained": result.untrained,
        "forced": result.forced,
        "ood": getattr(result, "ood", None),
        "warnings": list(result.warnings),
        "chest_check": {
            "is_chest": bool(result.chest_check.is_chest),
            "is_frontal": None if result.chest_check.is_frontal is None else bool(result.chest_check.is_frontal),
            "reason": str(result.chest_check.reason),
        },
        "input": {"frontal": frontal, "lateral": lateral},
        "triage": {
            "abnormal_probability": _round(t.abnormal_probability),
            "threshold": _round(t.threshold),
            "priority": t.priority,
            "priority_score": _round(t.priority_score),
            "critical_findings": list(t.critical_findings),
            "measured": measured_figures(t.measured),
        },
        "findings": findings,
        "heatmap_legend": heatmap_legend(getattr(result, "heatmap_meaning", None)),
        "lung": {
            "mask": files.get("lung_mask"),
            "segmented": files.get("lung_segmented"),
            "contour": files.get("lung_contour"),
            "area": result.lung_areas.to_dict(),
            "side_convention": SIDE_CONVENTION,
            "tilt": {
                "degrees": None if result.lung_tilt_deg is None else round(result.lung_tilt_deg, 1),
                "limit_degrees": MAX_LUNG_TILT_DEG,
                "method": LUNG_TILT_METHOD,
            },
        },
        "heart": heart_section(getattr(result, "cardiac", None)),  # 1.7
        "bone": {
            "subtracted": files.get("bone_subtracted"),
            "suppressed": files.get("bone_suppressed"),
            "display_window": {k: w.to_dict() for k, w in bone_windows(result).items()},
        },
        "images": {"radiograph": files.get("radiograph"), "lateral": files.get("lateral")},
        "models": result.models,
        "timings_ms": {k: float(v) for k, v in result.timings_ms.items()},
        "outputs": {"html": html, "dicom": list(dicom or [])},
    }
    report["triage"]["reason"] = priority_reason(report["triage"], findings)  # 1.4
    report["impression"] = impression_text(report)  # 1.4
    return report


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")


def referenced_files(report: dict[str, Any]) -> list[str]:
    """Every relative path a report points at (used by tests and by batch's completeness check)."""
    paths: list[str] = []
    for f in report["findings"]:
        paths += [f[k] for k in ("heatmap", "heatmap_map", "heatmap_lateral") if f.get(k)]
    for section in ("lung", "bone", "images"):
        paths += [v for k, v in report[section].items() if isinstance(v, str) and k not in ("side_convention",)]
    if report["outputs"].get("html"):
        paths.append(report["outputs"]["html"])
    paths += [d["path"] for d in report["outputs"].get("dicom", [])]
    return paths
