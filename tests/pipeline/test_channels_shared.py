"""Training and inference build the classifier's lung and bone channels with the same code and get the same planes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxrassist.channels import BONE, LUNG, RADIOGRAPH, classifier_planes, predict_bone, predict_lung_mask
from cxrassist.data.derived import DerivedChannels
from cxrassist.io import read_xray
from cxrassist.preprocess import letterbox
from cxrassist.weights import load_model


class _Shifted(torch.nn.Module):
    """The tiny random lung model with its logits shifted so that about half the image is "lung"."""

    def __init__(self, model: torch.nn.Module, shift: float) -> None:
        super().__init__()
        self.model, self.shift = model, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) - self.shift


def _half_positive(model: torch.nn.Module, card: object) -> tuple[torch.nn.Module, object]:
    with torch.no_grad():
        median = float(model(torch.randn(1, 1, 64, 64) * 0.1).median())
    return _Shifted(model.eval(), median), card


@pytest.mark.parametrize("shape", [(320, 300), (200, 360)])
def test_training_cache_matches_pipeline_planes(
    tiny_weights_dir: Path, make_phantom, tmp_path: Path, shape: tuple[int, int]
) -> None:
    lung = _half_positive(*load_model(tiny_weights_dir / "lungseg"))
    bone = load_model(tiny_weights_dir / "bone")
    png = tmp_path / "cxr.png"
    Image.fromarray((make_phantom(*shape, seed=3) * 255).astype(np.uint8)).save(png)
    size = 128

    # Inference side: read_xray -> lung mask and bone image at original resolution -> classifier planes.
    pixels = read_xray(png).pixels
    lung_orig = predict_lung_mask(*lung, pixels)[2]
    bone_orig = predict_bone(*bone, pixels)[2]
    planes, _ = classifier_planes(pixels, size, [RADIOGRAPH, LUNG, BONE], lung_mask=lung_orig, bone=bone_orig)

    # Training side: the derived-channel cache, then the dataset's composition (radiograph x lung, bone).
    derived = DerivedChannels(lung, bone, tmp_path / "cache")
    lung_t, bone_t = derived.get(png, size)
    canvas = letterbox(pixels, size)[0]

    assert lung_orig.any(), "the tiny lung model should mark something, or the comparison says little"
    np.testing.assert_array_equal(planes[0], canvas)
    np.testing.assert_array_equal(planes[1], canvas * lung_t)
    np.testing.assert_allclose(planes[2], bone_t, atol=1e-3)  # the cache stores bone as float16
    # A second read comes from the cache file and is identical.
    lung_again, bone_again = derived.get(png, size)
    np.testing.assert_array_equal(lung_again, lung_t)
    np.testing.assert_array_equal(bone_again, bone_t)


class _FixedLogits(torch.nn.Module):
    """A "lung model" that returns one fixed logit map whatever the input."""

    def __init__(self, logits: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("logits", torch.from_numpy(logits.astype(np.float32))[None, None])
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # predict_lung_mask reads the device from a parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1, -1, -1)


def test_full_size_lung_outline_is_smooth_and_keeps_the_cleaning() -> None:
    """On a film 8x the model size the outline follows the resized probability (no 8-pixel stair steps), while the
    model-space cleaning still holds: a speck the cleaning dropped stays dropped, a hole it filled stays filled."""
    size, scale = 64, 8
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    r = np.hypot(yy - 32, xx - 24)
    logits = (12.0 - r) * 1.5  # one round "lung" of radius 12, soft edge
    logits[32, 24] = -20.0  # a one-pixel hole in its middle
    logits[5:6, 60:61] = 20.0  # a one-pixel speck far away
    model = _FixedLogits(logits)
    card = {"input": {"size": size}, "thresholds": {"Lung": 0.5}}
    mask, rec, original = predict_lung_mask(model, card, np.zeros((size * scale, size * scale), np.float32))

    assert not mask[5, 60] and mask[32, 24], "model-space cleaning: speck dropped, hole filled"
    assert not original[5 * scale : 6 * scale, 60 * scale : 61 * scale].any()
    assert original[32 * scale : 33 * scale, 24 * scale : 25 * scale].all()
    yy, xx = np.mgrid[0 : size * scale, 0 : size * scale] + 0.5
    true_disk = np.hypot(yy / scale - 32, xx / scale - 24) < 12.0
    blocky = rec.to_original(mask.astype(np.float32), nearest=True) > 0.5
    err_smooth = np.mean(original != true_disk)
    err_blocky = np.mean(blocky != true_disk)
    assert err_smooth < 0.5 * err_blocky, (err_smooth, err_blocky)


def test_planes_read_only_the_derived_images_their_channels_name() -> None:
    """A radiograph-only model (triage) gets the same planes with or without the lung and bone images passed, and
    they are not resized for it (a wrong-shaped bone image would fail if they were)."""
    film = np.random.default_rng(1).random((400, 360), dtype=np.float32)
    lung = np.ones_like(film, dtype=bool)
    plain, _ = classifier_planes(film, 128, [RADIOGRAPH], detail=96)
    passed, _ = classifier_planes(film, 128, [RADIOGRAPH], lung_mask=lung, bone=np.zeros((3, 3)), detail=96)
    assert np.array_equal(plain, passed)
    with pytest.raises(ValueError, match="expected shape"):
        classifier_planes(film, 128, [RADIOGRAPH, BONE], lung_mask=lung, bone=np.zeros((3, 3)), detail=96)
