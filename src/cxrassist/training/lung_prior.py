"""A lung prior on the lung findings' heatmaps: a training loss on the very class activation maps reports show.

Why. Binary cross-entropy never asks *where* the evidence is. At 256 px the classifier's final map is 2x2 cells; its
CAM, densified to 8x8 for the report, peaked outside the (dilated) lungs for 55 % of the val calls of lung findings
(issue 12). Evidence for a lung finding found outside the lungs is either noise or a shortcut (a marker, the letterbox
border, the abdomen), and a heatmap there misleads the reader. So, for the findings of
:data:`cxrassist.labels.LUNG_FIELD_CODES`, training adds how much of each map's attention falls outside the lungs:

    a = softmax over the cells of ``beta * (raw - mean) / std``  (where this map looks; free of its shift and scale)
    prior = mean over films and lung findings of ``sum(a * (1 - m))``

``raw`` is ``explain.cam.cam_forward``'s map (the one the pipeline normalises for display), and ``m`` each cell's
share of the lung mask dilated like the evaluation (``dilate`` x sqrt(lung area) pixels; see
``evaluation.heatmaps.near_mask``). It is asked of every film, whether the finding is present or not: it says where
the model may look for, say, a lung lesion, not whether there is one. Films whose mask is empty are left out.

What it cannot promise: that the peak is on the lesion. A map that is merely lung-shaped satisfies it too, which is
why the pointing game on radiologist boxes is reported beside the in-lung share.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cxrassist.labels import FINDING_CODES, LUNG_FIELD_CODES

#: Columns of the 13-finding output that the prior applies to.
LUNG_FIELD_INDEX: tuple[int, ...] = tuple(FINDING_CODES.index(c) for c in LUNG_FIELD_CODES)


def dilate_masks(masks: torch.Tensor, dilate: float) -> torch.Tensor:
    """[B, 1, H, W] masks in {0, 1}, each dilated by ``dilate`` x sqrt(its area) pixels (a square element)."""
    out = []
    for m in masks:
        r = int(round(dilate * math.sqrt(float(m.sum()))))
        out.append(F.max_pool2d(m[None], 2 * r + 1, stride=1, padding=r)[0] if r > 0 else m)
    return torch.stack(out)


def cell_shares(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Each map cell's share of the mask: [B, 1, H, W] -> [B, 1, h, w] (cell q covers pixels [q*s, (q+1)*s))."""
    return F.adaptive_avg_pool2d(masks.float(), size)


def outside_attention(raw: torch.Tensor, cells: torch.Tensor, beta: float = 4.0) -> torch.Tensor:
    """[B, K] share of each map's attention (softmax of its standardised values x ``beta``) outside ``cells``."""
    flat = raw.flatten(2)
    z = (flat - flat.mean(dim=2, keepdim=True)) / (flat.std(dim=2, keepdim=True) + 1e-6)
    attention = torch.softmax(beta * z, dim=2)
    return (attention * (1.0 - cells.flatten(2))).sum(dim=2)


def lung_prior_loss(
    raw: torch.Tensor,
    lung: torch.Tensor,
    *,
    classes: tuple[int, ...] = LUNG_FIELD_INDEX,
    dilate: float = 0.10,
    beta: float = 4.0,
) -> torch.Tensor:
    """Mean attention outside the dilated lungs of ``raw``'s ``classes`` maps ([B, K, h, w]) given [B, 1, H, W] masks.

    Zero (with a gradient path) when no film of the batch has a lung mask.
    """
    if lung.ndim != 4 or lung.shape[1] != 1:
        raise ValueError(f"lung masks must be [B, 1, H, W], got {tuple(lung.shape)}")
    has = lung.flatten(1).sum(dim=1) > 0
    if not bool(has.any()):
        return raw.sum() * 0.0
    cells = cell_shares(dilate_masks((lung[has] > 0.5).float(), dilate), (raw.shape[-2], raw.shape[-1]))
    return outside_attention(raw[has][:, list(classes)], cells, beta).mean()
