"""Safety rules of the service: token on non-loopback bindings, bearer auth, upload size limit, the CLI refusal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cxrassist.errors import ServeConfigError
from cxrassist.serve.settings import Settings, is_loopback

TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("example.org", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool):
    assert is_loopback(host) is loopback


def test_non_loopback_binding_needs_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from cxrassist.serve.app import create_app

    monkeypatch.delenv("CXR_API_TOKEN", raising=False)
    with pytest.raises(ServeConfigError, match="CXR_API_TOKEN"):
        Settings(host="0.0.0.0", data_dir=tmp_path).validate()
    with pytest.raises(ServeConfigError):
        create_app(Settings.from_env(host="0.0.0.0", data_dir=tmp_path))
    with pytest.raises(ServeConfigError, match="too short"):
        Settings(host="0.0.0.0", data_dir=tmp_path, api_token="short").validate()
    assert Settings(host="127.0.0.1", data_dir=tmp_path).validate().token_required is False
    monkeypatch.setenv("CXR_API_TOKEN", TOKEN)
    settings = Settings.from_env(host="0.0.0.0", data_dir=tmp_path).validate()
    assert settings.api_token == TOKEN and settings.token_required
    create_app(settings)  # builds (binding is uvicorn's job)


def test_cli_refuses_public_binding_without_token(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "CXR_API_TOKEN"}
    proc = subprocess.run(
        [sys.executable, "-m", "cxrassist.cli", "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == ServeConfigError.exit_code, proc.stderr
    assert proc.stderr.startswith("error: refusing to listen on '0.0.0.0'") and "CXR_API_TOKEN" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "studies.db").exists()


def test_bearer_token_is_required_when_configured(start_server, tmp_path: Path):
    server = start_server(tmp_path, api_token=TOKEN)
    with server.client() as c:
        unknown = f"/api/studies/{'0' * 8}-0000-4000-8000-{'0' * 12}"
        for path in ("/api/health", "/api/studies", "/api/presets", unknown):
            r = c.get(path)
            assert r.status_code == 401 and r.json()["error"] == "unauthorized", path
            assert r.headers["www-authenticate"] == "Bearer"
            assert c.get(path, headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
        r = c.post("/api/studies", files=[("files", ("a.png", b"x", "image/png"))])
        assert r.status_code == 401
        ok = c.get("/api/health", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["token_required"] is True
        assert c.get("/", headers={}).status_code == 200  # the viewer's static files ask for the token themselves
        assert c.get("/openapi.json").status_code == 401 and c.get("/docs").status_code == 401  # issue 15
        authed = {"Authorization": f"Bearer {TOKEN}"}
        assert c.get("/openapi.json", headers=authed).json()["info"]["title"]
        assert c.get("/docs", headers=authed).status_code == 200


def test_upload_size_limit(start_server, tmp_path: Path, small_chest_png: Path, rg1: Path):
    server = start_server(tmp_path, max_upload_bytes=200_000)
    with server.client() as c:
        r = c.post("/api/studies", files=[("files", ("big.dcm", rg1.read_bytes(), "application/dicom"))])
        assert r.status_code == 413 and r.json()["error"] == "too_large" and "0.2 MB" in r.json()["detail"]
        # a chunked body without Content-Length is counted while it is read
        body = b'--b\r\nContent-Disposition: form-data; name="files"; filename="x.dcm"\r\n\r\n' + b"\0" * 400_000
        r = c.post(
            "/api/studies",
            content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert r.status_code == 413 and r.json()["error"] == "too_large"
        upload = [("files", ("s.png", small_chest_png.read_bytes(), "image/png"))]
        assert c.post("/api/studies", files=upload).status_code == 202
    assert len(list((tmp_path / "studies").iterdir())) == 1


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serve_starts_queues_and_stops(tmp_path: Path, small_chest_png: Path):
    """`cxr serve --workers 0` (queue only, no models loaded): answers, accepts an upload, stops on Ctrl-C."""
    import signal
    import time

    import httpx

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "CXR_API_TOKEN"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cxrassist.cli",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
            "--workers",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            while True:
                try:
                    health = c.get("/api/health")
                    break
                except httpx.TransportError:
                    assert proc.poll() is None and time.monotonic() < deadline, "cxr serve did not come up"
                    time.sleep(0.2)
            assert health.status_code == 200 and health.json()["pipeline"] == "not loaded"
            r = c.post("/api/studies", files=[("files", ("s.png", small_chest_png.read_bytes(), "image/png"))])
            assert r.status_code == 202
            assert c.get(f"/api/studies/{r.json()['id']}").json()["status"] == "queued"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    assert (tmp_path / "studies.db").exists()


def test_broken_weights_are_reported_and_uploads_wait(tmp_path: Path, small_chest_png: Path):
    """A pipeline that cannot load shows in /api/health and the viewer banner; studies stay queued, not failed."""
    import time

    from serve_helpers import LiveServer

    from cxrassist.errors import WeightsError
    from cxrassist.serve.app import create_app

    def broken() -> None:
        raise WeightsError("classifier weights: sha256 mismatch")

    server = LiveServer(create_app(Settings(data_dir=tmp_path), pipeline_factory=broken)).start()
    try:
        with server.client() as c:
            deadline = time.monotonic() + 30
            while (h := c.get("/api/health").json())["pipeline"] != "error":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert h["pipeline_error"] == "classifier weights: sha256 mismatch" and h["models"] == []
            r = c.post("/api/studies", files=[("files", ("s.png", small_chest_png.read_bytes(), "image/png"))])
            assert r.status_code == 202
            time.sleep(0.5)
            assert c.get(f"/api/studies/{r.json()['id']}").json()["status"] == "queued"
    finally:
        server.stop()
