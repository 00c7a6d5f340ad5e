"""What one analysis produced: the result types the pipeline returns and every report, the batch runner and the
service read (kept apart from ``pipeline`` so they are read without the compute behind them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxrassist.labels import CRITICAL_CODES, FINDINGS
from cxrassist.postprocess import CardiacMeasure, LungAreas
from cxrassist.preprocess import SpatialRecord
from cxrassist.types import ChestCheck, XRay


@dataclass(frozen=True)
class FindingResult:
    code: str
    name: str
    probability: float
    threshold: float
    positive: bool
    validated: bool
    # how well this finding was measured (the card's operating_points entry: AUROC + CI, sensitivity and
    # specificity at the threshold, positives/n, where); None when the card has none (e.g. an untrained model)
    measured: Mapping[str, Any] | None = None
    # how the score was made when not by the classifier (a finding scored from a measurement: cxrassist.measured)
    method: str | None = None


@dataclass(frozen=True)
class TriageResult:
    abnormal_probability: float
    threshold: float
    priority: str  # "critical" | "high" | "routine"
    priority_score: float
    critical_findings: tuple[str, ...]
    measured: Mapping[str, Any] | None = None  # the triage card's operating point figures


def triage_priority(
    abnormal_probability: float,
    threshold: float,
    findings: list[FindingResult],
    measured: Mapping[str, Any] | None = None,
) -> TriageResult:
    """The documented worklist priority.

    - ``critical`` when a critical finding (``labels.CRITICAL_CODES``: pneumothorax, edema) is positive (positive
      implies validated: an unvalidated finding never escalates);
      score = 2 + the highest probability among those critical findings (range [2, 3]).
    - ``high`` when the triage model's abnormal probability reaches its card threshold; score = 1 + p ([1, 2)).
    - ``routine`` otherwise; score = p ([0, 1)).
    Sorting by ``priority_score`` descending gives the reading order.
    """
    critical = [f for f in findings if f.code in CRITICAL_CODES and f.positive]
    p = float(abnormal_probability)
    if critical:
        return TriageResult(
            p,
            threshold,
            "critical",
            2.0 + max(f.probability for f in critical),
            tuple(f.code for f in critical),
            measured,
        )
    if p >= threshold:
        return TriageResult(p, threshold, "high", 1.0 + min(p, 0.999999), (), measured)
    return TriageResult(p, threshold, "routine", min(p, 0.999999), (), measured)


@dataclass
class AnalysisResult:
    """Everything one analysis produced, at the original resolution where it is an image."""

    frontal: XRay
    lateral: XRay | None
    chest_check: ChestCheck
    forced: bool
    lung_mask: np.ndarray  # bool (H, W) on the frontal's pixels
    lung_areas: LungAreas
    bone: np.ndarray  # float32 (H, W) [0, 1]: the predicted bone image ("bone-subtracted")
    bone_suppressed: np.ndarray  # float32 (H, W) [0, 1]: radiograph minus bone
    findings: list[FindingResult]
    triage: TriageResult
    cams: np.ndarray  # float32 (K, h, w) in [0, 1], model-space CAMs of the frontal, FINDINGS order
    cam_record: SpatialRecord
    lateral_cams: np.ndarray | None = None
    lateral_record: SpatialRecord | None = None
    lateral_check: ChestCheck | None = None
    models: list[dict[str, Any]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    ood: dict[str, Any] | None = None  # the out-of-distribution gate's verdict (cxrassist.ood); None without a gate
    lung_tilt_deg: float | None = None  # postprocess.lung_tilt_deg of the lung mask; None without two lungs
    heatmap_meaning: str | None = None  # what the heatmap colours mean for this classifier (None: the generic one)
    cardiac: CardiacMeasure | None = None  # the cardiothoracic ratio, when the pipeline has a heart model

    @property
    def untrained(self) -> bool:
        return any(m.get("status") != "trained" for m in self.models)

    def heatmap_u8(self, code: str, view: str = "frontal") -> np.ndarray:
        """The finding's heatmap as uint8 (0-255) on the ORIGINAL pixel grid of that view (fast path for images)."""
        from cxrassist.postprocess import heatmap_to_original_u8

        idx = [f.code for f in FINDINGS].index(code)
        if view == "frontal":
            return heatmap_to_original_u8(self.cams[idx], self.cam_record)
        if self.lateral_cams is None or self.lateral_record is None:
            raise ValueError("this analysis has no lateral view")
        return heatmap_to_original_u8(self.lateral_cams[idx], self.lateral_record)

    def heatmap(self, code: str, view: str = "frontal") -> np.ndarray:
        """The finding's heatmap in [0, 1] on the ORIGINAL pixel grid of that view."""
        idx = [f.code for f in FINDINGS].index(code)
        if view == "frontal":
            return np.clip(self.cam_record.to_original(self.cams[idx]), 0.0, 1.0)
        if self.lateral_cams is None or self.lateral_record is None:
            raise ValueError("this analysis has no lateral view")
        return np.clip(self.lateral_record.to_original(self.lateral_cams[idx]), 0.0, 1.0)
