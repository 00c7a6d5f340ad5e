"""Every named configuration at tiny size: shapes, finiteness, gradients, save/load round trip, hash refusal."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_models import tiny_inputs, tiny_kwargs

from cxrassist.errors import HashMismatchError, UnknownModelError, WeightsError
from cxrassist.labels import NUM_FINDINGS
from cxrassist.models import create_model, get_model_spec, list_models
from cxrassist.weights import ModelCard, load_model, save_weights

REQUIRED = {
    "dn121-512",
    "dn121-512-lung",
    "dn121-512-lung-bone",
    "dn121-512-dual",
    "dn121-512-dual-lung",
    "dn121-512-dual-lung-bone",
    "triage-dn121-512",
    "lungseg-vgg16unet",
    "lungseg-vgg16unet-compact",
    "bone-gan",
    "bone-gan-compact",
}


def test_registry_names_and_specs() -> None:
    assert set(list_models()) >= REQUIRED
    for name in list_models():
        spec = get_model_spec(name)
        assert spec.name == name and spec.task in ("classifier", "triage", "segmentation", "bone")
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.name = "x"  # type: ignore[misc]
    assert get_model_spec("dn121-512-lung-bone").default_kwargs["in_chans"] == 3
    with pytest.raises(UnknownModelError, match="unknown model 'nope'"):
        create_model("nope")


def _expected_shape(name: str, x: torch.Tensor) -> tuple[int, ...]:
    task = get_model_spec(name).task
    if task == "classifier":
        return (x.shape[0], NUM_FINDINGS)
    if task == "triage":
        return (x.shape[0], 1)
    return (x.shape[0], 1, *x.shape[-2:])


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_forward_backward_every_parameter_gets_gradient(name: str) -> None:
    model = create_model(name, **tiny_kwargs(name)).train()
    inputs = tiny_inputs(name, model)
    out = model(*inputs)
    assert out.shape == _expected_shape(name, inputs[0])
    assert torch.isfinite(out).all()
    if get_model_spec(name).task == "bone":
        assert out.min() >= 0 and out.max() <= 1  # bone image in the [0, 1] radiograph domain
    out.float().square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a finite gradient: {missing}"


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_save_load_round_trip(tmp_path, name: str) -> None:
    kwargs = tiny_kwargs(name)
    model = create_model(name, **kwargs)
    with torch.no_grad():  # make batch-norm statistics non-trivial so they must round-trip too
        model.train()
        model(*tiny_inputs(name, model, seed=1))
    model.eval()
    inputs = tiny_inputs(name, model, seed=2)
    with torch.no_grad():
        expected = model(*inputs)
    card = ModelCard.new(name, kwargs=kwargs, metrics={"auroc": 0.5})
    saved = save_weights(model, tmp_path / "fp32", card)
    assert saved.sha256 and len(saved.sha256) == 64 and saved.storage_dtype == "float32"
    loaded, loaded_card = load_model(tmp_path / "fp32")
    assert loaded_card.sha256 == saved.sha256 and loaded_card.architecture == name
    with torch.no_grad():
        assert torch.equal(loaded(*inputs), expected)
    # a .safetensors path with its card beside it works too
    loaded2, _ = load_model(tmp_path / "fp32" / "model.safetensors")
    with torch.no_grad():
        assert torch.equal(loaded2(*inputs), expected)

    save_weights(model, tmp_path / "fp16", card, dtype=torch.float16)
    half, half_card = load_model(tmp_path / "fp16")
    assert half_card.storage_dtype == "float16"
    assert all(p.dtype == torch.float32 for p in half.parameters())
    with torch.no_grad():
        got = half(*inputs)
    assert torch.allclose(got, expected, rtol=0.05, atol=0.05 * float(expected.abs().max()) + 1e-3)
    fp16, fp32 = (tmp_path / d / "model.safetensors" for d in ("fp16", "fp32"))
    assert fp16.stat().st_size < fp32.stat().st_size


def test_hash_mismatch_refused(tmp_path) -> None:
    name = "dn121-512"
    model = create_model(name, **tiny_kwargs(name))
    save_weights(model, tmp_path, ModelCard.new(name, kwargs=tiny_kwargs(name)))
    weights = tmp_path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # corrupt one byte of tensor data
    weights.write_bytes(bytes(data))
    with pytest.raises(HashMismatchError) as err:
        load_model(tmp_path)
    msg = str(err.value)
    assert "model.safetensors" in msg and msg.count("sha256") == 1
    assert len([w for w in msg.split() if len(w) == 64]) == 2


def test_save_refuses_card_that_cannot_rebuild_model(tmp_path) -> None:
    model = create_model("dn121-512", **tiny_kwargs("dn121-512"))
    with pytest.raises(WeightsError, match="does not match card"):
        save_weights(model, tmp_path, ModelCard.new("dn121-512"))  # card lacks the tiny kwargs


def test_load_unknown_name_lists_shipped(tmp_path) -> None:
    with pytest.raises(UnknownModelError, match="no weights named 'missing'"):
        load_model("missing", search_dirs=[tmp_path])


def test_load_by_name_from_search_dir_and_pt_refused(tmp_path) -> None:
    name = "triage-dn121-512"
    model = create_model(name, **tiny_kwargs(name))
    save_weights(model, tmp_path / "triage-v1", ModelCard.new(name, name="triage-v1", kwargs=tiny_kwargs(name)))
    loaded, card = load_model("triage-v1", search_dirs=[tmp_path])
    assert card.name == "triage-v1" and not loaded.training
    with pytest.raises(WeightsError, match="safetensors"):
        load_model(tmp_path / "x.pt")
