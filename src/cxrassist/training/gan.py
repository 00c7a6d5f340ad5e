"""Bone-image GAN training: conditional multi-scale discriminator, hinge or LSGAN loss, L1 and feature matching.

Target: the bone image = radiograph01 - bone_suppressed01 of the BSE-JSRT pairs (clipped to [0, 1], see
:func:`cxrassist.data.dataset.bone_target`). The generator predicts it from the normalized radiograph; the
discriminator sees (normalized radiograph, bone image in [0, 1]) concatenated on channels, real or generated.
Generator loss = adv_weight * adversarial + l1_weight * L1 + mse_weight * MSE + ssim_weight * (1 - SSIM)
+ grad_weight * gradient L1 + fm_weight * feature matching (pix2pixHD); D and G have separate learning rates
(TTUR: ``optim.lr_d`` > ``optim.lr``). Training on random crops is fine: G is fully convolutional, and validation
runs on the full image.

The losses only: the training task that uses them is :class:`cxrassist.training.tasks.BoneTask` (tasks import this
module, never the other way round).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def split_outputs(out: Any) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
    """Normalize discriminator outputs to [(logits, [features...]) per scale].

    Accepts a list (per scale) of lists whose last entry is the logits (pix2pixHD), of (logits, features) pairs, of
    dicts with ``logits``/``features``, or a dict of two lists.
    """
    if isinstance(out, dict):
        return list(zip(out["logits"], out.get("features", [[]] * len(out["logits"])), strict=True))
    scales = []
    for s in out:
        if isinstance(s, dict):
            scales.append((s["logits"], list(s.get("features", []))))
        elif isinstance(s, tuple) and len(s) == 2 and isinstance(s[1], (list, tuple)):
            scales.append((s[0], list(s[1])))
        elif isinstance(s, (list, tuple)):
            scales.append((s[-1], list(s[:-1])))
        else:
            scales.append((s, []))
    return scales


def d_loss_fn(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return ((real - 1) ** 2).mean() + (fake**2).mean()


def g_adv_fn(kind: str, fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean() if kind == "hinge" else ((fake - 1) ** 2).mean()


def gradient_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the horizontal and vertical finite differences: the rib and clavicle *edges*, which a plain
    pixel L1 of a faint layer rewards little (most pixels are smooth and near 0)."""
    dx = F.l1_loss(pred[..., :, 1:] - pred[..., :, :-1], target[..., :, 1:] - target[..., :, :-1])
    dy = F.l1_loss(pred[..., 1:, :] - pred[..., :-1, :], target[..., 1:, :] - target[..., :-1, :])
    return (dx + dy) / 2


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, *, win: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """1 - mean SSIM of [N, 1, H, W] images in [0, 1]: the evaluation's SSIM (``evaluation.metrics.ssim``, Gaussian
    window 11 / 1.5, data range 1, positions where the window fits), differentiable."""
    from cxrassist.evaluation.metrics import gaussian_window

    kernel = torch.from_numpy(gaussian_window(win, sigma)).to(pred.device, torch.float32).view(1, 1, win, win)

    def filt(a: torch.Tensor) -> torch.Tensor:
        return F.conv2d(a, kernel)

    c1, c2 = 0.01**2, 0.03**2
    mx, my = filt(pred), filt(target)
    vx = filt(pred * pred) - mx * mx
    vy = filt(target * target) - my * my
    cxy = filt(pred * target) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return 1 - s.mean()


def discriminator_step_loss(
    d: nn.Module, x: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, kind: str
) -> tuple[torch.Tensor, dict[str, float]]:
    """D's loss on real and (detached) generated bone images, averaged over the scales."""
    # One D forward on [real; fake]: a DDP-wrapped module must see one forward per backward.
    both = split_outputs(d(torch.cat([x, x], 0), torch.cat([real, fake.detach()], 0)))
    n = x.shape[0]
    loss = sum((d_loss_fn(kind, lg[:n].float(), lg[n:].float()) for lg, _ in both), torch.zeros((), device=x.device))
    loss = loss / len(both)
    return loss, {"d": float(loss.item())}


def generator_step_loss(
    d: nn.Module | None, x: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, w: Any
) -> tuple[torch.Tensor, dict[str, float]]:
    """adv * adversarial + l1 * L1 + mse * MSE + ssim * (1 - SSIM) + grad * gradient L1 + fm * FM (``*_weight``).

    ``d`` is the unwrapped discriminator, or None when the adversarial and feature-matching weights are both 0
    (the ablation without a GAN). D's parameters are frozen during the call so that G's loss leaves no gradient
    in D's accumulating grads.
    """
    l1 = F.l1_loss(fake.float(), real)
    loss = w.l1_weight * l1
    logs = {"l1": float(l1.item())}
    if w.mse_weight:  # L1 fits the median; PSNR and the suppression ratio score the mean squared error
        mse = F.mse_loss(fake.float(), real)
        loss = loss + w.mse_weight * mse
        logs["mse"] = float(mse.item())
    if w.ssim_weight:  # the structure of the faint bone layer, which L1 and MSE reward little
        ss = ssim_loss(fake.float(), real)
        loss = loss + w.ssim_weight * ss
        logs["ssim_loss"] = float(ss.item())
    if w.grad_weight:
        g = gradient_l1(fake.float(), real)
        loss = loss + w.grad_weight * g
        logs["grad"] = float(g.item())
    if d is None:
        return loss, logs
    for p in d.parameters():
        p.requires_grad_(False)
    try:
        with torch.no_grad():  # real features from the same (just updated) D as the fake ones
            real_feats = [r[1] for r in split_outputs(d(x, real))]
        out_fake = split_outputs(d(x, fake))
    finally:
        for p in d.parameters():
            p.requires_grad_(True)
    adv = sum((g_adv_fn(w.adversarial, f[0].float()) for f in out_fake), torch.zeros((), device=x.device))
    adv = adv / len(out_fake)
    fm = torch.zeros((), device=x.device)
    n = 0
    for rf, (_, ff) in zip(real_feats, out_fake, strict=True):
        for a, b in zip(rf, ff, strict=True):
            fm = fm + F.l1_loss(b.float(), a.float())
            n += 1
    fm = fm / max(n, 1)
    loss = loss + w.adv_weight * adv + w.fm_weight * fm
    logs.update({"g_adv": float(adv.item()), "fm": float(fm.item())})
    return loss, logs


@torch.no_grad()
def validate_generator(g: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
    """Suppression ratio and soft-tissue PSNR (and the identity's) on full validation images."""
    from cxrassist.evaluation.metrics import bone_suppression_ratio, psnr

    ratios, ps, base = [], [], []
    for batch in loader:
        pred = g(batch["image"].to(device)).float().clamp(0, 1).cpu().numpy()
        x = batch["image01"].numpy()
        true = batch["bone"].numpy()
        for pb, tb, xx in zip(pred, true, x, strict=True):
            ratios.append(bone_suppression_ratio(pb[0], tb[0]))
            ps.append(psnr(np.clip(xx[0] - pb[0], 0, 1), xx[0] - tb[0]))
            base.append(psnr(xx[0], xx[0] - tb[0]))
    return {
        "bone_suppression_ratio": float(np.nanmean(ratios)),
        "psnr_suppressed": float(np.mean(ps)),
        "psnr_identity": float(np.mean(base)),
        "n_val": len(ratios),
    }
