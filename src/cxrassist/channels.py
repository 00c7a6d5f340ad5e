"""The classifier's derived input channels, computed by ONE code path for inference and for training.

The design feeds the classifier extra channels: the lung-segmented image (radiograph x lung mask) and the
bone-subtracted image (the generator's bone image). A channel computed one way during training and another way at
inference is the classic silent failure of such systems, so the pipeline (``cxrassist.pipeline``) and the training
cache (``cxrassist.data.derived``) both call the functions below:

1. ``predict_lung_mask``: letterbox to the lung card's input size, sigmoid >= threshold, keep the image area, clean
   (two largest components, holes filled); at the original pixels the outline is the probability resized smoothly
   and thresholded, within a band around the cleaned mask.
2. ``predict_bone``: letterbox to the bone card's input size, generator output clipped to [0, 1], zero on the
   padding, mapped back to the original pixels (bilinear).
3. ``classifier_planes``: letterbox the radiograph to the classifier size and bring the original-resolution lung
   mask (nearest) and bone image (bilinear) into the same model space.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from cxrassist.postprocess import clean_lung_mask
from cxrassist.preprocess import Reductions, SpatialRecord, letterbox, normalize
from cxrassist.weights.settings import (
    BONE_SUBTRACTED,
    INPUT_CHANNELS,
    LUNG_SEGMENTED,
    RADIOGRAPH,
    CardSettings,
    card_dict,
    card_settings,
    read_effective_size,
    read_size,
)

#: The channel names (one per channel, as in the model cards' ``input.channels``): see ``weights.settings``.
LUNG, BONE = LUNG_SEGMENTED, BONE_SUBTRACTED
CHANNEL_ORDER = INPUT_CHANNELS


def card_get(obj: Any, key: str, default: Any = None) -> Any:
    """Read ``key`` from a card or a card's sub-object, whether it is a dataclass/object or a dict."""
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def card_input_size(card: Any) -> int:
    """The model-space size (letterbox square side) a card's model expects (``input.size``, required)."""
    return (
        card_settings(card).input.size
        if isinstance(card, CardSettings)
        else read_size((card_dict(card).get("input") or {}).get("size"), str(card_get(card, "name", "model")))
    )


def card_effective_size(card: Any) -> int | None:
    """The card's ``input.effective_size`` (films reduced to this long side before the letterbox), or None."""
    return (
        card_settings(card).input.effective_size
        if isinstance(card, CardSettings)
        else read_effective_size(
            (card_dict(card).get("input") or {}).get("effective_size"), str(card_get(card, "name", "model"))
        )
    )


def lung_threshold(settings: CardSettings) -> float:
    """The lung model's threshold: its ``Lung`` output (or its only one)."""
    return label_threshold(settings, "Lung")


def label_threshold(settings: CardSettings, name: str) -> float:
    """A segmentation model's threshold for ``name`` (or for its only output, whatever the card calls it)."""
    if len(settings.labels) == 1:
        return settings.labels[0].threshold
    return settings.label(name).threshold


def _run(model: Any, canvas: np.ndarray) -> np.ndarray:
    import torch

    device = next(model.parameters()).device
    x = torch.from_numpy(normalize(canvas).astype(np.float32, copy=False))[None, None].to(device)
    with torch.inference_mode():
        return model(x).float().cpu().numpy()[0]


def _valid_area(rec: SpatialRecord) -> np.ndarray:
    valid = np.zeros((rec.size, rec.size), dtype=bool)
    valid[rec.top : rec.top + rec.new_h, rec.left : rec.left + rec.new_w] = True
    return valid


def predict_lung_mask(model: Any, card: Any, pixels: np.ndarray) -> tuple[np.ndarray, SpatialRecord, np.ndarray]:
    """Lung mask of a [0, 1] radiograph: (model-space mask, its record, original-resolution mask), all bool.

    ``card``: the lung model's card or the settings read from it (``weights.settings.card_settings``, done once by
    the pipeline). The two largest components are kept (two lungs), holes filled.

    The original-resolution mask thresholds the probability resized smoothly to the film's size (not the model-space
    mask blown up), so a 2000 px film gets a smooth outline instead of 8-pixel stair steps.
    """
    return predict_mask(model, card, pixels, label="Lung", keep=2)


def predict_heart_mask(model: Any, card: Any, pixels: np.ndarray) -> tuple[np.ndarray, SpatialRecord]:
    """Heart mask of a [0, 1] radiograph in model space, and its record (one component: one heart).

    Model space only: the cardiothoracic ratio is measured there (``cxrassist.measured``), and the mask at a 2k
    film's resolution cost ~25 ms on RG1 (2 cores) for a mask nothing reads. ``predict_organ_mask`` gives the
    film-resolution outline.
    """
    mask, rec, _ = _model_space_mask(model, card_settings(card), pixels, label="Heart", keep=1)
    return mask, rec


#: How many components each organ's mask keeps (two lungs, one heart).
ORGAN_COMPONENTS: dict[str, int] = {"Lung": 2, "Heart": 1}


