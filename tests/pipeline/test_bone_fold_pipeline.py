"""The pipeline runs the bone generator and the lung U-Net folded for inference (latency) and gets the same bone
image and lung mask."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.utils import parametrize


def test_pipeline_folds_the_bone_generator_and_keeps_its_output(tiny_weights_dir: Path, make_phantom: Any) -> None:
    from cxrassist.channels import predict_bone
    from cxrassist.pipeline import Pipeline
    from cxrassist.types import XRay
    from cxrassist.weights import load_model

    pipe = Pipeline.load(tiny_weights_dir)
    bone_model = pipe.models["bone"][0]
    assert bone_model.folded
    assert not any(parametrize.is_parametrized(m) for m in bone_model.modules())
    plain, card = load_model(tiny_weights_dir / "bone")  # as built: spectral norm, batch norm, upsampling
    pixels = make_phantom(300, 260, 3)
    result = pipe.analyze(XRay(pixels=pixels), force=True)
    want = predict_bone(plain, card, pixels)[2]
    assert result.bone.dtype == np.float32 and result.bone.shape == pixels.shape
    np.testing.assert_allclose(result.bone, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(result.bone_suppressed, np.clip(pixels - want, 0, 1), rtol=0, atol=1e-5)
    assert result.bone_suppressed.dtype == np.float32
    assert "bone" in result.timings_ms


def test_shipped_bone_generator_folded_on_rg1_within_rounding(rg1_file: Path) -> None:
    """Issue 13's bound: the folded shipped generator's RG1 bone image within 1e-3 of its range of the original."""
    from cxrassist.channels import predict_bone
    from cxrassist.io import read_xray
    from cxrassist.weights import load_model, shipped_dir

    pixels = read_xray(rg1_file).pixels
    torch.manual_seed(0)
    plain, card = load_model(shipped_dir() / "bone")
    folded, _ = load_model(shipped_dir() / "bone", inference=True)
    want = predict_bone(plain, card, pixels)[2]
    got = predict_bone(folded, card, pixels)[2]
    value_range = float(want.max() - want.min())
    assert value_range > 0.05  # a real bone image, not a blank one
    assert float(np.abs(got - want).max()) <= 1e-3 * value_range


def test_pipeline_folds_the_lung_model_and_keeps_its_mask(tiny_weights_dir: Path, make_phantom: Any) -> None:
    from cxrassist.channels import predict_lung_mask
    from cxrassist.pipeline import Pipeline
    from cxrassist.types import XRay
    from cxrassist.weights import load_model

    pipe = Pipeline.load(tiny_weights_dir)
    assert pipe.models["lung"][0].folded
    plain, card = load_model(tiny_weights_dir / "lungseg")
    pixels = make_phantom(300, 260, 3)
    result = pipe.analyze(XRay(pixels=pixels), force=True)
    want = predict_lung_mask(plain, card, pixels)[2]
    assert result.lung_mask.shape == pixels.shape
    assert np.mean(result.lung_mask != want) < 1e-4  # a pixel may flip where the logit sits on the threshold
