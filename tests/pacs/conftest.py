"""Fixtures of the PACS tests: a real Orthanc (Debian) and the real ``cxr serve --dicom-port`` in a subprocess,
started once per module.

Skipped when Orthanc or dcmtk is absent, unless CI=true or CXR_REQUIRE_PACS=1 (then the absence is a failure;
``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from orthanc_server import Orthanc, free_port
from pacs_helpers import AET, Listener, PacsEnv, require_pacs_tools


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PacsEnv]:
    require_pacs_tools()
    work = tmp_path_factory.mktemp("pacs")
    dicom_port = free_port()
    orthanc = Orthanc(work / "orthanc", {"cxr": (AET, "127.0.0.1", dicom_port)}).start()
    listener = Listener(work, orthanc, dicom_port)
    try:
        listener.start()
        yield PacsEnv(orthanc, listener, work)
    finally:
        listener.stop()
        listener.api.close()
        orthanc.close()
        if os.environ.get("CXR_KEEP_PACS_TMP") != "1":
            shutil.rmtree(work / "data", ignore_errors=True)  # ~100 MB of result images per study
            shutil.rmtree(work / "orthanc" / "db", ignore_errors=True)