def predict_organ_mask(model: Any, card: Any, pixels: np.ndarray) -> tuple[np.ndarray, SpatialRecord, np.ndarray]:
    """The mask of whichever organ the card's (first) label names, as :func:`predict_mask` (lungs or heart)."""
    settings = card_settings(card)
    label = settings.labels[0].name if settings.labels else "Lung"
    return predict_mask(model, settings, pixels, label=label, keep=ORGAN_COMPONENTS.get(label, 2))


def _model_space_mask(
    model: Any, settings: CardSettings, pixels: np.ndarray, *, label: str, keep: int
) -> tuple[np.ndarray, SpatialRecord, np.ndarray | None]:
    """(cleaned model-space mask, record, model-space probability or None for a multi-class model)."""
    canvas, rec = letterbox(pixels, settings.input.size)
    logits = _run(model, canvas)
    valid = _valid_area(rec)
    if logits.shape[0] == 1:
        prob = np.where(valid, 1.0 / (1.0 + np.exp(-logits[0])), 0.0).astype(np.float32)
        return clean_lung_mask(prob >= label_threshold(settings, label), keep=keep), rec, prob
    return clean_lung_mask((logits.argmax(0) > 0) & valid, keep=keep), rec, None


def predict_mask(
    model: Any, card: Any, pixels: np.ndarray, *, label: str, keep: int
) -> tuple[np.ndarray, SpatialRecord, np.ndarray]:
    """A one-organ segmentation: (model-space mask, its record, original-resolution mask), all bool.

    The ``keep`` largest components are kept and their holes filled; at the original resolution the outline is the
    probability resized smoothly and thresholded, within a one-pixel (model space) band around the cleaned mask.
    """
    settings = card_settings(card)
    mask, rec, prob = _model_space_mask(model, settings, pixels, label=label, keep=keep)
    if prob is None:
        return mask, rec, rec.mask_to_original(mask)
    threshold = label_threshold(settings, label)
    # smooth edge from the resized probability, but only in a one-pixel (model space) band around the cleaned mask:
    # the components it dropped stay dropped and its filled holes stay filled (cheap at 2000 px, unlike cleaning
    # again at full size)
    band_outer = rec.mask_to_original(ndimage.binary_dilation(mask))
    band_inner = rec.mask_to_original(ndimage.binary_erosion(mask))
    original = ((rec.to_original(prob) >= threshold) & band_outer) | band_inner
    return mask, rec, original


def predict_bone(model: Any, card: Any, pixels: np.ndarray) -> tuple[np.ndarray, SpatialRecord, np.ndarray]:
    """Bone image of a [0, 1] radiograph: (model-space bone, its record, original-resolution bone), in [0, 1]."""
    canvas, rec = letterbox(pixels, card_input_size(card))
    bone = np.clip(_run(model, canvas)[0], 0.0, 1.0)
    bone[~_valid_area(rec)] = 0.0
    return bone, rec, np.clip(rec.to_original(bone), 0.0, 1.0)  # float32 already: no copy (~2 ms on a film)


def to_model_space(
    rec: SpatialRecord, *, lung_mask: np.ndarray | None = None, bone: np.ndarray | None = None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Original-resolution lung mask (nearest, 0/1) and bone image (bilinear, [0, 1]) in ``rec``'s model space."""
    lung_m = rec.mask_to_model(lung_mask).astype(np.float32) if lung_mask is not None else None
    bone_m = np.clip(rec.to_model(bone), 0.0, 1.0).astype(np.float32) if bone is not None else None
    return lung_m, bone_m


def classifier_planes(
    pixels: np.ndarray,
    size: int,
    channels: Sequence[str],
    *,
    lung_mask: np.ndarray | None = None,
    bone: np.ndarray | None = None,
    detail: int | None = None,
    reductions: Reductions | None = None,
) -> tuple[np.ndarray, SpatialRecord]:
    """The [C, size, size] input planes in [0, 1] (not yet normalized) and the radiograph's record.

    ``lung_mask`` and ``bone`` are at the radiograph's original resolution; a channel whose source is None is zeros
    (the lateral view, whose lung and bone are not computed). ``detail``: the card's effective size (the radiograph
    is reduced to it first, as in training; see ``preprocess.letterbox``; ``reductions`` shares that reduction with
    the film's other models). A derived plane is brought into model space only when ``channels`` names it.
    """
    canvas, rec = letterbox(pixels, size, detail=detail, reductions=reductions)
    lung_m, bone_m = to_model_space(
        rec, lung_mask=lung_mask if LUNG in channels else None, bone=bone if BONE in channels else None
    )
    zeros = np.zeros_like(canvas)
    planes = []
    for name in channels:
        if name == RADIOGRAPH:
            planes.append(canvas)
        elif name == LUNG:
            planes.append(canvas * lung_m if lung_m is not None else zeros)
        elif name == BONE:
            planes.append(bone_m if bone_m is not None else zeros)
        else:
            raise ValueError(f"unknown input channel {name!r}; known: {', '.join(CHANNEL_ORDER)}")
    return np.stack(planes).astype(np.float32), rec
