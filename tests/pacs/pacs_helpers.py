"""Helpers of the PACS tests: the real ``cxr serve --dicom-port`` in a subprocess, dcmtk, study copies.

``require_pacs_tools`` skips when Orthanc or dcmtk is absent, unless CI=true or CXR_REQUIRE_PACS=1 (then the
absence is a failure; ``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from orthanc_server import Orthanc, available, free_port

AET = "CXRASSIST"
#: The calling AE titles the listener accepts: one per test, so each test finds its own studies in the worklist.
ALLOWED = ("STORESCU", "ORTHANC", "MODALITY", "KILLTEST")
REPO = Path(__file__).resolve().parents[2]


def require_pacs_tools() -> None:
    if available():
        return
    if os.environ.get("CI", "").lower() == "true" or os.environ.get("CXR_REQUIRE_PACS") == "1":
        pytest.fail("Orthanc and dcmtk are required (apt-get install orthanc orthanc-dicomweb dcmtk)")
    pytest.skip("Debian's orthanc / dcmtk not installed")


class Listener:
    """``cxr serve --dicom-port`` (shipped models) in a subprocess; its log accumulates over restarts."""

    def __init__(self, workdir: Path, orthanc: Orthanc, dicom_port: int) -> None:
        self.data_dir = workdir / "data"
        self.log_path = workdir / "listener.log"
        self.http_port = free_port()
        self.dicom_port = dicom_port
        self.orthanc = orthanc
        self.proc: subprocess.Popen | None = None
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.http_port}", timeout=30)

    def command(self) -> list[str]:
        cxr = Path(sys.executable).with_name("cxr")
        cmd = [str(cxr)] if cxr.exists() else [sys.executable, "-m", "cxrassist.cli"]
        cmd += [
            "serve",
            "--port",
            str(self.http_port),
            "--data-dir",
            str(self.data_dir),
            "--dicom-port",
            str(self.dicom_port),
            "--dicom-aet",
            AET,
            "--dicom-quiet",
            "1",
            "--send-to",
            f"{self.orthanc.aet}@127.0.0.1:{self.orthanc.dicom_port}",
        ]
        for ae in ALLOWED:
            cmd += ["--dicom-allow", ae]
        if self.orthanc.dicomweb:
            cmd += ["--stow-url", self.orthanc.dicomweb_url]
        return cmd

    def start(self, timeout: float = 300.0) -> Listener:
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
        env.pop("CXR_API_TOKEN", None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.api.get("/api/health").json().get("pipeline") == "ready":
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the listener did not start:\n{self.log()[-3000:]}")
            time.sleep(0.3)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def studies(self, source: str) -> list[dict[str, Any]]:
        return [s for s in self.api.get("/api/studies").json()["studies"] if s.get("source") == source]

    def wait_study(self, source: str, timeout: float = 300.0) -> dict[str, Any]:
        """The (only) study from ``source`` once its analysis ended; its detail (report merged in)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.studies(source)
            if found and found[0]["status"] in ("done", "refused", "failed"):
                assert len(found) == 1, f"{len(found)} studies from {source}"
                return self.api.get(found[0]["url"]).json()
            if time.monotonic() > deadline:
                raise AssertionError(f"no finished study from {source} after {timeout} s: {found}")
            time.sleep(0.3)


@dataclass
class PacsEnv:
    orthanc: Orthanc
    listener: Listener
    workdir: Path


def dcmtk(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def copy_with_new_uids(src: Path, dst: Path, transfer_syntax: str | None = None) -> Any:
    """``src`` saved as ``dst`` with new Study/Series/SOP Instance UIDs (another study of the same film),
    compressed to ``transfer_syntax`` when given."""
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(src)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    if transfer_syntax is not None:
        ds.compress(transfer_syntax)
    ds.save_as(dst, enforce_file_format=True)
    return ds
