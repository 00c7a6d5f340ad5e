"""Issue 15: pixels are checked whatever the metadata says; every unreadable DICOM is a one-line refusal; pydicom's
warnings never reach stderr with header values; a seeded byte-flip fuzz of RG1's header through ``cxr info``."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrassist.errors import CorruptFileError, InputError, MultiFrameError
from cxrassist.io import check_chest, read_xray

FUZZ_SEEDS = range(240)


def _rewrite(src: Path, dst: Path, **changes) -> Path:
    import pydicom

    ds = pydicom.dcmread(src)
    pixels = changes.pop("pixels", None)
    for key, value in changes.items():
        setattr(ds, key, value)
    if pixels is not None:
        ds.PixelData = np.ascontiguousarray(pixels.astype(ds.pixel_array.dtype)).tobytes()
    ds.save_as(dst)
    return dst


# ------------------------------------------------------------------------------------------------ pixel checks
def test_real_chest_films_pass_the_pixel_checks(rg1_path: Path):
    check = check_chest(read_xray(rg1_path))
    assert check.is_chest and check.is_frontal, check.reason
    assert check.evidence["pixels"]["grey_levels"] > 100


@pytest.mark.parametrize("value", ["zeros", "max"])
def test_blank_dicom_with_a_chest_header_is_refused(rg1_path: Path, tmp_path: Path, value: str):
    """RG1 with its pixels all zero (or all max), header unchanged (CR, CHEST, PA): triage 'high' before issue 15."""
    import pydicom

    shape = pydicom.dcmread(rg1_path).pixel_array.shape
    fill = 0 if value == "zeros" else 2**15 - 1
    path = _rewrite(rg1_path, tmp_path / "blank.dcm", pixels=np.full(shape, fill))
    xray = read_xray(path)
    assert xray.body_part == "CHEST" and xray.view.is_frontal  # the metadata still says chest PA
    check = check_chest(xray)
    assert not check.is_chest and "blank" in check.reason


def test_inverted_photometric_is_refused(rg1_path: Path, tmp_path: Path):
    """RG1 with only MONOCHROME1 -> MONOCHROME2: the film is shown as its negative."""
    path = _rewrite(rg1_path, tmp_path / "inv.dcm", PhotometricInterpretation="MONOCHROME2")
    check = check_chest(read_xray(path))
    assert not check.is_chest and "inverted" in check.reason and "MONOCHROME" in check.reason


def test_binarised_posterised_and_clipped_films_are_refused(rg1_path: Path, tmp_path: Path):
    from cxrassist.preprocess import resize

    small = resize(read_xray(rg1_path).pixels, (640, 600))
    lo, hi = np.percentile(small, [45, 52])  # a window so narrow that 93 % of the pixels saturate
    cases = {
        "binarised": (small > 0.5).astype(np.uint8) * 255,
        "posterised": (np.floor(small * 8) * 32).clip(0, 255).astype(np.uint8),
        "clipped": ((small - lo) / (hi - lo) * 65535).clip(0, 65535).astype(np.uint16),
    }
    for word, arr in cases.items():
        path = tmp_path / f"{word}.png"
        Image.fromarray(arr).save(path)
        check = check_chest(read_xray(path))
        assert not check.is_chest and word in check.reason, (word, check.reason)
    Image.fromarray((small * 255).astype(np.uint8)).save(tmp_path / "ok.png")
    assert check_chest(read_xray(tmp_path / "ok.png")).is_chest  # the same film, untouched, passes


@pytest.mark.shared_data
def test_real_films_are_not_flagged_by_the_pixel_checks(shared_data: Path):
    """The thresholds hold on real films: none of 40 val films per set is blank, binarised, clipped or inverted."""
    import csv

    from cxrassist.io.chest_check import pixel_problem, pixel_statistics

    flagged = []
    for name in ("montgomery", "shenzhen", "jsrt", "covid19_gb_seg", "rsna_normal", "covid_radiography"):
        with open(shared_data / name / "manifest.csv", newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r["split"] == "val"][:40]
        for r in rows:
            pixels = read_xray(shared_data / name / r["image"]).pixels
            if pixel_problem(pixel_statistics(pixels)):
                flagged.append(r["image"])
    assert not flagged


# ------------------------------------------------------------------------------------------ corrupt DICOMs
def test_header_pixel_size_mismatch_is_not_called_multi_frame(rg1_path: Path, tmp_path: Path):
    path = _rewrite(rg1_path, tmp_path / "half.dcm", Rows=977)  # the pixel data holds twice the declared size
    with pytest.raises(CorruptFileError) as err:
        read_xray(path)
    assert not isinstance(err.value, MultiFrameError)
    assert "frame" not in str(err.value) and "does not match the header" in str(err.value)


@pytest.mark.parametrize("name", ["GDCMJ2K_TextGBR.dcm", "badVR.dcm"])
def test_corpus_files_that_ended_unexpected_are_refusals_or_reads(testdata_file, cxr_main, name: str):
    """Before issue 15: 'unexpected NotImplementedError: Conversion from YBR_RCT...' and 'unexpected ValueError:
    invalid literal for int()' (exit 1)."""
    code, _, err = cxr_main(["info", str(testdata_file(name))])
    assert code in (0, 2), err
    assert "unexpected" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 1


