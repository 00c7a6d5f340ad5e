"""Heatmaps that point: no empty map for a positive call, no border peaks from re-gridding, a stated colour meaning,
and the measurement (peak in lung, empty maps, pointing game) on synthetic cases and on the shared NIH boxes."""

from __future__ import annotations

import dataclasses
import re
from html import escape
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cxrassist.evaluation.heatmaps import Box, load_boxes, map_peak, near_mask, score_result, summarize
from cxrassist.explain import HEATMAP_MEANING, class_activation_maps, normalize_maps, regrid_map
from cxrassist.explain.cam import LUNG_PRIOR_MEANING, heatmap_meaning
from cxrassist.labels import FINDINGS
from cxrassist.preprocess import SpatialRecord

CODES = [f.code for f in FINDINGS]
STATIC = Path(__file__).resolve().parents[2] / "src" / "cxrassist" / "serve" / "static"


def _legacy_regrid(cam: torch.Tensor, levels: int, stride: int, offset_px: float) -> torch.Tensor:
    """The re-gridding this replaced (edge replication), to show the test case is a real trap."""
    shift = (2**levels - 1) / 2 + offset_px / stride
    b, _, h, w = cam.shape
    ys = (torch.arange(h, dtype=cam.dtype) - shift + 0.5) * 2 / h - 1
    xs = (torch.arange(w, dtype=cam.dtype) - shift + 0.5) * 2 / w - 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1).expand(b, h, w, 2)
    return F.grid_sample(cam, grid, mode="bilinear", padding_mode="border", align_corners=False)


# ---------------------------------------------------------------------------------------------- normalisation
def test_negative_logit_positive_call_gets_a_nonempty_map(
    tiny_kwargs: dict[str, dict[str, Any]], make_phantom: Any
) -> None:
    """A head whose every cell pushes the logit down (p < 0.5) called positive at a low threshold still shows a map."""
    from cxrassist.pipeline import Pipeline, build_untrained

    torch.manual_seed(0)
    kwargs = {**tiny_kwargs, "classifier": {**tiny_kwargs["classifier"], "architecture": "dn121-512-lung-bone"}}
    roles = {role: build_untrained(role, **dict(kw)) for role, kw in kwargs.items()}
    model, card = roles["classifier"]
    with torch.no_grad():  # features are post-ReLU (>= 0): negative weights make every cell's contribution <= 0
        model.classifier.weight.copy_(-model.classifier.weight.abs() - 0.01)
        model.classifier.bias.zero_()
    at = CODES.index("AT")
    card = dataclasses.replace(
        card,
        status="trained",
        thresholds={**card.thresholds, "Atelectasis": 1e-6},
        validated={k: k == "Atelectasis" for k in card.validated},
    )
    roles["classifier"] = (model, card)
    pipe = Pipeline(**roles)

    x = torch.randn(1, 3, 128, 128)
    out = class_activation_maps(model.eval(), x)
    assert out.logits[0, at] < 0 and out.raw["frontal"][0, at].max() <= 0  # the case relu/max left all zero
    assert out.cams["frontal"][0, at].max() == 1 and out.cams["frontal"][0, at].min() == 0

    from cxrassist.types import XRay

    result = pipe.analyze(XRay(pixels=make_phantom(160, 150)), force=True)
    finding = result.findings[at]
    assert finding.positive and finding.probability < 0.5
    assert result.cams[at].max() == pytest.approx(1.0) and result.heatmap("AT").max() > 0.9
    scored = score_result(result, source="synthetic", image_id="x")
    assert [c["empty"] for c in scored["calls"] if c["code"] == "AT"] == [False]


def test_normalised_map_is_relative_to_its_own_range_and_constant_maps_are_zero() -> None:
    raw = torch.tensor([[[[-3.0, -1.0], [-2.0, -3.0]], [[5.0, 5.0], [5.0, 5.0]]]])  # [1, 2, 2, 2]
    maps = normalize_maps(raw)
    torch.testing.assert_close(maps[0, 0], torch.tensor([[0.0, 1.0], [0.5, 0.0]]))
    assert maps[0, 1].abs().sum() == 0  # no spatial preference: nothing to point at


