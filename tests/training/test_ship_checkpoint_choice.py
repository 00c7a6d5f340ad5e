"""scripts/ship_weights.py says in every card how its checkpoint was chosen, from the run's own log and config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ship(load_script):
    return load_script("ship_weights")


def _run(tmp_path: Path, when: str, values: list[float]) -> Path:
    """A run folder with config.yaml and log.csv: one val evaluation per value, every 10 steps, and the best so far
    (the engine's ``best`` column)."""
    run = tmp_path / when / str(len(values))
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"export": {"when": when}}))
    bests = [max(values[: i + 1]) for i in range(len(values))]
    rows = ["epoch,global_step,val_auroc,best"] + [
        f"{i},{(i + 1) * 10},{v},{b}" for i, (v, b) in enumerate(zip(values, bests, strict=True))
    ]
    (run / "log.csv").write_text("\n".join(rows) + "\n")
    return run


def test_val_best_checkpoint_is_said_to_be_chosen_on_val(ship, tmp_path: Path) -> None:
    run = _run(tmp_path, "end", [0.8, 0.7, 0.75])  # the first evaluation stays the best
    assert ship.shipped_step(run) == 10
    text = ship.checkpoint_choice(run, "auroc")
    assert text.startswith("Checkpoint: step 10 of 30, picked among 3 val evaluations by val auroc")


def test_last_and_single_evaluation_runs_say_no_choice(ship, tmp_path: Path) -> None:
    last = _run(tmp_path, "last", [0.9, 0.8])
    assert ship.shipped_step(last) == 20  # the final weights, though the best was earlier
    assert "val was not consulted" in ship.checkpoint_choice(last, "auroc")
    once = _run(tmp_path, "end", [0.7])
    assert "no checkpoint was chosen" in ship.checkpoint_choice(once, "auroc")
    rising = _run(tmp_path, "improve", [0.7, 0.8])
    assert "the last of 2 val evaluations; it was also the best" in ship.checkpoint_choice(rising, "auroc")


def test_cv_folds_split_the_nih_films_by_patient_and_keep_the_recipe(
    shared_data: Path, tmp_path: Path, load_script
) -> None:
    """scripts/cv_findings.py: the folds hold out disjoint patients, cover every NIH film once, and each fold trains
    the shipped recipe to its full budget with the fold's manifest in place of the NIH one (final weights)."""
    cv = load_script("cv_findings")
    from cxrassist.data.manifest import load_manifest
    from cxrassist.data.records import select
    from cxrassist.training.config import load_config

    source = shared_data / "nih_cxr14_sample" / "manifest.csv"
    held: list[set[str]] = []
    patients: list[set[str]] = []
    for fold in (0, 1):
        manifest = cv.fold_manifest(source, tmp_path / f"f{fold}", fold, 2)
        records = load_manifest(manifest)
        assert {r.dataset for r in records} == {"nih_cxr14_sample"} and len(records) == len(load_manifest(source))
        out = select(records, "val")
        held.append({r.id for r in out})
        patients.append({r.group for r in out})
        recipe = REPO / "configs" / "shipped" / "classifier-1.3.0.yaml"
        cfg = load_config(cv.fold_config(recipe, manifest, tmp_path, fold))
        assert str(manifest) in cfg.data.manifests and cfg.run.max_steps is None and cfg.export.when == "last"
        assert len(cfg.data.manifests) == len(yaml.safe_load(recipe.read_text())["data"]["manifests"])
    # the shipped 1.4.0 recipe continues 1.3.0, which trained on every NIH film: folding it would leak the held-out ones
    shipped = REPO / "configs" / "shipped" / "classifier.yaml"
    with pytest.raises(SystemExit, match="not from triage"):
        cv.fold_config(shipped, manifest, tmp_path, 0)
    # as --then it continues the fold's own model instead
    then = load_config(cv.fold_config(shipped, manifest, tmp_path, 0, continues=tmp_path / "fold0" / "export" / "m"))
    assert then.model.init_from == str(tmp_path / "fold0" / "export" / "m") and then.name == "fold0-then"
    assert str(manifest) in then.data.manifests and then.loss.lung_cam_weight > 0
    assert not held[0] & held[1] and not patients[0] & patients[1]
    assert len(held[0] | held[1]) == len(load_manifest(source))


def test_only_a_continued_run_reruns_the_earlier_stage(ship, tmp_path: Path) -> None:
    """The findings role names its earlier stage's export; a findings run from triage weights (the design's order,
    e.g. a 512-px run) must not be written as continuing it. A triage run continues triage weights only."""
    import json

    def folder(name: str, labels: list[str]) -> str:
        d = tmp_path / name
        d.mkdir()
        (d / "card.json").write_text(json.dumps({"labels": labels}))
        return str(d)

    findings = folder("findings", ["Atelectasis", "Cardiomegaly"])
    triage = folder("some-triage-run", ["Abnormal"])
    assert ship.continues_stage("classifier", findings)
    assert not ship.continues_stage("classifier", triage)
    assert not ship.continues_stage("classifier", "triage") and not ship.continues_stage("classifier", None)
    assert ship.continues_stage("bone", "anything")  # every bone stage continues the one before
    # triage reruns its earlier stage (1.2.0) when it continued triage weights, never from findings weights
    assert ship.continues_stage("triage", triage) and ship.continues_stage("triage", "triage")
    assert not ship.continues_stage("triage", findings) and not ship.continues_stage("triage", None)
