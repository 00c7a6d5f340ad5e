"""DICOM reading: real pydicom-data radiographs and synthetic files built in code."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cxrassist.errors import (
    ColourPhotoError,
    DecompressionBombError,
    ImageTooSmallError,
    MissingDecoderError,
    MultiFrameError,
    NoPixelDataError,
    TruncatedFileError,
    UnsupportedModalityError,
)
from cxrassist.io import check_chest, read_xray
from cxrassist.types import View


def smooth_12bit(h: int = 96, w: int = 80, seed: int = 0) -> np.ndarray:
    """A smooth image using the full 12-bit range (0 and 4095 both present)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.sin(yy / 9.0) * np.cos(xx / 7.0) + 0.1 * rng.standard_normal((h, w))
    img = (img - img.min()) / (img.max() - img.min())
    return np.rint(img * 4095).astype(np.uint16)


# ------------------------------------------------------------------------------------------------ real radiographs
@pytest.mark.parametrize("name", ["RG1_UNCI.dcm", "RG1_J2KR.dcm", "RG1_J2KI.dcm"])
def test_rg1_reads_as_pa_chest(testdata_file, name):
    x = read_xray(testdata_file(name))
    assert x.pixels.dtype == np.float32 and x.shape == (1955, 1841)
    assert 0.0 <= float(x.pixels.min()) < float(x.pixels.max()) <= 1.0
    assert x.modality == "CR" and x.view == View.PA and x.body_part == "CHEST"
    assert x.photometric == "MONOCHROME1" and x.bits_stored == 15 and x.window_applied
    assert x.pixel_spacing_mm is None  # RG1 stores PixelSpacing 0\0: not a usable spacing
    check = check_chest(x)
    assert check.is_chest and check.is_frontal is True, check.reason


def test_rg1_is_bone_white(rg1_path):
    """MONOCHROME1 is inverted: the mediastinum (centre) is brighter than the lung fields either side."""
    p = read_xray(rg1_path).pixels
    h, w = p.shape
    band = p[int(0.3 * h) : int(0.5 * h)]
    centre = band[:, int(0.47 * w) : int(0.53 * w)].mean()
    lungs = (band[:, int(0.22 * w) : int(0.32 * w)].mean() + band[:, int(0.68 * w) : int(0.78 * w)].mean()) / 2
    assert centre > lungs + 0.1


def test_lossless_j2k_matches_its_uncompressed_reference(testdata_file):
    """pydicom-data pairs: J2KR decodes bit-exactly to UNCR; UNCI is the decoded lossy J2KI (equal to it)."""
    unci = read_xray(testdata_file("RG1_UNCI.dcm")).pixels
    uncr = read_xray(testdata_file("RG1_UNCR.dcm")).pixels
    j2kr = read_xray(testdata_file("RG1_J2KR.dcm")).pixels
    j2ki = read_xray(testdata_file("RG1_J2KI.dcm")).pixels
    np.testing.assert_array_equal(j2kr, uncr)
    np.testing.assert_array_equal(j2ki, unci)
    # The two references really differ (lossy vs lossless); within a few percent of each other.
    assert not np.array_equal(unci, uncr)
    assert float(np.abs(unci - uncr).mean()) < 0.01


def test_rg3_tibia_is_not_chest_by_metadata_and_by_image(rg3_path):
    x = read_xray(rg3_path)
    check = check_chest(x)
    assert not check.is_chest
    assert "EXTREMITY" in check.reason and check.evidence["source"] == "metadata"
    bare = dataclasses.replace(x, modality=None, body_part=None, view=View.UNKNOWN)
    bare_check = check_chest(bare)
    assert not bare_check.is_chest, bare_check.reason
    assert bare_check.evidence["source"] == "image statistics" and bare_check.reason.endswith(".")


def test_rg1_passes_on_image_statistics_alone(rg1_path):
    x = read_xray(rg1_path)
    bare = dataclasses.replace(x, modality=None, body_part=None, view=View.UNKNOWN)
    check = check_chest(bare)
    assert check.is_chest and check.is_frontal, check.reason
    assert check.evidence["source"] == "image statistics"


