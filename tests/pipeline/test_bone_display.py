"""Bone pictures a reader can look at (issue 13): the bone-subtracted image is windowed for display between robust
percentiles of the thorax and the window is stated (report.json, DICOM SC); the soft-tissue image keeps the
radiograph's display range; the raw bone image (the classifier channel) is untouched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image

from cxrassist.postprocess import (
    BONE_WINDOW_MIN_WIDTH,
    SOFT_TISSUE_WINDOW,
    as_uint8,
    bone_display_window,
    thorax_box,
)


def _ribs(h: int = 200, w: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A faint synthetic bone layer (rib bands of 0.01-0.03 inside the lungs' box) and its lung mask."""
    bone = np.zeros((h, w), np.float32)
    mask = np.zeros((h, w), bool)
    mask[40:160, 20:70] = mask[40:160, 90:140] = True
    for k, y in enumerate(range(45, 160, 18)):
        bone[y : y + 6, 15:145] = 0.01 + 0.003 * k
    return bone, mask


def test_window_stretches_a_faint_bone_layer_over_the_grey_scale() -> None:
    bone, mask = _ribs()
    raw8 = as_uint8(bone)
    assert raw8.max() < 10  # shown as is: a black square
    window = bone_display_window(bone, mask)
    assert window.low == pytest.approx(0.0, abs=1e-6) and 0.02 < window.high <= bone.max() + 1e-6
    shown = as_uint8(window.apply(bone))
    assert shown.max() == 255 and shown[bone == 0].max() == 0  # ribs white, gaps black
    assert shown[bone > 0].mean() > 120
    assert "thorax" in window.method and "display window" in window.describe()
    # the window is a display matter only: the input array is not changed
    assert float(bone.max()) == pytest.approx(0.028)


def test_window_ignores_what_lies_outside_the_thorax() -> None:
    bone, mask = _ribs()
    bone[0:10, 0:10] = 0.9  # a bright marker / collimator edge far from the lungs
    inside = bone_display_window(bone, mask)
    assert inside.high < 0.05  # the marker does not set the window (it would darken every rib)
    box = thorax_box(mask)
    assert box is not None and box[0].start <= 40 - 10 and box[0].stop >= 160 + 10
    whole = bone_display_window(bone, np.zeros_like(mask))  # no lung mask: the whole image
    assert "whole image" in whole.method


def test_an_empty_bone_image_stays_dark() -> None:
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 0.001, (64, 64)).astype(np.float32)
    window = bone_display_window(noise)
    assert window.high - window.low >= BONE_WINDOW_MIN_WIDTH - 1e-9
    assert as_uint8(window.apply(noise)).max() < 30  # noise is not stretched to full contrast


@pytest.fixture(scope="module")
def shipped_bone_analysis(
    tiny_weights_dir: Path,
    rg1_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Any, Path, dict[str, Any]]:
    """RG1 through the real pipeline with the SHIPPED lung and bone models (tiny classifier and triage)."""
    from cxrassist.io import read_xray
    from cxrassist.pipeline import Pipeline
    from cxrassist.report import write_outputs
    from cxrassist.weights import shipped_dir

    root = tmp_path_factory.mktemp("bone-weights")
    for name in ("classifier", "triage"):
        shutil.copytree(tiny_weights_dir / name, root / name)
    for name in ("lungseg", "bone"):
        shutil.copytree(shipped_dir() / name, root / name)
    pipe = Pipeline.load(root)
    result = pipe.analyze(read_xray(rg1_file))
    out = tmp_path_factory.mktemp("bone-report") / "report"
    report = write_outputs(result, out, "json,html,png,dicom")
    return result, out, report


def test_rg1_bone_pictures_are_readable_and_their_window_is_stated(shipped_bone_analysis: Any) -> None:
    result, out, report = shipped_bone_analysis
    on_disk = json.loads((out / "report.json").read_text())
    stated = on_disk["bone"]["display_window"]
    sub = stated["subtracted"]
    assert 0 <= sub["low"] < sub["high"] < 1 and "percentiles" in sub["method"]
    assert stated["suppressed"]["low"] == 0 and stated["suppressed"]["high"] == 1

    with Image.open(out / report["bone"]["subtracted"]) as im:
        shown = np.asarray(im)
    raw = as_uint8(result.bone)
    assert raw.mean() < 8  # what the PNG used to be: a black square
    # readable: mostly dark (most of a film is not bone) but the bones use the grey scale
    assert 12 < shown.mean() < 170 and shown.std() > 25 and np.percentile(shown, 99) > 200
    expected = as_uint8(np.clip((result.bone - sub["low"]) / (sub["high"] - sub["low"]), 0, 1))
    assert np.abs(shown.astype(int) - expected.astype(int)).max() <= 1  # the stated window is the one applied

    # soft tissue in the radiograph's own range: where the model found no bone, it is the radiograph's grey level
    with Image.open(out / report["bone"]["suppressed"]) as im:
        soft = np.asarray(im).astype(int)
    with Image.open(out / report["images"]["radiograph"]) as im:
        radiograph = np.asarray(im).astype(int)
    no_bone = result.bone < 0.5 / 255
    assert no_bone.mean() > 0.2 and np.abs(soft[no_bone] - radiograph[no_bone]).max() <= 1
    assert (soft <= radiograph + 1).all()  # bone only ever removed
    assert np.array_equal(soft, as_uint8(SOFT_TISSUE_WINDOW.apply(result.bone_suppressed)))
    html = (out / "report.html").read_text()
    assert f"display window {sub['low']:.3f}-{sub['high']:.3f}" in html  # the page states it under the picture


def test_rg1_bone_secondary_captures_state_their_window(shipped_bone_analysis: Any) -> None:
    _, out, report = shipped_bone_analysis
    comments = {}
    for entry in report["outputs"]["dicom"]:
        ds = pydicom.dcmread(out / entry["path"])
        if ds.SOPClassUID != pydicom.uid.SecondaryCaptureImageStorage:
            continue
        comments[str(ds.ImageComments)] = ds
    bone_sc = [ds for text, ds in comments.items() if text.startswith("Bone-subtracted")]
    soft_sc = [ds for text, ds in comments.items() if text.startswith("Bone-suppressed")]
    assert len(bone_sc) == 1 and len(soft_sc) == 1
    assert "display window" in bone_sc[0].ImageComments and "percentiles" in bone_sc[0].ImageComments
    assert "radiograph's own display range" in soft_sc[0].ImageComments
    pixels = bone_sc[0].pixel_array
    assert pixels.mean() > 12 and pixels.std() > 25
