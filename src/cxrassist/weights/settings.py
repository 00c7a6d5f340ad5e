"""A model card's settings, read and checked in ONE place and typed: what inference, evaluation and training use.

Why: a card read field by field wherever a setting is needed (``card.get("input", {}).get("size", 512)``) hides a
missing or malformed value behind a default and lets each reader decide its own. :func:`card_settings` reads a
card once (the pipeline does it when it loads), refuses what is wrong with a one-line
:class:`~cxrassist.errors.CardError` naming the card and the field, and invents nothing: a label without a threshold
is an error, not 0.5 (a new card's placeholder 0.5 is written into its card.json by ``ModelCard.new``, where a reader
can see it).

Torch-free, like ``weights.card``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cxrassist.errors import CardError

#: The classifier input channels, in channel order: ONE name each, used by the model cards (``input.channels``),
#: the registry, the training dataset and the inference pipeline (``cxrassist.channels`` builds them).
RADIOGRAPH, LUNG_SEGMENTED, BONE_SUBTRACTED = "radiograph", "lung_segmented", "bone_subtracted"
INPUT_CHANNELS: tuple[str, ...] = (RADIOGRAPH, LUNG_SEGMENTED, BONE_SUBTRACTED)
TTA_KEY = "tta_zooms"


@dataclass(frozen=True)
class InputSettings:
    """``input`` of a card: the letterbox side, the channels by name, the effective size and the test-time zooms."""

    size: int
    channels: tuple[str, ...]
    lateral_channels: tuple[str, ...]  # empty when the card names none
    effective_size: int | None  # films reduced to this long side before the letterbox (preprocess.letterbox)
    tta_zooms: tuple[float, ...]  # (1.0,) = the plain view (cxrassist.tta)


@dataclass(frozen=True)
class LabelSettings:
    """One output of a model: its operating threshold (on the calibrated scale when ``calibration`` is set)."""

    name: str
    threshold: float
    validated: bool  # measured on held-out data with this label; an unvalidated label is never called positive
    calibration: tuple[float, float] | None  # Platt (a, b): p' = sigmoid(a * logit(p) + b)
    measured: Mapping[str, Any] | None  # the card's operating_points entry (travels with every result)


@dataclass(frozen=True)
class CardSettings:
    """Everything a model's card says about running it, checked once."""

    name: str
    version: str
    trained: bool
    input: InputSettings
    labels: tuple[LabelSettings, ...]

    def label(self, name: str) -> LabelSettings:
        """The label called ``name`` (exact, else case-insensitive); CardError when the card has none."""
        for lab in self.labels:
            if lab.name == name:
                return lab
        for lab in self.labels:
            if lab.name.lower() == name.lower():
                return lab
        raise CardError(f"model {self.name!r} has no output {name!r} (it has {', '.join(self.label_names)})")

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(lab.name for lab in self.labels)


def card_settings(card: Any) -> CardSettings:
    """Read and check a :class:`~cxrassist.weights.card.ModelCard` (or its dict form); idempotent on settings."""
    if isinstance(card, CardSettings):
        return card
    data = card_dict(card)
    name = str(data.get("name") or "unnamed")
    raw_input = data.get("input")
    if not isinstance(raw_input, Mapping):
        raise CardError(f"model {name!r}: the card has no input section")
    inp = InputSettings(
        size=read_size(raw_input.get("size"), name),
        channels=read_channels(raw_input.get("channels", [RADIOGRAPH]), name, "channels"),
        lateral_channels=read_channels(raw_input.get("lateral_channels", []), name, "lateral_channels"),
        effective_size=read_effective_size(raw_input.get("effective_size"), name),
        tta_zooms=read_zooms(raw_input.get(TTA_KEY), name),
    )
    thresholds = _table(data, "thresholds", name)
    validated = _table(data, "validated", name)
    calibration = _table(data, "calibration", name)
    measured = _table(data, "operating_points", name)
    names = [str(lab) for lab in (data.get("labels") or list(thresholds))]
    labels = []
    for lab in names:
        if lab not in thresholds:
            raise CardError(
                f"model {name!r}: no threshold for output {lab!r} in the card (thresholds: "
                f"{', '.join(thresholds) or 'none'}); `cxr evaluate --write-thresholds` sets them"
            )
        labels.append(
            LabelSettings(
                name=lab,
                threshold=_number(thresholds[lab], f"model {name!r}: thresholds[{lab!r}]"),
                validated=bool(validated.get(lab, False)),
                calibration=read_calibration(lab, calibration.get(lab)),
                measured=measured.get(lab),
            )
        )
    status = str(data.get("status", "untrained")).lower()
    return CardSettings(
        name=name, version=str(data.get("version") or ""), trained=status == "trained", input=inp, labels=tuple(labels)
    )


