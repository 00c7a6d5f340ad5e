"""Pathology classifier and triage model: torchvision DenseNet-121 behind a stride-4 stem (512 in, body at 128).

Why a stem in front of the whole DenseNet-121 (including its own 7x7 stem): the findings need a 512 input (small
pneumothoraces, lines, nodules), but DenseNet-121 at 512 costs ~23 GFLOPs. A stride-2 3x3 convolution and a
stride-2 max-pool bring 512 to 128 for ~0.03 GFLOPs, so the whole net costs ~1.85 GFLOPs (FlopCounterMode).

The stem's output has ``stem_channels`` = 3 channels, no ReLU (signed, image-like), and is initialised as a 3x3 box
blur copying input channel ``o % in_chans`` to output ``o``: at initialisation the body sees what an ImageNet or
CheXNet DenseNet sees (the gray image or the three derived channels as "RGB"), so imported DenseNet-121 weights
(`cxrassist.models.transfer`) are useful from step 0 without adapting ``conv0``.

CAM resolution. The last feature map at 512 input is 4x4 (128-px cells). Removing the last transition's pooling
for good would give 8x8 but cost 2.06 GFLOPs (over budget). Instead :meth:`forward_features_dense` re-runs the last
``levels`` transitions *without* pooling and the dense blocks after them with dilated 3x3 convolutions (the "a trous"
trick): it evaluates the very same network at every pooling phase, so its map at stride 2**levels equals the normal
feature map exactly (tested) and the extra cells are the same classifier shifted by a fraction of a cell. Prediction
costs 1.85 GFLOPs; one pass giving logits + an 8x8 CAM costs 2.06, 16x16 (the CAM default) 4.15, 32x32 14.1
(benchmarks/bench_models.py prints the table with the localisation each gives on synthetic blobs).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, cast, overload

import torch
import torch.nn.functional as F
import torchvision
from torch import nn


class ClassifierStem(nn.Sequential):
    """Stride-4 stem: conv 3x3 s2 -> BN -> max-pool 3x3 s2 (512 -> 128)."""

    def __init__(self, in_chans: int, out_chans: int = 3) -> None:
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(in_chans, out_chans, 3, stride=2, padding=1, bias=False),
                norm=nn.BatchNorm2d(out_chans),
                pool=nn.MaxPool2d(3, stride=2, padding=1),
            )
        )
        with torch.no_grad():  # blur-copy init (see module docstring)
            w = torch.zeros(out_chans, in_chans, 3, 3)
            for o in range(out_chans):
                w[o, o % in_chans] = 1.0 / 9.0
            cast(nn.Conv2d, self.conv).weight.copy_(w)


def densenet_features(
    growth_rate: int,
    block_config: Sequence[int],
    num_init_features: int,
    bn_size: int,
    drop_rate: float,
    memory_efficient: bool,
    in_chans: int,
) -> nn.Sequential:
    """torchvision's DenseNet ``features`` (same module names, so torchvision/CheXNet state dicts map 1:1)."""
    net = torchvision.models.DenseNet(
        growth_rate=growth_rate,
        block_config=tuple(block_config),
        num_init_features=num_init_features,
        bn_size=bn_size,
        drop_rate=drop_rate,
        num_classes=1,
        memory_efficient=memory_efficient,
    )
    features = net.features
    if in_chans != 3:
        features.conv0 = nn.Conv2d(in_chans, num_init_features, 7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(features.conv0.weight)
    return features


def block_out_channels(growth_rate: int, block_config: Sequence[int], num_init_features: int) -> list[int]:
    """Channels at the output of each dense block (before its transition halves them)."""
    out, c = [], num_init_features
    for i, n in enumerate(block_config):
        c += n * growth_rate
        out.append(c)
        if i != len(block_config) - 1:
            c //= 2
    return out


def dense_avgpool(x: torch.Tensor, d: int) -> torch.Tensor:
    """2x2 average pooling evaluated at every position (stride 1) with taps ``d`` apart; zero-padded bottom/right."""
    h, w = x.shape[-2:]
    p = F.pad(x, (0, d, 0, d))
    return (p[..., :h, :w] + p[..., d : h + d, :w] + p[..., :h, d : w + d] + p[..., d : h + d, d : w + d]) / 4.0


def run_dense_block_dilated(block: nn.Module, x: torch.Tensor, d: int) -> torch.Tensor:
    """A torchvision ``_DenseBlock`` with its 3x3 convolutions dilated by ``d`` (eval-mode semantics)."""
    feats = [x]
    layer: Any  # a torchvision _DenseLayer
    for layer in cast(nn.ModuleDict, block).values():
        bottleneck = layer.conv1(layer.relu1(layer.norm1(torch.cat(feats, 1))))
        conv2 = layer.conv2
        new = F.conv2d(layer.relu2(layer.norm2(bottleneck)), conv2.weight, conv2.bias, 1, d * conv2.padding[0], d)
        feats.append(new)
    return torch.cat(feats, 1)


def run_features(
    features: nn.Sequential,
    x: torch.Tensor,
    *,
    num_blocks: int,
    dense_levels: int = 0,
    start: str | None = None,
    stop: str | None = None,
) -> torch.Tensor:
    """Run (a slice of) a DenseNet ``features`` sequence, optionally densifying the last ``dense_levels`` transitions.

    ``start``/``stop`` are child names (inclusive) so the dual-branch model can run its trunk with the same code.
    """
    if not 0 <= dense_levels <= num_blocks - 1:
        raise ValueError(f"dense_levels must be 0..{num_blocks - 1}, got {dense_levels}")
    first_dense = num_blocks - dense_levels  # transitions with index >= this lose their pooling
    d, running = 1, start is None
    module: Any  # torchvision dense blocks and transitions
    for name, module in features.named_children():
        if name == start:
            running = True
        if not running:
            continue
        if name.startswith("transition") and int(name[len("transition") :]) >= first_dense:
            x = dense_avgpool(module.conv(module.relu(module.norm(x))), d)
            d *= 2
        elif name.startswith("denseblock") and d > 1:
            x = run_dense_block_dilated(module, x, d)
        else:
            x = module(x)
        if name == stop:
            break
    return x


class DenseNetClassifier(nn.Module):
    """DenseNet-121 (torchvision) classifier at 512 input: ``stem`` -> ``features`` -> ReLU -> GAP -> ``classifier``.

    ``num_classes=13`` for the findings, ``1`` for triage. Tiny test configurations shrink it with
    ``growth_rate=4, block_config=(1, 1, 1, 1), num_init_features=8`` (inputs of 128 px give a 1x1 map).
    """

    def __init__(
        self,
        in_chans: int = 1,
        num_classes: int = 13,
        *,
        stem_channels: int = 3,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        head_drop: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        self.in_chans, self.num_classes = in_chans, num_classes
        self.block_config = tuple(block_config)
        self.stem = ClassifierStem(in_chans, stem_channels)
        self.features = densenet_features(
            growth_rate, block_config, num_init_features, bn_size, drop_rate, memory_efficient, stem_channels
        )
        self.num_features = block_out_channels(growth_rate, block_config, num_init_features)[-1]
        self.head_drop = nn.Dropout(head_drop)
        self.classifier = nn.Linear(self.num_features, num_classes)
        nn.init.zeros_(self.classifier.bias)

    #: Where the final map's cell 0 is centred relative to an aligned grid, in input pixels: the stride-2 layers with
    #: odd kernels (stem conv, stem pool, conv0, pool0) each shift by half an input cell: -(0.5 + 1 + 2 + 4).
    feature_offset_px = -7.5

    @property
    def reduction(self) -> int:
        """Input pixels per cell of the final feature map (4 for the stem x 2**(blocks+1) for the body)."""
        return 4 * 2 ** (len(self.block_config) + 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(self.stem(x)))

    def forward_features_dense(self, x: torch.Tensor, levels: int = 1) -> torch.Tensor:
        """Final feature map at ``2**levels`` times the resolution (same weights; see module docstring)."""
        x = run_features(self.features, self.stem(x), num_blocks=len(self.block_config), dense_levels=levels)
        return F.relu(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        pooled = torch.flatten(F.adaptive_avg_pool2d(features, 1), 1)
        return self.classifier(self.head_drop(pooled))

    @overload
    def forward(self, x: torch.Tensor) -> torch.Tensor: ...
    @overload
    def forward(self, x: torch.Tensor, dense_levels: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def forward(
        self, x: torch.Tensor, dense_levels: int | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits; with ``dense_levels``, (logits, dense final feature map) from one pass.

        The second form is what class activation maps are made of (``explain.cam.cam_forward``). It goes through
        ``forward`` because DistributedDataParallel synchronises gradients only of what ``forward`` computed, and
        training puts a loss on those maps (``training.lung_prior``).
        """
        if dense_levels is None:
            return self.forward_head(self.forward_features(x))
        if dense_levels == 0:
            feats = self.forward_features(x)
            return self.forward_head(feats), feats
        feats = self.forward_features_dense(x, dense_levels)
        step = 2**dense_levels
        return self.forward_head(feats[..., ::step, ::step]), feats
