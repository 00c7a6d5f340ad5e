"""CAM: exact dense maps, blob localisation after a few training steps, mapping back to original pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from blobs import blob_batch
from tiny_models import TINY_DENSENET, tiny_kwargs

from cxrassist.explain import CamOutput, class_activation_maps, grad_cam
from cxrassist.models import create_model
from cxrassist.preprocess import letterbox, normalize


def test_dense_features_match_normal_features_exactly() -> None:
    model = create_model("dn121-512", **TINY_DENSENET).eval()
    x = torch.randn(2, 1, 256, 256)
    with torch.no_grad():
        normal = model.forward_features(x)
        for levels in (1, 2, 3):
            dense = model.forward_features_dense(x, levels)
            step = 2**levels
            assert dense.shape[-1] == normal.shape[-1] * step
            torch.testing.assert_close(dense[..., ::step, ::step], normal, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("levels", [0, 1, 2])
def test_cam_output_contract(levels: int) -> None:
    model = create_model("dn121-512-lung", **TINY_DENSENET).eval()
    x = torch.randn(3, 2, 256, 256)
    out = class_activation_maps(model, x, dense_levels=levels)
    assert isinstance(out, CamOutput) and set(out.cams) == {"frontal"}
    with torch.no_grad():
        torch.testing.assert_close(out.logits, model(x))  # the logits are the normal prediction
    cam = out.cams["frontal"]
    assert cam.shape == (3, 13, 2 * 2**levels, 2 * 2**levels)
    assert cam.min() >= 0 and cam.max() <= 1
    peaks = cam.flatten(2).amax(2)
    assert torch.all((peaks == 1) | (peaks == 0))  # normalised per image and class
    assert out.stride["frontal"] * cam.shape[-1] == 256
    assert out.upsampled("frontal").shape[-2:] == (256, 256)


def test_raw_cam_mean_is_logit_minus_bias() -> None:
    model = create_model("dn121-512", **TINY_DENSENET).eval()
    x = torch.randn(2, 1, 256, 256)
    out = class_activation_maps(model, x, dense_levels=0)
    # without re-gridding shift that matters at level 0 the mean of the raw map reproduces the logit
    mean = out.raw["frontal"].mean(dim=(2, 3)) + model.classifier.bias
    torch.testing.assert_close(mean, out.logits, rtol=0.05, atol=0.05)


def test_dual_branch_cams_with_and_without_lateral() -> None:
    model = create_model("dn121-512-dual-lung", **tiny_kwargs("dn121-512-dual-lung")).eval()
    frontal, lateral = torch.randn(2, 2, 128, 128), torch.randn(2, 1, 128, 128)
    both = class_activation_maps(model, frontal, lateral)
    assert set(both.cams) == {"frontal", "lateral"} and both.method == "grad-cam"
    for view in ("frontal", "lateral"):
        assert both.cams[view].shape == (2, 13, 4, 4)  # branch output: 128 / 32
        assert both.stride[view] == 32
    alone = class_activation_maps(model, frontal)
    assert set(alone.cams) == {"frontal"} and alone.cams["frontal"].shape == (2, 13, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(alone.logits, model(frontal))
        torch.testing.assert_close(both.logits, model(frontal, lateral))
    assert not torch.allclose(alone.logits, both.logits)  # the lateral view changes the prediction
    masked = class_activation_maps(model, frontal, lateral, lateral_present=torch.tensor([True, False]))
    assert masked.cams["lateral"][1].abs().sum() == 0  # no map for a stand-in


def test_grad_cam_fallback_on_any_layer() -> None:
    model = create_model("dn121-512", **TINY_DENSENET).eval()
    x = torch.randn(2, 1, 256, 256)
    one = grad_cam(model, x, model.features.denseblock2, class_index=4)
    assert one.shape == (2, 8, 8) and one.min() >= 0 and one.max() <= 1
    allk = grad_cam(model, x, model.features.denseblock2)
    assert allk.shape == (2, 13, 8, 8)
    torch.testing.assert_close(allk[:, 4], one)
    dual = create_model("dn121-512-dual", **TINY_DENSENET).eval()
    maps = grad_cam(dual, torch.randn(1, 1, 128, 128), dual.frontal, class_index=0, lateral=None)
    assert maps.shape == (1, 4, 4)


def _train_blob_classifier(size: int, steps: int, radius: float) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(
        "dn121-512", num_classes=1, growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y, _ = blob_batch(16, size, generator=g, radius=radius, pad_cols=8)  # letterbox bands
        loss = F.binary_cross_entropy_with_logits(model(normalize(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_cam_peaks_on_blob_in_original_pixels() -> None:
    """A tiny classifier trained on 'blob present?' puts its CAM peak on the blob of held-out, non-square images.

    Held-out originals are 96 x 72 (H x W): they are letterboxed to the 64-px model space like real studies and the
    CAM is mapped back with ``SpatialRecord.to_original``; the peak must fall within 2 sigma of the blob centre.
    """
    size, radius_model = 64, 8.0
    model = _train_blob_classifier(size, steps=60, radius=radius_model)
    rng = np.random.default_rng(5)
    h, w, scale = 96, 72, size / 96
    radius = radius_model / scale
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    hits, n = 0, 24
    for _ in range(n):
        cy, cx = rng.uniform(2 * radius, h - 2 * radius), rng.uniform(2 * radius, w - 2 * radius)
        image = 0.3 + 0.1 * rng.random((h, w), dtype=np.float32)
        image = np.clip(image + 0.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2)), 0, 1)
        boxed, record = letterbox(image, size)
        out = class_activation_maps(model, normalize(torch.from_numpy(boxed))[None, None], dense_levels=1)
        assert out.logits[0, 0] > 0  # detected
        heat = record.to_original(out.cams["frontal"][0, 0].numpy())
        assert heat.shape == (h, w)
        py, px = np.unravel_index(int(np.argmax(heat)), heat.shape)
        hits += (py - cy) ** 2 + (px - cx) ** 2 <= (2 * radius) ** 2
    # chance of landing in the disc at random is ~ pi * 24^2 / (96 * 72) ~ 0.26
    assert hits / n >= 0.6, f"CAM peak on the blob in only {hits}/{n} held-out images"
