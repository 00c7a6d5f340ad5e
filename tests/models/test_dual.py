"""Dual-branch classifier: with and without a lateral view, the learned stand-in, lateral dropout."""

from __future__ import annotations

import pytest
import torch
from tiny_models import TINY_DENSENET

from cxrassist.models import create_model


def test_missing_lateral_uses_learned_standin() -> None:
    model = create_model("dn121-512-dual", **TINY_DENSENET).eval()
    frontal, lateral = torch.randn(2, 1, 128, 128), torch.randn(2, 1, 128, 128)
    with torch.no_grad():
        model.lateral_standin.normal_()
        alone = model(frontal)
        absent = model(frontal, lateral, torch.tensor([False, False]))
        mixed = model(frontal, lateral, torch.tensor([True, False]))
        both = model(frontal, lateral)
    assert alone.shape == both.shape == (2, 13) and torch.isfinite(alone).all()
    torch.testing.assert_close(absent, alone)  # an absent lateral is exactly the stand-in
    torch.testing.assert_close(mixed[1], alone[1])
    torch.testing.assert_close(mixed[0], both[0])  # per-study presence inside one batch
    assert not torch.allclose(alone[0], both[0])
    # the stand-in is learned: it receives a gradient when a lateral is missing
    model.train()
    model(frontal).sum().backward()
    assert model.lateral_standin.grad is not None and model.lateral_standin.grad.abs().sum() > 0


def test_lateral_dropout_only_in_training() -> None:
    model = create_model("dn121-512-dual", **TINY_DENSENET, lateral_dropout=1.0)
    frontal, lateral = torch.randn(2, 1, 128, 128), torch.randn(2, 1, 128, 128)
    _, l_train = model.train().forward_branches(frontal, lateral)
    assert torch.equal(l_train, model.lateral_standin.expand_as(l_train))  # every lateral dropped
    _, l_eval = model.eval().forward_branches(frontal, lateral)
    assert not torch.equal(l_eval, model.lateral_standin.expand_as(l_eval))


def test_channel_mismatch_is_explained() -> None:
    model = create_model("dn121-512-dual-lung-bone", **TINY_DENSENET).eval()
    with pytest.raises(ValueError, match="lateral input has 3 channels, model expects 1"):
        model(torch.randn(1, 3, 128, 128), torch.randn(1, 3, 128, 128))
    with pytest.raises(ValueError, match="frontal input has 1 channels, model expects 3"):
        model(torch.randn(1, 1, 128, 128))
