"""Pipeline.analyze on real and synthetic radiographs with tiny random models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrassist.errors import NotChestXRayError, WeightsError
from cxrassist.io import read_xray
from cxrassist.labels import FINDING_CODES
from cxrassist.pipeline import UNTRAINED_WARNING, FindingResult, Pipeline, triage_priority


def _f(code: str, p: float, positive: bool) -> FindingResult:
    return FindingResult(code, code, p, 0.5, positive, True)


def test_triage_priority_rules() -> None:
    crit = triage_priority(0.1, 0.5, [_f("PX", 0.7, True), _f("AT", 0.9, True)])
    high = triage_priority(0.8, 0.5, [_f("PX", 0.4, False)])
    routine = triage_priority(0.3, 0.5, [_f("AT", 0.9, True)])
    assert (crit.priority, high.priority, routine.priority) == ("critical", "high", "routine")
    assert crit.critical_findings == ("PX",) and crit.priority_score == pytest.approx(2.7)
    assert crit.priority_score > high.priority_score > routine.priority_score
    assert triage_priority(0.5, 0.5, []).priority == "high"  # threshold reached counts


def test_analyze_real_rg1(tiny_pipeline: Pipeline, rg1_file: Path) -> None:
    xray = read_xray(rg1_file)
    result = tiny_pipeline.analyze(xray)
    assert [f.code for f in result.findings] == list(FINDING_CODES)
    assert all(0.0 <= f.probability <= 1.0 for f in result.findings)
    assert all(f.positive == (f.validated and f.probability >= f.threshold) for f in result.findings)
    assert not any(f.positive for f in result.findings if not f.validated)
    validated = {f.name for f in result.findings if f.validated}
    assert validated == {"Pleural Effusion", "Cardiomegaly"}  # from the card, not invented
    assert result.lung_mask.shape == xray.shape and result.lung_mask.dtype == bool
    assert result.bone.shape == xray.shape and result.bone_suppressed.shape == xray.shape
    assert np.allclose(result.bone_suppressed, np.clip(xray.pixels - result.bone, 0, 1), atol=1e-6)
    assert result.heatmap("PX").shape == xray.shape and result.heatmap_u8("PX").shape == xray.shape
    assert result.lung_areas.total_px == int(result.lung_mask.sum())
    assert set(result.timings_ms) >= {"check", "lung", "bone", "classifier", "triage", "total"}
    assert not result.forced and not result.untrained
    assert [m["role"] for m in result.models] == ["lung", "bone", "classifier", "triage"]
    assert all(len(m["sha256"]) == 64 for m in result.models)


def test_refuses_tibia_unless_forced(tiny_pipeline: Pipeline, rg3_file: Path) -> None:
    xray = read_xray(rg3_file)
    with pytest.raises(NotChestXRayError, match="EXTREMITY"):
        tiny_pipeline.analyze(xray)
    small = type(xray)(**{**xray.__dict__, "pixels": xray.pixels[::4, ::4].copy()})
    forced = tiny_pipeline.analyze(small, force=True)
    assert forced.forced and any("FORCED" in w and "EXTREMITY" in w for w in forced.warnings)


def test_lateral_view_reaches_its_branch(tiny_pipeline: Pipeline, phantom_png: Path, lateral_png: Path) -> None:
    frontal, lateral = read_xray(phantom_png), read_xray(lateral_png)
    alone = tiny_pipeline.analyze(frontal)
    both = tiny_pipeline.analyze(frontal, lateral)
    assert alone.lateral_cams is None and both.lateral_cams is not None
    assert both.heatmap("PE", "lateral").shape == lateral.shape
    p_alone = np.array([f.probability for f in alone.findings])
    p_both = np.array([f.probability for f in both.findings])
    assert not np.allclose(p_alone, p_both)  # the lateral changed the prediction
    with pytest.raises(ValueError):
        alone.heatmap("PE", "lateral")


def test_load_missing_weights_names_the_model(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="lung model 'lungseg' not found"):
        Pipeline.load(tmp_path)


def test_allow_untrained_is_loud(tmp_path: Path, phantom_png: Path, tiny_kwargs: dict) -> None:
    pipe = Pipeline.load(tmp_path, allow_untrained=True, untrained_kwargs=tiny_kwargs)
    result = pipe.analyze(read_xray(phantom_png))
    assert result.untrained
    assert result.warnings[0].startswith(UNTRAINED_WARNING)
    assert not any(f.validated for f in result.findings)
    assert {m["status"] for m in result.models} == {"untrained"}


def test_frontal_only_classifier_ignores_lateral(tiny_kwargs: dict, phantom_png: Path, lateral_png: Path) -> None:
    from cxrassist.pipeline import ROLES, build_untrained

    models = {role: build_untrained(role, **dict(tiny_kwargs[role])) for role in ROLES}
    models["classifier"] = build_untrained(
        "classifier", architecture="dn121-512-lung-bone", **dict(tiny_kwargs["classifier"])
    )
    pipe = Pipeline(**models)
    assert not pipe.takes_lateral
    result = pipe.analyze(read_xray(phantom_png), read_xray(lateral_png))
    assert result.lateral_cams is None and any("frontal-only" in w for w in result.warnings)
    assert len(result.findings) == 13
