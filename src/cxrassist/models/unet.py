"""Lung segmentation: U-Net with a VGG16 encoder (torchvision's ``vgg16().features`` cut at its max-pool layers).

The encoder is built by torchvision's own ``make_layers`` from the VGG16 configuration with every width multiplied by
``width`` (1.0 = the real VGG16, ImageNet-initialisable; 0.125 = the compact CPU variant). Its module indices are
torchvision's, so a ``vgg16`` (or ``vgg16_bn`` with ``batch_norm=True``) state dict loads by key
(:func:`init_vgg16_encoder_from_imagenet`; ``conv1`` RGB -> gray by summing the filters).

Stages (skips) at 1, 1/2, 1/4, 1/8, 1/16 of the input; the 5th pool gives a 1/32 centre, so H and W must be
divisible by 32. The decoder (smp-style): upsample x2, concatenate the skip, two 3x3 conv-BN-ReLU; widths
(256, 128, 64, 32, 16) x ``width``. Output: lung logits [B, 1, H, W] (sigmoid > 0.5 = lung).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cxrassist.models.fold import FoldableModule, fold_conv_batchnorm

logger = logging.getLogger(__name__)

VGG16_CFG: list[Any] = torchvision.models.vgg.cfgs["D"]


def _scaled(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(cin + cskip, cout)
        self.conv2 = ConvBNReLU(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        return self.conv2(self.conv1(torch.cat([x, skip], 1)))


class VGG16UNet(FoldableModule):
    """U-Net, VGG16 encoder. ``forward(x [B, in_chans, H, W] normalized) -> logits [B, 1, H, W]``."""

    def __init__(
        self,
        in_chans: int = 1,
        num_classes: int = 1,
        *,
        width: float = 1.0,
        batch_norm: bool = False,
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
    ) -> None:
        super().__init__()
        self.in_chans, self.num_classes, self.width, self.batch_norm = in_chans, num_classes, width, batch_norm
        cfg = [v if v == "M" else _scaled(v, width) for v in VGG16_CFG]
        self.encoder = torchvision.models.vgg.make_layers(cfg, batch_norm=batch_norm)
        first = self.encoder[0]
        self.encoder[0] = nn.Conv2d(in_chans, first.out_channels, 3, padding=1)
        pools = [i for i, m in enumerate(self.encoder) if isinstance(m, nn.MaxPool2d)]
        # stage s = encoder[start:pool_s] (before the pool), the skip at 1/2**s
        self.stage_bounds = [(0 if s == 0 else pools[s - 1], pools[s]) for s in range(5)]
        skip_ch = [_scaled(c, width) for c in (64, 128, 256, 512, 512)]
        dec_ch = [_scaled(c, width) for c in decoder_channels]
        self.center = nn.Sequential(ConvBNReLU(skip_ch[-1], skip_ch[-1]), ConvBNReLU(skip_ch[-1], skip_ch[-1]))
        blocks, cin = [], skip_ch[-1]
        for skip, cout in zip(reversed(skip_ch), dec_ch, strict=False):
            blocks.append(DecoderBlock(cin, skip, cout))
            cin = cout
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, num_classes, 3, padding=1)

    def fold_for_inference(self) -> VGG16UNet:
        """Make this U-Net an inference-only one with the same outputs up to float rounding (idempotent): each batch
        norm folds into the convolution before it and the layers use channels-last memory (on RG1's lung step, 2
        cores: the forward ~65 -> ~45 ms). ``train()`` then refuses: build the model again to train."""
        if self.folded:
            return self
        self.eval()
        fold_conv_batchnorm(self)
        self.to(memory_format=torch.channels_last)
        self.folded = True
        return self

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        skips = []
        for start, stop in self.stage_bounds:
            for i in range(start, stop):
                x = self.encoder[i](x)
            skips.append(x)
        x = self.encoder[self.stage_bounds[-1][1]](x)  # 5th max-pool -> 1/32
        return skips, x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"input height and width must be divisible by 32, got {h}x{w}")
        if self.folded:
            x = x.contiguous(memory_format=torch.channels_last)
        skips, x = self.encode(x)
        x = self.center(x)
        for block, skip in zip(self.decoder, reversed(skips), strict=True):
            x = block(x, skip)
        return self.head(x)


def init_vgg16_encoder_from_imagenet(model: VGG16UNet, weights: str | Path | dict[str, torch.Tensor]) -> dict[str, Any]:
    """Load a torchvision ``vgg16`` (``vgg16_bn`` when ``batch_norm``) state dict into the encoder.

    Accepts a path (``.safetensors``, or ``.pt/.pth`` read with ``weights_only=True``) or a state dict. Only
    ``features.*`` keys are used; the first conv's RGB filters are summed to the model's ``in_chans`` (a gray image
    replicated as RGB gives the same response). Requires ``width == 1.0``. Returns a small report.
    """
    from cxrassist.models.transfer import adapt_input_conv, read_state_dict

    if model.width != 1.0:
        raise ValueError(f"ImageNet VGG16 weights need width=1.0, the model has width={model.width}")
    state = read_state_dict(weights) if not isinstance(weights, dict) else weights
    enc = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    if not enc:
        raise ValueError("no 'features.*' keys: not a torchvision VGG16 state dict")
    own = model.encoder.state_dict()
    first = "0.weight"
    if first in enc and enc[first].shape[1] != model.in_chans:
        enc[first] = adapt_input_conv(enc[first], model.in_chans)
    bad = [k for k in own if k not in enc or enc[k].shape != own[k].shape]
    if bad:
        raise ValueError(f"VGG16 state dict does not fit the encoder (batch_norm={model.batch_norm}): {bad[:3]}")
    model.encoder.load_state_dict({k: enc[k] for k in own})
    logger.info(
        "VGG16 encoder initialised from ImageNet weights (%d tensors; conv1 adapted to %d channel(s))",
        len(own),
        model.in_chans,
    )
    return {"loaded": len(own), "ignored": sorted(k for k in state if not k.startswith("features."))}
