"""Cardiomegaly from the cardiothoracic ratio: the geometry, the card entry that asks for it, and the pipeline and
report that carry it (the heart outline as the finding's map, the ratio and how it was measured)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxrassist.errors import WeightsError
from cxrassist.labels import FINDINGS
from cxrassist.measured import CARD_KEY, MeasuredFinding, measured_findings
from cxrassist.postprocess import CardiacMeasure, cardiothoracic_ratio
from cxrassist.preprocess import SpatialRecord

CODES = [f.code for f in FINDINGS]
CA = CODES.index("CA")
ENTRY = {"Cardiomegaly": {"measure": "cardiothoracic_ratio", "model": "heartseg", "center": 0.5, "scale": 0.05}}


def _chest(h: int = 200, w: int = 240, heart: tuple[int, int] = (100, 160)) -> tuple[np.ndarray, np.ndarray]:
    """Two rectangular lungs (outer edges at columns 20 and 219: thorax 200 px) and a heart spanning ``heart``."""
    lungs = np.zeros((h, w), bool)
    lungs[30:170, 20:100] = True
    lungs[30:170, 140:220] = True
    lungs[150:170, 20:25] = False  # a row narrower than the widest one does not set the thorax
    heart_mask = np.zeros((h, w), bool)
    heart_mask[110:175, heart[0] : heart[1]] = True
    return lungs, heart_mask


# ---------------------------------------------------------------------------------------------- the geometry
def test_ratio_is_heart_extent_over_widest_lung_row() -> None:
    lungs, heart = _chest()
    m = cardiothoracic_ratio(lungs, heart)
    assert m == CardiacMeasure(60 / 200, 60, 200)
    wide = cardiothoracic_ratio(*_chest(heart=(60, 180)))
    assert wide is not None and wide.ratio == pytest.approx(0.6)
    # the heart's width is its whole horizontal extent, even when its widest parts sit on different rows
    lungs, heart = _chest()
    heart[170:175, 90:100] = True
    assert cardiothoracic_ratio(lungs, heart).heart_width_px == 70  # type: ignore[union-attr]


def test_ratio_is_refused_when_it_cannot_be_measured() -> None:
    lungs, heart = _chest()
    assert cardiothoracic_ratio(lungs, np.zeros_like(heart)) is None  # no heart outline
    one = lungs.copy()
    one[:, 120:] = False
    assert cardiothoracic_ratio(one, heart) is None  # one lung: the thorax would look narrow
    speck = one.copy()
    speck[100:103, 200:203] = True  # a speck is not a second lung
    assert cardiothoracic_ratio(speck, heart) is None
    full = np.ones_like(heart)
    assert cardiothoracic_ratio(lungs, full) is None  # a heart as wide as the thorax is not a heart outline
    sliver = np.zeros_like(heart)
    sliver[110:175, 115:170] = True  # 55 px of a 200-px thorax: 0.275, narrower than any adult heart
    assert cardiothoracic_ratio(lungs, sliver) is None
    sliver[110:175, 110:170] = True  # 60 px: 0.30, kept
    assert cardiothoracic_ratio(lungs, sliver) is not None
    with pytest.raises(ValueError, match="differ in shape"):
        cardiothoracic_ratio(lungs, heart[:, :100])


# ---------------------------------------------------------------------------------------------- the card entry
def test_card_entry_is_read_and_checked() -> None:
    card = {"name": "c", "labels": [f.name for f in FINDINGS], CARD_KEY: ENTRY}
    (m,) = measured_findings(card)
    assert m == MeasuredFinding("Cardiomegaly", "cardiothoracic_ratio", "heartseg", 0.5, 0.05)
    assert m.probability(0.5) == pytest.approx(0.5)
    assert m.probability(0.6) > 0.85 > 0.15 > m.probability(0.4)
    assert m.probability(5.0) == pytest.approx(1.0) and m.probability(-5.0) == pytest.approx(0.0)
    assert measured_findings({"name": "c", "labels": ["Cardiomegaly"]}) == ()  # a hospital's own card: none
    bad = [
        ({"Cardiomegaly": {**ENTRY["Cardiomegaly"], "measure": "lung_area"}}, "names measure 'lung_area'"),
        ({"Pneumothorax": {**ENTRY["Cardiomegaly"]}}, "names measure"),
        ({"Cardiomegaly": {**ENTRY["Cardiomegaly"], "scale": 0}}, "scale > 0"),
        ({"Cardiomegaly": {**ENTRY["Cardiomegaly"], "center": "wide"}}, "must be numbers"),
        ({"Cardiomegaly": {**ENTRY["Cardiomegaly"], "model": ""}}, "no measuring model"),
        ({"Cardiomegaly": 3}, "must be a mapping"),
        (["Cardiomegaly"], "must map finding names"),
    ]
    for entry, message in bad:
        with pytest.raises(WeightsError, match=message):
            measured_findings({"name": "c", "labels": [f.name for f in FINDINGS], CARD_KEY: entry})
    with pytest.raises(WeightsError, match="not one of its labels"):
        measured_findings({"name": "c", "labels": ["Edema"], CARD_KEY: ENTRY})


# ---------------------------------------------------------------------------------------------- the pipeline
@pytest.fixture(scope="module")
def measuring_weights(tiny_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny weights folder with a classifier card that scores Cardiomegaly from the ratio, and a heart model."""
    import torch

    from cxrassist.pipeline import build_untrained
    from cxrassist.weights import ModelCard, save_weights

    root = tmp_path_factory.mktemp("measuring-weights")
    shutil.copytree(tiny_weights_dir, root, dirs_exist_ok=True)
    card_path = root / "classifier" / "card.json"
    card = ModelCard.read(card_path)
    card.extra[CARD_KEY] = ENTRY
    card.write(card_path)
    torch.manual_seed(1)
    model, heart = build_untrained("lung", width=1 / 16, size=64)
    heart = dataclasses.replace(heart, name="tiny-heart", version="0.0.1-test", status="trained", labels=["Heart"])
    heart.thresholds, heart.validated = {"Heart": 0.5}, {"Heart": True}
    save_weights(model, root / "heartseg", heart)
    return root


