"""Folding the bone generator for inference (issue 13's latency): same outputs, fewer operations, training untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from cxrassist.models import create_model
from cxrassist.models.bone_gan import BoneGenerator, _softmax_attention
from cxrassist.models.fold import fold_conv_batchnorm, fold_parametrizations, prepare_for_inference


def _trained_looking(seed: int = 0, **kwargs) -> BoneGenerator:
    """A tiny generator whose every folded part does something: spectral-norm vectors moved by power iterations,
    batch-norm statistics and affine terms away from (0, 1), attention switched on (gamma != 0), output unsaturated."""
    torch.manual_seed(seed)
    g = create_model("bone-gan", base_channels=4, **kwargs)
    g.train()
    with torch.no_grad():
        for _ in range(3):  # power iteration (spectral norm) and running statistics (batch norm) as in training
            g(torch.randn(2, 1, 64, 64))
        for m in g.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
        if hasattr(g.attention, "gamma"):
            g.attention.gamma.fill_(0.8)
        g.outc.bias.fill_(-1.0 if g.output == "sigmoid" else 0.2)
    return g.eval()


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"output": "residual"}, {"attention": False}, {"spectral": False}, {"attention_level": 2, "depth": 3}],
)
def test_folded_generator_gives_the_same_bone_image(kwargs: dict) -> None:
    g = _trained_looking(**kwargs)
    x = torch.randn(2, 1, 64, 96)  # a batch, not square
    with torch.no_grad():
        want = g(x)
        assert float(want.std()) > 1e-3  # the comparison means something
    g.fold_for_inference()
    with torch.inference_mode():
        got = g(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    # what the fold removed: no parametrisation, no batch norm, no upsampling layer left to run
    assert not any(parametrize.is_parametrized(m) for m in g.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in g.modules())
    assert all(isinstance(up.up[0], nn.ConvTranspose2d) for up in g.up)


def test_folded_generator_is_idempotent_and_refuses_to_train() -> None:
    g = _trained_looking()
    x = torch.randn(1, 1, 64, 64)
    with torch.inference_mode():
        once = g.fold_for_inference()(x)
        twice = g.fold_for_inference()(x)
    assert torch.equal(once, twice)
    with pytest.raises(RuntimeError, match="folded for inference"):
        g.train()
    g.eval()  # eval stays allowed (the pipeline and load_model call it)


def test_training_builds_the_parametrised_generator() -> None:
    """Folding is opt-in: a new generator (what training builds) keeps spectral norm and batch norm."""
    g = create_model("bone-gan", base_channels=4)
    assert parametrize.is_parametrized(g.inc[0]) and isinstance(g.down[0][1], nn.BatchNorm2d)
    g.train()  # no error
    assert not g.folded


def test_fold_helpers_on_a_plain_stack() -> None:
    """The generic helpers: spectral norm folded in eval mode (no power iteration), conv + batch norm folded."""
    torch.manual_seed(1)
    conv = nn.utils.parametrizations.spectral_norm(nn.Conv2d(3, 5, 3, padding=1, bias=False))
    bn = nn.BatchNorm2d(5)
    net = nn.Sequential(conv, bn, nn.ReLU())
    net.train()
    net(torch.randn(4, 3, 8, 8))  # moves the power-iteration vectors and the running statistics
    net.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        want = net(x)
    assert fold_parametrizations(net) == 1
    assert fold_conv_batchnorm(net) == 1
    assert isinstance(net[0], nn.Conv2d) and isinstance(net[1], nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(net(x), want, rtol=0, atol=1e-5)


def test_chunked_attention_equals_sdpa() -> None:
    torch.manual_seed(2)
    q, k, v = torch.randn(2, 37, 4), torch.randn(2, 11, 4), torch.randn(2, 11, 6)
    want = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
    for chunk in (5, 37, 1024):  # chunks that split the queries unevenly, exactly, and not at all
        got = _softmax_attention(q * 4**-0.5, k, v, chunk=chunk)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_prepare_for_inference_leaves_other_models_alone() -> None:
    """Models without ``fold_for_inference`` (the DenseNets) are only put in eval mode; the lung U-Net folds (its
    own test: test_unet_fold.py)."""
    other = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    before = {k: v.clone() for k, v in other.state_dict().items()}
    assert prepare_for_inference(other) is other and not other.training
    after = other.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    unet = create_model("lungseg-vgg16unet-compact", width=0.0625)
    assert prepare_for_inference(unet) is unet and unet.folded


def test_load_model_folds_only_when_asked(tmp_path: Path) -> None:
    from cxrassist.pipeline import build_untrained
    from cxrassist.weights import load_model, save_weights

    g = _trained_looking()
    _, card = build_untrained("bone", base_channels=4)
    save_weights(g, tmp_path / "bone", card)
    plain, _ = load_model(tmp_path / "bone")
    folded, _ = load_model(tmp_path / "bone", inference=True)
    assert not plain.folded and folded.folded
    assert plain.state_dict().keys() == g.state_dict().keys()  # warm starts and save_weights still fit the card
    x = torch.randn(1, 1, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), plain(x), rtol=0, atol=1e-5)
