"""The words of the report (issue 16): why a finding is not validated, why a study got its priority, the impression."""

from __future__ import annotations

from typing import Any

from cxrassist.report.impression import impression_text, not_validated_reason, priority_reason


def _measured(**kw: Any) -> dict[str, Any]:
    base = {
        "auroc": 0.8,
        "auroc_ci95": [0.7, 0.9],
        "sensitivity": 0.6,
        "specificity": 0.9,
        "n_pos": 20,
        "n": 1000,
        "measured_on": "NIH-source val films",
    }
    return base | kw


def test_not_validated_reasons_name_the_failing_figure() -> None:
    assert not_validated_reason(_measured(), True) is None
    assert "only 5 positive films" in not_validated_reason(_measured(n_pos=5), False)
    assert "CI lower bound 0.60 < 0.65" in not_validated_reason(_measured(auroc_ci95=[0.6, 0.9]), False)
    assert "no positive film" in not_validated_reason(_measured(n_pos=0, auroc=None), False)
    assert "never measured" in not_validated_reason(None, False)
    assert "untrained" in not_validated_reason(_measured(), False, untrained=True)


def _report(priority: str, p: float, critical: list[str], findings: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "untrained": False,
        "forced": False,
        "disclaimer": "Decision support, not a diagnosis.",
        "triage": {"priority": priority, "abnormal_probability": p, "threshold": 0.3, "critical_findings": critical},
        "findings": findings,
        "models": [{"name": "m", "version": "1.0", "status": "trained"}],
    }


def _f(code: str, name: str, p: float, thr: float, positive: bool, validated: bool = True) -> dict[str, Any]:
    return {
        "code": code,
        "name": name,
        "probability": p,
        "threshold": thr,
        "positive": positive,
        "validated": validated,
        "measured": _measured(),
    }


def test_priority_reason_and_impression() -> None:
    findings = [
        _f("PX", "Pneumothorax", 0.41, 0.2, True),
        _f("AT", "Atelectasis", 0.9, 0.1, False, False),
        _f("AO", "Lung Opacity", 0.05, 0.1, False),
    ]
    r = _report("critical", 0.7, ["PX"], findings)
    assert (
        priority_reason(r["triage"], findings)
        == "critical finding above its threshold: Pneumothorax 41.0 % >= threshold 20.0 %"
    )
    text = impression_text(r)
    assert "- Pneumothorax: 41.0 % (threshold 20.0 %)" in text
    assert "Atelectasis" not in text and "1 finding(s) without validated accuracy not listed" in text
    assert "Priority: critical" in text and "m 1.0" in text and text.endswith("Decision support, not a diagnosis.")
    r = _report("routine", 0.1, [], [_f("AO", "Lung Opacity", 0.05, 0.1, False)])
    assert (
        priority_reason(r["triage"], r["findings"])
        == "triage: abnormal probability 10.0 % < threshold 30.0 %, no critical finding"
    )
    assert "No validated finding above its threshold." in impression_text(r)
