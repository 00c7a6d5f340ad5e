"""The weights we ship: five trained models whose cards tell the truth, and whose numbers `cxr evaluate` reproduces."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cxrassist.labels import FINDINGS
from cxrassist.weights import list_shipped, load_model, shipped_dir

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
ROLE_DIRS = ("lungseg", "heartseg", "bone", "triage", "classifier")
# skipped on a machine without ../shared/data; in CI (CI=true) they run, and fail if it is missing
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir() and os.environ.get("CI", "").lower() != "true", reason="../shared/data is not present"
)


def _cards() -> dict[str, object]:
    base = shipped_dir()
    return {d: load_model(base / d)[1] for d in ROLE_DIRS}


def test_five_trained_models_with_honest_cards() -> None:
    cards = _cards()  # load_model verifies every sha256
    assert len(list_shipped()) == 5
    for role, card in cards.items():
        assert card.status == "trained", role
        assert card.metrics, f"{role}: no measured figures"
        assert "not a diagnosis" in card.intended_use
        assert card.training.get("command", "").startswith("cxr train"), role
        assert (REPO / card.training["config_file"]).is_file(), f"{role}: the config that reproduces it is missing"
        # a staged recipe (triage 1.2.0 -> 1.3.0, findings 1.3.0 -> 1.4.0) names every stage's config, all kept
        stages = re.findall(r"--config (\S+)", card.training["command"])
        assert card.training["config_file"] in stages and all((REPO / c).is_file() for c in stages), (role, stages)
        assert "Limits:" in card.notes
        # how the checkpoint was chosen (val-best or not) leads the limits, so val figures are read for what they are
        assert card.training.get("checkpoint", "").startswith("Checkpoint:"), role
        assert card.notes.startswith(card.training["checkpoint"]), role
        assert card.storage_dtype == "float16"
    total_mb = sum(p.stat().st_size for p in (shipped_dir()).rglob("*.safetensors")) / 2**20
    assert total_mb <= 40, f"shipped weights are {total_mb:.1f} MB"


def test_bone_card_beats_the_generator_it_replaced() -> None:
    """Bone 2.1.0 was shipped because it beats 2.0.0 on bse_jsrt val (2.0.0: soft-tissue PSNR +4.80 dB over
    identity, suppression ratio 0.658, bone SSIM 0.947; 1.0.0: +3.81, 0.577, 0.935) and reaches issue 13's
    targets there (+5 dB, 0.70, 0.95); its card carries the intervals of those figures and says val chose it."""
    card = _cards()["bone"]
    v = card.metrics["val"]
    assert card.version >= "2.1" and v["n_cases"] == 17
    assert v["psnr"] - v["identity_psnr"] == pytest.approx(v["psnr_gain"], abs=1e-9)
    assert v["psnr_gain"] > 4.80 and v["bone_suppression_ratio"] > 0.658 and v["bone_ssim"] > 0.947
    assert v["psnr_gain"] >= 5.0 and v["bone_suppression_ratio"] >= 0.70 and v["bone_ssim"] >= 0.95
    assert "chosen among 3 tries" in card.notes
    for key in ("psnr_gain", "bone_suppression_ratio", "bone_ssim"):
        low, high = v["ci95"][key]
        assert low < v[key] < high, key
    assert "95% CI" in card.metrics["summary"] and "spine" in card.notes


def test_classifier_card_marks_findings_without_data_as_not_validated() -> None:
    card = _cards()["classifier"]
    assert set(card.labels) == {f.name for f in FINDINGS}
    for name in ("Enlarged Cardiomediastinum", "Fracture", "Support Devices"):
        assert card.validated[name] is False, name
    assert all(0.0 < float(card.thresholds[name]) < 1.0 for name in card.labels if card.validated[name])


def test_validated_follows_the_one_rule_and_travels_with_its_figures() -> None:
    """Each card's validated flags are exactly the documented rule applied to its own NIH-source figures."""
    from cxrassist.evaluation.operating import is_validated
    from cxrassist.measured import measured_findings

    for role in ("classifier", "triage"):
        card = _cards()[role]
        held = {m.label: m.held_out_sets for m in measured_findings(card)} if role == "classifier" else {}
        for name in card.labels:
            op = card.operating_points[name]
            assert card.validated[name] == is_validated(op["n_pos"], op["auroc_ci95"][0]), (role, name)
            # Support Devices has no label in any val set: it says so instead of borrowing another population;
            # a measured finding with held-out sets names their train films too
            want = "NIH-source val films" if op["n"] else "no labelled evaluation films"
            if held.get(name):
                want += f" and the train films of {', '.join(sorted(held[name]))} (held out)"
            assert op["measured_on"] == want, (role, name)
            if card.validated[name]:
                assert name in card.calibration and op["sensitivity"] is not None and op["specificity"] is not None


