"""Tiny configurations of every named model (imported by the model tests; a uniquely named module, since
``from conftest import`` resolves to another folder's conftest when pytest is given several folders)."""

from __future__ import annotations

import torch

TINY_DENSENET = {"growth_rate": 4, "block_config": (1, 1, 1, 1), "num_init_features": 8, "bn_size": 2}
TINY_BY_FAMILY = {
    "densenet121": TINY_DENSENET,
    "densenet121-dual": TINY_DENSENET,
    "vgg16-unet": {"width": 1 / 16},
    "bone-gan": {"base_channels": 4},
}
#: Input side for tiny tests: 128 gives the 4-block tiny DenseNet a 1x1 final map and the dual branches 4x4.
TINY_SIZE = {"densenet121": 128, "densenet121-dual": 128, "vgg16-unet": 64, "bone-gan": 64}


def tiny_kwargs(name: str) -> dict:
    from cxrassist.models import get_model_spec

    return dict(TINY_BY_FAMILY[get_model_spec(name).family])


def tiny_inputs(name: str, model: torch.nn.Module, batch: int = 2, seed: int = 0) -> tuple:
    """Positional inputs for ``model(*inputs)``; dual models get a lateral and a mixed presence mask."""
    from cxrassist.models import get_model_spec

    family = get_model_spec(name).family
    g = torch.Generator().manual_seed(seed)
    size = TINY_SIZE[family]
    x = torch.randn(batch, model.in_chans, size, size, generator=g)
    if family == "densenet121-dual":
        lateral = torch.randn(batch, model.lateral_in_chans, size, size, generator=g)
        present = torch.tensor([True, False] * (batch // 2) + [True] * (batch % 2))
        return x, lateral, present
    return (x,)
