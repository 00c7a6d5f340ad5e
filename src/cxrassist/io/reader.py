"""``read_xray``: one entry point for every file format, refusing bad input before anything is decoded."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cxrassist.errors import NotAnImageError
from cxrassist.io.dicom import looks_like_dicom, read_dicom
from cxrassist.io.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, check_file
from cxrassist.io.raster import read_raster, sniff_raster
from cxrassist.types import XRay

log = logging.getLogger(__name__)


def read_xray(
    path: str | os.PathLike[str],
    *,
    apply_voi: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> XRay:
    """Read a DICOM / PNG / JPEG / TIFF radiograph into an :class:`XRay` (float32 [0, 1], 1 = bone white).

    ``apply_voi=False`` ignores a DICOM VOI LUT / window and scales the whole modality range instead.
    Raises an :class:`~cxrassist.errors.InputError` subclass for every refusal (one-line message).
    """
    p = Path(path)
    check_file(p, max_bytes)
    with open(p, "rb") as fh:
        head = fh.read(132)
    if looks_like_dicom(head):
        xray = read_dicom(p, apply_voi=apply_voi, max_pixels=max_pixels)
    elif (fmt := sniff_raster(head)) is not None:
        xray = read_raster(p, fmt, max_pixels=max_pixels)
    elif _maybe_raw_dicom(head):
        xray = read_dicom(p, apply_voi=apply_voi, max_pixels=max_pixels, force=True)
    else:
        raise NotAnImageError(f"{p.name}: not a DICOM, PNG, JPEG or TIFF file")
    log.debug("read %s: %s %dx%d", p.name, xray.source_format, xray.shape[1], xray.shape[0])
    return xray


def _maybe_raw_dicom(head: bytes) -> bool:
    """A DICOM data set without the Part-10 preamble starts with a group 0x0002 or 0x0008 tag (little endian)."""
    return (
        len(head) >= 8
        and head[:2] in (b"\x02\x00", b"\x08\x00")
        and head[2:4]
        in (b"\x00\x00", b"\x01\x00", b"\x05\x00", b"\x08\x00", b"\x10\x00", b"\x12\x00", b"\x16\x00", b"\x18\x00")
    )
