"""Dual-branch (frontal + lateral) DenseNet-121 classifier.

Layout: each view has its own branch = stride-4 stem + DenseNet-121 ``conv0 .. denseblock{branch_blocks}`` (default
2). The two branch maps are concatenated, fused by a 1x1 convolution back to the width ``transition{k}`` expects, and
run through the remaining blocks (``transition2, denseblock3, transition3, denseblock4, norm5``) to one head.

Why the branches end after dense block 2: block 1 (32x32 at 512 input, 256 ch) is too shallow for a class-specific
map (edges and texture: Grad-CAM there is noisy and class-agnostic); ending after block 3 would leave only block 4
(4x4) shared, too little to combine the views, and would duplicate the most expensive block (24 layers). After
block 2 each branch gives a 16x16 map (32-px cells) with 512 channels: the per-view Grad-CAM of
:mod:`cxrassist.explain.cam` is taken there, so the viewer shows where the net looked on each view.

Missing lateral view: a *learned* stand-in, one vector per channel (``lateral_standin``, broadcast over space,
initialised to zero so it starts as the zero stand-in). Why not fixed zeros: a zero map is an input the fusion layer
also meets with real laterals (dark, empty regions), so "no lateral" and "a lateral with nothing in it" would look the
same; the learned vector, trained with ``lateral_dropout`` (studies randomly stripped of their lateral during
training) becomes the network's own "no lateral" token and lets the fusion fall back on the frontal view. Per-study
presence inside a batch is given by ``lateral_present`` (bool [B]).

The lateral branch takes ``lateral_in_chans`` channels (default 1, the radiograph only): the lung and bone models are
trained on frontal views, so lateral derived channels would be out of their domain.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cxrassist.models.densenet import ClassifierStem, block_out_channels, densenet_features, run_features


class Branch(nn.Module):
    """One view's branch: ``stem`` + ``features`` (torchvision names ``conv0 .. denseblock{k}``)."""

    def __init__(self, in_chans: int, stem_channels: int, features: nn.Sequential) -> None:
        super().__init__()
        self.stem = ClassifierStem(in_chans, stem_channels)
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.stem(x))


def _slice(features: nn.Sequential, names: Sequence[str]) -> nn.Sequential:
    mods = dict(features.named_children())
    return nn.Sequential(OrderedDict((n, mods[n]) for n in names))


class DualBranchClassifier(nn.Module):
    """Frontal + optional lateral classifier. ``forward(frontal, lateral=None, lateral_present=None) -> [B, K]``."""

    def __init__(
        self,
        in_chans: int = 1,
        num_classes: int = 13,
        *,
        lateral_in_chans: int = 1,
        branch_blocks: int = 2,
        lateral_dropout: float = 0.0,
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
        if not 1 <= branch_blocks <= len(block_config) - 1:
            raise ValueError(f"branch_blocks must be 1..{len(block_config) - 1}, got {branch_blocks}")
        self.in_chans, self.lateral_in_chans, self.num_classes = in_chans, lateral_in_chans, num_classes
        self.block_config, self.branch_blocks = tuple(block_config), branch_blocks
        self.lateral_dropout = lateral_dropout
        args = (growth_rate, block_config, num_init_features, bn_size, drop_rate, memory_efficient, stem_channels)
        names = [n for n, _ in densenet_features(*args).named_children()]
        cut = names.index(f"denseblock{branch_blocks}") + 1
        self.branch_names, self.trunk_names = names[:cut], names[cut:]
        self.frontal = Branch(in_chans, stem_channels, _slice(densenet_features(*args), self.branch_names))
        self.lateral = Branch(lateral_in_chans, stem_channels, _slice(densenet_features(*args), self.branch_names))
        self.branch_channels = block_out_channels(growth_rate, block_config, num_init_features)[branch_blocks - 1]
        c = self.branch_channels
        self.fuse = nn.Conv2d(2 * c, c, 1, bias=False)
        with torch.no_grad():  # start as "frontal + lateral" so a pretrained trunk sees familiar statistics
            self.fuse.weight.zero_()
            eye = torch.eye(c)[:, :, None, None]
            self.fuse.weight[:, :c] = eye
            self.fuse.weight[:, c:] = eye
        self.lateral_standin = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.features = _slice(densenet_features(*args), self.trunk_names)
        self.num_features = block_out_channels(growth_rate, block_config, num_init_features)[-1]
        self.head_drop = nn.Dropout(head_drop)
        self.classifier = nn.Linear(self.num_features, num_classes)
        nn.init.zeros_(self.classifier.bias)

    @property
    def branch_reduction(self) -> int:
        """Input pixels per cell of each branch's output map."""
        return 4 * 2 ** (self.branch_blocks + 1)

    def forward_branches(
        self, frontal: torch.Tensor, lateral: torch.Tensor | None = None, lateral_present: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both branch maps; where the lateral is missing its map is the learned stand-in."""
        if frontal.shape[1] != self.in_chans:
            raise ValueError(f"frontal input has {frontal.shape[1]} channels, model expects {self.in_chans}")
        f = self.frontal(frontal)
        b = f.shape[0]
        standin = self.lateral_standin.expand(b, -1, f.shape[2], f.shape[3])
        if lateral is None:
            return f, standin
        if lateral.shape[1] != self.lateral_in_chans:
            raise ValueError(f"lateral input has {lateral.shape[1]} channels, model expects {self.lateral_in_chans}")
        if lateral.shape[0] != b or lateral.shape[2:] != frontal.shape[2:]:
            raise ValueError(f"lateral shape {tuple(lateral.shape)} does not match frontal {tuple(frontal.shape)}")
        lat = self.lateral(lateral)
        present = (
            torch.ones(b, dtype=torch.bool, device=f.device)
            if lateral_present is None
            else (lateral_present.to(device=f.device, dtype=torch.bool))
        )
        if self.training and self.lateral_dropout > 0:
            present = present & (torch.rand(b, device=f.device) >= self.lateral_dropout)
        return f, torch.where(present[:, None, None, None], lat, standin)

    def forward_trunk(
        self, frontal_map: torch.Tensor, lateral_map: torch.Tensor, dense_levels: int = 0
    ) -> torch.Tensor:
        """Fuse the branch maps and run the shared blocks; returns the final (ReLU'd) feature map."""
        x = self.fuse(torch.cat([frontal_map, lateral_map], 1))
        x = run_features(self.features, x, num_blocks=len(self.block_config), dense_levels=dense_levels)
        return F.relu(x)

    def forward_features(
        self, frontal: torch.Tensor, lateral: torch.Tensor | None = None, lateral_present: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.forward_trunk(*self.forward_branches(frontal, lateral, lateral_present))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        pooled = torch.flatten(F.adaptive_avg_pool2d(features, 1), 1)
        return self.classifier(self.head_drop(pooled))

    def forward(
        self, frontal: torch.Tensor, lateral: torch.Tensor | None = None, lateral_present: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.forward_head(self.forward_features(frontal, lateral, lateral_present))