def _evaluate(task: str, manifests: list[str], weights: str, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / f"{task}.json"
    cmd = [
        sys.executable,
        "-m",
        "cxrassist.cli",
        "evaluate",
        task,
        "--weights",
        weights,
        "--json",
        str(out),
        "--split",
        "val",
        "--threads",
        "2",
        *extra,
    ]
    for m in manifests:
        cmd += ["--manifest", str(SHARED / m / "manifest.csv")]
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True, timeout=900)
    return json.loads(out.read_text())


@needs_shared
@pytest.mark.shared_data
def test_evaluate_reproduces_lung_and_bone_cards(tmp_path: Path) -> None:
    cards = _cards()
    base = shipped_dir()
    seg = _evaluate("segmentation", ["montgomery"], str(base / "lungseg"), tmp_path, "--postprocess")
    assert seg["dice"] == pytest.approx(cards["lungseg"].metrics["val"]["montgomery"]["dice"], abs=1e-6)
    # the heart model is scored against JSRT's heart outlines (the manifest's heart_mask column), not the lungs'
    heart = _evaluate("segmentation", ["jsrt"], str(base / "heartseg"), tmp_path, "--postprocess")
    assert heart["dice"] == pytest.approx(cards["heartseg"].metrics["val"]["jsrt"]["dice"], abs=1e-6)
    assert heart["dice"] > 0.9 and heart["n_cases"] == cards["heartseg"].metrics["val"]["jsrt"]["n_cases"]
    bone = _evaluate("bone", ["bse_jsrt"], str(base / "bone"), tmp_path)
    want = cards["bone"].metrics["val"]
    for key in ("psnr", "ssim", "bone_psnr", "bone_ssim", "bone_suppression_ratio", "psnr_gain", "n_cases"):
        assert bone[key] == pytest.approx(want[key], abs=1e-6), key
    assert set(want["ci95"]) == {"psnr_gain", "bone_suppression_ratio", "bone_ssim"}
    for key, interval in want["ci95"].items():
        assert bone["ci95"][key] == pytest.approx(interval, abs=1e-6), key


@needs_shared
@pytest.mark.shared_data
def test_evaluate_reproduces_triage_card(tmp_path: Path) -> None:
    card = _cards()["triage"]
    want = card.metrics["val"]["per_label"]["abnormal"]
    manifests = ["nih_cxr14_sample", "rsna_normal", "rsna_lung_opacity", "shenzhen"]
    res = _evaluate("triage", manifests, str(shipped_dir() / "triage"), tmp_path, "--bootstrap", "0")
    got = res["per_label"]["abnormal"]
    assert got["validation"]["auroc"] == pytest.approx(want["validation"]["auroc"], abs=1e-6)
    assert got["by_source"]["shenzhen"]["auroc"] == pytest.approx(want["by_source"]["shenzhen"]["auroc"], abs=1e-6)
    assert res["tta_zooms"] == card.input["tta_zooms"]  # the card's figure is the zoom average analyze uses
    # the shipped operating point is the one fitted on all NIH-source val films
    assert got["operating"]["threshold"] == pytest.approx(card.thresholds[card.labels[0]], abs=1e-6)


@pytest.fixture(scope="module")
def shipped_rg1_result() -> object:
    from pydicom.data import get_testdata_file

    from cxrassist.io import read_xray
    from cxrassist.pipeline import Pipeline

    return Pipeline.load().analyze(read_xray(get_testdata_file("RG1_UNCI.dcm")))


