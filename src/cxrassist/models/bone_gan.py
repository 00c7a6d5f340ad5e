"""Bone subtraction: a conditional GAN whose generator predicts the *bone image* from the radiograph.

Intensity domain (the contract of :func:`suppress_bones`): everything lives in the [0, 1] domain of
``XRay.pixels`` at model size (1 = bone white). With ``soft01`` the bone-suppressed (soft tissue) image of the same
radiograph, ``bone = radiograph01 - soft01`` (>= 0: bone only adds attenuation), so the generator's output is in
[0, 1] (sigmoid) and ``bone-suppressed = clip(radiograph01 - bone, 0, 1)``. The generator *input* is the normalized
radiograph (``preprocess.normalize``), like every network.

Generator: U-Net-like encoder-decoder, spectral normalisation on every convolution (stabilises G as in SAGAN/BigGAN),
batch norm, a SAGAN self-attention block at 1/8 resolution (64x64 at 512 input, 32x32 on 256 training crops: long-range
rib/clavicle continuity at affordable memory; keys/values max-pooled x2 as in BigGAN). Fully convolutional: any H, W
divisible by 2**depth (16).

Discriminator: conditional (radiograph ++ bone image), multi-scale (pix2pixHD: ``num_scales`` PatchGANs on x1, x1/2,
x1/4 inputs), spectral norm, self-attention after the second layer. Each scale returns its patch logits AND its
intermediate features (for the feature-matching loss). Generator and discriminator are separate modules, so training
can give them separate optimisers / learning rates (TTUR); :class:`BoneGAN` bundles them with ``*_parameters()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from cxrassist.models.registry import create_discriminator, create_model


def suppress_bones(radiograph01: torch.Tensor, bone: torch.Tensor) -> torch.Tensor:
    """Bone-suppressed (soft tissue) image: ``clip(radiograph01 - bone, 0, 1)``; both in the [0, 1] domain."""
    return (radiograph01 - bone).clamp(0.0, 1.0)


def sn_conv(cin: int, cout: int, k: int, stride: int = 1, padding: int | None = None, bias: bool = True) -> nn.Module:
    return spectral_norm(plain_conv(cin, cout, k, stride, padding, bias))


def plain_conv(
    cin: int, cout: int, k: int, stride: int = 1, padding: int | None = None, bias: bool = True
) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, k // 2 if padding is None else padding, bias=bias)


class SelfAttention(nn.Module):
    """SAGAN self-attention: ``x + gamma * attention(x)``, gamma starts at 0 (the block starts as identity)."""

    def __init__(self, channels: int, pool: bool = True, conv: Callable[..., nn.Module] = sn_conv) -> None:
        super().__init__()
        inner = max(1, channels // 8)
        self.query = conv(channels, inner, 1, bias=False)
        self.key = conv(channels, inner, 1, bias=False)
        self.value = conv(channels, max(1, channels // 2), 1, bias=False)
        self.out = conv(max(1, channels // 2), channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # [B, HW, c']
        kv_in = F.max_pool2d(x, 2) if self.pool and h >= 2 and w >= 2 else x
        k = self.key(kv_in).flatten(2).transpose(1, 2)
        v = self.value(kv_in).flatten(2).transpose(1, 2)
        att = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # [B, HW, c/2]
        att = att.transpose(1, 2).reshape(b, -1, h, w)
        return x + self.gamma * self.out(att)


class _Down(nn.Sequential):
    def __init__(self, cin: int, cout: int, conv: Callable[..., nn.Module] = sn_conv) -> None:
        super().__init__(
            conv(cin, cout, 4, 2, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(0.2, True),
            conv(cout, cout, 3, bias=False),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(0.2, True),
        )


class _Up(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int, conv: Callable[..., nn.Module] = sn_conv) -> None:
        super().__init__()
        self.up = nn.Sequential(conv(cin, cout, 3, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))
        self.merge = nn.Sequential(conv(cout + cskip, cout, 3, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(F.interpolate(x, size=skip.shape[-2:], mode="nearest"))
        return self.merge(torch.cat([x, skip], 1))


class BoneGenerator(nn.Module):
    """``forward(x [B, in_chans, H, W] normalized) -> bone image [B, 1, H, W]``, in [0, 1] in eval mode.

    ``output`` chooses the head. ``"sigmoid"`` (cards 1.0.x): ``sigmoid(conv)`` started at sigmoid(-6), so every
    gradient to a faint rib is scaled by the sigmoid's slope there (~0.003). ``"residual"``: the bone layer as a
    linear residual of the radiograph, ``output_scale * conv`` started at 0 (= no suppression, the identity), with
    a gradient of the same size for faint and strong bone; clipped to [0, 1] in eval mode only, so training sees
    the error on both sides of 0. ``attention`` and ``spectral`` switch the self-attention block and spectral norm
    (for the ablation in the card; both on by default).
    """

    def __init__(
        self,
        in_chans: int = 1,
        out_chans: int = 1,
        *,
        base_channels: int = 64,
        depth: int = 4,
        max_channels: int = 512,
        attention_level: int = 3,
        output: str = "sigmoid",
        output_scale: float = 0.1,
        attention: bool = True,
        spectral: bool = True,
    ) -> None:
        super().__init__()
        if not 1 <= attention_level <= depth:
            raise ValueError(f"attention_level must be 1..{depth}, got {attention_level}")
        if output not in ("sigmoid", "residual"):
            raise ValueError(f"output must be 'sigmoid' or 'residual', got {output!r}")
        self.in_chans, self.out_chans, self.depth, self.attention_level = in_chans, out_chans, depth, attention_level
        self.output, self.output_scale = output, float(output_scale)
        conv = sn_conv if spectral else plain_conv
        chans = [min(base_channels * 2**i, max_channels) for i in range(depth + 1)]
        self.inc = nn.Sequential(conv(in_chans, chans[0], 3), nn.LeakyReLU(0.2, True))
        self.down = nn.ModuleList(_Down(chans[i], chans[i + 1], conv) for i in range(depth))
        self.attention = SelfAttention(chans[attention_level], conv=conv) if attention else nn.Identity()
        self.middle = nn.Sequential(conv(chans[-1], chans[-1], 3, bias=False), nn.BatchNorm2d(chans[-1]), nn.ReLU(True))
        self.up = nn.ModuleList(_Up(chans[i + 1], chans[i], chans[i], conv) for i in reversed(range(depth)))
        self.outc = conv(chans[0], out_chans, 3)
        outc: Any = self.outc  # a Conv2d, maybe spectral-normed (parametrized): typed loosely for its attributes
        weight = outc.parametrizations.weight.original if spectral else outc.weight
        with torch.no_grad():
            weight.mul_(0.1)
            # sigmoid: start near the mean bone signal of BSE-JSRT (~0.003), sigmoid(-6) ~ 0.0025; residual: at 0
            outc.bias.fill_(-6.0 if output == "sigmoid" else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = 2**self.depth
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(f"input height and width must be divisible by {m}, got {tuple(x.shape[-2:])}")
        skips = [self.inc(x)]
        h = skips[0]
        for level, down in enumerate(self.down, start=1):
            h = down(h)
            if level == self.attention_level:
                h = self.attention(h)
            skips.append(h)
        h = self.middle(skips.pop())
        for up in self.up:
            h = up(h, skips.pop())
        out = self.outc(h)
        if self.output == "sigmoid":
            return torch.sigmoid(out)
        bone = out * self.output_scale
        return bone if self.training else bone.clamp(0.0, 1.0)


class DiscriminatorOutput(NamedTuple):
    logits: torch.Tensor  # [B, 1, h, w] patch logits
    features: list[torch.Tensor]  # intermediate activations (feature-matching loss)


class PatchDiscriminator(nn.Module):
    """70x70-style PatchGAN with spectral norm and self-attention after the second layer."""

    def __init__(self, in_chans: int, base_channels: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(sn_conv(in_chans, base_channels, 4, 2, 1), nn.LeakyReLU(0.2, True))]
        c = base_channels
        for i in range(1, n_layers + 1):
            cout = min(base_channels * 2**i, 8 * base_channels)
            stride = 2 if i < n_layers else 1
            block: list[nn.Module] = [sn_conv(c, cout, 4, stride, 1), nn.LeakyReLU(0.2, True)]
            if i == 1:
                block.append(SelfAttention(cout))
            layers.append(nn.Sequential(*block))
            c = cout
        self.layers = nn.ModuleList(layers)
        self.out = sn_conv(c, 1, 4, 1, 1)

    def forward(self, x: torch.Tensor) -> DiscriminatorOutput:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return DiscriminatorOutput(self.out(x), feats)


class MultiScaleDiscriminator(nn.Module):
    """``forward(radiograph normalized, bone01) -> [DiscriminatorOutput per scale]`` (full, 1/2, 1/4 ...)."""

    def __init__(
        self, in_chans: int = 1, out_chans: int = 1, *, base_channels: int = 64, num_scales: int = 3, n_layers: int = 3
    ) -> None:
        super().__init__()
        self.num_scales = num_scales
        self.scales = nn.ModuleList(
            PatchDiscriminator(in_chans + out_chans, base_channels, n_layers) for _ in range(num_scales)
        )

    def forward(self, radiograph: torch.Tensor, bone: torch.Tensor) -> list[DiscriminatorOutput]:
        x = torch.cat([radiograph, bone], 1)
        outs = []
        for i, disc in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outs.append(disc(x))
        return outs


class BoneGAN(nn.Module):
    """Generator + discriminator bundle with separate parameter groups (TTUR: different learning rates)."""

    def __init__(self, generator: BoneGenerator, discriminator: MultiScaleDiscriminator) -> None:
        super().__init__()
        self.generator, self.discriminator = generator, discriminator

    def generator_parameters(self):  # noqa: ANN201 - iterator of parameters
        return self.generator.parameters()

    def discriminator_parameters(self):  # noqa: ANN201
        return self.discriminator.parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator(x)


def create_bone_gan(name: str = "bone-gan", **kwargs) -> BoneGAN:  # noqa: ANN003
    """Generator (``create_model(name)``) and its discriminator (``create_discriminator(name)``), same kwargs."""
    shared = {k: kwargs[k] for k in ("in_chans", "base_channels") if k in kwargs}
    return BoneGAN(create_model(name, **kwargs), create_discriminator(name, **shared))
