"""Shared fixtures of the whole test suite (owned by the io/foundation tests; others may use them).

- ``make_dicom(pixels, name=..., **kw) -> Path``: writes a synthetic DICOM (built in code) into tmp_path;
  ``build_dicom(...)`` is the in-memory builder behind it (fixture ``dicom_dataset``).
- ``rg1_path`` / ``rg3_path``: the real chest CR (RG1_UNCI) and tibia CR (RG3_UNCI) from pydicom-data.
- ``chest_like``: a synthetic 256x256 frontal-chest-like float image in [0, 1] (two dark lungs, bright mediastinum).
- ``shared_data``: the path of ../shared/data, skipping the test when it is absent.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _testdata(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)  # exact names are found locally (pydicom-data); no download
    if path is None:
        pytest.skip(f"pydicom test file {name} not available")
    return Path(path)


@pytest.fixture(scope="session")
def rg1_path() -> Path:
    """Real chest CR, PA, MONOCHROME1, 15 bits stored, window 15000/30000 (pydicom-data RG1_UNCI.dcm)."""
    return _testdata("RG1_UNCI.dcm")


@pytest.fixture(scope="session")
def rg3_path() -> Path:
    """Real CR of a distal tibia (body part EXTREMITY): not a chest radiograph (pydicom-data RG3_UNCI.dcm)."""
    return _testdata("RG3_UNCI.dcm")


@pytest.fixture(scope="session")
def testdata_file() -> Callable[[str], Path]:
    """Any pydicom-data file by exact name (skips if missing)."""
    return _testdata


def shared_data_missing() -> bool:
    """True when ../shared/data is absent on a user's machine (tests skip); in CI (CI=true) it must be there, so
    the tests run and fail loudly instead of skipping."""
    return not SHARED_DATA.is_dir() and os.environ.get("CI", "").lower() != "true"


@pytest.fixture
def shared_data() -> Path:
    if shared_data_missing():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def chest_phantom(h: int = 256, w: int = 256) -> np.ndarray:
    """A crude frontal chest: bright body, two dark elliptical lungs, a bright mediastinum, bright abdomen below."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.full((h, w), 0.05, np.float32)  # air
    body = ((xx - w / 2) / (0.46 * w)) ** 2 + ((yy - 0.55 * h) / (0.62 * h)) ** 2 < 1
    img[body] = 0.75
    for cx in (0.3 * w, 0.7 * w):
        lung = ((xx - cx) / (0.15 * w)) ** 2 + ((yy - 0.42 * h) / (0.28 * h)) ** 2 < 1
        img[lung] = 0.3
    img += 0.05 * np.sin(yy / 6.0)  # ribs-ish texture
    return np.clip(img, 0, 1)


@pytest.fixture
def chest_like() -> np.ndarray:
    return chest_phantom()


def _uid() -> str:
    from pydicom.uid import generate_uid

    return generate_uid()