def test_shipped_pipeline_on_the_real_chest_film(shipped_rg1_result: object) -> None:
    """The trained models do something sensible on a real CR they never saw (not only on their own data sets)."""
    import numpy as np

    res = shipped_rg1_result
    assert not res.untrained and not any("UNTRAINED" in w for w in res.warnings)
    assert len(res.findings) == 13 and all(0.0 <= f.probability <= 1.0 for f in res.findings)
    h, w = res.frontal.shape
    lung_fraction = res.lung_mask.mean()
    assert 0.10 < lung_fraction < 0.55, f"lung mask covers {lung_fraction:.0%} of the film"
    assert res.lung_areas.right_px > 0.3 * res.lung_areas.left_px > 0, "both lungs should be found"
    # Lungs sit in the upper two thirds, either side of the midline.
    rows, cols = np.nonzero(res.lung_mask)
    assert rows.mean() < 0.65 * h and abs(cols.mean() - w / 2) < 0.15 * w
    # The heart is measured: a plausible cardiothoracic ratio, Cardiomegaly scored from it, its map between the lungs.
    assert res.cardiac is not None and 0.35 < res.cardiac.ratio < 0.65, res.cardiac
    ca = next(f for f in res.findings if f.code == "CA")
    assert ca.method and f"{res.cardiac.ratio:.2f}" in ca.method
    heat = res.heatmap_u8("CA")
    hr, hc = np.unravel_index(int(np.argmax(heat)), heat.shape)
    assert abs(hc - w / 2) < 0.15 * w and hr > rows.mean(), "the heart lies between the lungs, low in the chest"
    # The bone image is faint and positive, and suppressing it changes the film only a little.
    assert 0.0 < float(res.bone.mean()) < 0.1
    assert float(np.abs(res.frontal.pixels - res.bone_suppressed).mean()) < 0.1


@needs_shared
@pytest.mark.shared_data
def test_evaluate_reproduces_classifier_card_on_nih_source(tmp_path: Path) -> None:
    """Every NIH-source figure of the findings card, and so every operating point and validated flag, comes back
    from `cxr evaluate` on the three NIH-source val manifests (the population they were fitted on)."""
    card = _cards()["classifier"]
    want = card.metrics["val"]
    res = _evaluate(
        "classifier",
        ["nih_cxr14_sample", "rsna_normal", "rsna_lung_opacity"],
        str(shipped_dir() / "classifier"),
        tmp_path,
        "--bootstrap",
        "1000",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--teacher",
        str(SHARED / "nih_cxr14_sample" / "teacher_chexnet_preds.csv"),
    )
    for code, e in want["per_label"].items():
        w = e["by_source"].get("nih_cxr14_sample")
        if w is None:
            continue
        g = res["per_label"][code]["by_source"]["nih_cxr14_sample"]
        assert (g["auroc"] == pytest.approx(w["auroc"], abs=1e-6)) if w["auroc"] is not None else g["auroc"] is None
    # a measured finding validated on its held-out train films too (all 528 NIH sample films): the same figure
    assert "held_out" in want["per_label"]["CA"], "Cardiomegaly is judged on all 528 NIH sample films"
    for code, e in want["per_label"].items():
        if "held_out" in e:
            w, g = e["held_out"]["by_source"]["nih_cxr14_sample"], res["per_label"][code]["held_out"]["by_source"]
            assert (g["nih_cxr14_sample"]["auroc"], g["nih_cxr14_sample"]["n"]) == (pytest.approx(w["auroc"]), w["n"])
    assert res["reference"]["model_mean_auroc"] == pytest.approx(want["reference"]["model_mean_auroc"], abs=1e-6)
    assert res["reference"]["teacher_mean_auroc"] == pytest.approx(want["reference"]["teacher_mean_auroc"], abs=1e-6)
    # the validation figures, the validated rule and the shipped operating points (threshold, calibration)
    for code, e in want["per_label"].items():
        name, got = _finding_name(code), res["per_label"][code]
        w, g = e["validation"], got["validation"]
        assert (g["n"], g["n_pos"]) == (w["n"], w["n_pos"]), code
        if w["auroc"] is None:
            continue
        assert g["auroc"] == pytest.approx(w["auroc"], abs=1e-6), code
        assert g["ci95"] == pytest.approx(w["ci95"], abs=1e-3), code
        assert got["validated"] == card.validated[name], code
        assert got["operating"]["threshold"] == pytest.approx(card.thresholds[name], abs=1e-6), code
        assert got["operating"]["calibration"] == pytest.approx(card.calibration[name], abs=1e-4), code


def _finding_name(code: str) -> str:
    from cxrassist.labels import finding

    return finding(code).name
