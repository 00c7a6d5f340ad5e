"""The REST API against a real server on loopback, running the real analysis (tiny untrained models)."""

from __future__ import annotations

import http.client
import io
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from serve_helpers import LiveServer, upload, wait_final

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.threadName != "MainThread":  # the server's threads, not this test process' own reads
            self.lines.append(self.format(record) + (record.exc_text or ""))


@pytest.fixture(scope="module")
def live(tiny_pipeline: Any, tmp_path_factory: pytest.TempPathFactory):
    """One server for the module; every log line of cxrassist and uvicorn is kept in ``live.log_lines``."""
    from cxrassist.serve.app import create_app
    from cxrassist.serve.settings import Settings

    data_dir = tmp_path_factory.mktemp("serve-data")
    server = LiveServer(create_app(Settings(data_dir=data_dir), pipeline_factory=lambda: tiny_pipeline))
    collect = _Collect()  # attached after uvicorn's Config has set up its loggers
    loggers = [logging.getLogger(n) for n in ("cxrassist", "uvicorn.error", "uvicorn.access")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(collect)
        lg.setLevel(logging.DEBUG)
    server.start()
    server.data_dir = data_dir  # type: ignore[attr-defined]
    server.log_lines = collect.lines  # type: ignore[attr-defined]
    yield server
    server.stop()
    for lg, level in zip(loggers, saved, strict=True):
        lg.removeHandler(collect)
        lg.setLevel(level)


@pytest.fixture(scope="module")
def client(live: LiveServer):
    with live.client() as c:
        yield c


@pytest.fixture(scope="module")
def rg1_done(client: httpx.Client, rg1: Path) -> dict[str, Any]:
    """RG1 (the real chest DICOM) uploaded and analysed to the end."""
    r = upload(client, rg1)
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["status"] == "queued" and created["url"] == f"/api/studies/{created['id']}"
    body = wait_final(client, created["id"])
    assert body["status"] == "done", body
    return body


def test_upload_rg1_is_analysed_to_a_report(client: httpx.Client, rg1_done: dict[str, Any], live: LiveServer):
    from cxrassist import DISCLAIMER
    from cxrassist.labels import FINDING_CODES
    from cxrassist.report.schema import validate_report

    body = rg1_done
    sid = body["study"]["id"]
    assert body["schema_version"] and body["disclaimer"] == DISCLAIMER
    assert [f["code"] for f in body["findings"]] == list(FINDING_CODES)
    assert body["input"]["frontal"]["source_format"] == "dicom"
    assert body["input"]["frontal"]["height"] == 1955 and body["input"]["frontal"]["width"] == 1841
    assert {m["status"] for m in body["models"]} == {"untrained"}
    # the report file on disk is the versioned schema, and the API gives the same content
    on_disk = json.loads((live.data_dir / "studies" / sid / "out" / "report.json").read_text())
    validate_report(on_disk)
    assert {k: body[k] for k in on_disk} == on_disk
    # worklist row carries triage and the top findings
    row = next(s for s in client.get("/api/studies").json()["studies"] if s["id"] == sid)
    assert row["priority"] == body["triage"]["priority"]
    assert row["priority_score"] == pytest.approx(body["triage"]["priority_score"])
    assert len(row["top_findings"]) == 3
    assert row["top_findings"][0]["probability"] == max(
        f["probability"] for f in body["findings"] if f["positive"] == row["top_findings"][0]["positive"]
    )


def test_images_are_served(client: httpx.Client, rg1_done: dict[str, Any]):
    sid = rg1_done["study"]["id"]
    names = rg1_done["image_names"]
    assert "radiograph.png" in names
    assert rg1_done["findings"][0]["heatmap_map"] in names and rg1_done["lung"]["mask"] in names
    r = client.get(f"/api/studies/{sid}/images/radiograph.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content.startswith(PNG_MAGIC)
    img = np.asarray(Image.open(io.BytesIO(r.content)))
    assert img.dtype == np.uint8 and img.shape == (1955, 1841)
    # 8-bit rendering of XRay.pixels: [0, 1] -> 0..255
    from pydicom.data import get_testdata_file

    from cxrassist.io import read_xray

    expected = np.round(read_xray(get_testdata_file("RG1_UNCI.dcm")).pixels * 255)
    assert np.abs(img.astype(np.float32) - expected).max() <= 1
    heat = client.get(f"/api/studies/{sid}/images/{rg1_done['findings'][0]['heatmap_map']}")
    assert heat.status_code == 200 and heat.content.startswith(PNG_MAGIC)
    # the grey map at most MAP_SIDE on its long side, the radiograph's aspect (the viewer scales it onto the image)
    from cxrassist.report.images import MAP_SIDE

    assert Image.open(io.BytesIO(heat.content)).size == (round(1841 * MAP_SIDE / 1955), MAP_SIDE)


def test_tibia_is_refused_with_its_reason(client: httpx.Client, rg3: Path):
    r = upload(client, rg3)
    assert r.status_code == 202, r.text
    body = wait_final(client, r.json()["id"])
    assert body["status"] == "refused"
    assert "chest" in body["reason"].lower()
    assert "findings" not in body and "triage" not in body
    # the radiograph can still be looked at
    assert client.get(f"/api/studies/{body['study']['id']}/images/radiograph.png").status_code == 200
    refused = client.get("/api/studies", params={"status": "refused"}).json()["studies"]
    assert [s["id"] for s in refused] == [body["study"]["id"]] and refused[0]["reason"] == body["reason"]


@pytest.mark.parametrize(
    ("content", "name", "code"),
    [
        (b"this is not a radiograph, just text" * 10, "notes.dcm", "NotAnImageError"),
        (b"", "empty.png", "EmptyFileError"),
        (PNG_MAGIC + b"\x00" * 50, "broken.png", None),
    ],
)
def test_garbage_upload_is_a_4xx_json_error(
    client: httpx.Client, live: LiveServer, content: bytes, name: str, code: str | None
):
    before = sorted(p.name for p in (live.data_dir / "studies").iterdir())
    r = client.post("/api/studies", files=[("files", (name, content, "application/octet-stream"))])
    assert 400 <= r.status_code < 500, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and body["detail"]
    if code:
        assert body["error"] == code
    assert "upload-0" not in body["detail"]  # the client's own file name, not our temp name
    assert sorted(p.name for p in (live.data_dir / "studies").iterdir()) == before  # nothing left behind


def test_request_shape_errors(client: httpx.Client, small_chest_png: Path):
    r = client.post("/api/studies", content=b"raw", headers={"content-type": "application/octet-stream"})
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"
    r = client.post("/api/studies", data={"lateral": "0"}, files=[("other", ("x.png", b"x", "image/png"))])
    assert r.status_code == 400 and "files" in r.json()["detail"]
    r = upload(client, small_chest_png, small_chest_png, small_chest_png)
    assert r.status_code == 400 and r.json()["error"] == "too_many_files"  # over max_files (2)
    r = upload(client, small_chest_png, small_chest_png, lateral="7")
    assert r.status_code == 400 and r.json()["error"] == "bad_lateral"
    r = client.get("/api/studies", params={"status": "bogus"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "path",
    [
        "/api/studies/{sid}/images/..%2F..%2Fstudies.db",
        "/api/studies/{sid}/images/../../studies.db",
        "/api/studies/{sid}/images/%2e%2e/input/frontal.dcm",
        "/api/studies/{sid}/images/report.json",
        "/api/studies/{sid}/images/..",
        "/api/studies/{sid}/images//etc/passwd",
        "/api/studies/{sid}/images/images%2F..%2F..%2F..%2Fstudies.db",
        "/api/studies/..%2F..%2Fetc/images/radiograph.png",
        "/api/studies/00000000-0000-4000-8000-000000000000/images/radiograph.png",
        "/api/studies/not-a-uuid/images/radiograph.png",
        "/api/studies/{sid}/images/input/frontal.dcm",
    ],
)
def test_path_traversal_and_unknown_ids_are_404(live: LiveServer, rg1_done: dict[str, Any], path: str):
    sid = rg1_done["study"]["id"]
    # http.client sends the path byte for byte (httpx would normalise the dot segments away)
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
    conn.request("GET", path.replace("{sid}", sid))
    r = conn.getresponse()
    body = r.read()
    conn.close()
    assert r.status == 404, (path, r.status, body[:200])
    assert r.getheader("content-type").startswith("application/json") and json.loads(body)["error"] == "not_found"


def test_lateral_study(client: httpx.Client, small_chest_png: Path, tmp_path: Path):
    lateral = tmp_path / "second.png"
    lateral.write_bytes(small_chest_png.read_bytes())
    r = upload(client, small_chest_png, lateral, lateral="second.png")
    assert r.status_code == 202 and r.json()["has_lateral"] is True
    body = wait_final(client, r.json()["id"])
    assert body["status"] == "done", body
    assert body["input"]["lateral"] is not None
    assert "lateral.png" in body["image_names"]
    lat_heat = body["findings"][0]["heatmap_lateral"]
    assert lat_heat in body["image_names"]
    assert client.get(f"/api/studies/{body['study']['id']}/images/{lat_heat}").status_code == 200


def test_worklist_order_filter_and_delete(
    client: httpx.Client, rg1_done: dict[str, Any], small_chest_png: Path, live: LiveServer
):
    r = upload(client, small_chest_png)
    small = wait_final(client, r.json()["id"])
    assert small["status"] == "done"
    wl = client.get("/api/studies").json()
    scores = [s["priority_score"] for s in wl["studies"] if s["priority_score"] is not None]
    assert len(scores) >= 2 and scores == sorted(scores, reverse=True)
    unscored = [i for i, s in enumerate(wl["studies"]) if s["priority_score"] is None]
    assert all(i >= len(scores) for i in unscored)  # scored studies first
    assert wl["counts"]["done"] == len(client.get("/api/studies?status=done").json()["studies"])
    sid = small["study"]["id"]
    assert (live.data_dir / "studies" / sid).is_dir()
    assert client.delete(f"/api/studies/{sid}").status_code == 204
    assert client.get(f"/api/studies/{sid}").status_code == 404
    assert client.get(f"/api/studies/{sid}/images/radiograph.png").status_code == 404
    assert client.delete(f"/api/studies/{sid}").status_code == 404
    assert not (live.data_dir / "studies" / sid).exists()


def test_health_presets_openapi_and_viewer(client: httpx.Client, rg1_done: dict[str, Any]):
    from cxrassist import DISCLAIMER
    from cxrassist.preprocess import LEVEL_PRESETS

    h = client.get("/api/health").json()
    assert h["status"] == "ok" and h["pipeline"] == "ready" and h["disclaimer"] == DISCLAIMER
    assert {m["role"] for m in h["models"]} == {"lung", "bone", "classifier", "triage"}
    assert [(m["name"], m["status"]) for m in h["models"]] == [(m["name"], m["status"]) for m in rg1_done["models"]]
    p = client.get("/api/presets").json()["presets"]
    assert {k: (v["center"], v["width"]) for k, v in p.items()} == LEVEL_PRESETS
    spec = client.get("/openapi.json").json()
    assert "/api/studies" in spec["paths"] and "/api/studies/{study_id}/images/{name}" in spec["paths"]
    page = client.get("/")
    assert page.status_code == 200 and "worklist" in page.text.lower()
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("study.html", "study.js", "worklist.js", "common.js", "style.css"):
        text = client.get(f"/{asset}").text
        assert "http://" not in text and "https://" not in text  # no external assets


def test_no_patient_identifiers_in_logs(live: LiveServer, rg1_done: dict[str, Any], rg1: Path, rg3: Path):
    """Runs after the RG1 and RG3 studies above: the logs name studies by id only."""
    import pydicom

    lines = "\n".join(live.log_lines)
    assert rg1_done["study"]["id"] in lines  # the worker did log (by id)
    assert "GET /api/studies" in lines  # and so did the access log
    for path in (rg1, rg3):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for value in (str(ds.PatientName), str(ds.PatientName).split("^")[0], ds.PatientID, ds.PatientBirthDate):
            assert value and value not in lines, value
        assert path.name not in lines  # nor the client's file names
