"""DICOM radiographs -> XRay, with pydicom 3 (decoders through the pylibjpeg / pyjpegls plug-ins).

Order of the checks matters: everything that can be refused from the header (no pixel data, multi-frame, modality,
size / decompression bomb, missing decoder) is refused before a single pixel is decoded.

Intensity pipeline (PS3.3 C.11 / PS3.4 N.2): stored values -> Modality LUT (rescale slope/intercept or Modality LUT
Sequence) -> optionally VOI (VOI LUT Sequence, else Window Center/Width) -> scaled to [0, 1] by the *possible* output
range of the last step (never by the data's own min/max, so that two images of one device stay comparable) ->
MONOCHROME1 (or Presentation LUT Shape INVERSE) inverted so that 1 is always bone white.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from cxrassist.errors import (
    ColourPhotoError,
    CorruptFileError,
    InputError,
    MissingDecoderError,
    MultiFrameError,
    NoPixelDataError,
    NotAnImageError,
    TruncatedFileError,
    UnsupportedModalityError,
)
from cxrassist.io.limits import DEFAULT_MAX_PIXELS, check_dimensions
from cxrassist.io.quiet import ReadNotes, collecting, reduce_message
from cxrassist.io.raster import gray_from_rgb
from cxrassist.types import View, XRay

log = logging.getLogger(__name__)

#: Projection radiography modalities we read. DX (digital), CR (computed), RG (radiographic imaging, e.g.
#: film digitised as such); "DR" is not a DICOM defined term but some vendors write it. Secondary captures (OT, SC)
#: are accepted too - digitised film is commonly stored that way - but carry no trustworthy modality, so the chest
#: check then relies on the image itself. Everything else (CT, MR, US, MG, XA, RF, NM, PT, ...) is refused.
RADIOGRAPHY_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})
SECONDARY_CAPTURE_MODALITIES = frozenset({"OT", "SC"})
ACCEPTED_MODALITIES = RADIOGRAPHY_MODALITIES | SECONDARY_CAPTURE_MODALITIES

# pip package that provides a decoder, by transfer syntax UID prefix (shown when none is installed).
_DECODER_PACKAGES: tuple[tuple[str, str], ...] = (
    ("1.2.840.10008.1.2.4.50", "pylibjpeg-libjpeg"),  # JPEG baseline
    ("1.2.840.10008.1.2.4.51", "pylibjpeg-libjpeg"),  # JPEG extended
    ("1.2.840.10008.1.2.4.57", "pylibjpeg-libjpeg"),  # JPEG lossless
    ("1.2.840.10008.1.2.4.70", "pylibjpeg-libjpeg"),  # JPEG lossless SV1
    ("1.2.840.10008.1.2.4.80", "pylibjpeg-libjpeg"),  # JPEG-LS lossless (or pyjpegls)
    ("1.2.840.10008.1.2.4.81", "pylibjpeg-libjpeg"),  # JPEG-LS near-lossless
    ("1.2.840.10008.1.2.4.9", "pylibjpeg-openjpeg"),  # JPEG 2000 (.90, .91, ...)
    ("1.2.840.10008.1.2.4.20", "pylibjpeg-openjpeg"),  # HTJ2K
    ("1.2.840.10008.1.2.5", "pylibjpeg-rle"),  # RLE (pydicom also has its own)
)

_LATERAL_POSITIONS = {"LL", "RL", "LAT", "LATERAL", "L", "LLD", "RLD"}
# SNOMED codes of CID 4010 "DX View" (old SNOMED-RT and SNOMED CT), checked before the code meaning text.
_VIEW_CODES = {
    "R-10206": View.PA,
    "399348003": View.PA,
    "R-10214": View.AP,
    "272479000": View.AP,
    "R-10232": View.LATERAL,
    "R-10236": View.LATERAL,
    "399198007": View.LATERAL,
    "399173006": View.LATERAL,
}


def looks_like_dicom(head: bytes) -> bool:
    """Part-10 file: 128-byte preamble then b'DICM'."""
    return len(head) >= 132 and head[128:132] == b"DICM"


def read_dicom(
    path: Path, *, apply_voi: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS, force: bool = False
) -> XRay:
    """Read one single-frame projection radiograph. ``force`` reads files without the Part-10 preamble.

    Every failure is an ``InputError``: whatever pydicom or a decoder raises on a malformed file (an unknown VR, a
    value of the wrong length, a colour space it cannot convert...) becomes a one-line ``CorruptFileError``
    that names what is wrong, never the value. pydicom's warnings are counted (``quiet.collecting``), not printed:
    their text quotes header values, which can be the patient's name or ID.
    """
    with collecting() as notes:
        try:
            xray = _read_dicom(path, apply_voi=apply_voi, max_pixels=max_pixels, force=force, notes=notes)
        except InputError:
            raise
        except RecursionError as exc:
            raise CorruptFileError(f"{path.name}: the DICOM header is corrupt (sequences nested too deeply)") from exc
        except MemoryError as exc:
            raise CorruptFileError(
                f"{path.name}: the DICOM header is corrupt (it declares more data than can be held)"
            ) from exc
        except Exception as exc:  # pydicom and its decoders raise many types on malformed input
            raise CorruptFileError(f"{path.name}: the DICOM file is corrupt ({_what(exc)})") from exc
    return xray


def _what(exc: BaseException) -> str:
    """What went wrong, for a one-line refusal: the exception's own words up to the value it quotes."""
    text = reduce_message(str(exc).splitlines()[0] if str(exc).strip() else "")
    if len(text.split()) <= 2:  # "Unknown (0028,0004)": the rest of pydicom's sentence quoted the value
        text = f"{text} holds an invalid value"
    kind = _EXCEPTION_WORDS.get(type(exc).__name__, type(exc).__name__)
    return f"{kind}: {text}" if text and text != "malformed value" else kind