def test_pipeline_needs_the_heart_model_the_card_names(measuring_weights: Path, tmp_path: Path) -> None:
    from cxrassist.pipeline import Pipeline

    bare = tmp_path / "w"
    shutil.copytree(measuring_weights, bare)
    shutil.rmtree(bare / "heartseg")
    with pytest.raises(WeightsError, match="needs the heart model 'heartseg'"):
        Pipeline.load(bare)
    pipe = Pipeline.load(measuring_weights)
    with pytest.raises(WeightsError, match="was not given"):
        Pipeline(**{role: pipe.models[role] for role in pipe.models})
    assert any(m["role"] == "heart" and m["name"] == "tiny-heart" for m in pipe.settings.summaries)


def test_cardiomegaly_is_scored_from_the_measured_ratio(
    measuring_weights: Path, phantom_png: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With a ratio: the finding's probability is the card's transform of it (calibrated like any other), its method
    says so, and its map is the heart outline; the report carries the ratio. Without one: the classifier's score,
    never called positive, and a warning."""
    from cxrassist import pipeline as pipeline_mod
    from cxrassist.io import read_xray
    from cxrassist.pipeline import Pipeline, finding_results
    from cxrassist.report.json_report import build_report
    from cxrassist.report.schema import validate_report

    xray = read_xray(phantom_png)
    h, w = xray.shape
    heart = np.zeros((h, w), bool)
    heart[int(0.55 * h) : int(0.8 * h), int(0.4 * w) : int(0.62 * w)] = True
    heart_small = SpatialRecord.for_shape(h, w, 64).mask_to_model(heart)  # the heart model's letterbox square
    measure = CardiacMeasure(0.62, 66, 106)
    monkeypatch.setattr(pipeline_mod, "measure_film", lambda *a, **k: (measure, heart_small))
    pipe = Pipeline.load(measuring_weights)
    res = pipe.analyze(xray, force=True)
    f = res.findings[CA]
    raw = np.zeros(len(FINDINGS))
    raw[CA] = MeasuredFinding("Cardiomegaly", "cardiothoracic_ratio", "heartseg", 0.5, 0.05).probability(0.62)
    want = finding_results(raw, pipe.settings.finding_labels, trained=True)[CA]
    assert f.probability == pytest.approx(want.probability) and f.positive == want.positive
    assert f.method and "cardiothoracic ratio 0.62" in f.method and "tiny-heart" in f.method
    assert res.cardiac == measure
    heat = res.heatmap_u8("CA").astype(float)
    assert heat[heart].mean() > 2 * heat[~heart].mean(), "the Cardiomegaly map is the heart outline"
    assert float(heat.max()) >= 250.0  # scaled to [0, 1] like every map
    others = [g for i, g in enumerate(res.findings) if i != CA]
    assert all(g.method is None for g in others)

    report = build_report(res, {})
    validate_report(report)
    assert report["heart"]["ratio"] == 0.62 and "thorax width" in report["heart"]["method"]
    assert report["findings"][CA]["method"] == f.method

    monkeypatch.setattr(pipeline_mod, "measure_film", lambda *a, **k: (None, heart_small))
    res = pipe.analyze(xray, force=True)
    assert res.cardiac is None and not res.findings[CA].positive and not res.findings[CA].validated
    assert any("could not be measured" in x for x in res.warnings)
    report = build_report(res, {})
    validate_report(report)
    assert report["heart"] is None


def test_real_film_heart_model_runs_in_the_pipeline(measuring_weights: Path, rg1_file: Path) -> None:
    """The real measuring path (no stand-in) on the real CR: a timing, and a ratio in (0, 1) or an honest None."""
    from cxrassist.io import read_xray
    from cxrassist.pipeline import Pipeline

    res = Pipeline.load(measuring_weights).analyze(read_xray(rg1_file), force=True)
    assert "heart" in res.timings_ms
    assert res.cardiac is None or 0.0 < res.cardiac.ratio < 1.0
    assert (res.findings[CA].method is None) == (res.cardiac is None)
