"""Patient-wise cross-validation of the findings recipe on the NIH films: out-of-fold figures with many more positives.

    python scripts/cv_findings.py [--config configs/shipped/classifier-1.3.0.yaml] [--folds 2] [--out runs/cv-findings]
        [--then configs/shipped/classifier.yaml] [--threads 2] [--json OUT]

Why: `nih_cxr14_sample` val has 79 films (5-12 positives per finding), so its per-finding AUROCs have CIs ~0.25 wide.
Issue 12 allows "out-of-fold predictions of a patient-wise cross-validation" instead. Each fold trains the config's
recipe (same data, augmentation, distillation and budget) with the NIH sample re-split by patient
(``evaluation.operating.fold_of``, whatever the manifest's train/val column says): the fold's films are held out,
all other NIH films train. Every one of the 528 films is then predicted by the one model that never trained on it,
and each finding is scored on all of them, beside the CheXNet reference's probabilities on the same films.

What it measures is the recipe, not the shipped weights (those trained on every NIH train film, and their own val
figures are in the card). The held-out films' normal/abnormal labels were seen by the triage model the recipe starts
from (``model.init_from``), never their finding labels. Each fold ships its final weights (``export.when: last``):
no checkpoint is chosen on the held-out films. A fold whose run already exported is not trained again.

A recipe that continues earlier findings weights (findings 1.4.0's ``configs/shipped/classifier.yaml`` continues
1.3.0) is refused as ``--config``: those weights trained on every NIH film, the held-out ones included. Give it as
``--then`` instead: each fold's model from ``--config`` is then continued with that recipe on the same fold (its
``model.init_from`` replaced by the fold's export), and the continued models are the ones scored.

This is a maintainer's script (it needs ../shared/data); it is never imported by the package.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
NIH = "nih_cxr14_sample"


def fold_manifest(source: Path, out: Path, fold: int, folds: int) -> Path:
    """``source`` re-split by patient: this fold's films are 'val', the others 'train'; image paths made absolute."""
    from cxrassist.data.manifest import load_manifest
    from cxrassist.evaluation.operating import fold_of

    group = {r.id: r.group for r in load_manifest(source)}
    with source.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows, fields = list(reader), list(reader.fieldnames or [])
    target = out / NIH / "manifest.csv"  # the folder name is the data set's name
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            held_out = fold_of(group[row["id"]], folds) == fold
            for col in ("image", "lateral", "frontal"):
                if row.get(col):
                    row[col] = str((source.parent / row[col]).resolve())
            writer.writerow({**row, "split": "val" if held_out else "train"})
    return target


def fold_config(config: Path, manifest: Path, out: Path, fold: int, *, continues: Path | None = None) -> Path:
    """The recipe's config with the NIH manifest swapped for the fold's, run to its full budget, final weights.

    ``continues``: the fold's earlier export, which this recipe continues (``--then``) in place of its own
    ``model.init_from``; without it, a recipe that does not start from triage is refused.
    """
    cfg = yaml.safe_load(config.read_text())
    manifests = cfg["data"]["manifests"]
    if not any(Path(m).parent.name == NIH for m in manifests):
        sys.exit(f"{config} does not train on {NIH}: nothing to cross-validate")
    init = (cfg.get("model") or {}).get("init_from")
    if continues is not None:
        cfg["model"]["init_from"] = str(continues)
    elif init and init != "triage" and Path(init).name != "triage":
        sys.exit(
            f"{config} starts from {init}, not from triage: weights trained on the held-out films would leak into "
            "every fold; cross-validate the recipe it continues (e.g. configs/shipped/classifier-1.3.0.yaml)"
        )
    cfg["data"]["manifests"] = [str(manifest) if Path(m).parent.name == NIH else m for m in manifests]
    cfg["name"] = f"fold{fold}" if continues is None else f"fold{fold}-then"
    cfg["out_dir"] = str(out)
    cfg["run"]["max_steps"] = None  # the recipe's epochs, not the step a shipped run stopped at
    cfg["export"]["when"] = "last"
    path = out / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def predict_fold(export_dir: Path, manifest: Path, device: str = "cpu") -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, targets [N, K], probabilities [N, K]) of the fold's held-out films, as ``cxr evaluate`` predicts."""
    from cxrassist.data.manifest import load_manifest
    from cxrassist.data.records import select
    from cxrassist.evaluation.classification import card_derived_channels, predict
    from cxrassist.weights import load_model

    model, card = load_model(export_dir, inference=True)
    model.eval()
    records = [r for r in select(load_manifest(manifest), "val") if r.has_findings]
    derived = card_derived_channels(card, cache_dir=REPO / "runs" / "cache", device=device)
    y, p = predict("classifier", model, card, records, device=device, derived=derived)
    return [r.id for r in records], y, p


