"""Acceptance lines of the foundation issue that had no test of their own.

- every refusal reaches the user through the CLI as ONE line, exit code 2, no traceback (not only the empty file);
- JPEG lossless (process 14) is decoded, bit-exactly equal to its decompressed copy;
- ``cxr --version``; README opens with ``make demo`` / ``make test``; ``.ci/run`` runs ``make test`` under
  ``set -euo pipefail``; the pinned torch/torchvision and the pylibjpeg plug-ins are dependencies.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tomllib
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def _smooth(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.sin(yy / 9.0) * np.cos(xx / 7.0)
    return np.rint((img - img.min()) / (img.max() - img.min()) * 4095).astype(np.uint16)


def _colour_photo(path: Path) -> Path:
    photo = np.zeros((90, 120, 3), np.uint8)
    photo[..., 0] = 200
    photo[45:, :, 1] = 180
    Image.fromarray(photo).save(path)
    return path


def _small_png(path: Path) -> Path:
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(path)
    return path


def _truncated_png(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:2000])
    return path


def _text(path: Path) -> Path:
    path.write_text("not an image at all\n" * 20)
    return path


# (builder, expected fragment of the one-line message)
REFUSALS = {
    "colour photo": (lambda tmp, mk: _colour_photo(tmp / "photo.png"), "colour"),
    "too small": (lambda tmp, mk: _small_png(tmp / "small.png"), "40x40"),
    "truncated": (lambda tmp, mk: _truncated_png(tmp / "cut.png"), "cut.png"),
    "not an image": (lambda tmp, mk: _text(tmp / "notes.txt"), "not a DICOM, PNG, JPEG or TIFF"),
    "SR without pixels": (
        lambda tmp, mk: mk(with_pixels=False, modality="SR", sop_class="1.2.840.10008.5.1.4.1.1.88.11"),
        "no pixel data",
    ),
    "CT volume": (
        lambda tmp, mk: mk(_smooth(64, 64), modality="CT", frames=4, sop_class="1.2.840.10008.5.1.4.1.1.2.1"),
        "4-frame",
    ),
    "ultrasound": (lambda tmp, mk: mk(_smooth(80, 80), modality="US"), "modality US"),
    "bomb": (lambda tmp, mk: mk(_smooth(64, 64), rows=30000, columns=30000), "100 MP"),
}


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_every_refusal_is_one_cli_line_with_exit_2(kind: str, tmp_path: Path, make_dicom, cxr_main) -> None:
    build, fragment = REFUSALS[kind]
    path = build(tmp_path, make_dicom)
    code, out, err = cxr_main(["info", str(path)])
    assert code == 2, (kind, code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in err and out == ""


def test_missing_decoder_is_one_cli_line(make_dicom, monkeypatch: pytest.MonkeyPatch, cxr_main) -> None:
    from pydicom.pixels import get_decoder, get_encoder
    from pydicom.uid import JPEG2000Lossless

    if not get_encoder(JPEG2000Lossless).is_available:
        pytest.skip("no JPEG 2000 encoder to build the file")
    path = make_dicom(_smooth(80, 80), transfer_syntax=JPEG2000Lossless)
    monkeypatch.setattr(type(get_decoder(JPEG2000Lossless)), "is_available", property(lambda self: False))
    code, _, err = cxr_main(["info", str(path)])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "pip install pylibjpeg-openjpeg" in err


def test_jpeg_lossless_process14_decodes_exactly(testdata_file, tmp_path: Path) -> None:
    """A real JPEG-lossless (process 14, SV1) file equals its own decompressed copy, pixel for pixel."""
    import pydicom
    from pydicom.uid import JPEGLosslessSV1

    from cxrassist.io import read_xray

    ds = pydicom.dcmread(testdata_file("JPGLosslessP14SV1_1s_1f_8b.dcm"))
    assert ds.file_meta.TransferSyntaxUID == JPEGLosslessSV1
    ds.Modality = "OT"  # the sample is an ultrasound frame; the pixels are what matters here
    ds.save_as(tmp_path / "jpegll.dcm", enforce_file_format=True)
    packed = read_xray(tmp_path / "jpegll.dcm")
    assert packed.extra["transfer_syntax"] == str(JPEGLosslessSV1)
    ds.decompress()
    ds.save_as(tmp_path / "plain.dcm", enforce_file_format=True)
    plain = read_xray(tmp_path / "plain.dcm")
    assert packed.shape == (768, 1024) and packed.bits_stored == 8
    np.testing.assert_array_equal(packed.pixels, plain.pixels)
    assert float(packed.pixels.std()) > 0.01  # real content, not an all-zero decode


def test_version(cxr_main) -> None:
    from cxrassist._version import __version__

    code, out, _ = cxr_main(["--version"])
    assert code == 0 and out.strip() == f"cxrassist {__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", __version__)


def test_readme_ci_and_pins() -> None:
    readme = (REPO / "README.md").read_text()
    first_block = readme.split("```")[1]
    commands = [ln.split("#")[0].strip() for ln in first_block.splitlines()[1:] if ln.strip()]
    assert commands[:2] == ["make demo", "make test"]
    picture = re.search(r"!\[[^\]]*\]\(([^)]+\.png)\)", readme)
    assert picture and (REPO / picture.group(1)).read_bytes().startswith(b"\x89PNG")

    ci = (REPO / ".ci" / "run").read_text()
    assert "set -euo pipefail" in ci and re.search(r"^make test\s*$", ci, re.M)
    assert "|| true" not in ci and "set +e" not in ci

    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    demo = makefile.split("\ndemo:")[1].split("\n\n")[0]
    assert re.search(r"\$\(CXR\) analyze .*RG1_UNCI|\$\(CXR\) analyze \$\(DEMO_DICOM\)", demo)  # the main job
    assert "RG1_UNCI.dcm" in makefile and "demo-report" in demo

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for pin in ("torch==2.14.1", "torchvision==0.29.1"):
        assert pin in deps
    names = {re.split(r"[<>=\[ ]", d)[0].lower() for d in deps}
    assert {"pydicom", "pydicom-data", "pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-libjpeg"} <= names
