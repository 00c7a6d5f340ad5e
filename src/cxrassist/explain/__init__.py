"""Explanations: CAM per finding (and per view for the dual-branch model), Grad-CAM for any model."""

from __future__ import annotations

from cxrassist.explain.cam import (
    HEATMAP_MEANING,
    CamOutput,
    class_activation_maps,
    grad_cam,
    normalize_maps,
    regrid_map,
)

__all__ = ["HEATMAP_MEANING", "CamOutput", "class_activation_maps", "grad_cam", "normalize_maps", "regrid_map"]
