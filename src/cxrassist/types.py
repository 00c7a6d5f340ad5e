"""Typed hand-off objects between the stages of the data flow (io -> preprocess -> models -> pipeline -> report)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np


class View(str, Enum):
    """Projection of a radiograph. Unknown stays unknown: we never guess silently."""

    PA = "PA"
    AP = "AP"
    LATERAL = "LATERAL"
    UNKNOWN = "UNKNOWN"

    @property
    def is_frontal(self) -> bool:
        return self in (View.PA, View.AP)


@dataclass(frozen=True)
class XRay:
    """One radiograph as every later stage sees it.

    ``pixels`` is float32, shape (H, W), values in [0, 1], where 1 is the most attenuating (bone white, the
    MONOCHROME2 display convention) whatever the source encoding was.
    """

    pixels: np.ndarray
    modality: str | None = None
    view: View = View.UNKNOWN
    body_part: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    bits_stored: int = 8
    photometric: str = "MONOCHROME2"
    patient_sex: str | None = None
    patient_age_years: float | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    source_path: Path | None = None
    source_format: str = "unknown"  # "dicom", "png", "jpeg", "tiff"
    window_applied: bool = False  # a DICOM VOI LUT / window was applied
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

    def summary(self) -> dict[str, Any]:
        """JSON-able description without pixels and without patient identifiers (UIDs are not identifiers)."""
        return {
            "source_format": self.source_format,
            "modality": self.modality,
            "view": self.view.value,
            "body_part": self.body_part,
            "height": self.shape[0],
            "width": self.shape[1],
            "bits_stored": self.bits_stored,
            "photometric": self.photometric,
            "pixel_spacing_mm": list(self.pixel_spacing_mm) if self.pixel_spacing_mm else None,
            "patient_sex": self.patient_sex,
            "patient_age_years": self.patient_age_years,
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "sop_uid": self.sop_uid,
            "window_applied": self.window_applied,
        }


@dataclass(frozen=True)
class ChestCheck:
    """Answer of "is this a frontal chest radiograph?" with the evidence behind it."""

    is_chest: bool
    is_frontal: bool | None
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
