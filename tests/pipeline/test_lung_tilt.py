"""A rotated film is refused by its lungs: the line through the two lungs' centroids must lie within
MAX_LUNG_TILT_DEG of the horizontal (issue 15: the gate let a quarter of 30-degree rotations through)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import ndimage

from cxrassist.errors import NotChestXRayError
from cxrassist.io import read_xray
from cxrassist.pipeline import MAX_LUNG_TILT_DEG
from cxrassist.postprocess import lung_tilt_deg
from cxrassist.report import write_outputs
from cxrassist.report.schema import validate_report


def two_lungs(h: int = 200, w: int = 240, angle: float = 0.0, second: float = 1.0) -> np.ndarray:
    """Two elliptical lungs side by side (the second scaled by ``second``), rotated by ``angle`` degrees."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    right = ((xx - 0.3 * w) / (0.12 * w)) ** 2 + ((yy - 0.5 * h) / (0.3 * h)) ** 2 < 1
    left = ((xx - 0.7 * w) / (0.12 * w * second)) ** 2 + ((yy - 0.5 * h) / (0.3 * h * second)) ** 2 < 1
    mask = (right | left).astype(np.float32)
    if angle:
        mask = ndimage.rotate(mask, angle, reshape=True, order=0)
    return mask > 0.5


@pytest.mark.parametrize("angle", [0.0, 12.0, -25.0, 40.0, 80.0])
def test_tilt_is_the_angle_the_lungs_were_turned_by(angle: float) -> None:
    tilt = lung_tilt_deg(two_lungs(angle=angle))
    assert tilt is not None and tilt == pytest.approx(abs(angle), abs=1.0)


def test_tilt_is_the_same_upside_down_mirrored_and_letterboxed() -> None:
    mask = two_lungs(angle=15.0)
    base = lung_tilt_deg(mask)
    assert base == pytest.approx(15.0, abs=1.0)
    assert lung_tilt_deg(np.rot90(mask, 2)) == pytest.approx(base, abs=1e-6)
    assert lung_tilt_deg(mask[:, ::-1]) == pytest.approx(base, abs=1e-6)
    padded = np.pad(mask, ((40, 40), (0, 0)))  # a letterbox adds bars; the angle does not change
    assert lung_tilt_deg(padded) == pytest.approx(base, abs=1e-6)


def test_a_partly_covered_lung_is_not_a_turn() -> None:
    """Consolidation or effusion can leave only the top of one lung in the mask: the centroid line then tilts, the
    lungs' long axes do not, and the film is not called rotated."""
    mask = two_lungs(h=240, w=240)
    mask[150:, 120:] = False  # the lower part of the image-right lung is gone
    assert lung_tilt_deg(mask) == pytest.approx(0.0, abs=1.0)
    turned = two_lungs(h=240, w=240, angle=30.0)
    assert lung_tilt_deg(turned) == pytest.approx(30.0, abs=1.5)


def test_axes_and_line_turned_opposite_ways_are_no_turn() -> None:
    mask = np.zeros((240, 240), bool)
    left = ndimage.rotate(two_lungs(h=240, w=240).astype(np.float32), 25.0, reshape=False, order=0) > 0.5
    mask[:, :120] = left[:, :120]
    mask[:, 120:] = two_lungs(h=240, w=240)[:, 120:]  # one lung turned, the other upright
    tilt = lung_tilt_deg(mask)
    assert tilt is not None and tilt < MAX_LUNG_TILT_DEG


def test_no_tilt_without_two_lungs() -> None:
    assert lung_tilt_deg(np.zeros((64, 64), bool)) is None
    one = two_lungs()
    one[:, one.shape[1] // 2 :] = False
    assert lung_tilt_deg(one) is None
    assert lung_tilt_deg(two_lungs(second=0.25)) is None  # the second component under 10 % of the first
    assert lung_tilt_deg(two_lungs(second=0.5)) == pytest.approx(0.0, abs=1.0)


@pytest.fixture
def tilted_lungs(monkeypatch: pytest.MonkeyPatch) -> float:
    """The pipeline's lung model sees lungs turned by 35 degrees (the tiny test model's own mask is random)."""
    import cxrassist.pipeline as pipeline

    real = pipeline.predict_lung_mask
    angle = 35.0

    def predict(model: Any, card: Any, pixels: np.ndarray) -> tuple[np.ndarray, Any, np.ndarray]:
        small, rec, original = real(model, card, pixels)
        level = two_lungs(*small.shape).astype(np.float32)
        return ndimage.rotate(level, angle, reshape=False, order=0) > 0.5, rec, original

    monkeypatch.setattr(pipeline, "predict_lung_mask", predict)
    return angle


def test_pipeline_refuses_a_film_whose_lungs_are_tilted(tiny_pipeline: Any, phantom_png: Path, tilted_lungs) -> None:
    with pytest.raises(NotChestXRayError, match=r"lungs are turned 3\d degrees off upright.*--force"):
        tiny_pipeline.analyze(read_xray(phantom_png))


def test_forced_tilted_film_is_analysed_marked_and_reported(
    tiny_pipeline: Any, phantom_png: Path, tilted_lungs, tmp_path: Path
) -> None:
    result = tiny_pipeline.analyze(read_xray(phantom_png), force=True)
    assert result.forced and result.lung_tilt_deg is not None and result.lung_tilt_deg > MAX_LUNG_TILT_DEG
    assert any(w.startswith("FORCED") and "lungs are turned" in w for w in result.warnings)
    report = write_outputs(result, tmp_path / "r", ["json"])
    validate_report(report)
    tilt = report["lung"]["tilt"]
    assert tilt["degrees"] == pytest.approx(result.lung_tilt_deg, abs=0.05)
    assert tilt["limit_degrees"] == MAX_LUNG_TILT_DEG and "centroid line" in tilt["method"]
    assert report["forced"] is True


def test_upright_film_reports_its_tilt(tiny_pipeline: Any, phantom_png: Path, tmp_path: Path) -> None:
    result = tiny_pipeline.analyze(read_xray(phantom_png), force=True)
    report = write_outputs(result, tmp_path / "r", ["json"])
    validate_report(report)
    degrees = report["lung"]["tilt"]["degrees"]
    assert degrees is None or 0.0 <= degrees <= 90.0


def test_shipped_lung_model_on_rg1_upright_and_rotated(rg1_path: Path) -> None:
    """The real film with the shipped lung model: upright it is level; turned by 30 degrees the lungs say so."""
    from cxrassist.channels import predict_lung_mask
    from cxrassist.weights import load_model, shipped_dir

    model, card = load_model(shipped_dir() / "lungseg", inference=True)
    pixels = read_xray(rg1_path).pixels[::4, ::4].copy()
    upright = lung_tilt_deg(predict_lung_mask(model, card, pixels)[0])
    turned = ndimage.rotate(pixels, 30.0, reshape=False, order=1, mode="constant", cval=0.0)
    rotated = lung_tilt_deg(predict_lung_mask(model, card, np.clip(turned, 0, 1).astype(np.float32))[0])
    assert upright is not None and upright < 10.0
    assert rotated is not None and rotated > MAX_LUNG_TILT_DEG
