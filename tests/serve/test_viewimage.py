"""What the viewer windows: the stored values at full bit depth, windows fitted to the film, the study header."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from cxrassist.io import read_xray
from cxrassist.serve.viewimage import stored_pixels, study_header, window_presets, write_view_pixels


def test_rg1_stored_values_and_its_voi_window(rg1: Path, tmp_path: Path) -> None:
    import pydicom

    ds = pydicom.dcmread(rg1)
    meta = write_view_pixels(rg1, read_xray(rg1), tmp_path, "frontal")
    raw = np.fromfile(tmp_path / "frontal.pixels", dtype="<u2").reshape(meta["height"], meta["width"])
    assert np.array_equal(raw, ds.pixel_array)  # every stored bit, not an 8-bit copy
    assert meta["dtype"] == "uint16" and meta["bits_stored"] == 15 and meta["invert"] is True  # MONOCHROME1
    assert meta["presets"]["default"]["center"] == float(ds.WindowCenter)
    assert meta["presets"]["default"]["width"] == float(ds.WindowWidth)
    assert list(meta["presets"]) == ["default", "lung", "bone", "full"]
    assert json.loads((tmp_path / "frontal.json").read_text())["presets"] == meta["presets"]
    # MONOCHROME1: the lung window (dark on screen) sits in the HIGH stored values, the bone window in the low ones
    assert meta["presets"]["lung"]["center"] > meta["presets"]["bone"]["center"]
    full = meta["presets"]["full"]
    assert full["center"] - full["width"] / 2 == raw.min() and full["center"] + full["width"] / 2 == raw.max()


def test_png_values_and_percentile_default(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 4096, size=(80, 72)).astype(np.uint16)
    path = tmp_path / "twelve.png"
    Image.fromarray(pixels).save(path)  # a 16-bit container of 12-bit data
    arr, info = stored_pixels(path, read_xray(path))
    assert np.array_equal(arr, pixels) and info["voi"] is None and info["invert"] is False
    presets = window_presets(arr, False, None)
    lo, hi = np.percentile(arr[::1, ::1].astype(float), [0.5, 99.5])
    assert presets["default"]["center"] == (lo + hi) / 2 and presets["default"]["width"] == hi - lo
    assert study_header(path) == {}  # no DICOM header: nothing identifies the study


def test_study_header_of_rg1(rg1: Path) -> None:
    header = study_header(rg1)
    assert header["patient_id"] == "9RG1" and header["study_date"] == "20040826"
    assert header["description"] == "THORAX" and header["modality"] == "CR"
    assert "^" not in header["patient_name"]
