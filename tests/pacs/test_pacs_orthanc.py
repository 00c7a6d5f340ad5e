"""The PACS link against a real Orthanc: C-ECHO, C-STORE in, results back by C-STORE (and STOW-RS), a push from
Orthanc, a refused study, an unknown calling AE, kill -9 with results in the outbox, no identifier in the log.

One Orthanc and one listener (``cxr serve --dicom-port`` with the shipped models) for the whole module; each test
sends from its own calling AE title, so it finds its study in the worklist by ``source``. The tests run in file
order (the kill -9 test restarts the listener; the log test reads everything the listener wrote).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pacs_helpers import AET, PacsEnv, copy_with_new_uids, dcmtk

pytestmark = pytest.mark.slow

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR


def _result_uids(detail: dict[str, Any]) -> dict[str, str]:
    """SOP Instance UID -> kind ("SR"/"SC") of the study's DICOM results, from its report."""
    entries = detail["outputs"]["dicom"]
    assert entries and entries[0]["kind"] == "SR" and any(e["kind"] == "SC" for e in entries), entries
    return {e["sop_instance_uid"]: e["kind"] for e in entries}


def _wait_in_orthanc(pacs: PacsEnv, uids: dict[str, str], timeout: float = 180.0) -> dict[str, int]:
    """Wait until Orthanc stored every UID by C-STORE (and by STOW-RS when its DICOMweb plugin is there)."""
    deadline = time.monotonic() + timeout
    want_origins = 2 if pacs.orthanc.dicomweb else 1
    while True:
        stored = pacs.orthanc.stored()
        origins = {u: sorted(o for (s, o) in stored if s == u) for u in uids}
        if all(len(o) >= want_origins for o in origins.values()):
            return {u: sum(n for (s, _), n in stored.items() if s == u) for u in uids}
        if time.monotonic() > deadline:
            raise AssertionError(f"results not in Orthanc after {timeout} s: {origins}\n{pacs.listener.log()[-3000:]}")
        time.sleep(0.3)


def _assert_exactly_once(pacs: PacsEnv, uids: dict[str, str] | list[str]) -> None:
    stored = pacs.orthanc.stored()
    for uid in uids:
        per_origin = {o: n for (s, o), n in stored.items() if s == uid}
        assert per_origin.get("DicomProtocol") == 1, (uid, per_origin)
        if pacs.orthanc.dicomweb:
            assert len(per_origin) == 2 and all(n == 1 for n in per_origin.values()), (uid, per_origin)


def _content(items: Any) -> list[Any]:
    out = []
    for item in items or []:
        out.append(item)
        out += _content(getattr(item, "ContentSequence", None))
    return out


def _check_sr(ds: Any, detail: dict[str, Any], study_uid: str, evidence_uid: str) -> None:
    """The SR Orthanc holds: in the source study, findings and model versions as in our report."""
    import highdicom as hd

    assert ds.SOPClassUID == SR_CLASS and ds.StudyInstanceUID == study_uid
    assert "decision support" in ds.SeriesDescription
    hd.sr.ComprehensiveSR.from_dataset(ds)  # a valid Comprehensive SR to highdicom
    referenced = {
        r.ReferencedSOPInstanceUID
        for s in ds.CurrentRequestedProcedureEvidenceSequence
        for se in s.ReferencedSeriesSequence
        for r in se.ReferencedSOPSequence
    }
    assert evidence_uid in referenced  # the radiograph it was made from (not one of our own images)
    items = _content(ds.ContentSequence)
    texts = [str(i.TextValue) for i in items if i.ValueType == "TEXT"]
    for m in detail["models"]:
        assert any(f"{m['name']} {m['version']}" in t for t in texts), (m, texts)
    numbers = {
        i.ConceptNameCodeSequence[0].CodeValue: float(i.MeasuredValueSequence[0].NumericValue)
        for i in items
        if i.ValueType == "NUM" and "MeasuredValueSequence" in i
    }
    assert len(detail["findings"]) == 13
    for f in detail["findings"]:
        assert numbers[f["code"]] == pytest.approx(f["probability"], abs=1e-4), f["code"]


def _orthanc_instance(pacs: PacsEnv, sop_uid: str) -> Any:
    import io

    found = pacs.orthanc.rest.post("/tools/lookup", content=sop_uid).json()
    oid = next(f["ID"] for f in found if f["Type"] == "Instance")
    return pydicom.dcmread(io.BytesIO(pacs.orthanc.rest.get(f"/instances/{oid}/file").content))


