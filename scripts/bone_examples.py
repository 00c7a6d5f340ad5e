"""docs/bone-examples.png: what the bone model does, for a reader to judge by eye (issue 13).

    python scripts/bone_examples.py [--weights DIR] [--out docs/bone-examples.png]

Rows: 4 bse_jsrt val pairs and RG1 (pydicom-data's chest CR, a film from outside ../shared/data, no reference).
Columns: radiograph | predicted bone (display window stated under it) | predicted soft tissue | reference soft tissue
(BSE-JSRT) | reference bone (same window as the prediction). The bone and soft-tissue pictures are made exactly as the
report makes them (cxrassist.channels.predict_bone, postprocess.bone_display_window with the shipped lung model's
mask); the soft tissue keeps the radiograph's display range. Needs ../shared/data (a maintainer's script).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
SHARED = Path("../shared/data")
VAL_IDS = ("JPCLN096", "JPCLN101", "JPCLN107", "JPCLN113")  # fixed so the picture is comparable across versions
TILE = 256


def _tile(image01: np.ndarray | None, caption: str) -> Image.Image:
    from cxrassist.postprocess import as_uint8

    canvas = Image.new("L", (TILE, TILE + 30), 0)
    if image01 is not None:
        im = Image.fromarray(as_uint8(image01))
        im.thumbnail((TILE, TILE), Image.Resampling.LANCZOS)
        canvas.paste(im, ((TILE - im.width) // 2, (TILE - im.height) // 2))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(caption.split("\n")[:2]):
        draw.text((4, TILE + 2 + 13 * i), line, fill=255)
    return canvas


def main(argv: list[str] | None = None) -> int:
    from cxrassist.channels import predict_bone, predict_lung_mask
    from cxrassist.data.images import load_image01
    from cxrassist.io import read_xray
    from cxrassist.postprocess import bone_display_window
    from cxrassist.weights import load_model, shipped_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=shipped_dir() / "bone", help="bone weights folder")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "bone-examples.png")
    args = ap.parse_args(argv)
    if not (SHARED / "bse_jsrt").is_dir():
        raise SystemExit("../shared/data/bse_jsrt is needed for the val pairs")

    bone_model, bone_card = load_model(args.weights, inference=True)
    lung_model, lung_card = load_model(shipped_dir() / "lungseg")
    with open(SHARED / "bse_jsrt" / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = {r["id"]: r for r in csv.DictReader(fh)}
    cases: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    for case in VAL_IDS:
        row = rows[case]
        assert row["split"] == "val", f"{case} is not a val case"
        cases.append(
            (
                f"{case} (val)",
                load_image01(SHARED / "bse_jsrt" / row["image"]),
                load_image01(SHARED / "bse_jsrt" / row["bone_suppressed"]),
            )
        )
    from pydicom.data import get_testdata_file

    cases.append(("RG1 (CR, unseen)", read_xray(get_testdata_file("RG1_UNCI.dcm")).pixels, None))

    tiles: list[list[Image.Image]] = []
    for name, image, reference in cases:
        bone = predict_bone(bone_model, bone_card, image)[2]
        lung = predict_lung_mask(lung_model, lung_card, image)[2]
        window = bone_display_window(bone, lung)
        soft = np.clip(image - bone, 0, 1)
        row_tiles = [
            _tile(image, f"{name}\nradiograph"),
            _tile(window.apply(bone), f"predicted bone\nwindow {window.low:.3f}-{window.high:.3f}"),
            _tile(soft, "predicted soft tissue\nradiograph's range"),
        ]
        if reference is not None:
            true_bone = np.clip(image - reference, 0, 1)
            row_tiles += [
                _tile(reference, "reference soft tissue\n(BSE-JSRT)"),
                _tile(window.apply(true_bone), "reference bone\nsame window"),
            ]
        else:
            row_tiles += [_tile(None, "no reference\n(film outside the sets)"), _tile(None, "")]
        tiles.append(row_tiles)

    head = 24
    sheet = Image.new("L", (TILE * 5, head + len(tiles) * (TILE + 30)), 0)
    ImageDraw.Draw(sheet).text(
        (4, 6),
        f"{bone_card.name} {bone_card.version}: bone window = 1st-99.5th percentile inside the thorax; "
        "decision support, not a diagnosis",
        fill=255,
    )
    for r, row_tiles in enumerate(tiles):
        for c, tile in enumerate(row_tiles):
            sheet.paste(tile, (c * TILE, head + r * (TILE + 30)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