# ---------------------------------------------------------------------------------------------- re-gridding
def test_interior_peak_is_not_moved_to_the_border() -> None:
    """The issue's case: 8x8 dense map, peak at (4, 4), high edges; the shipped classifier's geometry (256 px,
    dense level 2, stride 32, -7.5 px offset: a shift of 1.27 cells). Edge replication put the peak at (0, 0)."""
    dense = torch.full((1, 1, 8, 8), 0.1)
    dense[..., 0, :] = 0.95
    dense[..., :, 0] = 0.95
    dense[..., 4, 4] = 1.0
    dense[..., 3:6, 3:6] += torch.tensor([[0.0, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.0]])  # a blob around it
    dense[..., 4, 4] = 1.0
    shift = 1.5 - 7.5 / 32
    old = _legacy_regrid(dense, 2, 32, -7.5)[0, 0]
    oi, oj = np.unravel_index(int(old.argmax()), old.shape)
    assert oi == 0 or oj == 0  # the trap is real
    new = regrid_map(dense, 2, 32, -7.5)[0, 0]
    i, j = np.unravel_index(int(new.argmax()), new.shape)
    assert 0 < i < 7 and 0 < j < 7
    assert abs(i - (4 + shift)) < 1 and abs(j - (4 + shift)) < 1
    # no cell beyond the sampled span copies an edge sample: the first row/column fade to the minimum
    assert new[0].max() <= dense.min() + 1e-6 and new[:, 0].max() <= dense.min() + 1e-6
    assert new.max() <= dense.max() + 1e-6


@pytest.mark.parametrize("seed", range(6))
def test_peak_follows_the_dense_peak_by_the_known_shift(seed: int) -> None:
    """A smooth blob anywhere in the dense map: its re-gridded peak is the dense peak + shift (to within a cell)."""
    rng = np.random.default_rng(seed)
    h = w = 8
    py, px = rng.uniform(0.5, 5.5, size=2)  # peaks whose shifted place is still on the map
    yy, xx = np.mgrid[0:h, 0:w]
    blob = np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * 0.8**2)) + 0.3 * rng.random((h, w)) * 0.1
    dense = torch.from_numpy(blob.astype(np.float32))[None, None]
    di, dj = np.unravel_index(int(dense.argmax()), (h, w))
    shift = 1.5 - 7.5 / 32
    new = regrid_map(dense, 2, 32, -7.5)[0, 0]
    i, j = np.unravel_index(int(new.argmax()), (h, w))
    assert abs(i - (di + shift)) < 1 and abs(j - (dj + shift)) < 1


def test_no_shift_is_a_no_op() -> None:
    cam = torch.rand(2, 3, 4, 4)
    assert regrid_map(cam, 0, 32, 0.0) is cam


# ---------------------------------------------------------------------------------------------- colour meaning
def test_report_and_viewer_state_what_the_colours_mean(rg1_report: tuple[Path, dict]) -> None:
    from cxrassist.report.images import HEATMAP_FLOOR, HEATMAP_OPACITY, heatmap_legend
    from cxrassist.report.schema import ReportValidationError, validate_report

    out, report = rg1_report
    legend = report["heatmap_legend"]
    assert legend == heatmap_legend() and legend["meaning"] == HEATMAP_MEANING
    assert "own range" in legend["meaning"] and "not how likely" in legend["meaning"]
    assert legend["transparent_below"] == HEATMAP_FLOOR and legend["opacity"] == HEATMAP_OPACITY
    html = (out / "report.html").read_text()
    assert escape(HEATMAP_MEANING) in html and 'class="legend"' in html
    broken = {**report, "heatmap_legend": {**legend, "transparent_below": 2.0}}
    with pytest.raises(ReportValidationError):
        validate_report(broken)
    # the viewer draws with the same colours and floor, and shows the report's sentence
    js = (STATIC / "study.js").read_text()
    anchors = re.search(r"HEAT_ANCHORS = \[([^\]]*)\]", js)
    floor = re.search(r"HEAT_FLOOR = ([0-9.]+);", js)
    assert anchors and floor
    assert re.findall(r'"(#[0-9a-f]{6})"', anchors.group(1)) == legend["colors"]
    assert float(floor.group(1)) == legend["transparent_below"]
    assert "renderLegend(d.heatmap_legend)" in js and 'id="heatmap-legend"' in (STATIC / "study.html").read_text()