_EXCEPTION_WORDS = {
    "BytesLengthException": "a value's length does not fit its VR",
    "NotImplementedError": "an encoding pydicom cannot read",
    "TypeError": "a value of the wrong type",
    "ValueError": "an invalid value",
    "KeyError": "a required element is missing",
    "AttributeError": "a required element is missing or unreadable",
    "IndexError": "an element is shorter than declared",
    "OverflowError": "a value out of range",
    "struct.error": "a binary value of the wrong size",
    "error": "a binary value of the wrong size",
}


def _read_dicom(path: Path, *, apply_voi: bool, max_pixels: int, force: bool, notes: ReadNotes) -> XRay:
    import pydicom
    from pydicom.errors import InvalidDicomError

    name = path.name
    try:
        with open(path, "rb") as raw_fh:
            fh = _ShortReadWatch(raw_fh)
            ds = pydicom.dcmread(fh, force=force)
    except InvalidDicomError as exc:
        raise NotAnImageError(f"{name}: not a DICOM file ({reduce_message(exc)})") from exc
    except (EOFError, OSError, ValueError, KeyError, TypeError, IndexError, OverflowError) as exc:
        raise TruncatedFileError(f"{name}: the DICOM header is truncated or corrupt ({type(exc).__name__})") from exc
    if fh.short:  # pydicom stops silently at the end of a cut file; a short read gives it away
        raise TruncatedFileError(f"{name}: the DICOM file is truncated or corrupt (an element runs past the end)")
    if "PixelData" not in ds and "SOPClassUID" not in ds:
        if force:
            raise NotAnImageError(f"{name}: not a DICOM file nor a known image format")
        raise TruncatedFileError(f"{name}: the DICOM file ends before its data set (truncated)")
    if force and not any(k in ds for k in ("PixelData", "Rows", "Modality")):
        raise NotAnImageError(f"{name}: not a DICOM file nor a known image format")

    _ensure_transfer_syntax(ds)
    _check_header(ds, name, max_pixels)
    raw = _decode(ds, name)
    pixels, window_applied, out_bits = _to_unit_range(raw, ds, apply_voi=apply_voi)
    meta = _metadata(ds)
    if notes.total:
        meta["extra"]["header_warnings"] = notes.summary()
    bad = invalid_value_tags(ds)
    if bad:
        meta["extra"]["invalid_value_tags"] = bad
    return XRay(
        pixels=pixels,
        source_path=path,
        source_format="dicom",
        window_applied=window_applied,
        bits_stored=int(ds.get("BitsStored", out_bits) or out_bits),
        **meta,
    )


