"""Test-time views: average a model's logits over centred zooms of the same film.

Why: the models are trained on random resized crops (``augment.scale`` keeps 80-100 % of the area, i.e. 89-100 % of
the side), so the full, unzoomed film sits at one edge of what they saw. Averaging the logits over centred zooms that
span that range (side 1.0, 0.95, 0.9) is a cheap, deterministic ensemble of the model with itself. The views a model
uses are part of its model card (``input.tta_zooms``), so ``cxr analyze``, ``cxr evaluate`` and the card's figures
always agree; a card without the key means the single, plain view.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from cxrassist.weights.settings import TTA_KEY, card_dict, read_zooms

#: Zooms spanning the side range of the training crops (augment.scale keeps 80-100 % of the area = 89-100 % of the
#: side): what the shipped triage card names. Fixed from the training recipe, not tuned on val.
TRAINING_CROP_ZOOMS: tuple[float, ...] = (1.0, 0.95, 0.9)


def card_zooms(card: Any) -> tuple[float, ...]:
    """The zooms a model card asks for (side fraction of the film kept, centred); ``(1.0,)`` when it names none."""
    data = card_dict(card)
    return read_zooms((data.get("input") or {}).get(TTA_KEY), str(data.get("name") or "model"))


def validate_zooms(zooms: Sequence[float]) -> tuple[float, ...]:
    """Zooms must be a non-empty list of side fractions in (0, 1]: a zoom-out would invent pixels outside the film."""
    return read_zooms(zooms)


def zoom_views(x: torch.Tensor, zooms: Sequence[float]) -> torch.Tensor:
    """[B, C, S, S] -> [len(zooms) * B, C, S, S]: for each zoom z, the centred z*S square resampled to S (bilinear)."""
    views = []
    for z in zooms:
        if z == 1.0:
            views.append(x)
            continue
        theta = torch.tensor([[z, 0.0, 0.0], [0.0, z, 0.0]], dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        views.append(F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False))
    return torch.cat(views, 0)


def tta_logits(model: torch.nn.Module, x: torch.Tensor, zooms: Sequence[float]) -> torch.Tensor:
    """Mean of the model's logits over the zoom views of ``x`` (one forward pass of len(zooms) * B images)."""
    if tuple(zooms) == (1.0,):
        return model(x)
    out = model(zoom_views(x, zooms))
    return out.reshape(len(zooms), x.shape[0], *out.shape[1:]).mean(0)
