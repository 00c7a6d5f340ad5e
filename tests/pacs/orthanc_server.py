"""A real Orthanc (Debian's ``orthanc`` package) on loopback for the PACS tests and benchmarks/bench_pacs.py.

Generated configuration in a temporary folder: its own free ports (never 4242/8042), no authentication, HTTP and
DICOM bound to 127.0.0.1, the DICOMweb plugin when Debian's ``orthanc-dicomweb`` is installed (nothing else), the
given modalities, stores only from declared modalities. A Lua hook appends every stored instance (SOP Instance UID
and origin) to ``stored.log``: a second store of the same instance shows there (``OverwriteInstances``), so
"exactly once" can be checked, not just "present".
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
_LUA = """
function OnStoredInstance(instanceId, tags, metadata, origin)
  local f = io.open('{log}', 'a')
  f:write(tags['SOPInstanceUID'] .. ' ' .. origin['RequestOrigin'] .. '\\n')
  f:close()
end
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> bool:
    return Path(ORTHANC).exists() and shutil.which("storescu") is not None and shutil.which("echoscu") is not None


class Orthanc:
    """Start/stop one Orthanc; ``rest`` is an httpx client on its REST API."""

    def __init__(self, workdir: Path, modalities: dict[str, tuple[str, str, int]], aet: str = "ORTHANC") -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.aet = aet
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.stored_log = self.workdir / "stored.log"
        self.dicomweb = DICOMWEB_PLUGIN.exists()
        (self.workdir / "stored.lua").write_text(_LUA.format(log=self.stored_log))
        config: dict[str, Any] = {
            "Name": "cxrassist-test",
            "StorageDirectory": str(self.workdir / "db"),
            "IndexDirectory": str(self.workdir / "db"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpBindAddress": "127.0.0.1",
            "DicomServerEnabled": True,
            "Plugins": [str(DICOMWEB_PLUGIN)] if self.dicomweb else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomModalities": {name: list(node) for name, node in modalities.items()},
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowEcho": False,
            "DicomCheckModalityHost": False,
            "OverwriteInstances": True,
            "LuaScripts": [str(self.workdir / "stored.lua")],
            "ConcurrentJobs": 2,
            "SaveJobs": False,
            "StorageCompression": False,
            "DicomScuTimeout": 30,
            "StableAge": 1,
            "HttpTimeout": 30,
        }
        self.config_path = self.workdir / "orthanc.json"
        self.config_path.write_text(json.dumps(config, indent=1))
        self.proc: subprocess.Popen | None = None
        self.rest = httpx.Client(base_url=f"http://127.0.0.1:{self.http_port}", timeout=60)

    @property
    def dicomweb_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    def start(self, timeout: float = 30.0) -> Orthanc:
        with open(self.workdir / "orthanc.log", "ab") as log:
            self.proc = subprocess.Popen(
                [ORTHANC, str(self.config_path)], stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.rest.get("/system").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.workdir / "orthanc.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Orthanc did not start:\n{tail}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        self.rest.close()

    # -- queries -----------------------------------------------------------------------------------------------
    def stored(self) -> Counter:
        """(SOP Instance UID, origin) -> how many times Orthanc stored it ("DicomProtocol", "RestApi"/"Plugins")."""
        if not self.stored_log.exists():
            return Counter()
        return Counter(tuple(line.split(" ", 1)) for line in self.stored_log.read_text().splitlines() if line)

    def study_id(self, study_uid: str) -> str | None:
        found = self.rest.post("/tools/lookup", content=study_uid).json()
        return next((f["ID"] for f in found if f["Type"] == "Study"), None)

    def series_of(self, study_uid: str) -> list[dict[str, Any]]:
        """Every series of the study with its MainDicomTags and instance ids."""
        sid = self.study_id(study_uid)
        if sid is None:
            return []
        return self.rest.get(f"/studies/{sid}/series").json()

    def upload(self, data: bytes) -> str:
        """POST a Part-10 file to Orthanc (REST); its Orthanc instance id."""
        r = self.rest.post("/instances", content=data)
        r.raise_for_status()
        return r.json()["ID"]