def test_the_legend_says_when_lung_maps_were_trained_into_the_lungs() -> None:
    """A classifier trained with the lung prior (loss.lung_cam_weight > 0 in its card's training config) gets one
    more sentence in the legend: a lung finding's map lying in the lungs is by design, not evidence in itself."""
    from cxrassist.report.images import heatmap_legend

    def card(loss: object) -> dict:
        return {"name": "c", "training": {"config": {"loss": loss}}}

    assert heatmap_meaning(card({"lung_cam_weight": 0.5})) == f"{HEATMAP_MEANING} {LUNG_PRIOR_MEANING}"
    for plain in (card({"lung_cam_weight": 0.0}), card({}), card(None), {"name": "c"}, card({"lung_cam_weight": "x"})):
        assert heatmap_meaning(plain) == HEATMAP_MEANING
    assert heatmap_legend(LUNG_PRIOR_MEANING)["meaning"] == LUNG_PRIOR_MEANING
    assert heatmap_legend()["meaning"] == HEATMAP_MEANING


# ---------------------------------------------------------------------------------------------- measurement
def _stand_in(
    cams: dict[str, np.ndarray], positive: set[str], record: SpatialRecord, mask: np.ndarray
) -> SimpleNamespace:
    full = np.zeros((len(CODES), 8, 8), np.float32)
    for code, cam in cams.items():
        full[CODES.index(code)] = cam
    findings = [
        SimpleNamespace(code=c, probability=0.9 if c in positive else 0.1, positive=c in positive) for c in CODES
    ]
    return SimpleNamespace(findings=findings, cams=full, cam_record=record, lung_mask=mask)


def _one_hot(i: int, j: int) -> np.ndarray:
    cam = np.zeros((8, 8), np.float32)
    cam[i, j] = 1.0
    return cam


def test_map_peak_lands_on_the_original_pixels_through_the_letterbox() -> None:
    record = SpatialRecord.for_shape(400, 200, 64)  # tall film: padded left and right in model space
    # cell (2, 5) of an 8x8 map: model centre (20, 44) -> original ((20 - 0) * 400 / 64, (44 - 16) * 200 / 32)
    row, col = map_peak(_one_hot(2, 5), record)
    assert (row, col) == pytest.approx((125.0, 175.0))
    row, col = map_peak(_one_hot(3, 0), record)  # a cell in the padding lies off the film
    assert col < 0


def test_measurement_on_a_synthetic_film() -> None:
    h, w = 160, 160
    record = SpatialRecord.for_shape(h, w, 64)  # square: cell (i, j) centred on original (20 i + 10, 20 j + 10)
    mask = np.zeros((h, w), bool)
    mask[40:120, 20:70] = True  # one "lung", 80 x 50 px: dilation radius 0.1 * sqrt(4000) = 6.3 px
    result = _stand_in(
        cams={
            "LL": _one_hot(3, 2),  # (70, 50): inside
            "AO": _one_hot(3, 7),  # (70, 150): far outside
            "AT": _one_hot(3, 3),  # (70, 70): on the mask edge + 1 px -> inside once dilated
            "PN": np.zeros((8, 8), np.float32),  # positive call with an empty map
            "CA": _one_hot(6, 6),  # a positive non-lung finding: not in the lung share
            "PE": _one_hot(7, 7),
        },  # not called; its box is top-left
        positive={"LL", "AO", "AT", "PN", "CA"},
        record=record,
        mask=mask,
    )
    assert near_mask(mask, 70, 73) and not near_mask(mask, 70, 80) and not near_mask(mask, -5, 30)
    boxes = [
        Box("f", "LL", x=20, y=30, w=10, h=10, space=(80, 80)),  # on a half-size grid: rows 60-80, cols 40-60
        Box("f", "PE", x=0, y=0, w=10, h=10, space=(80, 80)),
    ]
    scored = score_result(result, source="synthetic", image_id="f", boxes=boxes)
    calls = {c["code"]: c for c in scored["calls"]}
    assert calls["LL"]["in_lung"] and calls["AT"]["in_lung"] and not calls["AO"]["in_lung"]
    assert calls["PN"]["empty"] and not calls["LL"]["empty"] and calls["CA"]["in_lung"] is None
    points = {p["code"]: p for p in scored["pointing"]}
    assert points["LL"]["hit"] and points["LL"]["positive"]  # LL peaks at (70, 50)
    assert not points["PE"]["hit"] and not points["PE"]["positive"]  # scored although not called
    assert points["PE"]["chance"] == pytest.approx(100 / 6400, abs=1e-4)
    assert calls["AO"]["lung_distance"] == pytest.approx((150 - 69.5) / 160, abs=0.01)
    assert calls["LL"]["lung_distance"] == 0
    summary = summarize(
        [scored, {**scored, "source": "other", "pointing": []}, {**scored, "source": "boxes_only"}],
        pointing_only=["boxes_only"],
    )
    assert summary["synthetic"]["lung_calls"] == 4 and summary["synthetic"]["in_lung"] == 2
    assert summary["synthetic"]["in_lung_share"] == 0.5  # PN's empty map points nowhere useful: (0, 0) is outside
    assert summary["synthetic"]["empty_maps"] == 1 and summary["synthetic"]["empty_share"] == 0.2
    assert summary["synthetic"]["pointing_share"] == 0.5
    # every lung finding's map, called or not: LL, AT in; AO out; PN's empty map at (0, 0) out; CO, ED, PX (all-zero
    # stand-in maps, peak at cell (0, 0)) out
    assert scored["lung_maps"] == {
        "AT": True,
        "CO": False,
        "ED": False,
        "PN": False,
        "PX": False,
        "LL": True,
        "AO": False,
    }
    assert summary["synthetic"]["lung_maps"] == 7 and summary["synthetic"]["lung_maps_in_lung_share"] == round(2 / 7, 3)
    pn = np.hypot(40.5 - 10, 20.5 - 10) / 160  # PN's empty map "peaks" at cell (0, 0): (10, 10)
    assert summary["synthetic"]["out_of_lung_median_distance"] == pytest.approx((80.5 / 160 + pn) / 2, abs=0.002)
    # "all": calls of the first two films only, pointing of all three
    assert summary["all"]["films"] == 2 and summary["all"]["positive_calls"] == 10 and summary["all"]["pointing_n"] == 4
    assert summary["boxes_only"]["positive_calls"] == 5


