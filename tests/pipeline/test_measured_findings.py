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
    heart[140:175, 80:100] = True
    assert cardiothoracic_ratio(lungs, heart).heart_width_px == 80  # type: ignore[union-attr]


def test_what_hangs_on_the_heart_by_a_neck_is_not_measured() -> None:
    """A mass touching the heart border through a narrow neck, or a speck apart from it, is not heart: the outline
    is opened with a disk of HEART_OPENING of the thorax width (8 px here) and its largest part kept."""
    from cxrassist.postprocess import HEART_OPENING, heart_outline, measure_heart

    lungs, heart = _chest()
    mass = heart.copy()
    mass[120:140, 64:84] = True  # a 20-px mass left of the heart's 100-px border...
    mass[128:131, 84:100] = True  # ...joined to it by a 3-px neck
    m = cardiothoracic_ratio(lungs, mass)  # the neck's root may leave a one-pixel nub: the disk is digital
    assert m is not None and m.heart_width_px in (60, 61) and m.thorax_width_px == 200
    speck = heart.copy()
    speck[40:44, 200:204] = True
    assert cardiothoracic_ratio(lungs, speck) == CardiacMeasure(60 / 200, 60, 200)
    outline = heart_outline(mass, 200)
    assert not outline[120:140, 64:98].any() and outline[120:170, 105:155].all()
    measured, shown = measure_heart(lungs, mass)  # what the report shows is the outline that was measured
    assert measured == m and np.array_equal(shown, outline)
    # a broad attachment is heart: the opening keeps what holds the disk
    broad = heart.copy()
    broad[110:175, 80:100] = True
    assert cardiothoracic_ratio(lungs, broad).heart_width_px == 80  # type: ignore[union-attr]
    assert round(HEART_OPENING * 200) == 8


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
    held = {"Cardiomegaly": {**ENTRY["Cardiomegaly"], "held_out_sets": ["nih_cxr14_sample"]}}
    (h,) = measured_findings({"name": "c", "labels": ["Cardiomegaly"], CARD_KEY: held})
    assert h.held_out_sets == ("nih_cxr14_sample",) and h.to_dict() == held["Cardiomegaly"]
    bad = [
        ({"Cardiomegaly": {**ENTRY["Cardiomegaly"], "measure": "lung_area"}}, "names measure 'lung_area'"),
        ({"Pneumothorax": {**ENTRY["Cardiomegaly"]}}, "names measure"),
        ({"Cardiomegaly": {**ENTRY["Cardiomegaly"], "scale": 0}}, "scale > 0"),
        ({"Cardiomegaly": {**ENTRY["Cardiomegaly"], "center": "wide"}}, "must be numbers"),
        ({"Cardiomegaly": {**ENTRY["Cardiomegaly"], "model": ""}}, "no measuring model"),
        ({"Cardiomegaly": 3}, "must be a mapping"),
        ({"Cardiomegaly": {**ENTRY["Cardiomegaly"], "held_out_sets": "nih_cxr14_sample"}}, "must be a list of set"),
        ({"Cardiomegaly": {**ENTRY["Cardiomegaly"], "held_out_sets": [""]}}, "must be a list of set"),
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
    # the DICOM SR carries the ratio as a number of its own, with how it was measured, for a PACS reader
    import pydicom

    from cxrassist.report.dicom_out import write_dicom

    entries = write_dicom(res, tmp_path / "dicom")
    sr = pydicom.dcmread(tmp_path / "dicom" / entries[0]["path"])
    nums = {i.ConceptNameCodeSequence[0].CodeValue: i for i in sr.ContentSequence if i.ValueType == "NUM"}
    assert float(nums["CTR"].MeasuredValueSequence[0].NumericValue) == pytest.approx(0.62)
    assert "heart 66 px / thorax 106 px" in str(nums["CTR"].ContentSequence[0].TextValue)
    assert "cardiothoracic ratio 0.62" in str(nums["CA"].ContentSequence[0].TextValue)

    # on a film the header calls AP, the method and a warning say the ratio runs high there
    from cxrassist.types import View

    ap = pipe.analyze(dataclasses.replace(xray, view=View.AP), force=True)
    assert "on an AP film" in (ap.findings[CA].method or "") and "on an AP film" not in (f.method or "")
    assert any("ratio 0.62 was measured, on an AP film" in x for x in ap.warnings)
    assert not any("AP film" in x for x in res.warnings)

    monkeypatch.setattr(pipeline_mod, "measure_film", lambda *a, **k: (None, heart_small))
    res = pipe.analyze(xray, force=True)
    assert res.cardiac is None and not res.findings[CA].positive and not res.findings[CA].validated
    assert any("could not be measured" in x for x in res.warnings)
    report = build_report(res, {})
    validate_report(report)
    assert report["heart"] is None
    entries = write_dicom(res, tmp_path / "dicom-unmeasured")
    sr = pydicom.dcmread(tmp_path / "dicom-unmeasured" / entries[0]["path"])
    assert "CTR" not in {i.ConceptNameCodeSequence[0].CodeValue for i in sr.ContentSequence if i.ValueType == "NUM"}


def test_real_film_heart_model_runs_in_the_pipeline(measuring_weights: Path, rg1_file: Path) -> None:
    """The real measuring path (no stand-in) on the real CR: a timing, and a ratio in (0, 1) or an honest None."""
    from cxrassist.io import read_xray
    from cxrassist.pipeline import Pipeline

    res = Pipeline.load(measuring_weights).analyze(read_xray(rg1_file), force=True)
    assert "heart" in res.timings_ms
    assert res.cardiac is None or 0.0 < res.cardiac.ratio < 1.0
    assert (res.findings[CA].method is None) == (res.cardiac is None)


# ---------------------------------------------------------------------------------------------- evaluation
def _nih_like_manifest(root: Path, n_train: int = 24, n_val: int = 12) -> Path:
    """A tiny set named like the NIH sample (so its films are NIH-source): Cardiomegaly on every third film."""
    import csv

    from PIL import Image

    from cxrassist.labels import CHESTXRAY14_LABELS

    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(5)
    rows = []
    for i in range(n_train + n_val):
        name = f"images/f{i}.png"
        Image.fromarray((rng.random((48, 48)) * 255).astype(np.uint8)).save(root / name)
        row = {"id": f"f{i}", "image": name, "patient_id": f"p{i}", "split": "train" if i < n_train else "val"}
        row.update(dict.fromkeys(CHESTXRAY14_LABELS, 0))
        row["Cardiomegaly"] = int(i % 3 == 0)
        row["No Finding"] = int(i % 3 != 0)
        rows.append(row)
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root / "manifest.csv"


def test_measured_finding_is_validated_on_its_held_out_train_films(
    measuring_weights: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A measured finding whose card holds out a set is validated, calibrated and thresholded on that set's train
    films as well (the measurement never learnt from them); its per-source val figures and every other finding stay
    on val; an unmeasured held-out film ranks lowest; a set the measuring model trained on is refused."""
    from cxrassist.errors import ConfigError
    from cxrassist.evaluation import classification
    from cxrassist.evaluation.runner import evaluate
    from cxrassist.weights import ModelCard

    manifest = _nih_like_manifest(tmp_path / "nih_cxr14_sample")
    weights = tmp_path / "w"
    shutil.copytree(measuring_weights, weights)
    card = ModelCard.read(weights / "classifier" / "card.json")
    card.extra[CARD_KEY] = {"Cardiomegaly": {**ENTRY["Cardiomegaly"], "held_out_sets": ["nih_cxr14_sample"]}}
    card.write(weights / "classifier" / "card.json")
    for role, sets in (("heartseg", {"jsrt": 10}), ("lungseg", {"montgomery": 10, "jsrt": 10})):
        model_card = ModelCard.read(weights / role / "card.json")
        model_card.training = {"data": {"train": {"datasets": sets}, "val": {"datasets": sets}}}
        model_card.write(weights / role / "card.json")

    def stand_in(m: MeasuredFinding, heart: object, lung: object, records: list) -> np.ndarray:
        """A ratio that separates the classes, but for a refused film (NaN): a positive among the train ones."""
        y = np.array([r.findings[CA] for r in records])
        out = np.where(y == 1, 0.8, 0.3) + 0.01 * np.arange(len(records)) / len(records)
        if any(r.split == "train" for r in records):
            out[np.flatnonzero(y == 1)[0]] = np.nan  # a train positive whose ratio could not be measured
        return out

    monkeypatch.setattr(classification, "_measure", stand_in)
    run = {
        "weights": str(weights / "classifier"),
        "lung_weights": str(weights / "lungseg"),
        "bone_weights": str(weights / "bone"),
        "cache_dir": tmp_path / "cache",
    }
    res = evaluate("classifier", [str(manifest)], bootstrap=50, **run)
    ca = res["per_label"]["CA"]
    # per-source val figures: the 12 val films; validation and the operating point: val + the 24 train films
    assert ca["by_source"]["nih_cxr14_sample"]["n"] == 12
    assert ca["validation"]["n"] == 36 and ca["validation"]["n_pos"] == 12
    assert "train films of nih_cxr14_sample (held out)" in ca["operating"]["measured_on"]
    assert ca["operating"]["cross_fitted"]["fitting_population"]["n"] == 36
    held = ca["held_out"]["by_source"]["nih_cxr14_sample"]
    # the refused positive ranks below all 24 negatives (kept at the measurement's floor, not dropped or averaged)
    assert held["n"] == 36 and held["auroc"] == pytest.approx(11 / 12)
    assert res["measured_findings"]["Cardiomegaly"]["held_out"] == {"n": 24, "unmeasured": 1}
    assert res["per_label"]["PE"]["validation"]["n"] == 12  # the network's findings: val only
    assert "NIH-src+held-out" in res["_table"]

    # written into the card: the operating point, and the reference model on the same (held-out) films
    teacher = tmp_path / "teacher.csv"
    names = "Atelectasis Cardiomegaly Effusion Infiltration Mass Nodule Pneumonia Pneumothorax Consolidation Edema"
    cols = [f"prob_{n}" for n in (names + " Emphysema Fibrosis Pleural_Thickening Hernia").split()]
    rows = [",".join(["id", *cols])] + [",".join([f"f{i}"] + ["0.5"] * len(cols)) for i in range(36)]
    teacher.write_text("\n".join(rows) + "\n")
    evaluate("classifier", [str(manifest)], bootstrap=50, write_thresholds="operating", teacher=str(teacher), **run)
    op = ModelCard.read(weights / "classifier" / "card.json").operating_points["Cardiomegaly"]
    assert (op["n"], op["n_pos"], op["teacher_n_pos"]) == (36, 12, 12)
    assert op["measured_on"] == ca["operating"]["measured_on"]
    assert ModelCard.read(weights / "classifier" / "card.json").operating_points["Pleural Effusion"]["n"] == 12

    # without the key, the same evaluation judges the measurement on val alone
    card.extra[CARD_KEY] = ENTRY
    card.write(weights / "classifier" / "card.json")
    plain = evaluate("classifier", [str(manifest)], bootstrap=0, **run)
    assert plain["per_label"]["CA"]["validation"]["n"] == 12 and "held_out" not in plain["per_label"]["CA"]

    # a set the heart model trained on is not held out from it; a card that does not say cannot be checked
    card.extra[CARD_KEY] = {"Cardiomegaly": {**ENTRY["Cardiomegaly"], "held_out_sets": ["nih_cxr14_sample"]}}
    card.write(weights / "classifier" / "card.json")
    heart = ModelCard.read(weights / "heartseg" / "card.json")
    heart.training = {"data": {"train": {"datasets": {"nih_cxr14_sample": 24}}}}
    heart.write(weights / "heartseg" / "card.json")
    with pytest.raises(ConfigError, match="trained on it"):
        evaluate("classifier", [str(manifest)], bootstrap=0, **run)
    heart.training = {}
    heart.write(weights / "heartseg" / "card.json")
    with pytest.raises(ConfigError, match="does not record what it was trained on"):
        evaluate("classifier", [str(manifest)], bootstrap=0, **run)
