"""Print the design's ablation tables.

    python scripts/ablation_table.py runs/ablation/abl-1ch-nih.json runs/ablation/abl-2ch-nih.json ...
    python scripts/ablation_table.py --oof runs/abl-cv/1ch/oof.json runs/abl-cv/2ch/oof.json ... [--boot 1000]

Without ``--oof`` each JSON is a ``cxr evaluate classifier --json`` output (one row; its model name and channels are
read from the file); columns are the 13 findings in the design's order, then the mean over all findings with positives
and over those with >= 10 positives.

With ``--oof`` each JSON is a ``scripts/cv_findings.py --json`` output (out-of-fold on the 528 NIH films) with its
``.npz`` of probabilities beside it. Columns: the findings with a CheXNet reference, their mean, and the difference of
that mean from the FIRST row with a paired bootstrap 95 % CI (the same films resampled for both rows, so the
difference is judged against the noise of these films, not against two independent CIs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from cxrassist.labels import FINDING_CODES


def row(path: Path) -> str:
    res = json.loads(path.read_text())
    cells = []
    for code in FINDING_CODES:
        v = res["auroc"].get(code)
        cells.append("n/a" if v is None else f"{v:.3f}")
    mean = res.get("mean_auroc")
    solid = res.get("mean_auroc_min_pos")
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    return f"| {res['model']} | {res['n_cases']} | " + " | ".join(cells) + f" | {fmt(mean)} | {fmt(solid)} |"


def _mean_auroc(y: np.ndarray, p: np.ndarray, cols: list[int]) -> float:
    from cxrassist.evaluation.metrics import auroc

    return float(np.mean([auroc(y[:, k], p[:, k]) for k in cols]))


def oof_table(paths: list[Path], boot: int = 1000, seed: int = 0) -> str:
    """The out-of-fold rows (see the module docstring); every file must hold the same films."""
    runs = [(p, json.loads(p.read_text()), np.load(p.with_suffix(".npz"))) for p in paths]
    first_json, first = runs[0][1], runs[0][2]
    codes = list(first_json["mean_over"])
    cols = [FINDING_CODES.index(c) for c in codes]
    ids = first["ids"].tolist()
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(ids), len(ids)) for _ in range(boot)]
    lines = [
        "| recipe | " + " | ".join(codes) + " | mean | vs first row (paired 95 % CI) |",
        "|" + "---|" * (len(codes) + 3),
    ]
    base_y, base_p = first["y"], first["p"]
    base = _mean_auroc(base_y, base_p, cols)
    for path, res, arr in runs:
        order = {i: n for n, i in enumerate(arr["ids"].tolist())}
        if set(order) != set(ids):
            raise SystemExit(f"{path}: not the same films as {paths[0]}")
        take = [order[i] for i in ids]
        y, p = arr["y"][take], arr["p"][take]
        mean = _mean_auroc(y, p, cols)
        cells = [f"{res['findings'][c]['auroc']:.3f}" for c in codes]
        if path == paths[0]:
            diff = "—"
        else:
            deltas = []
            for idx in draws:
                yb = base_y[idx]
                if any(np.unique(yb[:, k][~np.isnan(yb[:, k])]).size < 2 for k in cols):
                    continue
                deltas.append(_mean_auroc(y[idx], p[idx], cols) - _mean_auroc(yb, base_p[idx], cols))
            lo, hi = np.percentile(deltas, [2.5, 97.5])
            diff = f"{mean - base:+.3f} ({lo:+.3f} to {hi:+.3f})"
        name = res.get("recipe", path.parent.name)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean:.3f} | {diff} |")
    ref = first_json.get("reference_mean")
    if ref is not None:
        lines.append(f"| CheXNet reference, same films | {' | '.join('' for _ in codes)} | {ref:.3f} | |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", type=Path, nargs="+", help="one JSON per row (the first row is the baseline with --oof)")
    ap.add_argument("--oof", action="store_true", help="cv_findings.py outputs: paired comparison, film by film")
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap resamples of the paired difference (--oof)")
    args = ap.parse_args(argv)
    missing = [str(p) for p in args.json if not p.is_file()]
    if missing:
        ap.error(f"no such file: {', '.join(missing)}")
    if args.oof:
        print(oof_table(args.json, boot=args.boot))
        return
    head = "| model | n | " + " | ".join(FINDING_CODES) + " | AVG | AVG (>=10 pos) |"
    print(head)
    print("|" + "---|" * (len(FINDING_CODES) + 4))
    for p in args.json:
        print(row(p))


if __name__ == "__main__":
    main(sys.argv[1:])
