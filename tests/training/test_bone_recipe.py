"""The parts of the bone recipe that issue 13's ablation switches: the generator's heads and switches, the
gradient loss, the generator-only phase, and the warm start from earlier bone weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cxrassist.models import create_model
from cxrassist.training.config import load_config
from cxrassist.training.gan import generator_step_loss, gradient_l1, ssim_loss
from cxrassist.training.tasks import make_task

TINY = {"base_channels": 4, "depth": 3, "attention_level": 2}


def test_residual_head_starts_at_no_suppression_and_is_clipped_only_for_use() -> None:
    torch.manual_seed(0)
    gen = create_model("bone-gan-compact", **TINY, output="residual")
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        gen.outc.bias.fill_(-1.0)  # push the layer below 0: training sees it, use clips it
        raw = gen.train()(x)
        used = gen.eval()(x)
    assert raw.min() < 0  # the error on both sides of 0 reaches the loss
    assert used.min() >= 0 and used.max() <= 1
    fresh = create_model("bone-gan-compact", **TINY, output="residual").eval()
    with torch.no_grad():
        assert float(fresh(x).abs().mean()) < 0.05  # starts near 0 = the identity (nothing removed)
    with pytest.raises(ValueError, match="output"):
        create_model("bone-gan-compact", **TINY, output="tanh")


def test_attention_and_spectral_norm_switch_off() -> None:
    plain = create_model("bone-gan-compact", **TINY, attention=False, spectral=False)
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())
    assert isinstance(plain.attention, torch.nn.Identity)
    default = create_model("bone-gan-compact", **TINY)
    assert sum(hasattr(m, "parametrizations") for m in default.modules()) > 10
    assert not isinstance(default.attention, torch.nn.Identity)
    # same weights layout apart from the switched parts: the 1.0.0 card's kwargs still build its network
    assert default.output == "sigmoid"


def test_gradient_l1_sees_edges_not_offsets() -> None:
    a = torch.zeros(1, 1, 8, 8)
    assert float(gradient_l1(a + 0.5, a)) == 0.0  # a constant offset has no edges
    edge = a.clone()
    edge[..., :, 4:] = 1.0
    assert float(gradient_l1(edge, a)) > 0


def test_ssim_loss_is_the_evaluations_ssim_and_trains() -> None:
    import numpy as np

    from cxrassist.evaluation.metrics import ssim

    gen = torch.Generator().manual_seed(0)
    true = torch.rand(1, 1, 40, 48, generator=gen) * 0.05  # a faint layer, like BSE-JSRT's bone images
    pred = (true + 0.01 * torch.randn(1, 1, 40, 48, generator=gen)).clamp(0, 1)
    expected = ssim(pred[0, 0].numpy(), true[0, 0].numpy())
    assert 1 - float(ssim_loss(pred, true)) == pytest.approx(expected, abs=1e-5)
    assert float(ssim_loss(true, true)) == pytest.approx(0.0, abs=1e-6)
    p = pred.clone().requires_grad_(True)
    ssim_loss(p, true).backward()
    with torch.no_grad():  # one step along the gradient raises the evaluation's SSIM
        stepped = (p - 0.01 * p.grad / p.grad.abs().max()).clamp(0, 1)
    assert ssim(stepped[0, 0].numpy(), true[0, 0].numpy()) > expected
    assert np.isfinite(float(ssim_loss(torch.zeros_like(true), true)))


def test_generator_loss_adds_mse_and_ssim_only_when_weighted() -> None:
    from types import SimpleNamespace

    real = torch.rand(2, 1, 24, 24) * 0.05
    fake = (real + 0.02).clamp(0, 1)
    base = {"l1_weight": 1.0, "grad_weight": 0.0, "mse_weight": 0.0, "ssim_weight": 0.0}
    plain, logs = generator_step_loss(None, real, real, fake, SimpleNamespace(**base))
    assert "mse" not in logs and "ssim_loss" not in logs
    both, logs = generator_step_loss(
        None, real, real, fake, SimpleNamespace(**{**base, "mse_weight": 1e4, "ssim_weight": 2.0})
    )
    mse = float(((fake - real) ** 2).mean())
    assert logs["mse"] == pytest.approx(mse, rel=1e-5)
    assert float(both) == pytest.approx(float(plain) + 1e4 * mse + 2.0 * logs["ssim_loss"], rel=1e-5)


def _cfg(manifest: Path, out: Path, name: str, **sets):
    base = {
        "model.name": "bone-gan-compact",
        "model.kwargs": TINY,
        "model.discriminator": "bone-gan-compact",
        "model.discriminator_kwargs": {"base_channels": 4},
        "data.size": 64,
        "data.batch_size": 4,
        "optim.warmup_epochs": 0,
        "run.tensorboard": False,
        "run.progress": False,
        "run.log_every": 0,
        "data.manifests": [str(manifest)],
    }
    return load_config(None, task="bone", name=name, out_dir=str(out), **{**base, **sets})


def test_generator_only_phase_and_warm_start(bone_manifest: Path, tmp_path: Path) -> None:
    from cxrassist.training.engine import train

    gan = make_task(_cfg(bone_manifest, tmp_path, "gan"))
    assert gan.phases == ("d", "g")
    alone_cfg = _cfg(
        bone_manifest,
        tmp_path,
        "alone",
        **{
            "loss.adv_weight": 0.0,
            "loss.fm_weight": 0.0,
            "loss.grad_weight": 100.0,
            "run.max_steps": 2,
            "run.epochs": 1,
            "export.when": "end",
        },
    )
    alone = make_task(alone_cfg)
    assert alone.phases == ("g",)
    modules = alone.build()
    assert set(alone.optim_groups(modules)) == {"g"}  # D is neither run nor trained
    res = train(alone_cfg)
    assert res.history and "train_grad" in res.history[-1] and "train_g_adv" not in res.history[-1]

    warm_cfg = _cfg(bone_manifest, tmp_path, "warm", **{"model.init_from": str(res.export_dir)})
    warm = make_task(warm_cfg).build()["model"]
    from cxrassist.weights import load_model

    exported, _ = load_model(res.export_dir)
    for key, value in exported.state_dict().items():
        torch.testing.assert_close(warm.state_dict()[key], value.to(warm.state_dict()[key].dtype), msg=key)
