"""report.json / report.html / PNGs / DICOM outputs of one real RG1 analysis, and the atomic write."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from cxrassist import DISCLAIMER
from cxrassist.errors import OutputError
from cxrassist.io import read_xray
from cxrassist.report import parse_formats, write_outputs
from cxrassist.report.images import OVERLAY_SIDE
from cxrassist.report.json_report import referenced_files
from cxrassist.report.schema import SCHEMA_VERSION, ReportValidationError, validate_report


def test_report_json_validates_and_references_existing_files(rg1_report: tuple[Path, dict], rg1_file: Path) -> None:
    out, report = rg1_report
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["findings"] == report["findings"]
    validate_report(on_disk)
    assert on_disk["schema_version"] == SCHEMA_VERSION and on_disk["disclaimer"] == DISCLAIMER
    assert len(on_disk["findings"]) == 13
    assert all(0 <= f["probability"] <= 1 for f in on_disk["findings"])
    files = referenced_files(on_disk)
    assert len(files) >= 13 * 2 + 6 + 2  # overlays + maps, lung/bone/radiograph PNGs, html, dicom
    for rel in files:
        assert (out / rel).is_file(), rel
    assert on_disk["input"]["frontal"]["study_uid"] == str(pydicom.dcmread(rg1_file).StudyInstanceUID)
    assert "PatientName" not in json.dumps(on_disk) and "RG1" not in json.dumps(on_disk["input"])
    assert not list(out.parent.glob(".report.tmp-*"))  # no temp folder left behind


def test_pngs_at_original_resolution(rg1_report: tuple[Path, dict], rg1_file: Path) -> None:
    """Radiograph, lung and bone pictures at the original size; heatmaps (smooth CAMs) capped at OVERLAY_SIDE /
    MAP_SIDE with the radiograph's aspect."""
    from cxrassist.report.images import MAP_SIDE, OVERLAY_SIDE

    out, report = rg1_report
    h, w = read_xray(rg1_file).shape
    for f in report["findings"]:
        with Image.open(out / f["heatmap"]) as im:
            assert max(im.size) == min(OVERLAY_SIDE, max(w, h)) and im.mode == "RGB"
            assert abs(im.size[0] / im.size[1] - w / h) < 0.01
        with Image.open(out / f["heatmap_map"]) as im:
            assert max(im.size) == min(MAP_SIDE, max(w, h)) and im.mode == "L"
            assert abs(im.size[0] / im.size[1] - w / h) < 0.01
    for rel in (
        report["lung"]["mask"],
        report["lung"]["segmented"],
        report["bone"]["subtracted"],
        report["bone"]["suppressed"],
        report["images"]["radiograph"],
    ):
        with Image.open(out / rel) as im:
            assert im.size == (w, h)
    with Image.open(out / report["lung"]["mask"]) as im:
        mask = np.asarray(im)
    assert set(np.unique(mask)) <= {0, 255}
    assert int((mask > 0).sum()) == report["lung"]["area"]["total_px"]