def test_echo_and_unknown_calling_ae(pacs: PacsEnv, rg1_path: Path):
    port = str(pacs.listener.dicom_port)
    ok = dcmtk("echoscu", "-aet", "STORESCU", "-aec", AET, "127.0.0.1", port)
    assert ok.returncode == 0, ok.stderr
    for calling, called in (("INTRUDER", AET), ("STORESCU", "SOMEONEELSE")):
        refused = dcmtk("echoscu", "-aet", calling, "-aec", called, "127.0.0.1", port)
        assert refused.returncode != 0 and "Association Rejected" in refused.stderr, refused.stderr
    sent = dcmtk("storescu", "-aet", "INTRUDER", "-aec", AET, "127.0.0.1", port, str(rg1_path))
    assert sent.returncode != 0 and "Association Rejected" in sent.stderr
    time.sleep(2.5)  # longer than the quiet period: nothing was kept, nothing is queued
    assert pacs.listener.studies("INTRUDER") == []
    assert not any((pacs.listener.data_dir / "pacs" / "incoming").iterdir())
    assert "association from AE 'INTRUDER'" in pacs.listener.log()


def test_storescu_rg1_results_back_in_its_study(pacs: PacsEnv, rg1_path: Path):
    rg1 = pydicom.dcmread(rg1_path, stop_before_pixels=True)
    sent = dcmtk("storescu", "-aet", "STORESCU", "-aec", AET, "127.0.0.1", str(pacs.listener.dicom_port), str(rg1_path))
    assert sent.returncode == 0, sent.stderr
    detail = pacs.listener.wait_study("STORESCU")
    assert detail["status"] == "done", detail.get("reason")
    assert detail["study"]["source"] == "STORESCU"  # the worklist row says where it came from
    uids = _result_uids(detail)
    _wait_in_orthanc(pacs, uids)
    series = pacs.orthanc.series_of(str(rg1.StudyInstanceUID))
    ours = [s for s in series if "decision support" in s["MainDicomTags"].get("SeriesDescription", "")]
    assert {s["MainDicomTags"]["Modality"] for s in ours} == {"SR", "OT"} or len(ours) == 2, ours
    assert sum(len(s["Instances"]) for s in ours) == len(uids)
    sr_uid = next(u for u, k in uids.items() if k == "SR")
    sr = _orthanc_instance(pacs, sr_uid)
    _check_sr(sr, detail, str(rg1.StudyInstanceUID), str(rg1.SOPInstanceUID))
    assert sr.PatientID == rg1.PatientID  # filed under the radiograph's patient
    sc = _orthanc_instance(pacs, next(u for u, k in uids.items() if k == "SC"))
    assert sc.StudyInstanceUID == rg1.StudyInstanceUID and sc.Manufacturer == "cxrassist"
    _assert_exactly_once(pacs, uids)


def test_orthanc_pushes_a_study(pacs: PacsEnv, rg1_path: Path):
    """Orthanc sends RG1's study (with whatever results it already holds) to the listener: the radiograph is
    analysed, our own SR and SCs coming back are not; the new results land in the same study."""
    rg1 = pydicom.dcmread(rg1_path, stop_before_pixels=True)
    pacs.orthanc.upload(rg1_path.read_bytes())
    study = pacs.orthanc.study_id(str(rg1.StudyInstanceUID))
    held = len(pacs.orthanc.rest.get(f"/studies/{study}/instances").json())
    r = pacs.orthanc.rest.post("/modalities/cxr/store", json={"Resources": [study], "Synchronous": True})
    assert r.status_code == 200, r.text
    detail = pacs.listener.wait_study("ORTHANC")
    assert detail["status"] == "done", detail.get("reason")
    uids = _result_uids(detail)
    _wait_in_orthanc(pacs, uids)
    sr = _orthanc_instance(pacs, next(u for u, k in uids.items() if k == "SR"))
    _check_sr(sr, detail, str(rg1.StudyInstanceUID), str(rg1.SOPInstanceUID))
    _assert_exactly_once(pacs, uids)
    assert len(pacs.listener.studies("ORTHANC")) == 1  # the SR/SCs in the pushed study were not analysed
    assert held >= 1


