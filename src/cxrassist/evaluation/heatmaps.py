"""Do the heatmaps point? Peak-in-lung share, empty maps and the pointing game, measured through the Pipeline.

Everything is measured on what ``cxr analyze`` shows: :class:`cxrassist.pipeline.Pipeline` analyses each film, and
the peak of a finding's map is the centre of its warmest cell (``AnalysisResult.cams``, model space) carried onto
the original pixels with the film's ``SpatialRecord`` (the same mapping the report's PNGs use).

- **in lung**: for every *positive call* of a lung finding (:data:`LUNG_CODES`), whether the peak lies inside the
  pipeline's own lung mask dilated by ``dilate`` x sqrt(lung area) (10 % by default: ~5 % of the image side on a
  typical film, a sixth of a map cell at 256 px). A peak in the letterbox padding is outside.
  Peaks outside carry their distance to the (undilated) mask as a share of the film's longer side.
- **every lung map**: the same test for the map of each lung finding on each film, called or not (7 per film):
  where the model looks for lung findings, whatever the thresholds (which move the in-lung share's call set).
- **empty**: a positive call whose map is all zero (must never happen; any finding, not only the lung ones).
- **pointing game** (NIH boxes, ``bbox_2017.csv``): for each boxed image and each boxed finding, whether that
  finding's peak is inside one of its boxes, *whether or not the finding is called positive*; ``chance`` is the
  share of the image the boxes cover (what a peak dropped at random would score).

Sits beside the library like the rest of ``evaluation`` and imports nothing from ``training``.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrassist.labels import FINDINGS, LUNG_FIELD_CODES
from cxrassist.preprocess import SpatialRecord

log = logging.getLogger(__name__)

#: Findings that live in the lung fields (their peak belongs inside the lungs).
LUNG_CODES: tuple[str, ...] = LUNG_FIELD_CODES
_CODES = [f.code for f in FINDINGS]
_BY_NAME = {f.name.lower(): f.code for f in FINDINGS} | {f.code.lower(): f.code for f in FINDINGS}


@dataclass(frozen=True)
class Box:
    """A radiologist's box on the stored image: (x, y) top-left, width, height in that image's pixels."""

    image_id: str
    code: str
    x: float
    y: float
    w: float
    h: float
    space: tuple[int, int] | None = None  # (height, width) of the grid the coordinates are in, None = the image's

    def contains(self, row: float, col: float, shape: tuple[int, int]) -> bool:
        """Whether original pixel (row, col) of an image of ``shape`` lies inside the box."""
        sy = shape[0] / self.space[0] if self.space else 1.0
        sx = shape[1] / self.space[1] if self.space else 1.0
        return self.y * sy <= row <= (self.y + self.h) * sy and self.x * sx <= col <= (self.x + self.w) * sx

    def area_fraction(self, shape: tuple[int, int]) -> float:
        space = self.space or shape
        return min(1.0, self.w * self.h / float(space[0] * space[1]))


def load_boxes(path: str | Path, space: tuple[int, int] | None = (512, 512)) -> dict[str, list[Box]]:
    """``bbox_2017.csv`` -> image id -> boxes of the findings that map to a CheXpert name (others are skipped)."""
    out: dict[str, list[Box]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            code = _BY_NAME.get((row.get("finding_chexpert") or "").strip().lower())
            if code is None:
                continue
            box = Box(
                row["id"].strip(), code, float(row["x"]), float(row["y"]), float(row["w"]), float(row["h"]), space
            )
            out.setdefault(box.image_id, []).append(box)
    return out


def map_peak(cam: np.ndarray, record: SpatialRecord) -> tuple[float, float]:
    """(row, col) on the ORIGINAL pixel grid of the centre of the map's warmest cell (first one on ties)."""
    h, w = cam.shape
    i, j = np.unravel_index(int(np.argmax(cam)), cam.shape)
    row_model = (i + 0.5) * record.size / h
    col_model = (j + 0.5) * record.size / w
    return (
        (row_model - record.top) * record.orig_h / record.new_h,
        (col_model - record.left) * record.orig_w / record.new_w,
    )


