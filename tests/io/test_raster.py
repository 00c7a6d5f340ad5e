"""PNG / JPEG / TIFF reading and every refusal that is not DICOM-specific."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cxrassist.errors import (
    ColourPhotoError,
    DecompressionBombError,
    EmptyFileError,
    FileTooLargeError,
    ImageTooSmallError,
    MissingFileError,
    MultiFrameError,
    NotAnImageError,
    TruncatedFileError,
)
from cxrassist.io import read_xray


def ramp(h: int = 80, w: int = 96, top: int = 255) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.rint((yy * w + xx) / (h * w - 1) * top).astype(np.int64)


def test_png_8bit(tmp_path):
    arr = ramp().astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    x = read_xray(tmp_path / "a.png")
    assert x.source_format == "png" and x.bits_stored == 8 and x.pixels.dtype == np.float32
    np.testing.assert_allclose(x.pixels, arr / 255.0, atol=1e-7)
    assert x.modality is None and x.view.value == "UNKNOWN"


def test_png_16bit_full_range(tmp_path):
    arr = ramp(top=65535).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "a16.png")
    x = read_xray(tmp_path / "a16.png")
    assert x.bits_stored == 16
    np.testing.assert_allclose(x.pixels, arr / 65535.0, atol=1e-7)


def test_png_16bit_holding_12bit_data(tmp_path):
    arr = ramp(top=4095).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "a12.png")
    x = read_xray(tmp_path / "a12.png")
    assert x.bits_stored == 12 and "12-bit" in x.extra["bit_depth_source"]
    np.testing.assert_allclose(x.pixels, arr / 4095.0, atol=1e-7)


def test_tiff_16bit_and_miniswhite(tmp_path):
    import tifffile

    arr = ramp(top=65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", arr, photometric="minisblack")
    x = read_xray(tmp_path / "a.tif")
    assert x.source_format == "tiff" and x.bits_stored == 16
    np.testing.assert_allclose(x.pixels, arr / 65535.0, atol=1e-7)
    tifffile.imwrite(tmp_path / "w.tif", (65535 - arr).astype(np.uint16), photometric="miniswhite")
    np.testing.assert_allclose(read_xray(tmp_path / "w.tif").pixels, x.pixels, atol=1e-6)


def test_tiff_multipage_refused(tmp_path):
    import tifffile

    with tifffile.TiffWriter(tmp_path / "stack.tif") as tif:
        for _ in range(4):
            tif.write(np.zeros((80, 80), np.uint16), photometric="minisblack")
    with pytest.raises(MultiFrameError, match="4-page TIFF"):
        read_xray(tmp_path / "stack.tif")


def test_grey_rgb_jpeg_accepted(tmp_path):
    grey = ramp().astype(np.uint8)
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "g.jpg", quality=92)
    x = read_xray(tmp_path / "g.jpg")
    assert x.source_format == "jpeg"
    assert float(np.abs(x.pixels - grey / 255.0).max()) < 0.05


def test_colour_photo_refused(tmp_path):
    rng = np.random.default_rng(0)
    photo = np.zeros((90, 120, 3), np.uint8)
    photo[..., 0] = 200  # red sky...
    photo[45:, :, 1] = 180  # ...and green grass
    photo[..., 2] = rng.integers(0, 60, (90, 120))
    Image.fromarray(photo).save(tmp_path / "photo.png")
    with pytest.raises(ColourPhotoError, match="colour image"):
        read_xray(tmp_path / "photo.png")


def test_too_small_png(tmp_path):
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "s.png")
    with pytest.raises(ImageTooSmallError, match="32x32"):
        read_xray(tmp_path / "s.png")


def _png_with_header_size(path, width: int, height: int) -> None:
    """A small valid PNG whose IHDR is patched to claim width x height (CRC recomputed)."""
    Image.fromarray(np.zeros((80, 80), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def test_png_bomb_refused_from_header(tmp_path):
    _png_with_header_size(tmp_path / "bomb.png", 40000, 40000)
    with pytest.raises(DecompressionBombError, match=r"(?i)decompression bomb"):
        read_xray(tmp_path / "bomb.png")
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "ok.png")
    with pytest.raises(DecompressionBombError):
        read_xray(tmp_path / "ok.png", max_pixels=5000)


def test_pillow_bomb_error_is_refused_with_our_limit(tmp_path, monkeypatch):
    """Past our own header check, Pillow's own bomb error is still a one-line refusal quoting OUR limit; reading
    never touches Pillow's process-wide limit (the service reads on several threads)."""
    from PIL import Image as PILImage

    import cxrassist.io.raster as raster

    monkeypatch.setattr(raster, "check_dimensions", lambda *a, **k: None)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 4000)
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "p.png")
    with pytest.raises(DecompressionBombError, match=r"10000 pixels, over the 4000 pixels limit") as err:
        read_xray(tmp_path / "p.png", max_pixels=4000)  # 10000 px > 2 x 4000: Pillow's own error
    assert "\n" not in str(err.value)
    assert PILImage.MAX_IMAGE_PIXELS == 4000  # untouched by the read


def test_bomb_message_quotes_the_configured_limit(tmp_path):
    """Issue 15: the message quoted Pillow's 200 MP (twice its own limit) while ours is 100 MP."""
    from PIL import Image as PILImage

    before = PILImage.MAX_IMAGE_PIXELS
    _png_with_header_size(tmp_path / "bomb.png", 40000, 40000)
    with pytest.raises(DecompressionBombError) as err:
        read_xray(tmp_path / "bomb.png")
    assert "100 MP limit" in str(err.value) and "1600 MP" in str(err.value)
    assert "200" not in str(err.value).replace("1600", "")
    assert before == PILImage.MAX_IMAGE_PIXELS


def test_empty_file(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(EmptyFileError, match="empty"):
        read_xray(tmp_path / "e.png")


def test_missing_file(tmp_path):
    with pytest.raises(MissingFileError):
        read_xray(tmp_path / "nope.dcm")


def test_random_bytes(tmp_path):
    (tmp_path / "r.bin").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(NotAnImageError, match="not a DICOM, PNG, JPEG or TIFF"):
        read_xray(tmp_path / "r.bin")
    (tmp_path / "t.txt").write_text("hello, this is not an image\n" * 10)
    with pytest.raises(NotAnImageError):
        read_xray(tmp_path / "t.txt")


@pytest.mark.parametrize("suffix", ["png", "jpg", "tif"])
def test_truncated_raster(tmp_path, suffix):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (200, 200), dtype=np.uint8)  # noisy: no tiny compressed stream
    path = tmp_path / f"t.{suffix}"
    if suffix == "tif":
        import tifffile

        tifffile.imwrite(path, arr)
    else:
        Image.fromarray(arr).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TruncatedFileError):
        read_xray(path)


def test_file_too_large(tmp_path):
    Image.fromarray(ramp().astype(np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(FileTooLargeError, match="limit"):
        read_xray(tmp_path / "a.png", max_bytes=100)
