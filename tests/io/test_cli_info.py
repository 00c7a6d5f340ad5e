"""``cxr info`` through the real entry point (``cxrassist.cli.main``) in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image


def run_cxr(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; from cxrassist.cli import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_info_json_on_real_radiographs(testdata_file):
    names = ["RG1_UNCI.dcm", "RG1_J2KR.dcm", "RG1_J2KI.dcm", "RG3_UNCI.dcm"]
    result = run_cxr("info", "--json", *[str(testdata_file(n)) for n in names])
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert [e["ok"] for e in entries] == [True] * 4
    for e in entries[:3]:
        assert e["xray"]["view"] == "PA" and e["xray"]["modality"] == "CR"
        assert (e["xray"]["width"], e["xray"]["height"]) == (1841, 1955)
        assert e["chest_check"]["is_chest"] is True and e["chest_check"]["is_frontal"] is True
    rg3 = entries[3]["chest_check"]
    assert rg3["is_chest"] is False and "EXTREMITY" in rg3["reason"]


def test_info_text(rg1_path):
    result = run_cxr("info", str(rg1_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in ("modality CR", "view PA", "1841 x 1955 px", "bits 15", "MONOCHROME1", "frontal chest"):
        assert expected in out


def test_refused_single_file_one_line_error(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    result = run_cxr("info", str(tmp_path / "empty.png"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "empty" in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_refused_file_among_good_ones(tmp_path, rg1_path):
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "tiny.png")
    result = run_cxr("info", "--json", str(rg1_path), str(tmp_path / "tiny.png"))
    assert result.returncode != 0
    entries = json.loads(result.stdout)
    assert entries[0]["ok"] is True
    assert entries[1]["ok"] is False and entries[1]["error"]["type"] == "ImageTooSmallError"
    assert "Traceback" not in result.stderr
    text = run_cxr("info", str(rg1_path), str(tmp_path / "tiny.png"))
    assert text.returncode != 0 and "view PA" in text.stdout
    assert "tiny.png" in text.stderr and "Traceback" not in text.stderr


def test_debug_shows_traceback(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    result = run_cxr("--debug", "info", str(tmp_path / "empty.png"))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_help_and_io_do_not_import_torch(rg1_path):
    code = (
        "import sys\n"
        "from cxrassist.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'cxr --help imported torch'\n"
        "import cxrassist.io\n"
        f"x = cxrassist.io.read_xray({str(rg1_path)!r})\n"
        "cxrassist.io.check_chest(x)\n"
        "assert 'torch' not in sys.modules, 'io imported torch'\n"
        "print('NO_TORCH_OK')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "NO_TORCH_OK" in result.stdout and "info" in result.stdout