def test_html_is_self_contained(rg1_report: tuple[Path, dict]) -> None:
    out, report = rg1_report
    html = (out / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/") for s in sources)
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert DISCLAIMER in html and "not validated" in html
    for name in ("Bone-subtracted", "Bone-suppressed", "lung segmentation contour"):
        assert name in html
    # findings on the page: validated first, then by probability (as in the viewer)
    order = [f["name"] for f in sorted(report["findings"], key=lambda f: (not f["validated"], -f["probability"]))]
    positions = [html.index(f"<b>{name}</b>") for name in order]
    assert positions == sorted(positions)
    assert "auroc" in html  # the models' measured figures are shown


def test_dicom_sr_and_sc_reference_source_study(rg1_report: tuple[Path, dict], rg1_file: Path) -> None:
    out, report = rg1_report
    source = pydicom.dcmread(rg1_file, stop_before_pixels=True)
    entries = report["outputs"]["dicom"]
    kinds = [e["kind"] for e in entries]
    assert kinds[0] == "SR" and kinds.count("SC") >= 3 + 3  # overlays + lung contour + two bone images
    sr = pydicom.dcmread(out / entries[0]["path"])
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    assert sr.SeriesInstanceUID != source.SeriesInstanceUID and sr.SOPInstanceUID != source.SOPInstanceUID
    assert "decision support" in sr.SeriesDescription
    nums = [item for item in sr.ContentSequence if item.ValueType == "NUM"]
    by_code = {
        item.ConceptNameCodeSequence[0].CodeValue: float(item.MeasuredValueSequence[0].NumericValue) for item in nums
    }
    for f in report["findings"]:
        assert by_code[f["code"]] == pytest.approx(f["probability"], abs=1e-3)
    texts = " ".join(str(item.TextValue) for item in sr.ContentSequence if item.ValueType == "TEXT")
    assert DISCLAIMER in texts
    series = set()
    names = {f["name"]: f["code"] for f in report["findings"]}
    heatmaps = 0
    for e in entries[1:]:
        sc = pydicom.dcmread(out / e["path"])
        assert sc.StudyInstanceUID == source.StudyInstanceUID and "decision support" in sc.SeriesDescription
        series.add(sc.SeriesInstanceUID)
        if e["description"].startswith("Heatmap "):
            # the report PNG's overlay, pixel for pixel: long side 1k (a CAM has no finer detail), same aspect
            heatmaps += 1
            code = names[e["description"][len("Heatmap ") :].split(" (p=")[0]]
            png = np.asarray(Image.open(out / "heatmaps" / f"{code}_overlay.png").convert("RGB"))
            assert max(sc.Rows, sc.Columns) == OVERLAY_SIDE < max(source.Rows, source.Columns)
            assert abs(sc.Columns / sc.Rows - source.Columns / source.Rows) < 0.01
            assert np.array_equal(sc.pixel_array, png)
        else:  # the lung contour and the bone pictures keep the film's own grid
            assert (sc.Rows, sc.Columns) == (source.Rows, source.Columns)
            assert sc.pixel_array.shape[:2] == (source.Rows, source.Columns)
    assert heatmaps >= 3
    assert len(series) == 1 and sr.SeriesInstanceUID not in series


def test_dicom_for_non_dicom_input_gets_new_study(tiny_pipeline, phantom_png: Path, tmp_path: Path) -> None:
    result = tiny_pipeline.analyze(read_xray(phantom_png))
    report = write_outputs(result, tmp_path / "r", ["dicom"])
    assert report["outputs"]["html"] is None and report["images"]["radiograph"] is None
    uids = {pydicom.dcmread(tmp_path / "r" / e["path"]).StudyInstanceUID for e in report["outputs"]["dicom"]}
    assert len(uids) == 1 and all(u.startswith(("1.2.826.0.1.3680043", "2.25")) for u in uids)


def test_write_is_atomic_and_keeps_previous_report(
    tiny_pipeline, phantom_png: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = tiny_pipeline.analyze(read_xray(phantom_png))
    out = tmp_path / "reports" / "r"
    first = write_outputs(result, out, ["json", "html"])
    before = (out / "report.json").read_text()

    import cxrassist.report.html_report as html_report

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(html_report, "render_html", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_outputs(result, out, ["json", "html"])
    assert (out / "report.json").read_text() == before  # the previous report survives intact
    assert sorted(p.name for p in out.parent.iterdir()) == ["r"]  # no temp or backup folders left
    monkeypatch.undo()
    second = write_outputs(result, out, ["json", "png"])  # replacing works and drops the old html
    assert second["created"] >= first["created"] and not (out / "report.html").exists()
    assert (out / second["images"]["radiograph"]).is_file()


def test_refuses_foreign_folder_and_bad_format(tiny_pipeline, phantom_png: Path, tmp_path: Path) -> None:
    (tmp_path / "thesis.docx").write_text("precious")
    result = tiny_pipeline.analyze(read_xray(phantom_png))
    with pytest.raises(OutputError, match="not empty"):
        write_outputs(result, tmp_path, ["json"])
    assert (tmp_path / "thesis.docx").read_text() == "precious"
    with pytest.raises(OutputError, match="unknown output format"):
        parse_formats("json,pdf")
    assert parse_formats("html") == ("json", "html")


def test_validator_catches_bad_reports(rg1_report: tuple[Path, dict]) -> None:
    _, report = rg1_report
    bad = json.loads(json.dumps(report))
    bad["findings"][0]["probability"] = 1.5
    del bad["triage"]["priority"]
    bad["findings"] = bad["findings"][:12]
    with pytest.raises(ReportValidationError) as info:
        validate_report(bad)
    text = " ".join(info.value.errors)
    assert "1.5 > 1" in text and "'priority'" in text and "fewer than 13" in text


def test_early_write_gives_dicom_first_then_pictures_and_keeps_dicom(
    tiny_pipeline, phantom_png: Path, tmp_path: Path
) -> None:
    """``early``: a complete report with the SR + SCs is in place (no PNG yet) when the callback runs; the PNGs and
    HTML follow and the DICOM files are untouched. ``keep_dicom``: a rewrite keeps those same files (same UIDs)."""
    from cxrassist.analysis import analyze_paths
    from cxrassist.report.dicom_out import SC_TRANSFER_SYNTAX

    out = tmp_path / "r"
    seen: list[tuple[dict, dict, list[str]]] = []

    def early(report: dict) -> None:
        on_disk = json.loads((out / "report.json").read_text())
        seen.append((report, on_disk, sorted(p.name for p in out.rglob("*.png"))))
        for e in report["outputs"]["dicom"]:
            assert pydicom.dcmread(out / e["path"]).SOPInstanceUID == e["sop_instance_uid"]

    report = analyze_paths(phantom_png, None, out, pipeline=tiny_pipeline, formats="json,html,png,dicom", early=early)
    ((first, on_disk, pngs),) = seen
    assert on_disk == first and pngs == [] and first["images"]["radiograph"] is None
    assert first["outputs"]["html"] is None and len(first["outputs"]["dicom"]) >= 7
    assert report["outputs"]["dicom"] == first["outputs"]["dicom"] and report["outputs"]["html"] == "report.html"
    assert json.loads((out / "report.json").read_text()) == report
    assert all((out / p).is_file() for p in referenced_files(report))  # every picture of the full report is there
    assert "pictures" in report["timings_ms"]
    sc = pydicom.dcmread(out / first["outputs"]["dicom"][1]["path"])
    assert sc.file_meta.TransferSyntaxUID == SC_TRANSFER_SYNTAX and sc.pixel_array.ndim == 3

    before = {e["path"]: (out / e["path"]).read_bytes() for e in first["outputs"]["dicom"]}
    again = analyze_paths(
        phantom_png, None, out, pipeline=tiny_pipeline, formats="json,png,dicom", keep_dicom=first["outputs"]["dicom"]
    )
    assert again["outputs"]["dicom"] == first["outputs"]["dicom"]
    assert {p: (out / p).read_bytes() for p in before} == before
