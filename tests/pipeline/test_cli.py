"""``cxr analyze`` end to end, in process, with a --weights folder of tiny saved models."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom


def test_analyze_with_lateral(
    tiny_weights_dir: Path, phantom_png: Path, lateral_png: Path, tmp_path: Path, cxr_main
) -> None:
    out = tmp_path / "rep"
    code, stdout, err = cxr_main(
        [
            "analyze",
            str(phantom_png),
            "--lateral",
            str(lateral_png),
            "--out",
            str(out),
            "--weights",
            str(tiny_weights_dir),
            "--format",
            "json,html,png",
        ]
    )
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["input"]["lateral"]["height"] == 300
    assert all(f["heatmap_lateral"] and (out / f["heatmap_lateral"]).is_file() for f in report["findings"])
    assert "triage:" in stdout and "Decision support" in stdout and str(out) in stdout


def test_refuses_tibia_with_reason(tiny_weights_dir: Path, rg3_file: Path, tmp_path: Path, cxr_main) -> None:
    code, _, err = cxr_main(
        ["analyze", str(rg3_file), "--out", str(tmp_path / "r"), "--weights", str(tiny_weights_dir)]
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "not a frontal chest radiograph" in lines[0] and "EXTREMITY" in lines[0]
    assert not (tmp_path / "r").exists()


def test_corrupt_file_one_line(tiny_weights_dir: Path, tmp_path: Path, cxr_main) -> None:
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x08\x00\x05\x00CS\x20\x00" + b"x" * 10)
    code, _, err = cxr_main(["analyze", str(bad), "--out", str(tmp_path / "r"), "--weights", str(tiny_weights_dir)])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "broken.dcm" in err and "Traceback" not in err


def test_force_analyses_tibia_and_marks_it(tiny_weights_dir: Path, rg3_file: Path, tmp_path: Path, cxr_main) -> None:
    out = tmp_path / "r"
    code, _, err = cxr_main(
        ["analyze", str(rg3_file), "--force", "--out", str(out), "--weights", str(tiny_weights_dir), "--format", "json"]
    )
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["forced"] is True and "EXTREMITY" in report["chest_check"]["reason"]
    assert "FORCED" in err


def test_study_folder_tells_views_apart_by_dicom(
    tiny_weights_dir: Path, make_dicom, make_phantom, tmp_path: Path, cxr_main
) -> None:
    from pydicom.uid import generate_uid

    (tmp_path / "study").mkdir()
    uid = generate_uid()
    # The lateral is named first: only its ViewPosition tells the pipeline it is not the frontal.
    lat = make_dicom(
        (make_phantom(260, 240, 3) * 4095).astype("uint16"),
        name="study/a.dcm",
        view_position="LL",
        extra={"StudyInstanceUID": uid},
    )
    front = make_dicom(
        (make_phantom(300, 280) * 4095).astype("uint16"),
        name="study/b.dcm",
        view_position="PA",
        extra={"StudyInstanceUID": uid},
    )
    out = tmp_path / "r"
    code, _, err = cxr_main(
        [
            "analyze",
            str(tmp_path / "study"),
            "--out",
            str(out),
            "--weights",
            str(tiny_weights_dir),
            "--format",
            "json,dicom",
        ]
    )
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["input"]["frontal"]["sop_uid"] == str(pydicom.dcmread(front).SOPInstanceUID)
    assert report["input"]["lateral"]["sop_uid"] == str(pydicom.dcmread(lat).SOPInstanceUID)
    assert report["input"]["lateral"]["view"] == "LATERAL"
    sr = pydicom.dcmread(out / report["outputs"]["dicom"][0]["path"])
    assert sr.StudyInstanceUID == uid


def test_missing_weights_exit_code(tmp_path: Path, phantom_png: Path, cxr_main) -> None:
    code, _, err = cxr_main(
        ["analyze", str(phantom_png), "--out", str(tmp_path / "r"), "--weights", str(tmp_path / "nothing")]
    )
    assert code == 3 and "not found" in err and "--allow-untrained" in err
