"""Acceptance lines of the service issue that had no test of their own.

- every foundation refusal at upload is a 4xx JSON error naming the problem (never a 500), and leaves no study;
- OpenAPI docs are served at ``/docs``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _smooth(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.sin(yy / 9.0) * np.cos(xx / 7.0)
    return np.rint((img - img.min()) / (img.max() - img.min()) * 4095).astype(np.uint16)


def _png(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr).save(path)
    return path


def test_foundation_refusals_are_4xx_json_and_docs_are_served(start_server, make_dicom, tmp_path: Path) -> None:
    photo = np.zeros((90, 120, 3), np.uint8)
    photo[..., 0] = 200
    photo[45:, :, 1] = 180
    cases = {
        "ColourPhotoError": _png(tmp_path / "photo.png", photo),
        "ImageTooSmallError": _png(tmp_path / "small.png", np.zeros((40, 40), np.uint8)),
        "NoPixelDataError": make_dicom(with_pixels=False, modality="SR", sop_class="1.2.840.10008.5.1.4.1.1.88.11"),
        "MultiFrameError": make_dicom(
            _smooth(64, 64), modality="CT", frames=4, sop_class="1.2.840.10008.5.1.4.1.1.2.1"
        ),
        "UnsupportedModalityError": make_dicom(_smooth(80, 80), modality="US"),
        "DecompressionBombError": make_dicom(_smooth(64, 64), rows=30000, columns=30000),
    }
    data = tmp_path / "data"
    server = start_server(data)
    with server.client() as c:
        for error, path in cases.items():
            r = c.post("/api/studies", files=[("files", (path.name, path.read_bytes(), "application/octet-stream"))])
            assert 400 <= r.status_code < 500, (error, r.status_code, r.text)
            body = r.json()
            assert body["error"] == error and path.name in body["detail"], body
        assert c.get("/api/studies").json()["studies"] == []
        docs = c.get("/docs")
        assert docs.status_code == 200 and "openapi.json" in docs.text and "swagger" in docs.text.lower()
        assert c.get("/openapi.json").json()["info"]["title"]
    studies = data / "studies"
    assert not studies.exists() or not any(studies.iterdir())
