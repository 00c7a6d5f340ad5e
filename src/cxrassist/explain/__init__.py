"""Explanations: CAM per finding (and per view for the dual-branch model), Grad-CAM for any model."""

from __future__ import annotations

from cxrassist.explain.cam import CamOutput, class_activation_maps, grad_cam, normalize_maps

__all__ = ["CamOutput", "class_activation_maps", "grad_cam", "normalize_maps"]
