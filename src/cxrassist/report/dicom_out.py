"""DICOM outputs for PACS: a Comprehensive SR of the findings and Secondary Capture images (highdicom).

Both go into the SOURCE study when the input was DICOM (so PACS files them beside the radiograph, which means the
patient module is copied from the source header, as PACS requires); otherwise into a new study without patient
identity. Each output is its own new series whose SeriesDescription says "decision support".
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cxrassist import DISCLAIMER, __version__
from cxrassist.labels import FINDINGS
from cxrassist.pipeline import AnalysisResult
from cxrassist.postprocess import as_uint8, overlay_contour
from cxrassist.report.images import bone_windows, heatmap_overlay, overlay_base

log = logging.getLogger(__name__)

MANUFACTURER = "cxrassist"
SR_DESCRIPTION = "cxrassist decision support - findings (not a diagnosis)"
SC_DESCRIPTION = "cxrassist decision support - images (not a diagnosis)"
_SCHEME = "99CXRASSIST"  # private coding scheme for the finding codes of cxrassist.labels
_MAX_OVERLAYS = 3  # SC overlays: the positive findings (up to 6), else the top findings, at least this many
_MAX_POSITIVE_OVERLAYS = 6  # 2.6 MB each (1k RGB, uncompressed): the other heatmaps are in the PNGs/HTML
#: The SCs' transfer syntax. Measured for RG1 (6 SCs with 2k overlays, bench_pacs.py, 2 cores): JPEG-LS makes them 13 MB
#: instead of 50 MB and sends them in ~0.55 s instead of ~1.3 s (pynetdicom: ~26 ms/MB on loopback with Orthanc's
#: 16 kB PDUs), but encoding them (CharLS holds the GIL) costs ~1.2 s more on the way to the PACS: a net loss on
#: loopback and about even on a 1 Gbit/s network, a gain on slower links and in PACS disk. Uncompressed until then;
#: the sender proposes a compressed file in a context of its own and decompresses it for a PACS that refuses it.
SC_TRANSFER_SYNTAX = "1.2.840.10008.1.2.1"  # Explicit VR Little Endian; JPEG-LS Lossless: "1.2.840.10008.1.2.4.80"
_TYPE2_COPIED = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyID",
)


def _source_header(result: AnalysisResult) -> Any | None:
    """The frontal's DICOM header (no pixels) when the input was DICOM and is still readable."""
    xray = result.frontal
    if xray.source_format != "dicom" or xray.source_path is None:
        return None
    import pydicom

    try:
        ref = pydicom.dcmread(str(xray.source_path), stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - fall back to a new study, never fail the report for it
        log.warning("could not re-read the source DICOM header (%s): writing DICOM outputs into a new study", exc)
        return None
    if "StudyInstanceUID" not in ref:
        return None
    # Patient/study attributes of type 2 may be absent from real headers; highdicom copies them, so give them the
    # empty value the standard allows for "unknown".
    for keyword in _TYPE2_COPIED:
        if keyword not in ref:
            setattr(ref, keyword, "")
    return ref


def _orientation(ref: Any | None) -> tuple[str, str]:
    """Source PatientOrientation, else the standard frontal display (rows toward patient left, columns to feet)."""
    value = getattr(ref, "PatientOrientation", None) if ref is not None else None
    if value is not None and len(value) == 2 and all(str(v) for v in value):
        return str(value[0]), str(value[1])
    return "L", "F"


def _overlay_codes(result: AnalysisResult) -> list[str]:
    ranked = sorted(result.findings, key=lambda f: f.probability, reverse=True)
    chosen = [f.code for f in ranked if f.positive][:_MAX_POSITIVE_OVERLAYS]
    for f in ranked:
        if len(chosen) >= _MAX_OVERLAYS:
            break
        if f.code not in chosen:
            chosen.append(f.code)
    return chosen


def _sc_images(result: AnalysisResult, ref: Any | None, study_uid: str) -> list[tuple[str, Any]]:
    import highdicom as hd
    from pydicom.uid import generate_uid

    gray = result.frontal.pixels
    base = overlay_base(as_uint8(gray))  # the report PNGs' overlay: 1k, not 2k (a CAM has no finer detail)
    index = {f.code: i for i, f in enumerate(FINDINGS)}
    by_code = {f.code: f for f in result.findings}
    pictures: list[tuple[str, np.ndarray, str]] = [
        (
            f"Heatmap {by_code[c].name} (p={by_code[c].probability:.2f})",
            heatmap_overlay(base, result.cams[index[c]], result.cam_record),
            "RGB",
        )
        for c in _overlay_codes(result)
    ]
    pictures.append(
        (
            "Lung segmentation contour",
            overlay_contour(gray, result.lung_mask, thickness=max(2, max(gray.shape) // 400)),
            "RGB",
        )
    )
    windows = bone_windows(result)  # the same display windows as the report PNGs, stated in the title
    pictures.append(
        (
            f"Bone-subtracted (bone image), {windows['subtracted'].describe()}",
            windows["subtracted"].apply(result.bone),
            "MONOCHROME2",
        )
    )
    pictures.append(
        (
            f"Bone-suppressed (soft tissue), {windows['suppressed'].describe()}",
            windows["suppressed"].apply(result.bone_suppressed),
            "MONOCHROME2",
        )
    )

    series_uid = generate_uid()
    orientation = _orientation(ref)
    out = []
    for number, (title, array, photometric) in enumerate(pictures, start=1):
        common: dict[str, Any] = dict(  # noqa: C408 - keyword arguments read as the DICOM attributes they are
            pixel_array=as_uint8(array),
            photometric_interpretation=photometric,
            bits_allocated=8,
            coordinate_system="PATIENT",
            series_instance_uid=series_uid,
            series_number=9901,
            sop_instance_uid=generate_uid(),
            instance_number=number,
            manufacturer=MANUFACTURER,
            patient_orientation=orientation,
            transfer_syntax_uid=SC_TRANSFER_SYNTAX,
        )
        if ref is not None:
            sc = hd.sc.SCImage.from_ref_dataset(ref, **common)
        else:
            sc = hd.sc.SCImage(study_instance_uid=study_uid, **common)
        sc.SeriesDescription = SC_DESCRIPTION
        sc.ImageComments = f"{title}. {DISCLAIMER}"[:10240]
        sc.DerivationDescription = f"cxrassist {__version__}: {title}"[:1024]
        if result.untrained:
            sc.ImageComments = "UNTRAINED MODEL - outputs are meaningless. " + sc.ImageComments
        out.append((title, sc))
    return out


def _sr(result: AnalysisResult, evidence: list[Any]) -> Any:
    import highdicom as hd
    from highdicom.sr import (
        CodedConcept,
        ContainerContentItem,
        ContentSequence,
        NumContentItem,
        RelationshipTypeValues,
        TextContentItem,
    )
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    contains = RelationshipTypeValues.CONTAINS
    items: list[Any] = [
        TextContentItem(name=codes.DCM.Comment, value=DISCLAIMER, relationship_type=contains),
        TextContentItem(name=codes.DCM.AlgorithmName, value="cxrassist", relationship_type=contains),
        TextContentItem(name=codes.DCM.AlgorithmVersion, value=__version__, relationship_type=contains),
    ]
    for model in result.models:
        text = (
            f"{model['role']}: {model['name']} {model['version']} ({model['status']}) "
            f"sha256={model.get('sha256') or '-'}"
        )
        items.append(TextContentItem(name=codes.DCM.Comment, value=text[:1024], relationship_type=contains))
    if result.untrained:
        items.append(
            TextContentItem(
                name=codes.DCM.Comment, value="UNTRAINED MODEL - outputs are meaningless", relationship_type=contains
            )
        )
    if result.forced:
        forced = f"FORCED: the input check refused this image ({result.chest_check.reason})"
        items.append(TextContentItem(name=codes.DCM.Comment, value=forced[:1024], relationship_type=contains))
    t = result.triage
    items.append(
        NumContentItem(
            name=CodedConcept("ABN", _SCHEME, "Abnormal (triage)"),
            value=t.abnormal_probability,
            unit=codes.UCUM.NoUnits,
            relationship_type=contains,
        )
    )
    items.append(
        TextContentItem(
            name=CodedConcept("PRIO", _SCHEME, "Triage priority"), value=t.priority, relationship_type=contains
        )
    )
    cardiac = result.cardiac
    if cardiac is not None:  # the measurement itself, so a PACS reader can check it against the film
        from cxrassist.report.json_report import CTR_METHOD

        ctr = NumContentItem(
            name=CodedConcept("CTR", _SCHEME, "Cardiothoracic ratio"),
            value=round(cardiac.ratio, 3),
            unit=codes.UCUM.NoUnits,
            relationship_type=contains,
        )
        how = f"heart {cardiac.heart_width_px} px / thorax {cardiac.thorax_width_px} px (film pixels); {CTR_METHOD}"
        ctr.ContentSequence = ContentSequence(
            [
                TextContentItem(
                    name=codes.DCM.Comment, value=how[:1024], relationship_type=RelationshipTypeValues.HAS_PROPERTIES
                )
            ]
        )
        items.append(ctr)
    for f in result.findings:
        note = (
            f"{'positive' if f.positive else 'negative'} at threshold {f.threshold:.3f}; "
            f"{'validated' if f.validated else 'NOT VALIDATED'}"
        )
        if f.method:
            note += f"; scored {f.method}"
        m: Mapping[str, Any] = f.measured or {}
        if m.get("auroc") is not None:
            ci = m.get("auroc_ci95") or [None, None]
            fmt = lambda v: "n/a" if v is None or v != v else f"{v:.2f}"  # noqa: E731
            note += (
                f"; measured AUROC {fmt(m['auroc'])} (95% CI {fmt(ci[0])}-{fmt(ci[1])}), sensitivity "
                f"{fmt(m.get('sensitivity'))}, specificity {fmt(m.get('specificity'))}, "
                f"{m.get('n_pos')} positives of {m.get('n')} {m.get('measured_on') or ''}"
            )
        num = NumContentItem(
            name=CodedConcept(f.code, _SCHEME, f.name),
            value=round(f.probability, 4),
            unit=codes.UCUM.NoUnits,
            relationship_type=contains,
        )
        num.ContentSequence = ContentSequence(
            [
                TextContentItem(
                    name=codes.DCM.Comment, value=note[:1024], relationship_type=RelationshipTypeValues.HAS_PROPERTIES
                )
            ]
        )
        items.append(num)
    root = ContainerContentItem(name=codes.LN.DiagnosticImagingReport)
    root.ContentSequence = ContentSequence(items)
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=root,
        series_instance_uid=generate_uid(),
        series_number=9900,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
    )
    sr.SeriesDescription = SR_DESCRIPTION
    return sr


def write_dicom(result: AnalysisResult, out_dir: Path) -> list[dict[str, Any]]:
    """Write ``dicom/sr.dcm`` and ``dicom/sc_XX.dcm``; return their entries for report.json."""
    from pydicom.uid import generate_uid

    ref = _source_header(result)
    study_uid = str(ref.StudyInstanceUID) if ref is not None else generate_uid()
    folder = out_dir / "dicom"
    folder.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    with warnings.catch_warnings():  # highdicom's person-name advice about the SOURCE header is not ours to fix
        warnings.simplefilter("ignore", UserWarning)
        scs = _sc_images(result, ref, study_uid)
    for i, (title, sc) in enumerate(scs, start=1):
        rel = f"dicom/sc_{i:02d}.dcm"
        sc.save_as(out_dir / rel, enforce_file_format=True)
        entries.append(
            {
                "kind": "SC",
                "path": rel,
                "sop_instance_uid": str(sc.SOPInstanceUID),
                "study_instance_uid": str(sc.StudyInstanceUID),
                "description": title,
            }
        )
    evidence = ([ref] if ref is not None else []) + [sc for _, sc in scs]
    sr = _sr(result, evidence)
    sr.save_as(out_dir / "dicom/sr.dcm", enforce_file_format=True)
    entries.insert(
        0,
        {
            "kind": "SR",
            "path": "dicom/sr.dcm",
            "sop_instance_uid": str(sr.SOPInstanceUID),
            "study_instance_uid": str(sr.StudyInstanceUID),
            "description": "findings",
        },
    )
    return entries