def mask_distance(mask: np.ndarray, row: float, col: float) -> float:
    """Pixels from (row, col) to the nearest pixel of ``mask``: 0 inside, inf for an empty mask."""
    from cxrassist.postprocess import mask_contour

    h, w = mask.shape
    if not mask.any():
        return math.inf
    if 0 <= row < h and 0 <= col < w and mask[int(row), int(col)]:
        return 0.0
    edge = np.argwhere(mask_contour(mask, 1))
    return float(np.sqrt(((edge[:, 0] + 0.5 - row) ** 2 + (edge[:, 1] + 0.5 - col) ** 2).min()))


def near_mask(mask: np.ndarray, row: float, col: float, dilate: float = 0.10) -> bool:
    """Whether (row, col) is inside ``mask`` dilated by ``dilate`` x sqrt(mask area) pixels (False off the image)."""
    h, w = mask.shape
    if not (0 <= row < h and 0 <= col < w):
        return False
    return mask_distance(mask, row, col) <= dilate * math.sqrt(float(mask.sum()))


def score_result(
    result: Any, *, source: str, image_id: str, boxes: Sequence[Box] = (), dilate: float = 0.10
) -> dict[str, Any]:
    """One analysed film -> its positive calls (peak, empty, in lung) and its pointing-game hits.

    ``result`` needs ``findings`` (code, positive), ``cams`` (K, h, w in FINDINGS order), ``cam_record`` and
    ``lung_mask`` (original pixels): an :class:`~cxrassist.pipeline.AnalysisResult` or a stand-in.
    """
    shape = tuple(result.lung_mask.shape)
    calls, points = [], []
    for f in result.findings:
        if not f.positive:
            continue
        cam = np.asarray(result.cams[_CODES.index(f.code)])
        row, col = map_peak(cam, result.cam_record)
        lung = f.code in LUNG_CODES
        calls.append(
            {
                "code": f.code,
                "probability": round(float(f.probability), 4),
                "empty": bool(cam.max() <= 0),
                "peak_row": round(row, 1),
                "peak_col": round(col, 1),
                "lung_finding": lung,
                "in_lung": near_mask(result.lung_mask, row, col, dilate) if lung else None,
                # how far out, as a share of the film's longer side (0 inside the undilated mask)
                "lung_distance": round(min(1.0, mask_distance(result.lung_mask, row, col) / max(shape)), 4)
                if lung
                else None,
            }
        )
    lung_maps = {}
    for code in LUNG_CODES:
        row, col = map_peak(np.asarray(result.cams[_CODES.index(code)]), result.cam_record)
        lung_maps[code] = near_mask(result.lung_mask, row, col, dilate)
    positive = {f.code: f.positive for f in result.findings}
    for code in sorted({b.code for b in boxes}):
        mine = [b for b in boxes if b.code == code]
        cam = np.asarray(result.cams[_CODES.index(code)])
        row, col = map_peak(cam, result.cam_record)
        points.append(
            {
                "code": code,
                "positive": bool(positive.get(code, False)),
                "hit": any(b.contains(row, col, shape) for b in mine),
                "chance": round(min(1.0, sum(b.area_fraction(shape) for b in mine)), 4),
                "peak_row": round(row, 1),
                "peak_col": round(col, 1),
            }
        )
    return {
        "source": source,
        "id": image_id,
        "shape": list(shape),
        "calls": calls,
        "lung_maps": lung_maps,
        "pointing": points,
    }


def _share(k: int, n: int) -> float | None:
    return round(k / n, 3) if n else None