def card_dict(card: Any) -> dict[str, Any]:
    """A card as a plain dict: a ModelCard (``to_dict``) or a mapping."""
    if isinstance(card, Mapping):
        return dict(card)
    to_dict = getattr(card, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    raise CardError(f"not a model card: {type(card).__name__}")


def read_size(value: Any, name: str = "model") -> int:
    """``input.size``: the square side the model runs at (required)."""
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or value < 8:
        raise CardError(f"model {name!r}: input.size must be an integer >= 8, got {value!r}")
    return value


def read_channels(value: Any, name: str = "model", key: str = "channels") -> tuple[str, ...]:
    """``input.channels`` / ``input.lateral_channels``: a list of the names in :data:`INPUT_CHANNELS`."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise CardError(f"model {name!r}: input.{key} must be a list of channel names, got {value!r}")
    out = []
    for item in value:
        if item not in INPUT_CHANNELS:
            raise CardError(
                f"model {name!r}: unknown input channel {item!r} in input.{key} "
                f"(the names are {', '.join(INPUT_CHANNELS)})"
            )
        out.append(str(item))
    return tuple(out)


def channels_of(spec: int | Sequence[str], name: str = "model") -> tuple[str, ...]:
    """Channel names from a count (the first ``n`` of :data:`INPUT_CHANNELS`, how a model built with ``in_chans=n``
    is trained and carded) or from names (checked)."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        if not 1 <= spec <= len(INPUT_CHANNELS):
            raise CardError(f"model {name!r}: {spec} input channels; 1 to {len(INPUT_CHANNELS)} are known")
        return INPUT_CHANNELS[:spec]
    return read_channels(spec, name)


def read_effective_size(value: Any, name: str = "model") -> int | None:
    """``input.effective_size`` or None (no reduction before the letterbox)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 8:
        raise CardError(f"model {name!r}: input.effective_size must be an integer >= 8, got {value!r}")
    return value


def read_zooms(value: Any, name: str = "model") -> tuple[float, ...]:
    """``input.tta_zooms``: side fractions in (0, 1] (a zoom-out would invent pixels); ``(1.0,)`` when absent."""
    if value is None:
        return (1.0,)
    try:
        out = tuple(float(z) for z in value)
    except (TypeError, ValueError):
        raise CardError(f"model {name!r}: input.{TTA_KEY} must be a list of numbers, got {value!r}") from None
    if not out or any(not 0.0 < z <= 1.0 for z in out):
        raise CardError(f"model {name!r}: input.{TTA_KEY} must hold side fractions in (0, 1], got {value!r}")
    return out


def read_calibration(label: str, entry: Any) -> tuple[float, float] | None:
    """One label's Platt map ``{"a": slope > 0, "b": intercept}``, or None. A malformed entry is refused."""
    if entry is None:
        return None
    try:
        a, b = float(entry["a"]), float(entry["b"])
    except (KeyError, TypeError, ValueError):
        raise CardError(
            f"model card calibration for {label!r} must be {{'a': number, 'b': number}}, got {entry!r}"
        ) from None
    if not (math.isfinite(a) and math.isfinite(b) and a > 0):
        raise CardError(f"model card calibration for {label!r} needs a finite slope a > 0, got a={a}, b={b}")
    return a, b


def _table(data: Mapping[str, Any], key: str, name: str) -> Mapping[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise CardError(f"model {name!r}: {key} must be a table by label, got {type(value).__name__}")
    return value


def _number(value: Any, what: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise CardError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise CardError(f"{what} must be finite, got {value!r}")
    return out