def invalid_value_tags(ds: Any, limit: int = 8) -> list[str]:
    """Top-level elements whose value breaks its VR's rules (pydicom's own validation), as "(gggg,eeee) Keyword".

    Says which tag is wrong without its value (the value may be a patient identifier).
    """
    from pydicom import config
    from pydicom.valuerep import validate_value

    out: list[str] = []
    for elem in ds:
        if elem.VR not in _TEXT_VRS or elem.value is None:
            continue
        values = (
            elem.value
            if isinstance(elem.value, (list, tuple)) or type(elem.value).__name__ == "MultiValue"
            else [elem.value]
        )
        try:
            for value in values:
                validate_value(elem.VR, str(value), config.RAISE)
        except Exception:  # noqa: BLE001 - any complaint counts as invalid
            out.append(f"({elem.tag.group:04X},{elem.tag.element:04X}) {elem.keyword or 'private'}")
            if len(out) >= limit:
                break
    return out


#: VRs whose values are text that pydicom validates (numbers and bytes are checked by their own decoding).
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)


def _ensure_transfer_syntax(ds: Any) -> None:
    """A data set without file meta (no preamble) gets the transfer syntax its encoding was read with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if little is not False:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


class _ShortReadWatch:
    """File wrapper that notices a read returning fewer bytes than asked (the file was cut mid-element)."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self.short = False

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        if size is not None and size > 0 and 0 < len(data) < size:
            self.short = True
        return data

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._fh, attr)


# ---------------------------------------------------------------------------------------------------- header checks
def _check_header(ds: Any, name: str, max_pixels: int) -> None:
    sop = str(ds.get("SOPClassUID", "") or "")
    sop_name = getattr(ds.get("SOPClassUID"), "name", sop) if sop else "unknown SOP class"
    if "PixelData" not in ds:
        other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        what = f"only {other[0]}" if other else "no pixel data"
        raise NoPixelDataError(f"{name}: DICOM object has {what} ({sop_name}); a radiograph image is needed")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    modality = str(ds.get("Modality", "") or "").upper()
    if frames > 1:
        raise MultiFrameError(
            f"{name}: {frames}-frame {modality or 'DICOM'} object (a volume or cine); one 2-D radiograph is needed"
        )
    if modality and modality not in ACCEPTED_MODALITIES:
        raise UnsupportedModalityError(
            f"{name}: modality {modality} is not projection radiography (accepted: "
            f"{', '.join(sorted(ACCEPTED_MODALITIES))})"
        )
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows <= 0 or cols <= 0:
        raise NotAnImageError(f"{name}: DICOM pixel data without valid Rows/Columns")
    check_dimensions(name, rows, cols, frames=frames, max_pixels=max_pixels)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if spp not in (1, 3):
        raise NotAnImageError(f"{name}: {spp} samples per pixel is not supported")
    _check_decoder(ds, name)


def _check_decoder(ds: Any, name: str) -> None:
    """Refuse, naming the package to install, when the transfer syntax needs a decoder we do not have."""
    from pydicom.pixels import get_decoder

    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if tsyntax is None or not tsyntax.is_compressed:
        return
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as exc:
        raise MissingDecoderError(f"{name}: transfer syntax {tsyntax.name} ({tsyntax}) cannot be decoded") from exc
    if not decoder.is_available:
        package = next((pkg for prefix, pkg in _DECODER_PACKAGES if str(tsyntax).startswith(prefix)), "pylibjpeg")
        raise MissingDecoderError(
            f"{name}: no decoder installed for {tsyntax.name}; install one with: pip install {package}"
        )


def _decode(ds: Any, name: str) -> np.ndarray:
    """Decode the one frame; a truncated or corrupt pixel stream, or one that disagrees with the header, is refused.

    Colour: pydicom already returns YBR_FULL / YBR_FULL_422 as RGB, and the JPEG 2000 decoders undo YBR_RCT /
    YBR_ICT themselves, so the array is RGB whatever the header says (converting again would tint a grey image).
    """
    try:
        arr = ds.pixel_array
    except (ValueError, EOFError, OSError, RuntimeError, IndexError, KeyError, AttributeError) as exc:
        raise TruncatedFileError(f"{name}: pixel data is truncated or corrupt ({_what(exc)})") from exc
    arr = np.asarray(arr)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    expected_ndim = 2 + (spp > 1) + (frames > 1)
    if arr.ndim != expected_ndim:  # pydicom reads surplus bytes as extra frames: the header's size is wrong
        raise CorruptFileError(
            f"{name}: the pixel data does not match the header (it holds {arr.size} samples, the header's "
            f"{ds.get('Columns', '?')}x{ds.get('Rows', '?')} image with {spp} sample(s) per pixel needs "
            f"{int(ds.get('Rows', 0) or 0) * int(ds.get('Columns', 0) or 0) * spp})"
        )
    if arr.ndim == 3 and arr.shape[-1] == 3:  # colour: accept only if it is grey in RGB clothing
        gray = gray_from_rgb(arr)
        if gray is None:
            raise ColourPhotoError(
                f"{name}: DICOM colour image whose channels differ (a photograph?), not a radiograph"
            )
        return gray
    if arr.ndim != 2:
        raise MultiFrameError(f"{name}: decoded pixel array has shape {arr.shape}; one 2-D frame is needed")
    return arr


