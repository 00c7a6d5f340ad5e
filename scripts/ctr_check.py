"""Cardiomegaly from the cardiothoracic ratio, scored on every NIH film: the figure that decided to use it.

    python scripts/ctr_check.py [--heart heartseg] [--oof runs/cv-findings/oof-1.4.0.npz] [--json OUT]

Why: the ratio needs no NIH film to be learnt (the heart model trained on JSRT's outlines, the lung model on
Montgomery, Shenzhen, JSRT and covid19_gb_seg), and a monotone transform does not change an AUROC, so its AUROC on
all 528 films of ``nih_cxr14_sample`` (train and val) is an honest held-out figure with 50 positives instead of val's
5. ``--oof`` puts the classifier's out-of-fold Cardiomegaly probabilities (``scripts/cv_findings.py``) beside it,
film by film (paired bootstrap of the difference), and the CheXNet reference is scored on the same films.

It also prints the ratio's median on films read as normal per source (NIH No Finding at 512 px, RSNA normals and
Shenzhen/Montgomery normals): a ratio that moved with the source's resolution would show here.

This is a maintainer's script (it needs ../shared/data); it is never imported by the package.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
NIH = "nih_cxr14_sample"
NORMAL_SETS = ("rsna_normal", "shenzhen", "montgomery")


def ratios(records: list[Any], heart: tuple[Any, Any], lung: tuple[Any, Any]) -> np.ndarray:
    """The cardiothoracic ratio of each film (NaN where it cannot be measured), as the pipeline measures it."""
    from tqdm.auto import tqdm

    from cxrassist.channels import predict_lung_mask
    from cxrassist.data.images import load_image01
    from cxrassist.measured import measure_film

    out = np.full(len(records), np.nan)
    for i, rec in enumerate(tqdm(records, desc="ratio", leave=False)):
        image = load_image01(rec.image)
        m = measure_film(heart, image, predict_lung_mask(lung[0], lung[1], image)[0])[0]
        out[i] = np.nan if m is None else m.ratio
    return out


def auroc_ci(y: np.ndarray, s: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            boots.append(roc_auc_score(y[i], s[i]))
    return float(roc_auc_score(y, s)), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def paired(y: np.ndarray, a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """AUROC(a) - AUROC(b) on the same films, with a paired bootstrap 95 % CI."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            boots.append(roc_auc_score(y[i], a[i]) - roc_auc_score(y[i], b[i]))
    diff = roc_auc_score(y, a) - roc_auc_score(y, b)
    return float(diff), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heart", default="heartseg", help="heart model (name or folder)")
    ap.add_argument("--lung", default="lungseg", help="lung model (name or folder)")
    ap.add_argument("--oof", type=Path, help="out-of-fold predictions of scripts/cv_findings.py (.npz)")
    ap.add_argument("--normals", type=int, default=300, help="normal films per other source (0: none)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        sys.exit(f"ctr_check: {SHARED} not found (this script scores the shared NIH films)")
    if args.oof is not None and not args.oof.is_file():
        sys.exit(f"ctr_check: --oof file not found: {args.oof}")

    import torch

    from cxrassist.data.manifest import load_manifest
    from cxrassist.data.teacher import read_teacher
    from cxrassist.labels import FINDING_CODES
    from cxrassist.weights import load_model

    torch.set_num_threads(2)
    heart, lung = load_model(args.heart), load_model(args.lung)
    for m in (heart, lung):
        m[0].eval()
    ca = FINDING_CODES.index("CA")
    records = load_manifest(SHARED / NIH / "manifest.csv")
    y = np.array([r.findings[ca] if r.findings is not None else np.nan for r in records], float)
    r = ratios(records, heart, lung)
    known = ~np.isnan(y)
    measured = known & ~np.isnan(r)
    out: dict[str, Any] = {
        "films": int(known.sum()),
        "positives": int(np.nansum(y)),
        "unmeasured": int((known & np.isnan(r)).sum()),
    }
    # an unmeasured film keeps the classifier's score in the pipeline; here it is set to the median (no information)
    filled = np.where(np.isnan(r), np.nanmedian(r), r)
    a, lo, hi = auroc_ci(y[known], filled[known])
    out["ratio"] = {"auroc": a, "ci95": [lo, hi]}
    print(f"Cardiomegaly on all {known.sum()} NIH films ({int(np.nansum(y))} positive; {out['unmeasured']} unmeasured)")
    print(f"  cardiothoracic ratio   AUROC {a:.3f} (95% CI {lo:.3f}-{hi:.3f})")
    teacher = read_teacher(SHARED / NIH / "teacher_chexnet_preds.csv")
    t = np.array([teacher[rec.id][ca] if rec.id in teacher else np.nan for rec in records], float)
    if np.isfinite(t[known]).all():
        ta, tlo, thi = auroc_ci(y[known], t[known])
        out["teacher"] = {"auroc": ta, "ci95": [tlo, thi]}
        print(f"  CheXNet reference      AUROC {ta:.3f} (95% CI {tlo:.3f}-{thi:.3f})")
    if args.oof is not None:
        z = np.load(args.oof, allow_pickle=True)
        index = {str(i): k for k, i in enumerate(z["ids"])}
        p = np.array([z["p"][index[rec.id], ca] if rec.id in index else np.nan for rec in records])
        both = known & np.isfinite(p)
        oa, olo, ohi = auroc_ci(y[both], p[both])
        d, dlo, dhi = paired(y[both], filled[both], p[both])
        out["classifier_oof"] = {"auroc": oa, "ci95": [olo, ohi], "file": str(args.oof)}
        out["ratio_minus_classifier"] = {"difference": d, "ci95": [dlo, dhi], "films": int(both.sum())}
        print(f"  classifier, out of fold AUROC {oa:.3f} (95% CI {olo:.3f}-{ohi:.3f})  [{args.oof}]")
        print(f"  ratio - classifier     {d:+.3f} (paired 95% CI {dlo:+.3f} to {dhi:+.3f})")
    medians = {"nih_no_finding": float(np.nanmedian(r[measured & (y == 0)]))}
    print(f"  median ratio without Cardiomegaly: NIH {medians['nih_no_finding']:.3f}")
    if args.normals:
        rng = np.random.default_rng(0)
        for name in NORMAL_SETS:
            normals = [x for x in load_manifest(SHARED / name / "manifest.csv") if x.abnormal == 0]
            chosen = rng.choice(len(normals), min(args.normals, len(normals)), replace=False)
            pick = [normals[i] for i in sorted(chosen)]
            medians[name] = float(np.nanmedian(ratios(pick, heart, lung)))
            print(f"  median ratio of {len(pick)} {name} normals: {medians[name]:.3f}")
    out["median_ratio_normals"] = medians
    out["per_film"] = {rec.id: (None if np.isnan(v) else round(float(v), 4)) for rec, v in zip(records, r, strict=True)}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
