"""Model cards are read in one place (weights.settings), once per pipeline, with no silent default; the pipeline's
stages are small functions that run on their own."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cxrassist.errors import CardError, NotChestXRayError, WeightsError
from cxrassist.labels import FINDINGS
from cxrassist.types import XRay
from cxrassist.weights import ModelCard, shipped_dir
from cxrassist.weights.settings import INPUT_CHANNELS, LabelSettings, card_settings


def _card(**over: Any) -> dict[str, Any]:
    card = {
        "name": "t",
        "labels": ["Abnormal"],
        "thresholds": {"Abnormal": 0.3},
        "status": "trained",
        "input": {"size": 256, "channels": ["radiograph"]},
    }
    return {**card, **over}


def test_one_name_per_input_channel() -> None:
    from cxrassist.channels import BONE, CHANNEL_ORDER, LUNG, RADIOGRAPH
    from cxrassist.models.registry import CHANNEL_NAMES, channel_names

    assert INPUT_CHANNELS == ("radiograph", "lung_segmented", "bone_subtracted")
    assert tuple(CHANNEL_NAMES) == INPUT_CHANNELS == CHANNEL_ORDER == (RADIOGRAPH, LUNG, BONE)
    assert channel_names(3) == list(INPUT_CHANNELS)  # what ModelCard.new writes for a 3-channel classifier
    for d in shipped_dir().iterdir():
        if (d / "card.json").is_file():
            inp = json.loads((d / "card.json").read_text())["input"]
            assert set(inp["channels"]) <= set(INPUT_CHANNELS), d.name
    for other in ("lung", "bone", "image", 3):  # the old aliases and channel counts are refused, with the names
        with pytest.raises(CardError, match=r"radiograph, lung_segmented, bone_subtracted|list of channel names"):
            card_settings(_card(input={"size": 256, "channels": [other] if other != 3 else other}))


def test_a_label_without_a_threshold_is_refused_not_defaulted() -> None:
    with pytest.raises(CardError, match=r"no threshold for output 'Abnormal'"):
        card_settings(_card(thresholds={}))
    with pytest.raises(CardError, match=r"input\.size"):
        card_settings(_card(input={"channels": ["radiograph"]}))
    with pytest.raises(CardError, match="thresholds\\['Abnormal'\\] must be a number"):
        card_settings(_card(thresholds={"Abnormal": "high"}))
    with pytest.raises(CardError, match="slope"):
        card_settings(_card(calibration={"Abnormal": {"a": -1.0, "b": 0.0}}))
    # a card written by ModelCard.new carries its placeholder 0.5 in the file, where a reader sees it
    new = ModelCard.new("triage-dn121-512", name="fresh")
    assert json.loads(new.to_json())["thresholds"] == {"Abnormal": 0.5}
    # a card read from disk without thresholds is not filled in
    read = ModelCard.from_dict({"name": "x", "architecture": "triage-dn121-512", "labels": ["Abnormal"]})
    assert read.thresholds == {}


def test_settings_of_the_shipped_cards_say_what_runs() -> None:
    cards = {d.name: ModelCard.read(d / "card.json") for d in shipped_dir().iterdir() if (d / "card.json").is_file()}
    tri, cls = card_settings(cards["triage"]), card_settings(cards["classifier"])
    assert (tri.input.size, tri.input.effective_size, tri.input.tta_zooms) == (256, 224, (1.0, 0.95, 0.9))
    assert tri.label("abnormal").threshold == pytest.approx(cards["triage"].thresholds["Abnormal"])
    assert tri.label("Abnormal").calibration == (
        cards["triage"].calibration["Abnormal"]["a"],
        cards["triage"].calibration["Abnormal"]["b"],
    )
    assert cls.input.channels == ("radiograph", "lung_segmented") and cls.input.size == 256
    # the architecture name says the design (512 px); the card, and `cxr models`, say what runs
    assert cards["classifier"].architecture == "dn121-512-lung"
    assert cards["classifier"].summary()["runs_at"] == "256 px (224 px effective), radiograph + lung_segmented"


def test_pipeline_reads_each_card_once_at_load(tiny_weights_dir: Path, make_phantom, monkeypatch) -> None:
    import cxrassist.pipeline as pl

    calls: list[str] = []
    real = pl.card_settings

    def counting(card: Any) -> Any:
        calls.append(getattr(card, "name", "settings"))
        return real(card)

    monkeypatch.setattr(pl, "card_settings", counting)
    pipe = pl.Pipeline.load(tiny_weights_dir)
    at_load = len(calls)
    assert at_load >= 4
    pipe.analyze(XRay(make_phantom(300, 280, seed=3)), force=True)
    pipe.analyze(XRay(make_phantom(310, 290, seed=4)), force=True)
    assert len(calls) == at_load  # nothing is looked up in a card per study


def test_a_classifier_card_missing_a_finding_is_refused_at_load(tiny_weights_dir: Path, tmp_path: Path) -> None:
    import shutil

    from cxrassist.pipeline import Pipeline

    root = tmp_path / "w"
    shutil.copytree(tiny_weights_dir, root)
    path = root / "classifier" / "card.json"
    card = json.loads(path.read_text())
    card["labels"] = ["Edema" if lab == "Pneumothorax" else lab for lab in card["labels"]]
    path.write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="no output for 'Pneumothorax'"):
        Pipeline.load(root)


def _labels(
    threshold: float = 0.5,
    validated: bool = True,
    calibration: tuple[float, float] | None = None,
) -> list[LabelSettings]:
    return [LabelSettings(f.name, threshold, validated, calibration, {"auroc": 0.8}) for f in FINDINGS]


def test_finding_and_triage_stages_alone() -> None:
    from cxrassist.pipeline import finding_results, triage_result

    probs = np.linspace(0.05, 0.95, len(FINDINGS)).astype(np.float32)
    found = finding_results(probs, _labels(), trained=True)
    assert [f.positive for f in found] == [bool(p >= 0.5) for p in probs]
    assert all(f.measured == {"auroc": 0.8} for f in found)
    # an unvalidated label, or an untrained model, is never called positive
    assert not any(f.positive for f in finding_results(probs, _labels(validated=False), trained=True))
    assert not any(f.positive or f.validated for f in finding_results(probs, _labels(), trained=False))
    # thresholds are on the calibrated scale: a = 1, b = 2 lifts every probability
    lifted = finding_results(probs, _labels(calibration=(1.0, 2.0)), trained=True)
    assert all(g.probability > f.probability for f, g in zip(found, lifted, strict=True))
    tri = triage_result(0.2, LabelSettings("Abnormal", 0.3, True, (1.0, 2.0), None), found)
    assert tri.abnormal_probability == pytest.approx(1 / (1 + np.exp(-(np.log(0.2 / 0.8) + 2.0))))
    assert tri.threshold == 0.3


def test_check_stage_alone(make_phantom) -> None:
    from cxrassist.pipeline import check_study

    noise = XRay(np.random.default_rng(0).random((300, 300)).astype(np.float32))
    with pytest.raises(NotChestXRayError):
        check_study(noise, None, force=False)
    _, _, refused, warnings = check_study(noise, None, force=True)
    assert refused and warnings[0].startswith("FORCED")
    check, lateral_check, refused, warnings = check_study(XRay(make_phantom(320, 300, seed=0)), None, force=False)
    assert check.is_chest and lateral_check is None and not refused and warnings == []


def test_model_input_stage_follows_the_card(tiny_pipeline) -> None:
    from cxrassist.pipeline import model_input

    s = tiny_pipeline.settings.classifier
    pixels = np.full((200, 100), 0.5, np.float32)
    x, rec = model_input(
        pixels,
        s.input,
        s.input.channels,
        {"lung_mask": np.ones((200, 100), bool), "bone": np.zeros((200, 100), np.float32)},
    )
    assert tuple(x.shape) == (1, len(s.input.channels), s.input.size, s.input.size)
    assert (rec.orig_h, rec.orig_w, rec.size) == (200, 100, s.input.size)
    narrower = dataclasses.replace(s.input, size=64)
    assert tuple(model_input(pixels, narrower, ("radiograph",), {})[0].shape) == (1, 1, 64, 64)


def test_every_shipped_model_card_states_its_data_terms() -> None:
    folders = [d for d in shipped_dir().iterdir() if (d / "MODEL_CARD.md").is_file()]
    assert {d.name for d in folders} >= {"bone", "classifier", "lungseg", "triage", "ood"}
    for d in folders:
        text = (d / "MODEL_CARD.md").read_text(encoding="utf-8")
        section = text.split("## Data terms", 1)[1].split("\n## ", 1)[0] if "## Data terms" in text else ""
        assert "research" in section and ("non-commercial" in section or "research-use only" in section), d.name
        if (d / "card.json").is_file():
            assert "research-use only" in json.loads((d / "card.json").read_text())["data_terms"], d.name
