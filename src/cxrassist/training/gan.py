"""Bone-image GAN training: conditional multi-scale discriminator, hinge or LSGAN loss, L1 and feature matching.

Target: the bone image = radiograph01 - bone_suppressed01 of the BSE-JSRT pairs (clipped to [0, 1], see
:func:`cxrassist.data.dataset.bone_target`). The generator predicts it from the normalized radiograph; the
discriminator sees (normalized radiograph, bone image in [0, 1]) concatenated on channels, real or generated.
Generator loss = adv_weight * adversarial + l1_weight * L1 + fm_weight * feature matching (pix2pixHD); D and G have
separate learning rates (TTUR: ``optim.lr_d`` > ``optim.lr``). Training on random crops is fine: G is fully
convolutional, and validation runs on the full image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxrassist.training.checkpoint import unwrap
from cxrassist.training.tasks import Task


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


class BoneTask(Task):
    name = "bone"
    monitor = "bone_suppression_ratio"
    phases = ("d", "g")

    def build(self) -> dict[str, nn.Module]:
        from cxrassist.models import create_discriminator, create_model

        m = self.cfg.model
        g = create_model(m.name, **dict(m.kwargs))
        d = create_discriminator(m.discriminator or m.name, **dict(m.discriminator_kwargs))
        return {"model": g, "disc": d}

    def optim_groups(self, modules):  # noqa: ANN001
        o = self.cfg.optim
        return {
            "d": (list(modules["disc"].parameters()), o.lr_d, o.betas_gan),
            "g": (list(modules["model"].parameters()), o.lr, o.betas_gan),
        }

    def loss(self, phase, batch, modules, state):  # noqa: ANN001
        g, d = modules["model"], modules["disc"]
        x, real = batch["image"], batch["bone"]
        kind = self.cfg.loss.adversarial
        if phase == "d":
            fake = g(x)
            state["fake"] = fake
            # One D forward on [real; fake]: a DDP-wrapped module must see one forward per backward.
            both = split_outputs(d(torch.cat([x, x], 0), torch.cat([real, fake.detach()], 0)))
            n = x.shape[0]
            out_real = [(lg[:n], []) for lg, _ in both]
            out_fake = [(lg[n:], []) for lg, _ in both]
            loss = sum(d_loss_fn(kind, r[0].float(), f[0].float()) for r, f in zip(out_real, out_fake, strict=True))
            loss = loss / len(out_real)
            return loss, {"d": loss.item()}
        fake = state.pop("fake")
        d = unwrap(d)  # G's step must not run D's DDP gradient sync (D gets no gradient from it)
        for p in d.parameters():  # G's loss must not leave gradients in D's (accumulating) grads
            p.requires_grad_(False)
        try:
            with torch.no_grad():  # real features from the same (just updated) D as the fake ones
                real_feats = [r[1] for r in split_outputs(d(x, real))]
            out_fake = split_outputs(d(x, fake))
        finally:
            for p in d.parameters():
                p.requires_grad_(True)
        adv = sum(g_adv_fn(kind, f[0].float()) for f in out_fake) / len(out_fake)
        l1 = F.l1_loss(fake.float(), real)
        fm = torch.zeros((), device=x.device)
        n = 0
        for rf, (_, ff) in zip(real_feats, out_fake, strict=True):
            for a, b in zip(rf, ff, strict=True):
                fm = fm + F.l1_loss(b.float(), a.float())
                n += 1
        fm = fm / max(n, 1)
        w = self.cfg.loss
        loss = w.adv_weight * adv + w.l1_weight * l1 + w.fm_weight * fm
        return loss, {"g_adv": adv.item(), "l1": l1.item(), "fm": fm.item()}

    @torch.no_grad()
    def validate(self, modules, loader, device):  # noqa: ANN001
        from cxrassist.evaluation.metrics import bone_suppression_ratio, psnr

        g = modules["model"]
        ratios, ps, base = [], [], []
        for batch in loader:
            pred = g(batch["image"].to(device)).float().clamp(0, 1).cpu().numpy()
            x = batch["image01"].numpy()
            true = batch["bone"].numpy()
            for pb, tb, xx in zip(pred, true, x, strict=True):
                ratios.append(bone_suppression_ratio(pb[0], tb[0]))
                ps.append(psnr(np.clip(xx[0] - pb[0], 0, 1), xx[0] - tb[0]))
                base.append(psnr(xx[0], xx[0] - tb[0]))
        return {"bone_suppression_ratio": float(np.nanmean(ratios)), "psnr_suppressed": float(np.mean(ps)),
                "psnr_identity": float(np.mean(base)), "n_val": len(ratios)}