def test_nih_boxes_and_the_shipped_pipeline_on_a_boxed_film(shared_data: Path) -> None:
    """The real bbox_2017.csv (stored 512 px coordinates) and one boxed NIH film through the shipped pipeline
    (skipped without ../shared/data, except under CI=true: the conftest fixture)."""
    data = shared_data
    from cxrassist.data.manifest import load_manifest
    from cxrassist.evaluation.heatmaps import measure
    from cxrassist.pipeline import Pipeline

    boxes = load_boxes(data / "nih_cxr14_sample" / "bbox_2017.csv")
    assert sum(len(b) for b in boxes.values()) == 11  # 12 rows, Infiltrate has no CheXpert name
    images = {r.id: r.image for r in load_manifest(data / "nih_cxr14_sample" / "manifest.csv")}
    assert set(boxes) <= set(images)
    assert all(b.x >= 0 and b.x + b.w <= 512 and b.y >= 0 and b.y + b.h <= 512 for v in boxes.values() for b in v)
    torch.set_num_threads(1)
    image_id = "00015649_000"  # a Mass (Lung Lesion) box
    res = measure(Pipeline.load(), [("nih_boxes", image_id, Path(images[image_id]))], boxes=boxes, progress=False)
    film = res["films"][0]
    assert [p["code"] for p in film["pointing"]] == ["LL"] and film["shape"] == [512, 512]
    assert res["summary"]["all"]["empty_maps"] == 0


def test_shipped_maps_on_rg1_point_into_the_lungs(rg1_file: Path) -> None:
    """RG1 (several lung masses): every positive call has a map, and every lung finding's map peaks in the (dilated)
    lungs, whether called or not (findings 1.4.0 was trained with the lung prior; a model that moves them out of the
    lungs misses issue 12's target and fails here). The report says that the maps were trained into the lungs."""
    from cxrassist.io import read_xray
    from cxrassist.pipeline import Pipeline

    torch.set_num_threads(1)
    result = Pipeline.load().analyze(read_xray(rg1_file))
    scored = score_result(result, source="rg1", image_id="RG1")
    assert not any(c["empty"] for c in scored["calls"])
    for code in ("LL", "AO"):
        row, col = map_peak(result.cams[CODES.index(code)], result.cam_record)
        assert near_mask(result.lung_mask, row, col), f"{code} peaks at ({row:.0f}, {col:.0f}), outside the lungs"
    assert all(scored["lung_maps"].values()), scored["lung_maps"]
    assert result.heatmap_meaning == f"{HEATMAP_MEANING} {LUNG_PRIOR_MEANING}"
