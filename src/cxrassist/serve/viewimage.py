"""What the viewer shows of an uploaded radiograph: its stored pixel values at full bit depth, how to window them,
and the header lines that identify the study on the worklist.

Why raw values: an 8-bit copy of a 15-bit CR leaves window/level nothing to work with (a narrow lung window becomes a
few grey steps). The page fetches ``<role>.pixels`` (little-endian, ``dtype`` of the meta) and windows it itself with
``cxrassist.preprocess.apply_level``'s formula in stored-value units, so its read-out is the image's own values.
Written by the worker before the analysis (a refused study can still be looked at).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cxrassist.types import XRay

#: Window presets as percentiles of the displayed brightness (0 = darkest on screen): lungs are the dark part of a
#: chest film, bone the bright part. Keys 1-4 in the viewer, in this order.
PRESET_PERCENTILES: dict[str, tuple[float, float, str]] = {
    "lung": (1.0, 65.0, "lung fields: the darker two thirds spread out"),
    "bone": (35.0, 99.8, "bone and mediastinum: the brighter part spread out"),
    "full": (0.0, 100.0, "every stored value, nothing clipped"),
}


def _dicom_stored(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import pydicom

    from cxrassist.io.quiet import collecting

    with collecting():
        ds = pydicom.dcmread(path, force=True)
        arr = np.asarray(ds.pixel_array)
    if arr.ndim == 3:  # grey in RGB clothing (read_xray accepted it): one channel
        arr = arr[..., 0]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    voi = None
    if "WindowCenter" in ds and "WindowWidth" in ds and not ds.get("VOILUTSequence"):
        c, w = ds.WindowCenter, ds.WindowWidth
        c = float(c[0] if ds["WindowCenter"].VM > 1 else c)
        w = float(w[0] if ds["WindowWidth"].VM > 1 else w)
        if w > 0 and slope != 0:  # the VOI window is in modality units: back to stored values
            voi = {"center": (c - intercept) / slope, "width": w / abs(slope), "source": "DICOM window (VOI)"}
    invert = photometric == "MONOCHROME1"
    if str(ds.get("PresentationLUTShape", "")).upper() == "INVERSE":
        invert = not invert
    info = {
        "photometric": photometric,
        "bits_stored": int(ds.get("BitsStored", 16) or 16),
        "invert": invert,
        "voi": voi,
        "rescale": [slope, intercept] if (slope, intercept) != (1.0, 0.0) else None,
    }
    return arr, info


def stored_pixels(path: Path, xray: XRay) -> tuple[np.ndarray, dict[str, Any]]:
    """The stored values of ``path`` (int array) and how they are displayed (photometric, invert, VOI window).

    DICOM: the decoded pixel data before any LUT. Other formats: the file's samples at the bit depth ``read_xray``
    found (``round(pixels * (2**bits - 1))``: exact for 8-, 12- and 16-bit files).
    """
    if xray.source_format == "dicom":
        try:
            arr, info = _dicom_stored(path)
            if arr.shape == xray.shape and np.issubdtype(arr.dtype, np.integer):
                return arr, info
        except Exception:  # noqa: BLE001 - read_xray accepted the file; fall back to its pixels
            pass
    bits = int(xray.bits_stored) if 1 <= int(xray.bits_stored) <= 16 else 8
    arr = np.rint(np.clip(xray.pixels, 0.0, 1.0) * (2**bits - 1)).astype(np.uint16 if bits > 8 else np.uint8)
    return arr, {"photometric": "MONOCHROME2", "bits_stored": bits, "invert": False, "voi": None, "rescale": None}


def window_presets(arr: np.ndarray, invert: bool, voi: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Windows (center, width in stored units) that fit this image: its DICOM VOI (else the 0.5-99.5 % range of its
    values) as ``default``, then lung / bone / full from percentiles of the displayed brightness."""
    sample = arr[:: max(1, arr.shape[0] // 512), :: max(1, arr.shape[1] // 512)].astype(np.float64).ravel()

    def window(lo_pct: float, hi_pct: float) -> tuple[float, float]:
        if invert:  # displayed brightness runs against the stored value
            lo_pct, hi_pct = 100.0 - hi_pct, 100.0 - lo_pct
        lo, hi = np.percentile(sample, [lo_pct, hi_pct]) if (lo_pct, hi_pct) != (0.0, 100.0) else (arr.min(), arr.max())
        lo, hi = float(lo), float(hi)
        if hi <= lo:
            hi = lo + 1.0
        return (lo + hi) / 2.0, hi - lo

    presets: dict[str, dict[str, Any]] = {}
    if voi:
        presets["default"] = {
            "center": voi["center"],
            "width": voi["width"],
            "label": "default",
            "why": voi.get("source", "DICOM window"),
        }
    else:
        c, w = window(0.5, 99.5)
        presets["default"] = {"center": c, "width": w, "label": "default", "why": "0.5-99.5 % of the stored values"}
    for name, (lo_pct, hi_pct, why) in PRESET_PERCENTILES.items():
        c, w = window(lo_pct, hi_pct)
        presets[name] = {"center": c, "width": w, "label": name, "why": why}
    return presets


def write_view_pixels(path: Path, xray: XRay, view_dir: Path, role: str) -> dict[str, Any]:
    """Write ``<role>.pixels`` (raw little-endian) and ``<role>.json`` (shape, dtype, presets) into ``view_dir``."""
    arr, info = stored_pixels(path, xray)
    if arr.dtype.kind == "i" or arr.min() < 0:
        arr, dtype = np.clip(arr, -32768, 32767).astype("<i2"), "int16"
    elif arr.max() <= 255 and arr.dtype.itemsize == 1:
        arr, dtype = arr.astype(np.uint8), "uint8"
    else:
        arr, dtype = np.clip(arr, 0, 65535).astype("<u2"), "uint16"
    meta = {
        "width": int(arr.shape[1]),
        "height": int(arr.shape[0]),
        "dtype": dtype,
        "min": float(arr.min()),
        "max": float(arr.max()),
        **info,
        "presets": window_presets(arr, info["invert"], info["voi"]),
        "formula": "out = clip((v - (center - width/2)) / width, 0, 1), v = stored value; then 1 - out if invert",
    }
    view_dir.mkdir(parents=True, exist_ok=True)
    tmp = view_dir / f".{role}.pixels.tmp"
    tmp.write_bytes(np.ascontiguousarray(arr).tobytes())
    tmp.replace(view_dir / f"{role}.pixels")
    (view_dir / f"{role}.json").write_text(json.dumps(meta), encoding="utf-8")
    return meta


_HEADER_TAGS = {
    "patient_name": "PatientName",
    "patient_id": "PatientID",
    "study_date": "StudyDate",
    "study_time": "StudyTime",
    "description": "StudyDescription",
    "accession": "AccessionNumber",
    "modality": "Modality",
}


def study_header(path: Path) -> dict[str, Any]:
    """What identifies a study on the worklist (DICOM only; {} for other files). Patient identifiers: stored and
    served behind the API token, never logged."""
    import pydicom

    from cxrassist.io.quiet import collecting

    try:
        with collecting():
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            out = {key: str(ds.get(tag, "") or "").strip() for key, tag in _HEADER_TAGS.items()}
            if not out["description"]:
                out["description"] = str(ds.get("SeriesDescription", "") or "").strip()
    except Exception:  # noqa: BLE001 - not DICOM, or an unreadable header: nothing to show
        return {}
    out["patient_name"] = out["patient_name"].replace("^", " ").strip()
    return {k: v[:128] for k, v in out.items() if v}
