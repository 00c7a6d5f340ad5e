"""scripts/resolution_check.py: the 224-px copies are made like the RSNA films, and the comparison is per label."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image


def test_copies_are_224_px_val_films_under_the_sets_name(load_script, tmp_path: Path) -> None:
    rc = load_script("resolution_check")
    source = tmp_path / "data" / "nih_cxr14_sample"
    (source / "images").mkdir(parents=True)
    rows = []
    for i, (w, h, split) in enumerate([(512, 400, "val"), (380, 512, "val"), (512, 512, "train")]):
        pixels = (np.random.default_rng(i).random((h, w)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(source / "images" / f"f{i}.png")
        rows.append({"id": f"f{i}", "image": f"images/f{i}.png", "Edema": "1", "split": split})
    with (source / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    manifest = rc.copy_at_224(source / "manifest.csv", tmp_path / "copies")
    assert manifest.parent.name == "nih_cxr14_sample"  # the source name is the folder's: same source, other pixels
    copied = list(csv.DictReader(manifest.open()))
    assert [r["id"] for r in copied] == ["f0", "f1"] and all(r["Edema"] == "1" for r in copied)
    sizes = [Image.open(manifest.parent / r["image"]).size for r in copied]
    assert sizes == [(224, 175), (166, 224)] and all(r["image"].endswith(".jpg") for r in copied)
    assert (source / "images" / "f0.png").is_file()  # the stored films are untouched


def test_compare_reports_each_labels_change_and_skips_missing(load_script) -> None:
    rc = load_script("resolution_check")

    def result(aurocs: dict[str, float], mean: float, validated: dict[str, bool]) -> dict:
        per = {k: {"validation": {"auroc": v, "n_pos": 12}} for k, v in aurocs.items()}
        return {"task": "classifier", "per_label": per, "mean_auroc_validation": mean, "validated": validated}

    stored = result({"PE": 0.86, "ED": float("nan"), "AT": 0.75}, 0.80, {"PE": True, "AT": False})
    copies = result({"PE": 0.80, "ED": 0.7, "AT": 0.76}, 0.78, {"PE": False, "AT": False})
    stored["reference"] = {"findings": ["AT", "PE"], "model_mean_auroc": 0.62}
    copies["reference"] = {"findings": ["AT", "PE"], "model_mean_auroc": 0.61}
    out = rc.compare(stored, copies)
    assert set(out["labels"]) == {"PE", "AT"}  # a label without an AUROC on either side is not compared
    assert np.isclose(out["labels"]["PE"]["difference"], -0.06) and np.isclose(out["largest_change"], 0.06)
    assert out["mean_stored"] == 0.80 and out["mean_at_224"] == 0.78 and out["validated_same"] is False
    assert out["nih_alone"] == {"findings": ["AT", "PE"], "stored": 0.62, "at_224": 0.61}
