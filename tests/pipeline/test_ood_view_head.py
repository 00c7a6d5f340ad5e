"""The gate's view head (issue 15): a logistic regression on the gate's features that refuses laterals, rotated,
upside-down, cropped and inverted films; it is saved with the gate, read back exactly, refused when malformed, and
its verdict (score, threshold, reason) reaches report.json's ``ood``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cxrassist import ood
from cxrassist.errors import WeightsError

DIM = 16


def _fitted(tmp_path: Path) -> tuple[ood.OodGate, np.ndarray, np.ndarray, dict]:
    rng = np.random.default_rng(0)
    upright = rng.normal(0, 1, (400, DIM))
    turned = rng.normal(0, 1, (200, DIM))
    turned[:, 3] += 5.0  # the direction the view head must find; the distance barely sees it
    mean, precision, _ = ood.fit_statistics(upright)
    layer = ood.LayerStats("norm5", "mean", mean, precision)
    layer.scale = float(np.median(layer.distances(upright)))
    head = ood.fit_view_head(upright, turned)
    head.threshold = ood.threshold_for(head.probability([upright]), 0.99)
    triage = {"name": "t", "version": "0", "sha256": "a" * 64}
    card = {
        "name": "g",
        "version": "1.1.0",
        "threshold": 3.0,
        "effective_size": 224,
        "input_size": 64,
        "transform": "none",
        "triage": triage,
    }
    ood.save_gate(tmp_path / ood.GATE_DIR, [layer], card, head)
    return ood.load_gate(tmp_path, triage), upright, turned, triage


def test_view_head_is_saved_loaded_and_separates(tmp_path: Path):
    gate, _, _, _ = _fitted(tmp_path)
    assert gate.view is not None and gate.view.layer == 0
    fresh = np.random.default_rng(1).normal(0, 1, (200, DIM))
    bad = fresh.copy()
    bad[:, 3] += 5.0
    ok = gate.verdicts([fresh])
    refused = gate.verdicts([bad])
    assert np.mean([v.passed for v in ok]) >= 0.95
    assert np.mean([not v.passed for v in refused]) >= 0.9
    # the distance alone lets the turned films through: the refusals are the view head's
    turned_refused = [v for v in refused if not v.passed]
    assert np.mean([v.distance_passed for v in turned_refused]) > 0.5
    v = turned_refused[0]
    assert "view check" in v.reason and "\n" not in v.reason
    out = v.to_dict(gate.card)
    assert out["view"]["passed"] is False and out["view"]["score"] > out["view"]["threshold"]
    assert gate.card["view"]["layer"] == "norm5" and gate.card["version"] == "1.1.0"


def test_gate_without_a_view_head_still_loads(tmp_path: Path):
    """1.0 gates (distance only) keep working: no 'view' in report.json."""
    rng = np.random.default_rng(2)
    feats = rng.normal(0, 1, (100, DIM))
    mean, precision, _ = ood.fit_statistics(feats)
    triage = {"sha256": "b" * 64}
    ood.save_gate(
        tmp_path / ood.GATE_DIR,
        [ood.LayerStats("norm5", "mean", mean, precision)],
        {"threshold": 5.0, "effective_size": 224, "input_size": 64, "transform": "none", "triage": triage},
    )
    gate = ood.load_gate(tmp_path, triage)
    assert gate.view is None
    verdict = gate.verdicts([feats[:1]])[0]
    assert verdict.view_score is None and "view" not in verdict.to_dict(gate.card)


def test_malformed_view_head_is_refused_in_one_line(tmp_path: Path):
    _, _, _, triage = _fitted(tmp_path)
    card_path = tmp_path / ood.GATE_DIR / ood.GATE_CARD
    card = json.loads(card_path.read_text())
    card["view"]["layer"] = "denseblock9"
    card_path.write_text(json.dumps(card))
    with pytest.raises(WeightsError) as err:
        ood.load_gate(tmp_path, triage)
    assert "view head is malformed" in str(err.value) and "\n" not in str(err.value)
