"""Issue 15 in the pipeline: the out-of-distribution gate (fitted here on the tiny test triage), report.json's
``ood``, --force, a gate bound to other triage weights; --out checked before any model runs; a batch rerun removes
the partial output of an interrupted run and counts a corrupt DICOM as refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cxrassist.errors import OutOfDistributionError, WeightsError

LAYERS = (("denseblock1", "mean+std"), ("denseblock3", "mean"))  # the tiny random net's norm5 is constant


@pytest.fixture(scope="module")
def gated_weights(tiny_weights_dir: Path, make_phantom, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny weights plus an ood/ gate fitted on phantoms (train: 40 seeds; threshold on 20 other seeds)."""
    from cxrassist import ood
    from cxrassist.weights import load_model

    root = tmp_path_factory.mktemp("gated") / "weights"
    shutil.copytree(tiny_weights_dir, root)
    model, card = load_model(root / "triage")
    model.eval()
    probe = ood.OodGate([ood.LayerStats(n, p, np.zeros(1), np.eye(1)) for n, p in LAYERS], 0.0, 224, 128)

    def planes(seeds: range) -> np.ndarray:
        return np.stack([probe.planes(make_phantom(300 + s % 7 * 5, 280 + s % 5 * 5, seed=s)) for s in seeds])

    f_train, f_val = probe.features(model, planes(range(80))), probe.features(model, planes(range(100, 130)))
    layers = []
    for (name, pool), ft, fv in zip(LAYERS, f_train, f_val, strict=True):
        mean, precision, _ = ood.fit_statistics(ft)
        layer = ood.LayerStats(name, pool, mean, precision)
        layer.scale = float(np.median(layer.distances(fv)))
        layers.append(layer)
    gate = ood.OodGate(layers, 0.0, 224, 128)
    threshold = 1.5 * ood.threshold_for(gate.scores(f_val))
    ood.save_gate(
        root / ood.GATE_DIR,
        layers,
        {
            "name": "test-gate",
            "version": "0.0.1",
            "threshold": threshold,
            "effective_size": 224,
            "input_size": 128,
            "transform": "sqrt",
            "triage": {"name": card.name, "version": card.version, "sha256": card.sha256},
        },
    )
    return root


def test_threshold_for_keeps_the_asked_share():
    from cxrassist.ood import threshold_for

    scores = np.arange(1, 201, dtype=float)
    t = threshold_for(scores, 0.99)
    assert np.mean(scores <= t) >= 0.99 and np.mean(scores <= t - 1) < 0.99


def test_gate_passes_chest_like_films_and_refuses_noise(gated_weights: Path, make_phantom, monkeypatch):
    import cxrassist.pipeline as pl
    from cxrassist.types import ChestCheck, XRay

    pipe = pl.Pipeline.load(gated_weights)
    assert pipe.ood_gate is not None
    passed = [
        pipe.ood_gate.check(pipe.models["triage"][0], make_phantom(310, 290, seed=s)).passed for s in range(200, 210)
    ]
    assert sum(passed) >= 8
    rng = np.random.default_rng(0)
    noise = XRay(pixels=rng.random((300, 280)).astype(np.float32), source_format="png")
    verdict = pipe.ood_gate.check(pipe.models["triage"][0], noise.pixels)
    assert not verdict.passed and verdict.score > verdict.threshold
    # the chest check would refuse noise first: let it pass to see the gate refuse on its own
    monkeypatch.setattr(pl, "_check", lambda x: ChestCheck(True, True, "test: chest", {}))
    with pytest.raises(OutOfDistributionError) as err:
        pipe.analyze(noise)
    assert "out-of-distribution score" in str(err.value) and "\n" not in str(err.value)


def test_forced_ood_study_is_analysed_and_marked(gated_weights: Path, tmp_path: Path, monkeypatch):
    import cxrassist.pipeline as pl
    from cxrassist.report import write_outputs
    from cxrassist.report.schema import validate_report
    from cxrassist.types import ChestCheck, XRay

    pipe = pl.Pipeline.load(gated_weights)
    monkeypatch.setattr(pl, "_check", lambda x: ChestCheck(True, True, "test: chest", {}))
    noise = XRay(pixels=np.random.default_rng(1).random((300, 280)).astype(np.float32), source_format="png")
    result = pipe.analyze(noise, force=True)
    report = write_outputs(result, tmp_path / "r", "json,html")
    validate_report(report)
    assert report["forced"] is True and report["ood"]["passed"] is False
    assert report["ood"]["score"] > report["ood"]["threshold"] and report["ood"]["gate"]["name"] == "test-gate"
    assert any(w.startswith("FORCED") and "out-of-distribution" in w for w in report["warnings"])
    assert "out-of-distribution score" in (tmp_path / "r" / "report.html").read_text()


def test_chest_film_report_carries_a_passing_score(gated_weights: Path, phantom_png: Path, tmp_path: Path):
    from cxrassist.analysis import analyze_paths
    from cxrassist.pipeline import Pipeline

    report = analyze_paths(phantom_png, None, tmp_path / "r", pipeline=Pipeline.load(gated_weights), formats="json")
    assert report["ood"]["passed"] is True and 0 <= report["ood"]["score"] <= report["ood"]["threshold"]
    assert report["forced"] is False and report["timings_ms"]["ood"] >= 0


