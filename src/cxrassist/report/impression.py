"""Words for the reader: why a finding is not validated, why a study got its priority, and a plain-text impression.

Computed once from the report dict, so report.json, report.html, the viewer and the worklist say the same thing.
"""

from __future__ import annotations

from typing import Any

#: The card's validation rule (cxrassist.evaluation): >= 10 NIH-source positives and an AUROC CI lower bound >= 0.65.
MIN_POSITIVES = 10
MIN_CI_LOW = 0.65


def _pct(p: float | None) -> str:
    return "n/a" if p is None else f"{100.0 * float(p):.1f} %"


def not_validated_reason(measured: dict[str, Any] | None, validated: bool, untrained: bool = False) -> str | None:
    """Why a finding is not validated (None when it is): the figure that fails the card's rule, in words."""
    if validated:
        return None
    if untrained:
        return "untrained model: nothing was measured"
    if not measured or not measured.get("n"):
        return "never measured: no labelled evaluation films"
    n_pos = measured.get("n_pos") or 0
    where = measured.get("measured_on") or "the evaluation films"
    if n_pos == 0:
        return f"no positive film in {where}: AUROC and threshold unmeasured"
    reasons = []
    if n_pos < MIN_POSITIVES:
        reasons.append(f"only {n_pos} positive films in {where} (rule: >= {MIN_POSITIVES})")
    ci = measured.get("auroc_ci95") or [None, None]
    if ci[0] is not None and ci[0] < MIN_CI_LOW:
        reasons.append(f"AUROC 95 % CI lower bound {ci[0]:.2f} < {MIN_CI_LOW}")
    return "; ".join(reasons) or "the model card does not mark it validated"


def threshold_measured(measured: dict[str, Any] | None) -> bool:
    """Whether a finding's threshold was chosen on labelled films (else it is the 0.5 placeholder)."""
    return bool(measured and measured.get("n_pos") and measured.get("sensitivity") is not None)


def priority_reason(triage: dict[str, Any], findings: list[dict[str, Any]]) -> str:
    """Which finding or triage score set the priority (critical / high / routine), in one sentence."""
    by_code = {f["code"]: f for f in findings}
    p, thr = triage["abnormal_probability"], triage["threshold"]
    if triage["priority"] == "critical" and triage.get("critical_findings"):
        parts = [
            f"{by_code[c]['name']} {_pct(by_code[c]['probability'])} >= threshold {_pct(by_code[c]['threshold'])}"
            for c in triage["critical_findings"]
            if c in by_code
        ]
        return "critical finding above its threshold: " + ", ".join(parts)
    if triage["priority"] == "high":
        return f"triage: abnormal probability {_pct(p)} >= threshold {_pct(thr)}"
    return f"triage: abnormal probability {_pct(p)} < threshold {_pct(thr)}, no critical finding"


def impression_text(report: dict[str, Any]) -> str:
    """A plain-text impression a reader can paste into their report: calls above threshold, priority, models."""
    lines = ["AI decision support (cxrassist) - for a qualified reader, not a diagnosis."]
    if report.get("untrained"):
        lines.append("UNTRAINED MODEL: the outputs below are meaningless.")
    if report.get("forced"):
        lines.append("FORCED analysis of an image the input checks refused: unreliable.")
    ranked = sorted(report["findings"], key=lambda f: f["probability"], reverse=True)
    positive = [f for f in ranked if f["positive"]]
    if positive:
        lines.append("Findings above their validated threshold:")
        lines += [f"- {f['name']}: {_pct(f['probability'])} (threshold {_pct(f['threshold'])})" for f in positive]
    else:
        lines.append("No validated finding above its threshold.")
    unvalidated = sum(1 for f in ranked if not f["validated"])
    if unvalidated:  # their probabilities have no measured accuracy: not for a report, but not hidden either
        lines.append(f"{unvalidated} finding(s) without validated accuracy not listed (see the findings table).")
    t = report["triage"]
    lines.append(f"Priority: {t['priority']} ({t.get('reason') or priority_reason(t, report['findings'])}).")
    models = ", ".join(
        f"{m['name']} {m['version']}" + ("" if m["status"] == "trained" else " (UNTRAINED)") for m in report["models"]
    )
    lines.append(f"Models: {models}.")
    lines.append(report["disclaimer"])
    return "\n".join(lines)
