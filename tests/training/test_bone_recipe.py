"""The parts of the bone recipe that issue 13's ablation switches: the generator's heads and switches, the
gradient loss, the generator-only phase, and the warm start from earlier bone weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cxrassist.models import create_model
from cxrassist.training.config import load_config
from cxrassist.training.gan import gradient_l1
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
