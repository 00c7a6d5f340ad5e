"""ROC curve PNGs drawn with Pillow (matplotlib is not a dependency): axes, chance diagonal, curve, AUROC, threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def draw_roc(
    fpr: np.ndarray,
    tpr: np.ndarray,
    path: Path,
    *,
    title: str,
    auc: float,
    ci: tuple[float, float] | None = None,
    point: tuple[float, float] | None = None,
    size: int = 480,
) -> Path:
    """Write one ROC curve; ``point`` = (fpr, tpr) of the operating threshold, marked with a dot."""
    m = 56  # margin for labels
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = m, 24, size - 16, size - m

    def xy(fx: float, ty: float) -> tuple[float, float]:
        return x0 + fx * (x1 - x0), y1 - ty * (y1 - y0)

    for t in np.linspace(0, 1, 6):  # grid + tick labels
        gx, _ = xy(t, 0)
        _, gy = xy(0, t)
        d.line([gx, y0, gx, y1], fill=(230, 230, 230))
        d.line([x0, gy, x1, gy], fill=(230, 230, 230))
        d.text((gx - 8, y1 + 4), f"{t:.1f}", fill="black")
        d.text((x0 - 26, gy - 6), f"{t:.1f}", fill="black")
    d.rectangle([x0, y0, x1, y1], outline="black")
    d.line([xy(0, 0), xy(1, 1)], fill=(160, 160, 160), width=1)
    pts = [xy(float(a), float(b)) for a, b in zip(fpr, tpr, strict=True)]
    if len(pts) > 1:
        d.line(pts, fill=(200, 30, 30), width=2)
    if point is not None:
        px, py = xy(*point)
        d.ellipse([px - 4, py - 4, px + 4, py + 4], outline="black", fill=(30, 90, 200))
    d.text((x0 + (x1 - x0) / 2 - 60, y1 + 22), "1 - specificity (FPR)", fill="black")
    d.text((4, y0 - 18), "sensitivity (TPR)", fill="black")
    label = f"{title}  AUROC {auc:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] == ci[0] else "")
    d.text((x0 + 6, y0 + 6), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
