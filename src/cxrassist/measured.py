"""Findings scored from a measurement instead of the classifier's output: Cardiomegaly from the cardiothoracic ratio.

Why: the classifier learns Cardiomegaly from ~450 labelled NIH films and scores it at AUROC 0.63 out of fold, where
the ratio of the heart's width to the thorax's, measured on outlines drawn by a heart model that never saw an NIH
film (trained on JSRT's heart outlines), scores 0.76 on the same 528 films. A reader can check a measurement on the
film; a score from a network trained on a few hundred films they cannot.

The classifier's card declares such findings (``measured_findings``), so a classifier without the key (a hospital's
own) keeps every finding its own::

    "measured_findings": {"Cardiomegaly": {"measure": "cardiothoracic_ratio", "model": "heartseg",
                                           "center": 0.5, "scale": 0.05}}

The raw probability is ``sigmoid((ratio - center) / scale)``: 0.5 is the textbook cut on a PA film, and the 0.05
scale is fixed, not fitted. The card's calibration and threshold for the finding are then fitted like every other
finding's, by the same code (``cxr evaluate --write-thresholds``), on the NIH-source val films plus, when the entry
names ``held_out_sets``, the train films of those sets too (never a test split): the measurement learnt nothing from
them (the evaluation refuses a set that the heart or lung model trained on, or a card that does not say), so the
finding is validated on ten times the positives that val holds. The pipeline and ``cxr evaluate`` both call
:func:`measure_film`, so a card figure is what a reader gets. Where the ratio cannot be measured (no heart outline,
not two lungs, an outline too narrow to be a heart) the classifier's own probability is kept for that film and the
finding is never called positive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cxrassist.errors import WeightsError
from cxrassist.postprocess import MIN_PLAUSIBLE_CTR, CardiacMeasure, measure_heart

#: The measurements a card may name, and the finding each can score.
MEASURES: dict[str, str] = {"cardiothoracic_ratio": "Cardiomegaly"}
#: The smallest value each measurement accepts (below it the film is not measured).
FLOORS: dict[str, float] = {"cardiothoracic_ratio": MIN_PLAUSIBLE_CTR}
CARD_KEY = "measured_findings"
#: Said with the ratio of a film whose header calls it AP: the beam enters from the front, so the heart, far from
#: the detector, is magnified (the usual 0.5 limit is for PA films; the NIH films it was fitted on do not record it).
AP_NOTE = ", on an AP film (it magnifies the heart: the ratio runs high)"


@dataclass(frozen=True)
class MeasuredFinding:
    """One finding of a classifier card that is scored from a measurement."""

    label: str
    measure: str
    model: str  # the measuring model's folder name beside the classifier's (or a path)
    center: float
    scale: float
    held_out_sets: tuple[str, ...] = ()  # sets whose train films join the validation: the measurement never saw them

    def probability(self, value: float) -> float:
        """The raw (uncalibrated) probability of a measured value."""
        z = (float(value) - self.center) / self.scale
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def floor_probability(self) -> float:
        """The raw probability of the smallest value the measurement accepts: where a film an evaluation must
        rank could not be measured, it ranks there (never above a measured film)."""
        return self.probability(FLOORS[self.measure])

    def method(self, measure: CardiacMeasure, model_name: str, model_version: str) -> str:
        """How the finding's score was made, for the report."""
        return (
            f"from the cardiothoracic ratio {measure.ratio:.2f} (heart {measure.heart_width_px} px wide, thorax "
            f"{measure.thorax_width_px} px) on the outlines of {model_name} {model_version}, not the classifier"
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"measure": self.measure, "model": self.model, "center": self.center, "scale": self.scale}
        if self.held_out_sets:
            out["held_out_sets"] = list(self.held_out_sets)
        return out


def measured_findings(card: Any) -> tuple[MeasuredFinding, ...]:
    """The card's measured findings (none for a card without the key); a malformed entry raises WeightsError."""
    from cxrassist.weights.settings import card_dict

    data = card_dict(card)
    entries = data.get(CARD_KEY) or (data.get("extra") or {}).get(CARD_KEY) or {}
    name = str(data.get("name") or "classifier")
    if not isinstance(entries, Mapping):
        raise WeightsError(f"model card {name!r}: {CARD_KEY} must map finding names to measurements")
    labels = [str(x) for x in data.get("labels") or []]
    out = []
    for label, spec in entries.items():
        if not isinstance(spec, Mapping):
            raise WeightsError(f"model card {name!r}: {CARD_KEY}[{label!r}] must be a mapping")
        measure = str(spec.get("measure", ""))
        if MEASURES.get(measure) != label:
            raise WeightsError(
                f"model card {name!r}: {CARD_KEY}[{label!r}] names measure {measure!r}; known: "
                + ", ".join(f"{m} (for {f})" for m, f in MEASURES.items())
            )
        if labels and label not in labels:
            raise WeightsError(f"model card {name!r}: {CARD_KEY} names {label!r}, which is not one of its labels")
        try:
            center, scale = float(spec.get("center", 0.5)), float(spec.get("scale", 0.05))
        except (TypeError, ValueError):
            raise WeightsError(f"model card {name!r}: {CARD_KEY}[{label!r}] center/scale must be numbers") from None
        if not (math.isfinite(center) and math.isfinite(scale) and scale > 0):
            raise WeightsError(f"model card {name!r}: {CARD_KEY}[{label!r}] needs a finite center and a scale > 0")
        model = str(spec.get("model") or "")
        if not model:
            raise WeightsError(f"model card {name!r}: {CARD_KEY}[{label!r}] names no measuring model")
        held = spec.get("held_out_sets") or []
        if isinstance(held, str) or not isinstance(held, list) or not all(isinstance(x, str) and x for x in held):
            raise WeightsError(f"model card {name!r}: {CARD_KEY}[{label!r}] held_out_sets must be a list of set names")
        out.append(MeasuredFinding(label, measure, model, center, scale, tuple(held)))
    return tuple(out)


def measure_film(
    heart: tuple[Any, Any], pixels: np.ndarray, lung_mask: np.ndarray
) -> tuple[CardiacMeasure | None, np.ndarray]:
    """(cardiothoracic ratio or None, the heart mask in model space) of a [0, 1] frontal film.

    ``lung_mask``: the lung model's model-space mask of the film (``channels.predict_lung_mask(...)[0]``). Both
    outlines are measured on the letterboxed square the models ran on (the letterbox keeps the film's aspect, so the
    ratio is the film's): measuring on RG1's own 2k pixels took the heart stage from 71 to 144 ms (2 cores).
    """
    from cxrassist.channels import predict_heart_mask
    from cxrassist.preprocess import resize

    heart_mask, rec = predict_heart_mask(heart[0], heart[1], pixels)
    lungs = np.asarray(lung_mask, dtype=bool)
    if lungs.shape != heart_mask.shape:  # models at different sizes: both squares of the same letterboxed film
        lungs = resize(lungs.astype(np.float32), heart_mask.shape, nearest=True) > 0.5
    m, heart_mask = measure_heart(lungs, heart_mask)  # the outline that was measured is the one shown
    if m is None:
        return None, heart_mask
    per_px = rec.orig_w / rec.new_w  # film pixels per model-space pixel: the widths are reported in the film's
    return CardiacMeasure(m.ratio, round(m.heart_width_px * per_px), round(m.thorax_width_px * per_px)), heart_mask
