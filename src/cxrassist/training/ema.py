"""Exponential moving average of a model's weights (as timm's ModelEmaV3 and MONAI's trainers keep one).

On small, noisy validation sets the epoch-to-epoch score of the raw weights swings by several points; the average
of the last few hundred steps is smoother and usually better, so when ``run.ema_decay`` is set the trainer
validates, keeps and exports the averaged copy instead of the raw weights.

The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the average is not dominated by
the random initial weights in short runs. Buffers (BatchNorm running statistics) are averaged too.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from cxrassist.errors import ConfigError


class WeightEma:
    """A frozen copy of ``model`` that follows its weights with an exponential moving average."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"run.ema_decay must be between 0 and 1 (e.g. 0.995), got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average toward ``model`` (call after each optimizer step)."""
        d = self.current_decay()
        ema_state = self.model.state_dict()
        for name, value in model.state_dict().items():
            target = ema_state[name]
            if target.dtype.is_floating_point:
                target.lerp_(value.detach().to(target.device), 1.0 - d)
            else:  # e.g. BatchNorm's num_batches_tracked
                target.copy_(value)
        self.updates += 1
