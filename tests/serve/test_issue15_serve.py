"""Issue 15, the service: security headers, the token on the docs, the retry cap, clean-up of interrupted report
writes, and no patient identifier in the server log when fuzzed DICOMs are uploaded."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from serve_helpers import upload, wait_final

TOKEN = "issue-15-token-0123456789"


def test_api_answers_are_not_cached_and_every_page_has_a_csp(start_server, tmp_path: Path):
    server = start_server(tmp_path)
    with server.client() as c:
        for path in ("/api/health", "/api/studies", "/api/presets", "/openapi.json"):
            r = c.get(path)
            assert r.status_code == 200 and r.headers["cache-control"] == "no-store", path
        missing = c.get("/api/studies/00000000-0000-4000-8000-000000000000")
        assert missing.status_code == 404 and missing.headers["cache-control"] == "no-store"
        assert "default-src 'self'" in c.get("/").headers["content-security-policy"]
        for page in ("/docs", "/redoc"):
            r = c.get(page)
            csp = r.headers["content-security-policy"]
            assert r.status_code == 200 and "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, page
            assert ("'sha256-" in csp) == (page == "/docs")  # swagger's one inline script, by its hash
            assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]  # scripts by hash only


def test_docs_csp_hash_matches_the_inline_script():
    import base64
    import hashlib
    import re

    from fastapi.openapi.docs import get_swagger_ui_html

    from cxrassist.serve.app import docs_csp

    html = bytes(get_swagger_ui_html(openapi_url="/openapi.json", title="t").body).decode()
    (script,) = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in docs_csp(html)
    assert f"'sha256-{digest}'" not in docs_csp(html.replace(script, script + " "))


def test_token_guards_docs_and_openapi(start_server, tmp_path: Path):
    server = start_server(tmp_path, api_token=TOKEN)
    with server.client() as c:
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200, path


def test_a_study_that_keeps_killing_the_worker_is_failed_not_retried(tmp_path: Path):
    from cxrassist.serve.store import MAX_ATTEMPTS, StudyStore

    store = StudyStore(tmp_path)
    sid, _ = store.new_study_dir()
    store.add(sid, {"frontal": "input/frontal.png"})
    for attempt in range(1, MAX_ATTEMPTS + 1):
        claimed = store.claim_next()  # the analysis starts ... and the process dies (no finish)
        assert claimed is not None and claimed.attempts == attempt
        assert store.fail_exhausted() == ([sid] if attempt == MAX_ATTEMPTS else [])
        requeued = store.requeue_interrupted()
        assert requeued == ([] if attempt == MAX_ATTEMPTS else [sid])
    study = store.get(sid)
    assert study is not None and study.status == "failed" and f"interrupted {MAX_ATTEMPTS} times" in study.reason
    assert store.claim_next() is None
    store.close()


def test_restart_removes_partial_report_folders_and_gives_up_on_crashing_studies(start_server, tmp_path: Path):
    from cxrassist.serve.store import MAX_ATTEMPTS, StudyStore

    store = StudyStore(tmp_path)
    sid, input_dir = store.new_study_dir()
    store.add(sid, {"frontal": "input/frontal.png"})
    for attempt in range(1, MAX_ATTEMPTS + 1):
        store.claim_next()
        if attempt < MAX_ATTEMPTS:
            store.requeue_interrupted()
    partial = input_dir.parent / ".out.tmp-abc123"
    (partial / "heatmaps").mkdir(parents=True)
    (partial / "heatmaps" / "AT_overlay.png").write_bytes(b"\0" * 100_000)
    (input_dir.parent / ".out.old-1-2").mkdir()
    keep = input_dir.parent / "view"
    keep.mkdir()
    store.close()
    server = start_server(tmp_path, workers=0)
    with server.client() as c:
        body = c.get(f"/api/studies/{sid}").json()
    assert body["status"] == "failed" and "not retried" in body["reason"]
    assert not partial.exists() and not (input_dir.parent / ".out.old-1-2").exists()
    assert keep.is_dir() and input_dir.is_dir()


@pytest.mark.slow
def test_fuzzed_uploads_leave_no_identifier_in_the_server_log(
    start_server, tmp_path: Path, rg1_small, capfd, byte_flipper, real_warnings
):
    """Byte-flipped RG1 headers uploaded to the service: each is accepted or refused with a 4xx, and neither the
    log records (every logger, DEBUG) nor the process' stderr holds the patient's name, ID, birth date or
    accession number. Warnings behave as in production (``real_warnings``: pytest would otherwise record them
    itself, and stderr would prove nothing)."""
    data, pixel_offset, identifiers = rg1_small
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record) + (record.exc_text or ""))

    handler = Collect(logging.DEBUG)
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    with real_warnings():
        try:
            server = start_server(tmp_path / "data")
            statuses: list[int] = []
            ids: list[str] = []
            with server.client() as c:
                for seed in range(30):
                    path = tmp_path / f"upload_{seed:02d}.dcm"
                    path.write_bytes(byte_flipper(data, seed, 132, pixel_offset))
                    r = upload(c, path)
                    statuses.append(r.status_code)
                    assert r.status_code in (202, 413, 422), r.text
                    if r.status_code == 202:
                        ids.append(r.json()["id"])
                finals = [wait_final(c, sid)["status"] for sid in ids]
            time.sleep(0.2)
        finally:
            root.removeHandler(handler)
            root.setLevel(saved)
    out, err = capfd.readouterr()
    log_text = "\n".join(records)
    assert 422 in statuses and 202 in statuses  # the fuzz reaches both paths
    assert all(s in ("done", "refused", "failed") for s in finals)
    for value in identifiers:
        assert value not in log_text and value not in err and value not in out, value