def test_unknown_vr_and_bad_lengths_map_to_one_line_refusals(rg1_small, tmp_path: Path, byte_flipper):
    """The pydicom exceptions of issue 15 (NotImplementedError for an unknown VR, BytesLengthException) are
    CorruptFileError / TruncatedFileError, never anything else."""
    data, pixel_offset, _ = rg1_small
    for seed in (36, 105, 101, 1):  # seeds of the fuzzer that hit those exceptions on the full file
        path = tmp_path / f"f{seed}.dcm"
        path.write_bytes(byte_flipper(data, seed, 132, pixel_offset))
        try:
            read_xray(path)
        except InputError as exc:
            assert "\n" not in str(exc)
    data = bytearray(data)
    i = data.index(b"(\x00\x10\x00US")  # Rows, explicit VR: give it an unknown VR
    data[i + 4 : i + 6] = b"\x55\xb5"
    (tmp_path / "vr.dcm").write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        read_xray(tmp_path / "vr.dcm")
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------ the fuzz test
def test_byte_flip_fuzz_of_rg1_header(rg1_small, tmp_path: Path, cxr_info_outcome, byte_flipper):
    """>= 200 seeds, each flipping 1-8 bytes of RG1's header: every case is read or refused in one line, nothing is
    'unexpected', no traceback, and no patient identifier of the source reaches stderr."""
    data, pixel_offset, identifiers = rg1_small
    outcomes = {"read": 0, "refused": 0}
    bad: list[str] = []
    for seed in FUZZ_SEEDS:
        path = tmp_path / f"fuzz_{seed:03d}.dcm"
        path.write_bytes(byte_flipper(data, seed, 132, pixel_offset))
        kind, code, out, err = cxr_info_outcome(path)
        if kind == "other":
            bad.append(f"seed {seed}: exit {code}, stderr {err[:300]!r}")
        else:
            outcomes[kind] += 1
        if "Traceback" in err or "unexpected" in err or any(v in err or v in out for v in identifiers):
            bad.append(f"seed {seed}: {err[:300]!r}")
    assert not bad, bad[:5]
    assert outcomes["read"] + outcomes["refused"] == len(FUZZ_SEEDS)
    assert outcomes["read"] >= 20 and outcomes["refused"] >= 100, outcomes  # the fuzz reaches both paths


def test_fuzzed_files_are_quiet_in_a_real_process(rg1_small, tmp_path: Path, byte_flipper):
    """The same, in a fresh ``cxr info`` process (no pytest warning capture): pydicom's warnings, which quote the
    header values, are counted, never printed; one error line per refused file, one summary line."""
    data, pixel_offset, identifiers = rg1_small
    files = []
    for seed in range(40):
        path = tmp_path / f"fuzz_{seed:03d}.dcm"
        path.write_bytes(byte_flipper(data, seed, 132, pixel_offset))
        files.append(str(path))
    proc = subprocess.run(
        [sys.executable, "-m", "cxrassist.cli", "info", *files], capture_output=True, text=True, timeout=300
    )
    err_lines = proc.stderr.strip().splitlines()
    read = proc.stdout.count("  chest check")
    refused = len(files) - read
    assert proc.returncode == (2 if refused else 0)
    assert all(line.startswith("error: ") for line in err_lines), err_lines[:5]
    assert len(err_lines) == refused + (1 if refused else 0)  # one line per refused file + the summary
    assert "Traceback" not in proc.stderr and "unexpected" not in proc.stderr and "Warning" not in proc.stderr
    assert not any(v in proc.stderr or v in proc.stdout for v in identifiers)


def test_header_warnings_are_counted_with_tags_not_values(rg1_small, tmp_path: Path, real_warnings, capfd):
    """A header value that breaks its VR: the read keeps a short note and the tag, never the value."""
    import pydicom

    data, _, identifiers = rg1_small
    path = tmp_path / "badui.dcm"
    path.write_bytes(data)
    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():  # crafting the file: pydicom's complaint here is not under test
        warnings.simplefilter("ignore")
        ds["StudyInstanceUID"].value = f"1.2.3.{ds.PatientName}"  # an identifier inside a UI value (invalid)
        ds.save_as(path)
    with real_warnings():
        xray = read_xray(path)
    _, err = capfd.readouterr()
    assert err == ""
    notes = " ".join(xray.extra.get("header_warnings", []))
    assert "Invalid value for VR UI" in notes
    assert any("(0020,000D)" in t for t in xray.extra.get("invalid_value_tags", []))
    assert not any(v in notes for v in identifiers)


def test_reduce_message_keeps_what_is_wrong_and_drops_the_value():
    from cxrassist.io.quiet import ReadNotes, reduce_message

    assert reduce_message("Invalid value for VR UI: b'1.2\\x00Doe^John'. Please see") == "Invalid value for VR UI"
    assert reduce_message("Unknown Value Representation '0x55 0xb5' in tag (0002,0010)") == (
        "Unknown Value Representation in (0002,0010)"
    )
    notes = ReadNotes()
    for i in range(20000):
        notes.add(f"Invalid value for VR PN: 'Patient{i}'")
    assert notes.summary() == ["Invalid value for VR PN (x20000)"]


def test_raster_reads_are_thread_safe(tmp_path: Path):
    """Reading on several threads at once (the service does) leaves Pillow's global limit alone."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image as PILImage

    before = PILImage.MAX_IMAGE_PIXELS
    paths = []
    for i in range(8):
        p = tmp_path / f"f{i}.png"
        Image.fromarray((np.random.default_rng(i).random((200, 180)) * 255).astype(np.uint8)).save(p)
        paths.append(p)
    with ThreadPoolExecutor(8) as pool:
        shapes = list(pool.map(lambda p: read_xray(p, max_pixels=50_000).shape, paths * 4))
    assert shapes == [(200, 180)] * 32
    assert before == PILImage.MAX_IMAGE_PIXELS
