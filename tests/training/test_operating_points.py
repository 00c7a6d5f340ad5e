"""Operating points chosen on disjoint data, calibration, the one validated rule, the teacher, and the input detail."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrassist.calibration import calibrated, label_calibration, platt
from cxrassist.data.manifest import load_manifest
from cxrassist.data.records import Record
from cxrassist.data.teacher import attach_teacher, read_teacher
from cxrassist.errors import DatasetError
from cxrassist.evaluation.operating import (
    choose_threshold,
    cross_fit,
    ece,
    fold_of,
    is_validated,
    platt_fit,
    threshold_at_specificity,
)
from cxrassist.labels import CHESTXRAY14_LABELS, NUM_FINDINGS, index_of
from cxrassist.preprocess import letterbox


def test_threshold_at_specificity_reaches_the_target_and_no_more() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200), np.ones(50)]
    p = np.r_[rng.uniform(0, 0.7, 200), rng.uniform(0.3, 1, 50)]
    t = threshold_at_specificity(y, p, 0.90)
    spec = float(np.mean(p[y == 0] < t))
    assert spec >= 0.90
    # the next lower negative would break the target: the threshold is the lowest that reaches it
    neg = np.sort(p[y == 0])
    assert np.mean(neg < neg[neg < t].max()) < 0.90
    assert choose_threshold("spec=0.9", y, p) == t
    with pytest.raises(ValueError, match="threshold rule"):
        choose_threshold("spec=1.5", y, p)


def test_cross_fitting_never_judges_a_film_with_a_point_fitted_on_it() -> None:
    """Changing the labels of fold 0 must not change any call of fold 0 (they were fitted on fold 1 only)."""
    rng = np.random.default_rng(1)
    n = 400
    groups = [f"nih:{i}" for i in range(n)]
    folds = np.array([fold_of(g) for g in groups])
    assert 0.35 < folds.mean() < 0.65 and fold_of("nih:7") == fold_of("nih:7")
    y = (rng.uniform(size=n) < 0.2).astype(float)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)
    fit = np.ones(n, bool)
    a = cross_fit(y, p, fit, folds, "spec=0.90")
    y2 = y.copy()
    y2[folds == 0] = 1 - y2[folds == 0]  # fold 0's own labels scrambled
    b = cross_fit(y2, p, fit, folds, "spec=0.90")
    assert np.array_equal(a.calls[folds == 0], b.calls[folds == 0])
    assert not np.array_equal(a.calls[folds == 1], b.calls[folds == 1])
    # films outside the fitting population get the point fitted on all of it
    c = cross_fit(y, p, folds == 0, folds, "spec=0.90")
    outside = folds == 1
    assert np.array_equal(c.calls[outside], platt(p[outside], c.a, c.b) >= c.threshold)


def test_platt_calibration_keeps_the_ranking_and_lowers_ece() -> None:
    rng = np.random.default_rng(2)
    n = 3000
    z = rng.normal(size=n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(2 * z - 1)))).astype(float)
    p = 1 / (1 + np.exp(-z * 0.5 + 1.5))  # badly scaled scores of the same ranking
    a, b = platt_fit(y, p)
    q = platt(p, a, b)
    assert np.array_equal(np.argsort(q), np.argsort(p))
    assert ece(y, q) < 0.5 * ece(y, p)
    assert platt_fit(np.ones(10), p[:10]) == (1.0, 0.0)  # one class: identity, not a crash


def test_one_validated_rule() -> None:
    assert is_validated(10, 0.65)
    assert not is_validated(9, 0.9)  # too few positives
    assert not is_validated(50, 0.64)  # CI reaches below the floor
    assert not is_validated(50, float("nan"))


def test_card_calibration_is_read_and_refused_when_malformed() -> None:
    card = {"calibration": {"Atelectasis": {"a": 2.0, "b": -1.0}}}
    assert label_calibration(card, "Edema") is None
    assert calibrated(card, "Edema", 0.3) == 0.3
    assert calibrated(card, "Atelectasis", 0.5) == pytest.approx(1 / (1 + math.exp(1.0)))
    with pytest.raises(ValueError, match="slope"):
        label_calibration({"calibration": {"X": {"a": -1, "b": 0}}}, "X")
    with pytest.raises(ValueError, match="must be"):
        label_calibration({"calibration": {"X": {"a": "one"}}}, "X")


def _write_teacher(path: Path, rows: dict[str, dict[str, float]]) -> Path:
    cols = list(CHESTXRAY14_LABELS)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", *[f"prob_{c}" for c in cols]])
        for rid, vals in rows.items():
            w.writerow([rid, *[vals.get(c, 0.1) for c in cols]])
    return path


def test_teacher_maps_onto_our_findings(tmp_path: Path) -> None:
    f = _write_teacher(tmp_path / "t.csv", {"a": {"Mass": 0.2, "Nodule": 0.7, "Effusion": 0.9, "Infiltration": 0.8}})
    vec = read_teacher(f)["a"]
    assert vec[index_of("LL")] == pytest.approx(0.7)  # max(Mass, Nodule)
    assert vec[index_of("PE")] == pytest.approx(0.9)  # Effusion -> Pleural Effusion
    assert math.isnan(vec[index_of("AO")])  # Infiltration is not distilled into the broader Lung Opacity
    recs = [Record(id="a", image=Path("a.png"), dataset="nih"), Record(id="b", image=Path("b.png"), dataset="nih")]
    out = attach_teacher(recs, {"nih": str(f)})
    assert out[0].extra["teacher"] == vec and "teacher" not in out[1].extra
    with pytest.raises(DatasetError, match="not among the records"):
        attach_teacher(recs, {"nihh": str(f)})
    (tmp_path / "bad.csv").write_text("id,prob_Mass\na,0.3\n")
    with pytest.raises(DatasetError, match="lacks columns"):
        read_teacher(tmp_path / "bad.csv")


def test_distillation_mixes_label_and_teacher_in_the_loss() -> None:
    from cxrassist.training.config import load_config
    from cxrassist.training.tasks import ClassifierTask

    cfg = load_config(
        None, ["task=classifier", "data.manifests=[x.csv]", "loss.distill_weight=0.5", "data.teacher={nih: t.csv}"]
    )
    task = ClassifierTask(cfg)
    logits = torch.zeros(1, NUM_FINDINGS)
    labels = torch.full((1, NUM_FINDINGS), float("nan"))
    labels[0, 0] = 1.0
    teacher = torch.full((1, NUM_FINDINGS), float("nan"))
    teacher[0, 0], teacher[0, 1] = 0.2, 0.9  # finding 1: label unknown, teacher known -> teacher alone

    class M(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return logits + 0 * x.sum()

    batch = {"image": torch.zeros(1, 1, 4, 4), "labels": labels, "teacher": teacher}
    loss, _ = task.loss("main", batch, {"model": M()}, {})
    s = cfg.loss.label_smoothing
    t0 = (0.5 * 1.0 + 0.5 * 0.2) * (1 - s) + s / 2
    t1 = 0.9 * (1 - s) + s / 2
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    want = (bce(torch.tensor(0.0), torch.tensor(t0)) + bce(torch.tensor(0.0), torch.tensor(t1))) / 2
    assert float(loss) == pytest.approx(float(want), rel=1e-5)


def test_effective_size_makes_224_and_512_copies_alike() -> None:
    """A film stored at 512 and the same film stored at 224 differ in detail; through detail=224 they match."""
    rng = np.random.default_rng(3)
    big = np.clip(0.5 + 0.2 * rng.standard_normal((512, 512)), 0, 1).astype(np.float32)  # fine texture
    from cxrassist.preprocess import resize

    small = resize(big, (224, 224))
    plain_big, rec = letterbox(big, 256)
    plain_small, _ = letterbox(small, 256)
    d_big, rec_d = letterbox(big, 256, detail=224)
    d_small, _ = letterbox(small, 256, detail=224)
    assert rec_d == rec  # the record is still the original's: maps go back onto its pixels
    assert np.abs(d_big - d_small).mean() < 0.25 * np.abs(plain_big - plain_small).mean()
    assert np.array_equal(letterbox(small, 256, detail=512)[0], plain_small)  # no upsampling "detail"


def test_effective_size_in_the_card_is_validated() -> None:
    from cxrassist.channels import card_effective_size

    assert card_effective_size({"input": {"size": 256}}) is None
    assert card_effective_size({"input": {"effective_size": 224}}) == 224
    with pytest.raises(ValueError, match="effective_size"):
        card_effective_size({"name": "x", "input": {"effective_size": "224"}})


def test_shared_patients_take_the_split_of_the_authority_set(tmp_path: Path) -> None:
    """jsrt and bse_jsrt are the same JSRT cases: bse_jsrt's split decides, so no patient straddles train/val."""
    for name, rows in (
        ("bse_jsrt", [("JPC1", "train"), ("JPC2", "val")]),
        ("jsrt", [("JPC1", "val"), ("JPC2", "train"), ("JPC3", "val")]),
    ):
        d = tmp_path / name
        (d / "images").mkdir(parents=True)
        with (d / "manifest.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "image", "label", "split"])
            for rid, split in rows:
                (d / "images" / f"{rid}.png").write_bytes(b"")
                w.writerow([rid, f"images/{rid}.png", "normal", split])
    recs = {r.id: r.split for r in load_manifest(tmp_path / "jsrt" / "manifest.csv", check_files=False)}
    assert recs == {"JPC1": "train", "JPC2": "val", "JPC3": "val"}