def test_tibia_is_refused_and_sends_nothing(pacs: PacsEnv, rg3_path: Path):
    before = pacs.orthanc.stored()
    sent = dcmtk("storescu", "-aet", "MODALITY", "-aec", AET, "127.0.0.1", str(pacs.listener.dicom_port), str(rg3_path))
    assert sent.returncode == 0, sent.stderr
    detail = pacs.listener.wait_study("MODALITY")
    assert detail["status"] == "refused" and detail["reason"], detail
    assert detail["study"]["status"] == "refused"  # what the worklist shows
    deadline = time.monotonic() + 10
    while "from AE 'MODALITY' refused" not in pacs.listener.log():
        assert time.monotonic() < deadline, pacs.listener.log()[-2000:]
        time.sleep(0.2)
    time.sleep(2.0)  # the sender would have run by now
    assert pacs.orthanc.stored() == before
    rg3 = pydicom.dcmread(rg3_path, stop_before_pixels=True)
    assert pacs.orthanc.study_id(str(rg3.StudyInstanceUID)) is None


def _outbox(pacs: PacsEnv) -> list[sqlite3.Row]:
    con = sqlite3.connect(f"file:{pacs.listener.data_dir / 'pacs' / 'pacs.db'}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return con.execute("SELECT * FROM outbox").fetchall()
    finally:
        con.close()


def test_kill9_with_results_in_the_outbox_sends_each_exactly_once(pacs: PacsEnv, rg1_path: Path, tmp_path: Path):
    """The PACS goes down, a study comes in (a copy of RG1 in JPEG 2000 lossless: kept as sent, decoded for the
    analysis), its results wait in the outbox, the listener is killed -9; both come back: each result reaches
    Orthanc exactly once, and nothing sent before the kill is sent again."""
    from pydicom.uid import JPEG2000Lossless

    earlier = {r["sop_instance_uid"] for r in _outbox(pacs)}
    pacs.orthanc.stop()  # the PACS is down: results wait in the outbox
    copy = copy_with_new_uids(rg1_path, tmp_path / "rg1-copy.dcm", JPEG2000Lossless)
    sent = dcmtk(
        "storescu",
        "-xv",
        "-aet",
        "KILLTEST",
        "-aec",
        AET,
        "127.0.0.1",
        str(pacs.listener.dicom_port),
        str(tmp_path / "rg1-copy.dcm"),
    )  # -xv: storescu proposes JPEG 2000 only when told
    assert sent.returncode == 0, sent.stderr
    detail = pacs.listener.wait_study("KILLTEST")
    assert detail["status"] == "done", detail.get("reason")
    uids = _result_uids(detail)
    deadline = time.monotonic() + 60
    while True:  # every result tried at least once, none sent
        rows = [r for r in _outbox(pacs) if r["sop_instance_uid"] in uids]
        if rows and all(r["attempts"] >= 1 for r in rows):
            break
        assert time.monotonic() < deadline, [dict(r) for r in rows]
        time.sleep(0.3)
    assert {r["state"] for r in rows} == {"pending"} and {r["sop_instance_uid"] for r in rows} == set(uids)
    pacs.listener.kill9()

    pacs.orthanc.start()
    pacs.listener.start()
    _wait_in_orthanc(pacs, uids, timeout=120)
    time.sleep(3.0)  # anything sent twice would have arrived by now
    _assert_exactly_once(pacs, uids)
    _assert_exactly_once(pacs, earlier)  # results sent before the kill are not sent again
    rows = [r for r in _outbox(pacs) if r["sop_instance_uid"] in uids]
    assert {r["state"] for r in rows} == {"sent"}
    studies = pacs.listener.studies("KILLTEST")
    assert len(studies) == 1 and studies[0]["status"] == "done"  # not received or analysed twice
    kept = pacs.listener.data_dir / "studies" / studies[0]["id"] / "input" / "frontal.dcm"
    assert pydicom.dcmread(kept, stop_before_pixels=True).file_meta.TransferSyntaxUID == JPEG2000Lossless
    sr = _orthanc_instance(pacs, next(u for u, k in uids.items() if k == "SR"))
    assert sr.StudyInstanceUID == copy.StudyInstanceUID


def test_no_patient_identifier_in_the_log(pacs: PacsEnv, rg1_path: Path, rg3_path: Path):
    log = pacs.listener.log()
    assert "refused" in log and "result file(s) sent" in log  # the log this test reads is the real one
    for path in (rg1_path, rg3_path):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        name = str(ds.get("PatientName", ""))
        values = [
            name,
            *name.split("^"),
            *(
                str(ds.get(k, ""))
                for k in (
                    "PatientID",
                    "PatientBirthDate",
                    "AccessionNumber",
                    "StudyInstanceUID",
                    "SOPInstanceUID",
                    "InstitutionName",
                    "ReferringPhysicianName",
                    "StudyID",
                )
            ),
        ]
        for value in {v.strip() for v in values if len(v.strip()) >= 4}:
            assert value not in log, f"{path.name}: a header value is in the listener's log"