# ------------------------------------------------------------------------------------------------------ intensities
def _stored_range(ds: Any) -> tuple[float, float]:
    bits = int(ds.get("BitsStored", 8) or 8)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _modality_range(ds: Any) -> tuple[float, float]:
    """Possible output range of the Modality LUT stage (the same convention pydicom's windowing uses)."""
    if ds.get("ModalityLUTSequence"):
        return 0.0, 2.0 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
    lo, hi = _stored_range(ds)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, icpt = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = sorted((lo * slope + icpt, hi * slope + icpt))
    return lo, hi


def _voi_lut_range(item: Any) -> tuple[float, float]:
    bits = int(item.LUTDescriptor[2])
    return 0.0, 2.0**bits - 1


def _apply_lut(arr: np.ndarray, item: Any, ds: Any) -> np.ndarray:
    """Apply one VOI LUT Sequence item (PS3.3 C.11.2.1.1).

    Done here rather than with ``pydicom.pixels.apply_voi_lut`` because pydicom 3.0 builds its index array in the
    LUT's output dtype, so an 8-bit LUT with more than 256 entries wraps its indices.
    """
    n_entries, first, _bits = (int(v) for v in item.LUTDescriptor)
    n_entries = n_entries or 65536
    data = item.LUTData
    if isinstance(data, (bytes, bytearray)):
        little = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        big = little is not None and not little.is_little_endian
        lut = np.frombuffer(data, dtype=">u2" if big else "<u2")[:n_entries]
    else:
        lut = np.asarray(data if isinstance(data, (list, tuple)) else [data], dtype=np.int64)
    index = np.clip(np.rint(np.asarray(arr, dtype=np.float64)) - first, 0, len(lut) - 1).astype(np.int64)
    return lut.astype(np.float64)[index]


