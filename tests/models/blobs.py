"""Synthetic "one bright blob" images for CAM localisation checks (no real data needed)."""

from __future__ import annotations

import torch


def blob_batch(
    n: int,
    size: int,
    *,
    generator: torch.Generator,
    radius: float = 6.0,
    positive_fraction: float = 0.5,
    pad_cols: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images [n, 1, size, size] in [0, 1] (noise + optional Gaussian blob), labels [n, 1], centres [n, 2] (row, col).

    ``pad_cols`` zeroes that many columns on each side, like the letterbox padding of a portrait image.
    """
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    base = 0.3 + 0.1 * torch.rand(n, 1, size, size, generator=generator)
    labels = (torch.rand(n, generator=generator) < positive_fraction).float()
    margin = radius * 2
    centres = margin + (size - 2 * margin) * torch.rand(n, 2, generator=generator)
    blob = torch.exp(-((yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2) / (2 * radius**2))
    images = (base + 0.5 * labels[:, None, None, None] * blob[:, None]).clamp(0, 1)
    if pad_cols:
        images[..., :pad_cols] = 0.0
        images[..., size - pad_cols :] = 0.0
    return images, labels[:, None], centres
