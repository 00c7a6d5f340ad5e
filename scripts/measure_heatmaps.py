"""Do the heatmaps point? In-lung share and empty maps of positive calls, pointing game on the NIH boxes, RG1 peaks.

    .venv/bin/python scripts/measure_heatmaps.py [--weights DIR] [--data ../shared/data] [--split val]
        [--sets nih_cxr14_sample,shenzhen,montgomery,jsrt] [--threads 1] [--json OUT] [--extra FILE ...]

Runs the same Pipeline as ``cxr analyze`` (default: the shipped weights) on every film of ``--split`` of each set,
plus the NIH films that carry a radiologist box (``nih_cxr14_sample/bbox_2017.csv``, whatever their split: they
score the pointing game only, under the source "nih_boxes"). ``--extra`` analyses other films (default: pydicom-data's
RG1_UNCI.dcm, several lung masses) and prints where each lung finding's map peaks. See
``cxrassist.evaluation.heatmaps`` for the definitions.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"


def _films(data: Path, sets: list[str], split: str) -> list[tuple[str, str, Path]]:
    from cxrassist.data.manifest import load_manifest
    from cxrassist.data.records import select

    films = []
    for name in sets:
        for r in select(load_manifest(data / name / "manifest.csv"), None if split == "all" else split):
            films.append((name, r.id, Path(r.image)))
    return films


def _describe_extra(pipeline: object, path: Path) -> list[str]:
    from cxrassist.evaluation.heatmaps import LUNG_CODES, map_peak, near_mask
    from cxrassist.io import read_xray
    from cxrassist.labels import FINDINGS

    codes = [f.code for f in FINDINGS]
    res = pipeline.analyze(read_xray(path), force=True)  # type: ignore[attr-defined]
    h, w = res.lung_mask.shape
    rows, cols = np.nonzero(res.lung_mask)
    lines = [
        f"{path.name}: {h}x{w} px, lung field rows {rows.min()}-{rows.max()}, cols {cols.min()}-{cols.max()}; "
        f"positive: {', '.join(f.code for f in res.findings if f.positive) or 'none'}"
    ]
    for f in res.findings:
        if f.code not in LUNG_CODES:
            continue
        cam = res.cams[codes.index(f.code)]
        r, c = map_peak(cam, res.cam_record)
        side = "image left (patient's right)" if c < w / 2 else "image right (patient's left)"
        level = "upper" if r < h / 3 else "middle" if r < 2 * h / 3 else "lower"
        lines.append(
            f"  {f.code} p={f.probability:.3f} thr={f.threshold:.3f} {'POS' if f.positive else 'neg'}  "
            f"peak (row {r:.0f}, col {c:.0f}) = ({r / h:.2f}, {c / w:.2f}) of the film: {level} third, "
            f"{side}; in lung (dilated): {near_mask(res.lung_mask, r, c)}; empty map: {cam.max() <= 0}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--split", default="val")
    ap.add_argument("--sets", default="nih_cxr14_sample,shenzhen,montgomery,jsrt")
    ap.add_argument("--boxes", default="nih_cxr14_sample/bbox_2017.csv", help="relative to --data ('' = none)")
    ap.add_argument("--dilate", type=float, default=0.10, help="lung mask dilation, x sqrt(lung area)")
    ap.add_argument("--limit", type=int, default=None, help="first N films per set (a quick look)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--extra", type=Path, nargs="*", default=None, help="more films to describe (default: RG1)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    import torch

    from cxrassist.evaluation.heatmaps import format_table, load_boxes, measure
    from cxrassist.pipeline import Pipeline

    torch.set_num_threads(args.threads)
    pipeline = Pipeline.load(args.weights)
    sets = [s for s in args.sets.split(",") if s]
    films = _films(args.data, sets, args.split)
    if args.limit:
        films = [f for s in sets for f in [x for x in films if x[0] == s][: args.limit]]
    boxes = load_boxes(args.data / args.boxes) if args.boxes else {}
    if boxes:
        nih = {r[1]: r[2] for r in _films(args.data, ["nih_cxr14_sample"], "all")}
        films += [("nih_boxes", i, nih[i]) for i in sorted(boxes) if i in nih]
    # the boxed films are NIH train films: they score the pointing game, their calls stay out of the "all" row
    result = measure(pipeline, films, boxes=boxes, dilate=args.dilate, pointing_only=["nih_boxes"])
    models = {m["role"]: f"{m['name']} {m['version']}" for m in pipeline_models(pipeline)}
    print(f"models: {models}; split {args.split}; lung mask dilated by {args.dilate:g} x sqrt(area)")
    print(format_table(result["summary"]))
    per_code = result["summary"]["all"]["lung_calls_per_code"]
    print(
        "in-lung share per finding ('all'): "
        + ", ".join(f"{code} {v['in_lung']:.2f} (n={v['calls']})" for code, v in per_code.items())
    )
    print(
        "in lung: peak of a positive lung-finding call (AT CO ED PN PX LL AO) inside the dilated lung mask; out: "
        "median distance of the others to the mask (share of the film's long side); pointing: peak inside a box of "
        "that finding, called or not (nih_boxes: train films, pointing only; 'all' = the val films + the boxes)"
    )
    if result["refused"]:
        print(f"refused by the chest check (not forced): {len(result['refused'])}")
    extra = args.extra
    if extra is None:
        from pydicom.data import get_testdata_file

        rg1 = get_testdata_file("RG1_UNCI.dcm")
        extra = [Path(rg1)] if rg1 else []
    result["extra"] = []
    for path in extra:
        lines = _describe_extra(pipeline, path)
        result["extra"].append(lines)
        print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**result, "models": models}, indent=1) + "\n")
        print(f"written to {args.json}")
    return 0


def pipeline_models(pipeline: object) -> list[dict]:
    """The model summaries a report would carry (name, version) for the header line."""
    from cxrassist.pipeline import model_summary

    return [model_summary(role, card) for role, (_, card) in pipeline.models.items()]  # type: ignore[attr-defined]


if __name__ == "__main__":
    raise SystemExit(main())
