"""Training augmentation for radiographs, applied jointly to an image and its targets.

The recipe is the "bag of tricks" one (random resized crop, small affine jitter, brightness/contrast) made mild for
radiographs, plus a random window/level through :func:`cxrassist.preprocess.apply_level` (the same function the
viewer presets use, so the model sees the intensity variations a reader produces).

No left-right flip by default: chest anatomy is not symmetric (heart, aortic knob and stomach bubble on the left,
liver on the right; situs inversus and dextrocardia are findings in themselves), and CAM locations would lose their
meaning. It can be switched on (``hflip``) for tasks that are left-right agnostic.

Randomness comes only from the ``numpy.random.Generator`` passed in (seeded per sample by the Dataset from
(seed, epoch, index)), never from a global RNG, so that a resumed run sees exactly the same augmentations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cxrassist.preprocess import apply_level


@dataclass(frozen=True)
class AugmentConfig:
    enabled: bool = True
    scale: tuple[float, float] = (0.80, 1.0)  # area fraction kept by the random resized crop
    ratio: tuple[float, float] = (0.90, 1.10)  # aspect ratio jitter of the crop
    rotate_deg: float = 7.0
    translate: float = 0.05  # fraction of the side
    brightness: float = 0.08  # additive, in [0, 1] intensity units
    contrast: float = 0.10  # multiplicative around the image mean: 1 +- contrast
    level_prob: float = 0.3  # probability of a random window/level
    level_center: tuple[float, float] = (0.45, 0.55)
    level_width: tuple[float, float] = (0.80, 1.15)
    hflip: bool = False
    # Exposure and detail (off by default, so older recipes draw exactly as before): a gamma drawn log-uniformly from
    # this range (an over- or under-exposed film), and with ``blur_prob`` the image reduced to ``blur_scale`` of its
    # side and back (a film stored small). The heart model needs them: trained on one scanner's films without them,
    # it outlined slivers on over-exposed NIH films.
    gamma: tuple[float, float] = (1.0, 1.0)
    blur_prob: float = 0.0
    blur_scale: float = 0.45


@dataclass(frozen=True)
class AugmentParams:
    theta: tuple[float, ...]  # 2x3 affine (output -> input, normalized coordinates), row-major
    brightness: float
    contrast: float
    level: tuple[float, float] | None
    flip: bool
    gamma: float = 1.0
    blur: float | None = None  # the reduced side's fraction, when the image is blurred


def sample_params(cfg: AugmentConfig, rng: np.random.Generator) -> AugmentParams:
    """Draw one set of augmentation parameters (always the same number of draws, for reproducibility)."""
    u = rng.random(10)
    area = cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * u[0]
    log_r = math.log(cfg.ratio[0]) + (math.log(cfg.ratio[1]) - math.log(cfg.ratio[0])) * u[1]
    r = math.exp(log_r)
    sx = min(1.0, math.sqrt(area * r))  # fraction of the input width seen by the output
    sy = min(1.0, math.sqrt(area / r))
    tx = (1.0 - sx) * (2 * u[2] - 1) + cfg.translate * 2 * (2 * u[3] - 1)
    ty = (1.0 - sy) * (2 * u[4] - 1) + cfg.translate * 2 * (2 * u[5] - 1)
    a = math.radians(cfg.rotate_deg * (2 * u[6] - 1))
    flip = bool(cfg.hflip and u[7] < 0.5)
    fx = -1.0 if flip else 1.0
    theta = (math.cos(a) * sx * fx, -math.sin(a) * sy, tx, math.sin(a) * sx * fx, math.cos(a) * sy, ty)
    level = None
    lv = rng.random(3)
    if lv[0] < cfg.level_prob:
        c = cfg.level_center[0] + (cfg.level_center[1] - cfg.level_center[0]) * lv[1]
        w = cfg.level_width[0] + (cfg.level_width[1] - cfg.level_width[0]) * lv[2]
        level = (float(c), float(w))
    bc = rng.random(2)
    gamma, blur = 1.0, None
    if cfg.gamma != (1.0, 1.0) or cfg.blur_prob > 0:  # drawn only when asked: older recipes keep their stream
        g = rng.random(2)
        lo, hi = math.log(cfg.gamma[0]), math.log(cfg.gamma[1])
        gamma = math.exp(lo + (hi - lo) * g[0])
        blur = cfg.blur_scale if g[1] < cfg.blur_prob else None
    return AugmentParams(
        theta=tuple(float(t) for t in theta),
        brightness=float(cfg.brightness * (2 * bc[0] - 1)),
        contrast=float(1.0 + cfg.contrast * (2 * bc[1] - 1)),
        level=level,
        flip=flip,
        gamma=gamma,
        blur=blur,
    )


def warp(stack: torch.Tensor, theta: tuple[float, ...], size: int, *, mode: str = "bilinear") -> torch.Tensor:
    """Affine-resample a (C, H, W) stack to (C, size, size); outside the image is 0 (air, like letterbox padding)."""
    t = torch.tensor(theta, dtype=torch.float32).view(1, 2, 3)
    grid = F.affine_grid(t, [1, stack.shape[0], size, size], align_corners=False)
    return F.grid_sample(stack[None].float(), grid, mode=mode, padding_mode="zeros", align_corners=False)[0]


def tone(x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    """The tone-curve part of :func:`intensity`: gamma, then window/level."""
    if p.gamma != 1.0:
        x = x.clamp(0.0, 1.0) ** p.gamma
    if p.level is not None:
        x = apply_level(x, p.level[0], p.level[1])
    return x


def intensity(x: torch.Tensor, p: AugmentParams, mean: torch.Tensor | float | None = None) -> torch.Tensor:
    """Gamma, window/level, then contrast around ``mean`` (default: the image's own) and brightness; in [0, 1]."""
    x = tone(x, p)
    if mean is None:
        mean = x.mean()
    return ((x - mean) * p.contrast + mean + p.brightness).clamp(0.0, 1.0)


class JointAugment:
    """Apply one draw of parameters to an image and its companions.

    * ``paired``: images in the same intensity domain that get the same geometry AND intensity change (the
      bone-suppressed partner of a radiograph, so that target = image - partner stays consistent);
    * ``masks``: binary targets, same geometry, resampled bilinearly and re-thresholded at 0.5;
    * ``passive``: derived channels that follow the geometry only (a precomputed bone image).
    """

    def __init__(self, cfg: AugmentConfig, size: int) -> None:
        self.cfg = cfg
        self.size = size

    def __call__(
        self,
        rng: np.random.Generator,
        image: torch.Tensor,
        *,
        paired: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
        passive: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        parts = {"image": image, "paired": paired, "masks": masks, "passive": passive}
        present = {k: v for k, v in parts.items() if v is not None}
        if not self.cfg.enabled:
            return present
        p = sample_params(self.cfg, rng)
        names = list(present)
        counts = [present[k].shape[0] for k in names]
        warped = warp(torch.cat([present[k].float() for k in names], 0), p.theta, self.size)
        out = dict(zip(names, torch.split(warped, counts, 0), strict=True))
        if p.blur is not None:  # the radiograph (and its partner) lose detail; masks and derived planes do not
            for k in ("image", "paired"):
                if k in out:
                    small = max(8, round(self.size * p.blur))
                    low = F.interpolate(out[k][None], size=(small, small), mode="bilinear", antialias=True)
                    out[k] = F.interpolate(low, size=(self.size, self.size), mode="bilinear")[0]
        # One contrast pivot for image and partner: a per-image mean would add a constant offset to image - partner.
        pivot = tone(out["image"], p).mean()
        out["image"] = intensity(out["image"], p, pivot)
        if "paired" in out:
            out["paired"] = intensity(out["paired"], p, pivot)
        if "masks" in out:
            out["masks"] = (out["masks"] > 0.5).float()
        return out


def random_crop(rng: np.random.Generator, tensors: dict[str, torch.Tensor], crop: int) -> dict[str, torch.Tensor]:
    """The same random ``crop`` x ``crop`` window of every (C, H, W) tensor (fully convolutional training)."""
    h, w = next(iter(tensors.values())).shape[-2:]
    if crop >= h and crop >= w:
        return tensors
    top = int(rng.integers(0, max(1, h - crop + 1)))
    left = int(rng.integers(0, max(1, w - crop + 1)))
    return {k: v[..., top : top + crop, left : left + crop] for k, v in tensors.items()}
