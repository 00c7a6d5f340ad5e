"""Reading radiographs (DICOM, PNG, JPEG, TIFF) into :class:`~cxrassist.types.XRay`, and the chest check.

Never imports torch; pydicom / tifffile are imported only when a file of that kind is read.
"""

from __future__ import annotations

from cxrassist.io.chest_check import check_chest
from cxrassist.io.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, MIN_SIDE
from cxrassist.io.reader import read_xray

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_PIXELS", "MIN_SIDE", "check_chest", "read_xray"]