def score(ids: list[str], y: np.ndarray, p: np.ndarray, teacher: Path, bootstrap: int = 1000) -> dict[str, Any]:
    """Per finding: positives/n, AUROC with its bootstrap 95 % CI, and the reference's AUROC on the same films."""
    from cxrassist.data.teacher import read_teacher
    from cxrassist.evaluation.metrics import auroc, bootstrap_auroc_ci
    from cxrassist.labels import FINDING_CODES

    ref = read_teacher(teacher)
    out: dict[str, Any] = {}
    for k, code in enumerate(FINDING_CODES):
        known = ~np.isnan(y[:, k])
        yk, pk = y[known, k], p[known, k]
        if yk.size == 0 or len(set(yk.tolist())) < 2:
            continue
        nan = (np.nan,) * len(FINDING_CODES)
        teacher_p = np.array([ref.get(i, nan)[k] for i, m in zip(ids, known, strict=True) if m])
        has_ref = ~np.isnan(teacher_p)
        out[code] = {
            "n": int(yk.size),
            "n_pos": int((yk == 1).sum()),
            "auroc": auroc(yk, pk),
            "ci95": list(bootstrap_auroc_ci(yk, pk, n=bootstrap, seed=0)),
            "teacher_auroc": auroc(yk[has_ref], teacher_p[has_ref]) if has_ref.any() else None,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "shipped" / "classifier-1.3.0.yaml")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "cv-findings")
    ap.add_argument("--then", type=Path, default=None, help="a recipe that continues each fold's model (e.g. 1.4.0's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-positives", type=int, default=10, help="findings in the mean need this many positives")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not (args.data / NIH / "manifest.csv").is_file():
        sys.exit(f"{args.data / NIH / 'manifest.csv'} is needed")

    import logging

    import torch

    from cxrassist.labels import FINDING_CODES
    from cxrassist.training.config import load_config
    from cxrassist.training.engine import train

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    torch.set_num_threads(args.threads)
    ids: list[str] = []
    ys, ps = [], []
    for fold in range(args.folds):
        out = args.out / f"fold{fold}-data"
        manifest = fold_manifest(args.data / NIH / "manifest.csv", out, fold, args.folds)
        export = args.out / f"fold{fold}" / "export"
        if not export.is_dir():
            train(load_config(fold_config(args.config, manifest, args.out, fold)))
        export_dir = next(p for p in export.iterdir() if p.is_dir())
        if args.then is not None:
            export = args.out / f"fold{fold}-then" / "export"
            if not export.is_dir():
                train(load_config(fold_config(args.then, manifest, args.out, fold, continues=export_dir)))
            export_dir = next(p for p in export.iterdir() if p.is_dir())
        fold_ids, y, p = predict_fold(export_dir, manifest)
        ids += fold_ids
        ys.append(y)
        ps.append(p)
        print(f"fold {fold}: {len(fold_ids)} held-out NIH films predicted")
    y, p = np.concatenate(ys), np.concatenate(ps)
    per = score(ids, y, p, args.data / NIH / "teacher_chexnet_preds.csv")
    recipe = args.config.name + (f" then {args.then.name}" if args.then else "")
    print(f"\nout-of-fold, {len(ids)} {NIH} films, {args.folds}-fold patient-wise ({recipe} recipe)")
    print(f"{'finding':8s} {'pos/n':>9s} {'AUROC':>6s} {'95% CI':>13s} {'CheXNet ref':>11s}")
    for code in FINDING_CODES:
        if code in per:
            e = per[code]
            ref = "n/a" if e["teacher_auroc"] is None else f"{e['teacher_auroc']:.3f}"
            print(
                f"{code:8s} {e['n_pos']:>4d}/{e['n']:<4d} {e['auroc']:6.3f} "
                f"{e['ci95'][0]:6.3f}-{e['ci95'][1]:.3f} {ref:>11s}"
            )
    both = [c for c, e in per.items() if e["n_pos"] >= args.min_positives and e["teacher_auroc"] is not None]
    mean = float(np.mean([per[c]["auroc"] for c in both])) if both else float("nan")
    ref_mean = float(np.mean([per[c]["teacher_auroc"] for c in both])) if both else float("nan")
    print(
        f"mean over {', '.join(both)} (>= {args.min_positives} positives): model {mean:.3f}, reference {ref_mean:.3f}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        summary = {"films": len(ids), "folds": args.folds, "recipe": recipe, "findings": per, "mean_over": both}
        args.json.write_text(json.dumps({**summary, "model_mean": mean, "reference_mean": ref_mean}, indent=1) + "\n")
        # the out-of-fold probabilities themselves, so that recipes can be compared film by film (paired bootstrap)
        np.savez_compressed(args.json.with_suffix(".npz"), ids=np.array(ids), y=y, p=p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
