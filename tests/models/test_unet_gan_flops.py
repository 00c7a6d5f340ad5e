"""Lung U-Net, bone GAN, and the FLOPs budget of the full classifier."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from cxrassist.models import create_bone_gan, create_discriminator, create_model, init_vgg16_encoder_from_imagenet
from cxrassist.models.bone_gan import suppress_bones


def _gflops(model: torch.nn.Module, *inputs: torch.Tensor) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops() / 1e9


@pytest.mark.parametrize("name", ["dn121-512", "dn121-512-lung-bone", "triage-dn121-512"])
def test_full_classifier_under_2_gflops_at_512(name: str) -> None:
    with torch.device("meta"):  # shapes only: counts FLOPs without allocating or computing
        model = create_model(name).eval()
        x = torch.empty(1, model.in_chans, 512, 512)
        assert model.forward_features(x).shape == (1, 1024, 4, 4)
        gflops = _gflops(model, x)
    assert 1.5 < gflops < 2.0, gflops


def test_unet_any_size_divisible_by_32_and_refuses_others() -> None:
    model = create_model("lungseg-vgg16unet-compact", width=1 / 16).eval()
    for h, w in ((64, 96), (32, 32)):
        with torch.no_grad():
            assert model(torch.randn(1, 1, h, w)).shape == (1, 1, h, w)
    with pytest.raises(ValueError, match="divisible by 32"):
        model(torch.randn(1, 1, 48, 64))


@pytest.mark.parametrize("batch_norm", [False, True])
def test_unet_imagenet_init_from_vgg16_state_dict(tmp_path, batch_norm: bool) -> None:
    cfg = torchvision.models.vgg.cfgs["D"]
    features = torchvision.models.vgg.make_layers(cfg, batch_norm=batch_norm)  # = vgg16[_bn]().features
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    model = create_model("lungseg-vgg16unet", batch_norm=batch_norm)
    report = init_vgg16_encoder_from_imagenet(model, state)
    assert report["ignored"] == ["classifier.0.weight"]
    enc = model.encoder.state_dict()
    torch.testing.assert_close(enc["0.weight"], state["features.0.weight"].sum(1, keepdim=True))  # RGB -> gray
    last = [k for k in enc if k.endswith("weight")][-1]
    torch.testing.assert_close(enc[last], state[f"features.{last}"])
    # the same through create_model(imagenet_weights=path), from a safetensors file
    if not batch_norm:
        from safetensors.torch import save_file

        path = tmp_path / "vgg16.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        again = create_model("lungseg-vgg16unet", imagenet_weights=path)
        torch.testing.assert_close(again.encoder.state_dict()["0.weight"], enc["0.weight"])
    with pytest.raises(ValueError, match=r"width=1\.0"):
        init_vgg16_encoder_from_imagenet(create_model("lungseg-vgg16unet-compact"), state)


def test_bone_generator_fully_convolutional_and_domain() -> None:
    gen = create_model("bone-gan-compact", base_channels=4).eval()
    with torch.no_grad():
        for size in (64, 96):
            bone = gen(torch.randn(1, 1, size, size))
            assert bone.shape == (1, 1, size, size) and bone.min() >= 0 and bone.max() <= 1
    radiograph = torch.tensor([[0.2, 0.9], [0.5, 0.0]])
    bone = torch.tensor([[0.3, 0.4], [0.1, 0.0]])
    torch.testing.assert_close(suppress_bones(radiograph, bone), torch.tensor([[0.0, 0.5], [0.4, 0.0]]))


def test_multiscale_discriminator_logits_and_features_and_ttur_groups() -> None:
    gan = create_bone_gan("bone-gan-compact", base_channels=4)
    x = torch.randn(2, 1, 64, 64)
    outs = gan.discriminator(x, gan.generator(x))
    assert len(outs) == 2  # compact: 2 scales
    assert outs[0].logits.shape[0] == 2 and outs[0].logits.shape[1] == 1
    assert outs[1].logits.shape[-1] < outs[0].logits.shape[-1]  # coarser scale
    assert all(len(o.features) == 4 and all(f.shape[0] == 2 for f in o.features) for o in outs)
    g_ids = {id(p) for p in gan.generator_parameters()}
    d_ids = {id(p) for p in gan.discriminator_parameters()}
    assert g_ids and d_ids and not g_ids & d_ids
    full = create_discriminator("bone-gan", base_channels=4)
    x128 = torch.randn(1, 1, 128, 128)  # 3 scales need >= 128 px (the 1/4 scale must survive 3 stride-2 layers)
    assert len(full(x128, x128)) == 3
    loss = sum(o.logits.mean() for o in outs)
    loss.backward()
    assert all(p.grad is not None for p in gan.discriminator_parameters())
    sn = [m for m in gan.modules() if hasattr(m, "parametrizations")]
    assert len(sn) > 10  # spectral norm throughout
