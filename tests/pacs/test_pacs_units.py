"""The PACS link's parts without a network or a model: configuration checks, the intake's quiet period and its
recovery after a stop, the outbox's once-only queueing and back-off states."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from cxrassist.errors import ServeConfigError
from cxrassist.pacs.config import DicomNode, PacsConfig
from cxrassist.pacs.intake import StudyAssembler, TooManyInstances, uid_key
from cxrassist.pacs.outbox import Outbox


def test_config_refuses_what_cannot_work():
    assert DicomNode.parse("ORTHANC@127.0.0.1:4242") == DicomNode("ORTHANC", "127.0.0.1", 4242)
    assert DicomNode.parse("PACS@[::1]:104").host == "::1"
    for bad in ("ORTHANC", "ORTHANC@host", "@host:1", "A@h:0", "A@h:70000", "WAY_TOO_LONG_AE_TITLE@h:1", "A\\B@h:1"):
        with pytest.raises(ServeConfigError):
            DicomNode.parse(bad)
    with pytest.raises(ServeConfigError, match="--dicom-allow"):
        PacsConfig(port=11112).validate()  # nobody allowed: refused, not "everybody"
    with pytest.raises(ServeConfigError, match="AE title"):
        PacsConfig(port=11112, allowed_aes=("A" * 17,)).validate()
    with pytest.raises(ServeConfigError, match="STOW"):
        PacsConfig(port=11112, allowed_aes=("X",), stow_url="ftp://pacs/x").validate()
    cfg = PacsConfig(port=11112, allowed_aes=("X",), destination=DicomNode.parse("P@h:1"), stow_url="http://h/dw")
    assert cfg.validate().targets == ("dicom", "stow")


def test_cli_refuses_dicom_options_without_a_port(cxr_main, tmp_path: Path):
    code, _, err = cxr_main(["serve", "--data-dir", str(tmp_path), "--send-to", "P@127.0.0.1:104"])
    assert code != 0 and err.count("\n") == 1 and "--dicom-port" in err, err
    code, _, err = cxr_main(["serve", "--data-dir", str(tmp_path), "--dicom-port", "11112"])
    assert code != 0 and "--dicom-allow" in err and err.count("\n") == 1, err
    assert not (tmp_path / "studies.db").exists()  # refused before anything was created


def test_intake_quiet_period_late_instances_and_recovery(tmp_path: Path):
    now = [100.0]
    staging = tmp_path / "incoming"
    a = StudyAssembler(staging, quiet_s=5.0, max_instances=3, clock=lambda: now[0])
    a.receive("1.2.3", "1.2.3.1", b"first", "MOD")
    now[0] += 4.0
    a.receive("1.2.3", "1.2.3.2", b"second", "OTHER")
    assert a.due() == []  # the quiet period restarts with every instance
    a.receive("1.2.3", "1.2.3.2", b"second again", "MOD")  # a resend replaces itself, counts once

    small = StudyAssembler(tmp_path / "small", quiet_s=5.0, max_instances=1, clock=lambda: now[0])
    small.receive("7.7", "7.7.1", b"one", "MOD")
    small.receive("7.7", "7.7.1", b"one again", "MOD")  # the same instance again is not one more
    with pytest.raises(TooManyInstances):
        small.receive("7.7", "7.7.2", b"two", "MOD")
    now[0] += 5.0
    ((study, files),) = a.due()
    assert study.source == "MOD" and len(files) == 2 and study.folder.name == uid_key("1.2.3")
    assert "1.2.3" not in " ".join(p.name for p in staging.rglob("*"))  # no UID in a path
    a.receive("1.2.3", "1.2.3.9", b"late", "MOD")  # came while the study was being handed over
    a.done(study, files)
    assert [f.read_bytes() for f in study.files()] == [b"late"] and a.due() == []
    # a new process finds the late instance and waits a quiet period of its own before handing it over
    b = StudyAssembler(staging, quiet_s=5.0, max_instances=3, clock=lambda: now[0])
    (study.folder / ".tmp-half-written.dcm").write_bytes(b"x")
    assert b.recover() == 1 and b.due() == []
    now[0] += 5.0
    ((again, files),) = b.due()
    assert [f.read_bytes() for f in files] == [b"late"] and not (study.folder / ".tmp-half-written.dcm").exists()
    b.done(again, files)
    assert not study.folder.exists() and b.pending == 0


def test_outbox_queues_once_and_backs_off(tmp_path: Path):
    box = Outbox(tmp_path / "pacs.db")
    box.begin_study("s1", "key", "MOD", 1.0)
    assert box.owns("s1") and not box.owns("s2")
    entries = [
        {"path": "out/dicom/sr.dcm", "sop_instance_uid": "9.1", "kind": "SR"},
        {"path": "out/dicom/sc_01.dcm", "sop_instance_uid": "9.2", "kind": "SC"},
    ]
    assert box.enqueue("s1", entries, ("dicom", "stow")) == 4
    assert box.enqueue("s1", entries, ("dicom", "stow")) == 0  # a second collection queues nothing twice
    assert box.studies("results")[0]["study_id"] == "s1"
    assert {i.target for i in box.due(("dicom",))} == {"dicom"}
    first, second, *_ = box.due(("dicom", "stow"))
    box.mark_sent(first.id)
    box.mark_sent(first.id)  # idempotent: still one send recorded
    box.mark_retry(second.id, "PACS down", next_at=2e12)
    assert second.id not in {i.id for i in box.due(("dicom", "stow"))}
    box.close()
    box = Outbox(tmp_path / "pacs.db")  # after a restart the pending row is due at once, the sent one never again
    assert box.retry_now() == 3
    due = {i.id for i in box.due(("dicom", "stow"))}
    assert second.id in due and first.id not in due
    row = (
        sqlite3.connect(tmp_path / "pacs.db")
        .execute("SELECT attempts, state FROM outbox WHERE id = ?", (first.id,))
        .fetchone()
    )
    assert row == (1, "sent")
    box.close()


def _jpegls_sc(folder: Path) -> tuple[Path, np.ndarray]:
    """A small RGB Secondary Capture written as our SCs are (highdicom), in JPEG-LS Lossless."""
    import highdicom as hd
    from pydicom.uid import JPEGLSLossless, generate_uid

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(48, 40, 3), dtype=np.uint8)
    sc = hd.sc.SCImage(
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        study_instance_uid=generate_uid(),
        series_instance_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        series_number=9901,
        instance_number=1,
        manufacturer="cxrassist",
        patient_orientation=("L", "F"),
        transfer_syntax_uid=JPEGLSLossless,
    )
    path = folder / "sc.dcm"
    sc.save_as(path, enforce_file_format=True)
    return path, pixels


@pytest.mark.parametrize("accepts_jpegls", [True, False])
def test_cstore_sends_a_compressed_sc_as_is_or_decompressed(tmp_path: Path, accepts_jpegls: bool):
    """A receiver that accepts JPEG-LS gets the file as written; one that does not gets the same pixels uncompressed
    (the SC is proposed in a context of its own beside an uncompressed one, never one context offering both)."""
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLSLossless
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import SecondaryCaptureImageStorage

    from cxrassist.pacs.sender import cstore

    path, pixels = _jpegls_sc(tmp_path)
    received: list[tuple[str, np.ndarray]] = []

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        received.append((str(event.context.transfer_syntax), ds.pixel_array.copy()))
        return 0x0000

    scp = AE(ae_title="PACS")
    syntaxes = [ImplicitVRLittleEndian, ExplicitVRLittleEndian] + ([JPEGLSLossless] if accepts_jpegls else [])
    scp.add_supported_context(SecondaryCaptureImageStorage, syntaxes)
    port = _free_port()
    server = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        outcome: list[str | None] = []
        cstore(DicomNode("PACS", "127.0.0.1", port), "CXRASSIST", [path], lambda p, e: outcome.append(e), 10.0)
    finally:
        server.shutdown()
    assert outcome == [None]
    ((syntax, got),) = received
    assert (syntax == JPEGLSLossless) is accepts_jpegls
    assert np.array_equal(got, pixels)  # lossless either way


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