def _to_unit_range(raw: np.ndarray, ds: Any, *, apply_voi: bool) -> tuple[np.ndarray, bool, int]:
    """Modality LUT, optional VOI, scale to [0, 1], invert MONOCHROME1. Returns (pixels, window_applied, bits)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    is_mono = photometric.startswith("MONOCHROME")
    arr = apply_modality_lut(raw, ds) if is_mono else raw
    lo, hi = _modality_range(ds) if is_mono else (0.0, 2.0 ** int(ds.get("BitsStored", 8) or 8) - 1)
    window_applied = False
    has_lut = bool(ds.get("VOILUTSequence"))
    has_window = "WindowCenter" in ds and "WindowWidth" in ds
    if apply_voi and is_mono and has_lut:
        item = ds.VOILUTSequence[0]
        arr = _apply_lut(arr, item, ds)
        lo, hi = _voi_lut_range(item)
        window_applied = True
    elif apply_voi and is_mono and has_window:
        arr = apply_voi_lut(arr, ds, index=0)
        lo, hi = _modality_range(ds)  # pydicom's windowing outputs the modality range
        window_applied = True
    out = (np.asarray(arr, dtype=np.float64) - lo) / max(hi - lo, 1e-12)
    if photometric == "MONOCHROME1":
        out = 1.0 - out
    if str(ds.get("PresentationLUTShape", "")).upper() == "INVERSE":
        out = 1.0 - out
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    bits = max(1, int(np.ceil(np.log2(max(hi - lo, 1.0) + 1))))
    return out, window_applied, bits


# --------------------------------------------------------------------------------------------------------- metadata
def view_of(ds: Any) -> tuple[View, str]:
    """Projection from ViewPosition, else ViewCodeSequence, else PatientOrientation. Returns (view, source tag)."""
    position = str(ds.get("ViewPosition", "") or "").strip().upper()
    if position in ("PA", "AP"):
        return View(position), "ViewPosition"
    if position in _LATERAL_POSITIONS:
        return View.LATERAL, "ViewPosition"
    for item in ds.get("ViewCodeSequence", None) or []:
        code = str(item.get("CodeValue", "") or "")
        if code in _VIEW_CODES:
            return _VIEW_CODES[code], "ViewCodeSequence"
        meaning = str(item.get("CodeMeaning", "") or "").lower().replace("-", "")
        if "posteroanterior" in meaning:
            return View.PA, "ViewCodeSequence"
        if "anteroposterior" in meaning:
            return View.AP, "ViewCodeSequence"
        if "lateral" in meaning:
            return View.LATERAL, "ViewCodeSequence"
    orientation = [str(v).upper() for v in (ds.get("PatientOrientation", None) or [])]
    if len(orientation) == 2 and orientation[0][:1] in ("A", "P") and orientation[1][:1] in ("H", "F"):
        # Rows run front-to-back: the beam went through the patient sideways.
        return View.LATERAL, "PatientOrientation"
    # A frontal orientation (L/R x H/F) cannot tell PA from AP reliably (display flips): it stays unknown.
    return View.UNKNOWN, ""


def _age_years(value: Any) -> float | None:
    match = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY]?)\s*", str(value or ""))
    if not match:
        return None
    n, unit = int(match.group(1)), match.group(2) or "Y"
    return round(n / {"D": 365.25, "W": 52.1775, "M": 12.0, "Y": 1.0}[unit], 3)


def _spacing(ds: Any) -> tuple[tuple[float, float] | None, str | None]:
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(tag, None)
        try:
            pair = (float(value[0]), float(value[1])) if value is not None and len(value) == 2 else None
        except (TypeError, ValueError):
            pair = None
        if pair and pair[0] > 0 and pair[1] > 0:
            return pair, tag
    return None, None


def spacing_note(ds: Any) -> str:
    """Why the pixel spacing is unknown, tag by tag (``cxr info`` prints it): absent, malformed or not positive."""
    notes = []
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(tag, None)
        if value is None or value == "":
            notes.append(f"{tag} absent")
            continue
        try:
            items = value if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)) else [value]
            pair = [float(v) for v in items]
        except (TypeError, ValueError):
            notes.append(f"{tag} not a number")
            continue
        shown = "\\".join(f"{v:g}" for v in pair)
        if len(pair) != 2:
            notes.append(f"{tag} has {len(pair)} value(s), 2 needed")
        else:
            notes.append(f"{tag} is {shown} (not positive)")
    return "; ".join(notes)


def _metadata(ds: Any) -> dict[str, Any]:
    view, view_source = view_of(ds)
    spacing, spacing_tag = _spacing(ds)
    orientation = [str(v).upper() for v in (ds.get("PatientOrientation", None) or [])]
    modality = str(ds.get("Modality", "") or "").upper() or None
    sex = str(ds.get("PatientSex", "") or "").upper() or None
    extra: dict[str, Any] = {
        "view_source": view_source or None,
        "pixel_spacing_tag": spacing_tag,
        "pixel_spacing_note": None if spacing else spacing_note(ds),
        "patient_orientation": orientation or None,
        "transfer_syntax": str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "") or None,
        "sop_class_uid": str(ds.get("SOPClassUID", "") or "") or None,
        "secondary_capture": modality in SECONDARY_CAPTURE_MODALITIES,
    }
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = ds.WindowCenter, ds.WindowWidth
        extra["window"] = [
            float(center[0] if ds["WindowCenter"].VM > 1 else center),
            float(width[0] if ds["WindowWidth"].VM > 1 else width),
        ]
    if "RescaleSlope" in ds:
        extra["rescale"] = [float(ds.RescaleSlope), float(ds.get("RescaleIntercept", 0) or 0)]
    extra["voi_lut_sequence"] = bool(ds.get("VOILUTSequence"))
    return {
        "modality": modality,
        "view": view,
        "body_part": str(ds.get("BodyPartExamined", "") or "").upper() or None,
        "pixel_spacing_mm": spacing,
        "photometric": str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        "patient_sex": sex if sex in ("M", "F", "O") else None,
        "patient_age_years": _age_years(ds.get("PatientAge", None)),
        "study_uid": str(ds.get("StudyInstanceUID", "") or "") or None,
        "series_uid": str(ds.get("SeriesInstanceUID", "") or "") or None,
        "sop_uid": str(ds.get("SOPInstanceUID", "") or "") or None,
        "extra": extra,
    }
