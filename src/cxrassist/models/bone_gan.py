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
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from cxrassist.models.fold import FoldableModule, fold_conv_batchnorm, fold_parametrizations
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
        self.folded = False  # set by fold_for_inference: gamma and the 1/sqrt(c') scale live in the weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # [B, HW, c']
        kv_in = F.max_pool2d(x, 2) if self.pool and h >= 2 and w >= 2 else x
        k = self.key(kv_in).flatten(2).transpose(1, 2)
        v = self.value(kv_in).flatten(2).transpose(1, 2)
        if self.folded:
            return x + self.out(_softmax_attention(q, k, v).transpose(1, 2).reshape(b, -1, h, w))
        att = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # [B, HW, c/2]
        att = att.transpose(1, 2).reshape(b, -1, h, w)
        return x + self.gamma * self.out(att)

    @torch.no_grad()
    def fold_for_inference(self) -> None:
        """Fold ``gamma`` into the output projection and the attention scale into the query (plain convolutions:
        run :func:`~cxrassist.models.fold.fold_parametrizations` first); forward then takes the in-place path."""
        if self.folded:
            return
        query, out = self.query, self.out
        if not isinstance(query, nn.Conv2d) or not isinstance(out, nn.Conv2d) or _parametrized(query, out):
            raise TypeError("fold the spectral-norm parametrisations before the attention block")
        query.weight.mul_(query.weight.shape[0] ** -0.5)  # SDPA's default scale, 1/sqrt(c')
        out.weight.mul_(self.gamma)
        self.folded = True


def _parametrized(*modules: nn.Module) -> bool:
    return any(parametrize.is_parametrized(m) for m in modules)


def _softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``softmax(q k^T) v`` for inference (no autograd), ``chunk`` queries at a time so the scores stay in cache:
    exponentiated in place and normalised after the product with ``v`` (c/2 divisions per query instead of HW/4).
    The same as SDPA's math up to float rounding in about half its time on a CPU, where SDPA's fused kernel does
    not take values wider than the keys."""
    kt = k.transpose(1, 2)
    out = q.new_empty(q.shape[0], q.shape[1], v.shape[2])
    for i in range(0, q.shape[1], chunk):
        s = torch.bmm(q[:, i : i + chunk], kt)  # [B, chunk, HW'] (the scale is already in q)
        s.sub_(s.amax(-1, keepdim=True)).exp_()
        torch.bmm(s, v, out=out[:, i : i + chunk])
        out[:, i : i + chunk].div_(s.sum(-1, keepdim=True))
    return out


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
        self.transposed = False  # set by fold_for_inference: self.up[0] is then the equivalent transposed conv

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.transposed and skip.shape[-2:] == (2 * x.shape[-2], 2 * x.shape[-1]):
            x = self.up(x)
        else:
            x = self.up(F.interpolate(x, size=skip.shape[-2:], mode="nearest"))
        return self.merge(torch.cat([x, skip], 1))

    @torch.no_grad()
    def fold_for_inference(self) -> None:
        """Nearest x2 upsampling then a 3x3 convolution (padding 1) is exactly a 4x4 transposed convolution of
        stride 2 (padding 1) whose taps are sums of the 3x3 ones: 16 instead of 36 multiply-adds per input pixel
        and channel pair, and no upsampled copy. Needs a plain convolution (parametrisations folded first)."""
        conv = self.up[0]
        if self.transposed:
            return
        if (
            not isinstance(conv, nn.Conv2d)
            or _parametrized(conv)
            or (conv.kernel_size, conv.padding) != ((3, 3), (1, 1))
        ):
            raise TypeError("fold the spectral-norm parametrisations before the upsampling convolution")
        w = conv.weight  # [out, in, 3, 3]
        # tap k of the transposed kernel (output row 2i - 1 + k) gathers these rows of the 3x3 kernel
        taps = torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=w.dtype, device=w.device)
        deconv = nn.ConvTranspose2d(
            conv.in_channels, conv.out_channels, 4, 2, 1, bias=conv.bias is not None, device=w.device, dtype=w.dtype
        )
        deconv.weight.copy_(torch.einsum("ka,oiab,lb->iokl", taps, w, taps))
        if conv.bias is not None and deconv.bias is not None:
            deconv.bias.copy_(conv.bias)
        self.up[0] = deconv.train(conv.training)
        self.transposed = True


class BoneGenerator(FoldableModule):
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

    def fold_for_inference(self) -> BoneGenerator:
        """Make this generator an inference-only one with the same outputs up to float rounding (idempotent).

        Spectral norm and batch norm are folded into plain convolution weights (:mod:`cxrassist.models.fold`),
        each upsample + convolution becomes one transposed convolution, the attention block folds its gamma and
        scale into its weights, and the layers use channels-last memory, which the CPU convolutions run faster on.
        The state dict then no longer matches the card, and ``train()`` refuses: build the model again to train.
        """
        if self.folded:
            return self
        self.eval()
        fold_parametrizations(self)
        fold_conv_batchnorm(self)
        for up in self.up:
            cast(_Up, up).fold_for_inference()
        if isinstance(self.attention, SelfAttention):
            self.attention.fold_for_inference()
        self.to(memory_format=torch.channels_last)
        self.folded = True
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = 2**self.depth
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(f"input height and width must be divisible by {m}, got {tuple(x.shape[-2:])}")
        if self.folded:
            x = x.contiguous(memory_format=torch.channels_last)
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
