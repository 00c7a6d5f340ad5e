"""Inference-only folding: the same function with fewer operations per forward, for models that will not train again.

At inference a spectral-norm parametrisation recomputes ``weight / sigma`` on every forward (sigma from the stored
power-iteration vectors; in eval mode they no longer change), and a batch norm after a convolution is a fixed
per-channel affine map. Both fold into plain convolution weights once, at load time; the outputs stay the same up
to float rounding. The folded model's state dict no longer matches its card, so it can be neither trained nor saved:
training and ``save_weights`` use the model as built (:func:`cxrassist.weights.load_model` folds only when asked).
"""

from __future__ import annotations

import itertools
from typing import Any, TypeVar, cast

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval

_Foldable = TypeVar("_Foldable", bound="FoldableModule")


class FoldableModule(nn.Module):
    """A network with an inference-only form (its ``fold_for_inference`` sets ``folded``): once folded, its state
    dict no longer matches its card, so ``train()`` refuses. The bone generator and the lung U-Net are such."""

    folded = False

    def train(self: _Foldable, mode: bool = True) -> _Foldable:
        if mode and self.folded:
            raise RuntimeError(
                f"this {type(self).__name__} is folded for inference; build it again (create_model) to train"
            )
        return super().train(mode)


def prepare_for_inference(model: nn.Module) -> nn.Module:
    """``model`` in eval mode, folded for inference when its class knows how (``fold_for_inference``: the bone
    generator, the lung U-Net); other models are returned as they are. Idempotent."""
    model.eval()
    fold = getattr(model, "fold_for_inference", None)
    if callable(fold):
        fold()
    return model


def fold_parametrizations(model: nn.Module) -> int:
    """Replace every parametrised weight (spectral norm) by its current value, computed in eval mode; returns how
    many were folded. In eval mode spectral norm divides by the sigma of its stored vectors without updating them,
    so the folded weight is exactly what each forward would have computed."""
    was_training = model.training
    model.eval()
    folded = 0
    with torch.no_grad():
        for module in list(model.modules()):
            if parametrize.is_parametrized(module):
                for name in list(cast(Any, module).parametrizations.keys()):
                    parametrize.remove_parametrizations(module, name, leave_parametrized=True)
                    folded += 1
    model.train(was_training)
    return folded


def fold_conv_batchnorm(model: nn.Module) -> int:
    """Fold each eval-mode ``BatchNorm2d`` that directly follows a plain ``Conv2d`` inside an ``nn.Sequential`` into
    that convolution (the batch norm becomes ``nn.Identity``); returns how many were folded. Run after
    :func:`fold_parametrizations` (a parametrised convolution is left alone)."""
    folded = 0
    with torch.no_grad():
        for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
            names = list(seq._modules)
            for prev, cur in itertools.pairwise(names):
                conv, bn = seq._modules[prev], seq._modules[cur]
                if (
                    type(conv) is nn.Conv2d
                    and type(bn) is nn.BatchNorm2d
                    and bn.track_running_stats
                    and bn.running_mean is not None
                    and bn.running_var is not None
                ):
                    seq._modules[prev] = fuse_conv_bn_eval(conv.eval(), bn.eval())
                    seq._modules[cur] = nn.Identity()
                    folded += 1
    return folded