def test_a_gate_fitted_on_other_triage_weights_is_refused(gated_weights: Path, tmp_path: Path):
    from cxrassist.pipeline import Pipeline

    stale = tmp_path / "w"
    shutil.copytree(gated_weights, stale)
    card_path = stale / "ood" / "gate.json"
    card = json.loads(card_path.read_text())
    card["triage"]["sha256"] = "0" * 64
    card_path.write_text(json.dumps(card))
    with pytest.raises(WeightsError) as err:
        Pipeline.load(stale)
    assert "fitted on triage weights 000000000000" in str(err.value) and "fit_ood_gate.py" in str(err.value)
    assert "\n" not in str(err.value)
    card["triage"]["sha256"] = json.loads((gated_weights / "ood" / "gate.json").read_text())["triage"]["sha256"]
    card_path.write_text(json.dumps(card))
    (stale / "ood" / "stats.safetensors").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="does not match the sha256"):
        Pipeline.load(stale)


def test_weights_without_a_gate_say_so(tiny_pipeline: Any, phantom_png: Path, tmp_path: Path):
    from cxrassist.analysis import analyze_paths

    report = analyze_paths(phantom_png, None, tmp_path / "r", pipeline=tiny_pipeline, formats="json")
    assert report["ood"] is None
    assert any("no out-of-distribution gate" in w for w in report["warnings"])


# ----------------------------------------------------------------------------------------------- --out, batch
def test_out_is_checked_before_any_model_runs(cxr_main, phantom_png: Path, tmp_path: Path, monkeypatch):
    import cxrassist.analysis as analysis

    def no_models(*a: Any, **k: Any) -> Any:
        raise AssertionError("a model was loaded before --out was checked")

    monkeypatch.setattr(analysis, "analyze_paths", no_models)
    (tmp_path / "file").write_text("x")
    for out, words in (("/proc/x/r", "is not writable"), (str(tmp_path / "file" / "r"), "is not a folder")):
        code, _, err = cxr_main(["analyze", str(phantom_png), "--out", out])
        assert code == 1 and err.startswith("error: cannot write the report") and words in err, err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "file").is_dir()


def test_batch_rerun_removes_partial_output_and_refuses_corrupt_dicoms(
    tiny_pipeline: Any, make_phantom, tmp_path: Path, rg1_small
):
    from PIL import Image

    from cxrassist.batch import run_batch

    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    Image.fromarray((make_phantom(300, 280) * 255).astype("uint8")).save(root / "s0.png")
    data = bytearray(rg1_small[0])
    i = data.index(b"(\x00\x10\x00US")  # Rows with an unknown VR: pydicom raises NotImplementedError
    data[i + 4 : i + 6] = b"\x55\xb5"
    (root / "corrupt.dcm").write_bytes(bytes(data))
    # what a killed run leaves: the report writer's temp folder and swap backup, the worklist's temp file
    (out / ".s0.tmp-k1ll3d" / "heatmaps").mkdir(parents=True)
    (out / ".s0.tmp-k1ll3d" / "heatmaps" / "AT_map.png").write_bytes(b"\0" * 50_000)
    (out / ".s0.old-123-456").mkdir()
    (out / ".worklist.csv.tmp-999").write_text("partial")
    summary = run_batch(root, out, pipeline=tiny_pipeline, formats="json", progress=False)
    statuses = {o.files[0]: (o.status, o.error) for o in summary.outcomes}
    assert statuses["s0.png"][0] == "done"
    assert statuses["corrupt.dcm"][0] == "refused" and "unexpected" not in statuses["corrupt.dcm"][1]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_batch_discovery_of_fuzzed_dicoms_prints_no_identifier(
    tmp_path: Path, rg1_small, byte_flipper, capfd, real_warnings
):
    """cxr batch reads every DICOM header to group studies, before any read_xray: those warnings are quiet too."""
    from cxrassist.io.quiet import install
    from cxrassist.study import discover_studies

    data, pixel_offset, identifiers = rg1_small
    for seed in range(60):
        (tmp_path / f"f{seed:02d}.dcm").write_bytes(byte_flipper(data, seed, 132, pixel_offset))
    install()  # what run_batch and the CLI do first
    with real_warnings():
        studies = discover_studies(tmp_path)
    out, err = capfd.readouterr()
    assert sum(len(s.files) for s in studies) == 60
    assert not any(v in err or v in out for v in identifiers) and "Warning" not in err


def test_gate_planes_from_shared_reductions_are_the_same(make_phantom) -> None:
    """The gate reads the film's shared 224-px reduction (``preprocess.Reductions``) and gets the planes it was
    fitted with."""
    from cxrassist import ood
    from cxrassist.preprocess import Reductions

    probe = ood.OodGate([ood.LayerStats(n, p, np.zeros(1), np.eye(1)) for n, p in LAYERS], 0.0, 224, 128)
    film = make_phantom(600, 520, seed=3)
    shared = Reductions(film)
    assert np.array_equal(probe.planes(film), probe.planes(film, shared))
    assert np.array_equal(probe.planes(film), probe.planes(film, shared))  # read again from the memo
