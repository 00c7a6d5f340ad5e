"""Can the model tell a 512-px source from a 224-px one? Score the NIH sample's val films as they are, then as 224-px
copies made like the RSNA films, beside the same RSNA val films, and compare every NIH-source figure.

    python scripts/resolution_check.py [--task classifier|triage] [--weights DIR] [--data ../shared/data]
        [--json OUT]

Why: NIH-source val mixes `nih_cxr14_sample` (stored at 512 px, mostly abnormal) with `rsna_normal` and
`rsna_lung_opacity` (stored at 224 px). A model that learned "sharp film = abnormal" would score well there for the
wrong reason (issue 12, item 2: "show the model cannot tell the sources apart"). The films go through 224 px before
the model (``input.effective_size``), but the lung and bone channels are computed from the stored film. Here the NIH
films are re-made at 224 px with the chain behind ``rsna_normal`` (long side 299 px, Pillow LANCZOS, then 224 px,
BICUBIC, JPEG quality 90; ``../shared/data/README.md``): if the figures hold, the model does not read the resolution.

This is a maintainer's script (it needs ../shared/data); it is never imported by the package.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NIH = "nih_cxr14_sample"
RSNA = ("rsna_normal", "rsna_lung_opacity")


def copy_at_224(source: Path, out: Path, split: str = "val") -> Path:
    """``source``'s ``split`` films re-made at 224 px (299 LANCZOS -> 224 BICUBIC, JPEG q90) under
    ``out/<set name>/``, with a manifest of those rows (the folder keeps the set's name, so its source is the same)."""
    from PIL import Image

    with source.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = list(reader.fieldnames or []), [r for r in reader if r.get("split") == split]
    if not rows:
        raise SystemExit(f"{source}: no {split!r} rows to copy")
    target = out / source.parent.name
    for row in rows:
        with Image.open(source.parent / row["image"]) as im:
            film = im.convert("L")
        for side, method in ((299, Image.Resampling.LANCZOS), (224, Image.Resampling.BICUBIC)):
            scale = side / max(film.size)
            film = film.resize((max(1, round(film.width * scale)), max(1, round(film.height * scale))), method)
        image = Path(row["image"]).with_suffix(".jpg")
        (target / image).parent.mkdir(parents=True, exist_ok=True)
        film.save(target / image, quality=90)
        row["image"] = str(image)
    with (target / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return target / "manifest.csv"


def compare(stored: dict[str, Any], copies: dict[str, Any]) -> dict[str, Any]:
    """Per label: NIH-source AUROC with the stored NIH films and with their 224-px copies, and the difference."""
    rows = {}
    for name, entry in stored["per_label"].items():
        a, b = entry["validation"].get("auroc"), copies["per_label"][name]["validation"].get("auroc")
        if a is None or b is None or a != a or b != b:
            continue
        rows[name] = {"n_pos": entry["validation"]["n_pos"], "stored": a, "at_224": b, "difference": b - a}
    out: dict[str, Any] = {"labels": rows}
    if rows:
        out["largest_change"] = max(abs(r["difference"]) for r in rows.values())
    if stored["task"] == "classifier":
        out["mean_stored"], out["mean_at_224"] = stored["mean_auroc_validation"], copies["mean_auroc_validation"]
        out["validated_same"] = stored["validated"] == copies["validated"]
        ref_a, ref_b = stored.get("reference") or {}, copies.get("reference") or {}
        if ref_a.get("model_mean_auroc") is not None and ref_b.get("model_mean_auroc") is not None:
            # the NIH films alone (no RSNA film in the pairs), over the findings the reference scores
            out["nih_alone"] = {"findings": ref_a.get("findings"), "stored": ref_a["model_mean_auroc"]}
            out["nih_alone"]["at_224"] = ref_b["model_mean_auroc"]
    return out


def main(argv: list[str] | None = None) -> int:
    from cxrassist.evaluation.runner import evaluate

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=("classifier", "triage"), default="classifier")
    ap.add_argument("--weights", default=None, help="weights folder (default: the shipped model of --task)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not (args.data / NIH / "manifest.csv").is_file():
        sys.exit(f"{args.data}: no {NIH}/manifest.csv (this script needs ../shared/data)")
    from cxrassist.weights import shipped_dir

    weights = args.weights or str(shipped_dir() / args.task)  # the shipped folders are named like the tasks
    rsna = [str(args.data / name / "manifest.csv") for name in RSNA]
    kw: dict[str, Any] = {"weights": weights, "bootstrap": 1000, "cache_dir": REPO / "runs" / "cache"}
    if args.task == "classifier":  # the reference's probabilities give the NIH-alone figure
        kw["teacher"] = str(args.data / NIH / "teacher_chexnet_preds.csv")
    with tempfile.TemporaryDirectory() as tmp:
        copies_manifest = copy_at_224(args.data / NIH / "manifest.csv", Path(tmp))
        stored = evaluate(args.task, [str(args.data / NIH / "manifest.csv"), *rsna], **kw)
        copies = evaluate(args.task, [str(copies_manifest), *rsna], **kw)
    result = {"weights": weights, "task": args.task, **compare(stored, copies)}
    print(f"NIH-source val AUROC, {NIH} val films as stored (512 px) and as 224-px copies ({weights})")
    print(f"{'label':10s} {'pos':>4s} {'stored':>7s} {'224 px':>7s} {'change':>7s}")
    for name, r in result["labels"].items():
        print(f"{name:10s} {r['n_pos']:>4d} {r['stored']:7.3f} {r['at_224']:7.3f} {r['difference']:+7.3f}")
    if "mean_stored" in result:
        print(
            f"mean (>= 10 positives) {result['mean_stored']:.3f} -> {result['mean_at_224']:.3f}; "
            f"validated findings the same: {result['validated_same']}"
        )
    if "nih_alone" in result:
        n = result["nih_alone"]
        print(f"{NIH} alone, mean over {', '.join(n['findings'] or [])}: {n['stored']:.3f} -> {n['at_224']:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