def summarize(films: Iterable[Mapping[str, Any]], *, pointing_only: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Per source (and "all"): films, positive calls, empty maps, lung calls with the peak in the lung, pointing.

    Sources in ``pointing_only`` (e.g. boxed films from the training split) keep their own row but add only their
    pointing game to "all", whose films and calls are then the other sources' alone.
    """
    out: dict[str, dict[str, Any]] = {}
    films = list(films)
    skip = set(pointing_only)
    for source in [*sorted({f["source"] for f in films}), "all"]:
        mine = [f for f in films if source in ("all", f["source"])]
        points = [p for f in mine for p in f["pointing"]]
        if source == "all":
            mine = [f for f in mine if f["source"] not in skip]
        calls = [c for f in mine for c in f["calls"]]
        lung = [c for c in calls if c["lung_finding"]]
        out_of_lung = [c["lung_distance"] for c in lung if not c["in_lung"]]
        maps = [inside for f in mine for inside in (f.get("lung_maps") or {}).values()]
        per_code = {}
        for code in LUNG_CODES:
            cc = [c for c in lung if c["code"] == code]
            if cc:
                per_code[code] = {"calls": len(cc), "in_lung": _share(sum(c["in_lung"] for c in cc), len(cc))}
        out[source] = {
            "films": len(mine),
            "positive_calls": len(calls),
            "empty_maps": sum(c["empty"] for c in calls),
            "empty_share": _share(sum(c["empty"] for c in calls), len(calls)),
            "lung_calls": len(lung),
            "in_lung": sum(bool(c["in_lung"]) for c in lung),
            "in_lung_share": _share(sum(bool(c["in_lung"]) for c in lung), len(lung)),
            "lung_calls_per_code": per_code,
            "lung_maps": len(maps),
            "lung_maps_in_lung_share": _share(sum(maps), len(maps)),
            # the peaks outside the dilated lungs: median distance to the lung mask, share of the film's long side
            "out_of_lung_median_distance": round(float(np.median(out_of_lung)), 3) if out_of_lung else None,
            "pointing_n": len(points),
            "pointing_hits": sum(p["hit"] for p in points),
            "pointing_share": _share(sum(p["hit"] for p in points), len(points)),
            "pointing_chance": round(float(np.mean([p["chance"] for p in points])), 3) if points else None,
        }
    return out


def format_table(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """The summary as a fixed-width table, one row per source."""

    def s(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    head = (
        f"{'source':<18} {'films':>5} {'pos calls':>9} {'empty':>5} {'empty %':>7} {'lung calls':>10} "
        f"{'in lung':>7} {'in-lung share':>13} {'out: median dist':>16} {'all maps in lung':>16} {'pointing':>8} "
        f"{'hit share':>9} {'chance':>6}"
    )
    lines = [head, "-" * len(head)]
    for source, r in summary.items():
        lines.append(
            f"{source:<18} {r['films']:>5} {r['positive_calls']:>9} {r['empty_maps']:>5} {s(r['empty_share']):>7} "
            f"{r['lung_calls']:>10} {r['in_lung']:>7} {s(r['in_lung_share']):>13} "
            f"{s(r['out_of_lung_median_distance']):>16} {s(r['lung_maps_in_lung_share']):>16} "
            f"{r['pointing_hits']:>3}/{r['pointing_n']:<4} {s(r['pointing_share']):>9} {s(r['pointing_chance']):>6}"
        )
    return "\n".join(lines)


def measure(
    pipeline: Any,
    films: Sequence[tuple[str, str, Path]],
    *,
    boxes: Mapping[str, Sequence[Box]] | None = None,
    dilate: float = 0.10,
    pointing_only: Iterable[str] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Analyse each (source, id, path) with ``pipeline`` like ``cxr analyze`` and score its maps.

    Films the chest check refuses are counted, not forced (``cxr analyze`` would refuse them too).
    ``pointing_only``: sources that count in "all" for the pointing game only (see :func:`summarize`).
    """
    from cxrassist.errors import InputError
    from cxrassist.evaluation.common import progress as bar
    from cxrassist.io import read_xray

    boxes = boxes or {}
    scored, refused = [], []
    for source, image_id, path in bar(films, len(films), "heatmaps", progress):
        try:
            result = pipeline.analyze(read_xray(path))
        except InputError as exc:  # NotChestXRayError is one
            log.warning("%s %s refused: %s", source, image_id, exc)
            refused.append({"source": source, "id": image_id, "reason": str(exc)})
            continue
        scored.append(
            score_result(result, source=source, image_id=image_id, boxes=boxes.get(image_id, ()), dilate=dilate)
        )
    pointing_only = list(pointing_only)
    return {
        "summary": summarize(scored, pointing_only=pointing_only),
        "films": scored,
        "refused": refused,
        "dilate": dilate,
        "pointing_only": pointing_only,
    }