def build_dicom(
    pixels: np.ndarray | None = None,
    *,
    modality: str = "DX",
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    bits_allocated: int | None = None,
    signed: bool = False,
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
    voi_lut: tuple[int, int, list[int]] | None = None,
    view_position: str | None = "PA",
    body_part: str | None = "CHEST",
    frames: int = 1,
    rows: int | None = None,
    columns: int | None = None,
    transfer_syntax: str | None = None,
    sop_class: str = "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    extra: dict[str, Any] | None = None,
    with_pixels: bool = True,
) -> Any:
    """A pydicom Dataset with file meta, in memory. ``pixels`` are the STORED values (int array)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = _uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid()
    ds.SeriesInstanceUID = _uid()
    ds.Modality = modality
    ds.PatientSex = "M"
    ds.PatientAge = "045Y"
    if view_position is not None:
        ds.ViewPosition = view_position
    if body_part is not None:
        ds.BodyPartExamined = body_part
    if with_pixels:
        if pixels is None:
            pixels = np.zeros((rows or 64, columns or 64), np.uint16)
        arr = np.asarray(pixels)
        ba = bits_allocated or (8 if bits_stored <= 8 else 16)
        dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16, (16, True): np.int16}[(ba, signed)]
        arr = arr.astype(dtype)
        ds.SamplesPerPixel = 3 if arr.ndim == 3 and arr.shape[-1] == 3 else 1
        ds.PhotometricInterpretation = photometric
        if ds.SamplesPerPixel == 3:
            ds.PlanarConfiguration = 0
        ds.Rows, ds.Columns = (
            int(arr.shape[-3 if ds.SamplesPerPixel == 3 else -2]),
            int(arr.shape[-2 if ds.SamplesPerPixel == 3 else -1]),
        )
        ds.BitsAllocated = ba
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = 1 if signed else 0
        if frames > 1:
            ds.NumberOfFrames = frames
            arr = np.stack([arr] * frames)
        ds.PixelData = arr.tobytes()
        if rows is not None:  # lie about the size in the header (bomb tests)
            ds.Rows = rows
        if columns is not None:
            ds.Columns = columns
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_lut is not None:
        first, bits, data = voi_lut
        item = Dataset()
        item.LUTDescriptor = [len(data), first, bits]
        item.LUTData = data
        ds.VOILUTSequence = [item]
        ds["VOILUTSequence"][0]["LUTDescriptor"].VR = "US"
        ds["VOILUTSequence"][0]["LUTData"].VR = "US"
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    if transfer_syntax is not None:
        ds.compress(transfer_syntax)
    return ds


@pytest.fixture
def make_dicom(tmp_path: Path) -> Callable[..., Path]:
    """``make_dicom(pixels, name="x.dcm", **build_dicom_kwargs) -> Path`` of a Part-10 file in tmp_path."""
    counter = {"n": 0}

    def make(pixels: np.ndarray | None = None, *, name: str | None = None, **kwargs: Any) -> Path:
        counter["n"] += 1
        ds = build_dicom(pixels, **kwargs)
        path = tmp_path / (name or f"synthetic_{counter['n']}.dcm")
        ds.save_as(path, enforce_file_format=True)
        return path

    return make


@pytest.fixture
def dicom_dataset() -> Callable[..., Any]:
    """The in-memory builder: ``dicom_dataset(pixels, **kw) -> pydicom.Dataset`` (same keywords as make_dicom)."""
    return build_dicom


@pytest.fixture
def cxr_main(capsys: pytest.CaptureFixture) -> Callable[[list[str]], tuple[int, str, str]]:
    """Run the ``cxr`` entry point in process: ``cxr_main(argv) -> (exit code, stdout, stderr)``."""
    from cxrassist.cli import main

    def run(argv: list[str]) -> tuple[int, str, str]:
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


# ------------------------------------------------------------------------------------------------ issue 15 helpers
@pytest.fixture(scope="session")
def rg1_small(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, int, tuple[str, ...]]:
    """RG1's real header over its image reduced 8x (fast to decode): (file bytes, offset of the PixelData element,
    the patient identifiers of its header: name and its parts, ID, birth date, accession number)."""
    import io

    import pydicom

    ds = pydicom.dcmread(_testdata("RG1_UNCI.dcm"))
    small = np.ascontiguousarray(ds.pixel_array[::8, ::8])
    ds.Rows, ds.Columns = small.shape
    ds.PixelData = small.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    name = str(ds.PatientName)
    ids = tuple(
        v
        for v in (name, *name.split("^"), str(ds.PatientID), str(ds.PatientBirthDate), str(ds.AccessionNumber))
        if len(v) >= 4
    )
    return data, data.index(b"\xe0\x7f\x10\x00"), ids


def byte_flip(data: bytes, seed: int, start: int, stop: int, max_flips: int = 8) -> bytes:
    """``data`` with 1..max_flips random bytes of [start, stop) XOR-ed with a random non-zero byte (seeded)."""
    import random

    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(rng.randint(1, max_flips)):
        i = rng.randrange(start, stop)
        out[i] ^= rng.randint(1, 255)
    return bytes(out)


@pytest.fixture
def real_warnings() -> Callable[[], Any]:
    """``with real_warnings():`` warnings behave as in production (pytest otherwise records them): shown with the
    default filter, through the hook ``cxrassist.io.quiet`` installs."""
    import contextlib
    import warnings

    from cxrassist.io import quiet

    @contextlib.contextmanager
    def ctx() -> Any:
        hook = quiet.showwarning_hook()
        with warnings.catch_warnings():
            warnings.resetwarnings()
            warnings.simplefilter("default")
            warnings.showwarning = hook
            yield

    return ctx


@pytest.fixture(scope="session")
def byte_flipper() -> Callable[..., bytes]:
    """:func:`byte_flip` for test folders with their own conftest (which shadows ``from conftest import``)."""
    return byte_flip


@pytest.fixture
def cxr_info_outcome(capfd: pytest.CaptureFixture, real_warnings: Callable[[], Any]) -> Callable[[Path], tuple]:
    """Run ``cxr info PATH`` in-process with the library's real warnings: returns (kind, exit code, stdout, stderr),
    kind "read" (exit 0, nothing on stderr), "refused" (exit 2, exactly one ``error: `` line) or "other"."""
    from cxrassist.cli import main

    def run(path: Path) -> tuple[str, int, str, str]:
        with real_warnings():
            try:
                main(["info", str(path)])
                code = 0
            except SystemExit as exc:
                code = int(exc.code or 0)
        out, err = capfd.readouterr()
        lines = err.strip().splitlines()
        if code == 0 and not lines:
            kind = "read"
        elif code == 2 and len(lines) == 1 and lines[0].startswith("error: "):
            kind = "refused"
        else:
            kind = "other"
        return kind, code, out, err

    return run