def test_voi_can_be_ignored_on_real_file(rg1_path):
    with_voi = read_xray(rg1_path)
    without = read_xray(rg1_path, apply_voi=False)
    assert with_voi.window_applied and not without.window_applied
    # RG1: window 15000/30000 on 15-bit data, so the two differ but stay monotonically related.
    assert not np.array_equal(with_voi.pixels, without.pixels)
    sample = np.s_[::97, ::89]
    a, b = with_voi.pixels[sample].ravel(), without.pixels[sample].ravel()
    order = np.argsort(b, kind="stable")
    assert np.all(np.diff(a[order]) >= -1e-6)


# -------------------------------------------------------------------------------------------- synthetic intensities
def test_monochrome1_and_monochrome2_give_same_pixels(make_dicom):
    v2 = smooth_12bit()
    v1 = (4095 - v2).astype(np.uint16)
    x2 = read_xray(make_dicom(v2, photometric="MONOCHROME2"))
    x1 = read_xray(make_dicom(v1, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(x1.pixels, x2.pixels)
    np.testing.assert_allclose(x2.pixels, v2 / 4095.0, atol=1e-7)


def test_monochrome1_and_2_with_mirrored_window_agree(make_dicom):
    v2 = smooth_12bit()
    x2 = read_xray(make_dicom(v2, photometric="MONOCHROME2", window=(1800, 2000)))
    x1 = read_xray(make_dicom(4095 - v2, photometric="MONOCHROME1", window=(4095 - 1800, 2000)))
    assert x1.window_applied and x2.window_applied
    # DICOM's LINEAR window (c - 0.5, w - 1) is not exactly mirror-symmetric: equal within 1/(w-1).
    np.testing.assert_allclose(x1.pixels, x2.pixels, atol=1.0 / 1999 + 1e-6)


def test_12bit_rescale_slope_intercept(make_dicom):
    stored = smooth_12bit()
    x = read_xray(make_dicom(stored, rescale=(2.0, -1024.0), window=None))
    # Modality range is [-1024, 7166]: scaled by it, the pixels equal stored / 4095.
    np.testing.assert_allclose(x.pixels, stored / 4095.0, atol=1e-6)
    assert x.bits_stored == 12 and not x.window_applied


def test_window_in_rescaled_units_applied_and_ignored(make_dicom):
    stored = smooth_12bit()
    path = make_dicom(stored, rescale=(2.0, -1024.0), window=(0.0, 1000.0))
    x = read_xray(path)
    hu = stored.astype(np.float64) * 2 - 1024
    assert np.all(x.pixels[hu <= -500] == 0.0) and np.all(x.pixels[hu > 500] == 1.0)
    mid = np.abs(hu) < 400
    assert mid.any()
    np.testing.assert_allclose(x.pixels[mid], ((hu[mid] + 0.5) / 999 + 0.5), atol=1e-5)
    ignored = read_xray(path, apply_voi=False)
    np.testing.assert_allclose(ignored.pixels, stored / 4095.0, atol=1e-6)


def test_voi_lut_sequence_applied_and_ignored(make_dicom):
    stored = smooth_12bit()
    lut = [min(255, int(v) // 8) for v in range(4096)]  # 8-bit output: saturates above 2040
    path = make_dicom(stored, voi_lut=(0, 8, lut), window=(100, 50))  # the LUT wins over the window
    x = read_xray(path)
    assert x.window_applied and x.extra["voi_lut_sequence"]
    np.testing.assert_allclose(x.pixels, np.asarray(lut)[stored] / 255.0, atol=1e-6)
    np.testing.assert_allclose(read_xray(path, apply_voi=False).pixels, stored / 4095.0, atol=1e-6)


def test_signed_pixel_representation(make_dicom):
    stored = smooth_12bit().astype(np.int32) - 2048
    x = read_xray(make_dicom(stored, signed=True))
    np.testing.assert_allclose(x.pixels, (stored + 2048) / 4095.0, atol=1e-6)


# ------------------------------------------------------------------------------------------------------ compression
def _encoder_or_skip(uid):
    from pydicom.pixels import get_encoder

    try:
        enc = get_encoder(uid)
    except NotImplementedError:
        pytest.skip(f"no encoder for {uid.name}")
    if not enc.is_available:
        pytest.skip(f"encoder for {uid.name} not installed")


@pytest.mark.parametrize("syntax", ["RLELossless", "JPEGLSLossless", "JPEG2000Lossless"])
def test_compressed_lossless_equals_uncompressed(make_dicom, syntax):
    import pydicom.uid

    uid = getattr(pydicom.uid, syntax)
    _encoder_or_skip(uid)
    stored = smooth_12bit()
    plain = read_xray(make_dicom(stored))
    packed_path = make_dicom(stored, transfer_syntax=uid)
    packed = read_xray(packed_path)
    assert packed.extra["transfer_syntax"] == str(uid)
    np.testing.assert_array_equal(packed.pixels, plain.pixels)


def test_missing_decoder_names_the_package(make_dicom, monkeypatch):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEG2000Lossless

    _encoder_or_skip(JPEG2000Lossless)
    path = make_dicom(smooth_12bit(), transfer_syntax=JPEG2000Lossless)
    decoder = get_decoder(JPEG2000Lossless)
    monkeypatch.setattr(type(decoder), "is_available", property(lambda self: False))
    with pytest.raises(MissingDecoderError, match="pip install pylibjpeg-openjpeg"):
        read_xray(path)


# --------------------------------------------------------------------------------------------------------- refusals
def test_sr_without_pixel_data(make_dicom):
    path = make_dicom(with_pixels=False, modality="SR", sop_class="1.2.840.10008.5.1.4.1.1.88.11")
    with pytest.raises(NoPixelDataError, match=r"no pixel data.*Basic Text SR"):
        read_xray(path)


def test_ct_multiframe(make_dicom):
    path = make_dicom(smooth_12bit(64, 64), modality="CT", frames=5, sop_class="1.2.840.10008.5.1.4.1.1.2.1")
    with pytest.raises(MultiFrameError, match="5-frame CT"):
        read_xray(path)


@pytest.mark.parametrize("modality", ["US", "MR", "CT", "MG"])
def test_unsupported_modality(make_dicom, modality):
    with pytest.raises(UnsupportedModalityError, match=f"modality {modality} is not projection radiography"):
        read_xray(make_dicom(smooth_12bit(), modality=modality))


@pytest.mark.parametrize("modality", ["CR", "DX", "RG", "OT"])
def test_accepted_modalities(make_dicom, modality):
    assert read_xray(make_dicom(smooth_12bit(), modality=modality)).modality == modality


def test_too_small(make_dicom):
    with pytest.raises(ImageTooSmallError, match="32x32"):
        read_xray(make_dicom(smooth_12bit(32, 32)))


def test_bomb_refused_from_header_before_decoding(make_dicom):
    # The header claims 30000 x 30000 but only 64 x 64 pixels are stored: decoding would fail differently.
    path = make_dicom(smooth_12bit(64, 64), rows=30000, columns=30000)
    with pytest.raises(DecompressionBombError, match="900 MP, over the 100 MP limit"):
        read_xray(path)
    with pytest.raises(DecompressionBombError):
        read_xray(make_dicom(smooth_12bit(100, 100)), max_pixels=5000)


def test_truncated_dicom(make_dicom):
    path = make_dicom(smooth_12bit(128, 128))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 5000])
    with pytest.raises(TruncatedFileError):
        read_xray(path)
    path.write_bytes(data[:300])  # cut inside the header
    with pytest.raises(TruncatedFileError):
        read_xray(path)


def test_dicom_colour_photo_and_grey_rgb(make_dicom):
    rng = np.random.default_rng(1)
    colour = rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)
    with pytest.raises(ColourPhotoError):
        read_xray(make_dicom(colour, photometric="RGB", bits_stored=8, modality="OT"))
    grey = np.repeat((smooth_12bit(80, 80) >> 4).astype(np.uint8)[..., None], 3, axis=-1)
    x = read_xray(make_dicom(grey, photometric="RGB", bits_stored=8, modality="OT"))
    np.testing.assert_allclose(x.pixels, grey[..., 0] / 255.0, atol=1e-6)


# --------------------------------------------------------------------------------------------------------- metadata
def test_metadata_fields(make_dicom):
    x = read_xray(make_dicom(smooth_12bit(), extra={"PixelSpacing": [0.15, 0.14], "PatientAge": "006M"}))
    assert x.pixel_spacing_mm == (0.15, 0.14) and x.extra["pixel_spacing_tag"] == "PixelSpacing"
    assert x.patient_sex == "M" and x.patient_age_years == 0.5
    assert x.study_uid and x.series_uid and x.sop_uid and x.source_format == "dicom"
    y = read_xray(make_dicom(smooth_12bit(), extra={"ImagerPixelSpacing": [0.2, 0.2]}))
    assert y.pixel_spacing_mm == (0.2, 0.2) and y.extra["pixel_spacing_tag"] == "ImagerPixelSpacing"


def test_view_sources(make_dicom):
    from pydicom.dataset import Dataset

    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "R-10214", "SRT", "antero-posterior"
    x = read_xray(make_dicom(smooth_12bit(), view_position=None, extra={"ViewCodeSequence": [code]}))
    assert x.view == View.AP and x.extra["view_source"] == "ViewCodeSequence"
    lat = read_xray(make_dicom(smooth_12bit(), view_position=None, extra={"PatientOrientation": ["A", "F"]}))
    assert lat.view == View.LATERAL and lat.extra["view_source"] == "PatientOrientation"
    unknown = read_xray(make_dicom(smooth_12bit(), view_position=None, extra={"PatientOrientation": ["L", "F"]}))
    assert unknown.view == View.UNKNOWN
    assert read_xray(make_dicom(smooth_12bit(), view_position="LL")).view == View.LATERAL


def test_chest_metadata_lateral_is_chest_not_frontal(make_dicom):
    x = read_xray(make_dicom(smooth_12bit(), view_position="LL", body_part="CHEST"))
    check = check_chest(x)
    assert check.is_chest and check.is_frontal is False and "lateral" in check.reason


def test_jpeg_baseline_encapsulated(make_dicom, tmp_path):
    """JPEG baseline: a Pillow-made JPEG encapsulated by hand (pydicom has no JPEG encoder)."""
    import io

    from PIL import Image
    from pydicom import dcmread
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    grey = (smooth_12bit(96, 80) >> 4).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="JPEG", quality=95)
    path = make_dicom(grey, bits_stored=8)
    ds = dcmread(path)
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.LossyImageCompression = "01"
    out = tmp_path / "jpeg_baseline.dcm"
    ds.save_as(out, enforce_file_format=True)
    x = read_xray(out)
    assert x.extra["transfer_syntax"] == str(JPEGBaseline8Bit)
    assert float(np.abs(x.pixels - grey / 255.0).mean()) < 0.01


def test_dicom_without_preamble_or_file_meta(tmp_path, dicom_dataset):
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    stored = smooth_12bit()
    ds = dicom_dataset(stored)
    del ds.file_meta
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    (tmp_path / "raw.dcm").write_bytes(fp.getvalue())
    x = read_xray(tmp_path / "raw.dcm")
    np.testing.assert_allclose(x.pixels, stored / 4095.0, atol=1e-7)


def test_garbage_after_dicm_marker(tmp_path):
    (tmp_path / "g.dcm").write_bytes(b"\0" * 128 + b"DICM" + np.random.default_rng(0).bytes(3000))
    with pytest.raises(TruncatedFileError, match="truncated or corrupt"):
        read_xray(tmp_path / "g.dcm")
