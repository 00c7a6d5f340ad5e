"""The lung prior on the lung findings' CAMs (training/lung_prior.py), its wiring, and the derived cache key."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrassist.errors import ConfigError, DatasetError
from cxrassist.explain.cam import cam_forward, class_activation_maps
from cxrassist.labels import FINDING_CODES, LUNG_FIELD_CODES
from cxrassist.models import create_model
from cxrassist.training.config import load_config
from cxrassist.training.lung_prior import (
    LUNG_FIELD_INDEX,
    cell_shares,
    dilate_masks,
    lung_prior_loss,
    outside_attention,
)
from cxrassist.training.tasks import ClassifierTask


def _two_lungs(size: int = 64) -> torch.Tensor:
    m = torch.zeros(1, 1, size, size)
    m[..., size // 4 : 3 * size // 4, size // 8 : 3 * size // 8] = 1
    m[..., size // 4 : 3 * size // 4, 5 * size // 8 : 7 * size // 8] = 1
    return m


def test_outside_attention_is_where_the_map_looks() -> None:
    cells = cell_shares(_two_lungs(64), (8, 8))  # lungs: rows 2-5, cols 1-2 and 5-6
    inside = torch.zeros(1, 1, 8, 8)
    inside[0, 0, 3, 1] = 5.0
    outside = torch.zeros(1, 1, 8, 8)
    outside[0, 0, 0, 0] = 5.0
    a_in, a_out = outside_attention(inside, cells)[0, 0], outside_attention(outside, cells)[0, 0]
    assert a_in < 0.2 < 0.8 < a_out
    # free of the map's shift and scale: what the reports' normalisation removes
    assert outside_attention(3 * outside - 7, cells)[0, 0] == pytest.approx(float(a_out), abs=1e-5)


def test_dilation_follows_the_lung_area() -> None:
    m = _two_lungs(64)  # area 2 x 32 x 16 = 1024 -> 10 % of sqrt = 3.2 -> 3 px
    d = dilate_masks(m, 0.10)
    assert d.sum() > m.sum() and bool((d >= m).all())
    assert d[0, 0, 32, 8 - 3] == 1 and d[0, 0, 32, 8 - 4] == 0
    assert torch.equal(dilate_masks(m, 0.0), m)


def test_prior_gradient_moves_a_peak_into_the_lungs() -> None:
    lung = _two_lungs(64)
    torch.manual_seed(0)
    raw = torch.randn(2, len(FINDING_CODES), 8, 8)
    raw[:, :, 0, 0] += 4.0  # every map peaks in the top-left corner, off the lungs
    raw.requires_grad_(True)
    masks = lung.expand(2, -1, -1, -1)
    start = float(lung_prior_loss(raw, masks).detach())
    opt = torch.optim.Adam([raw], lr=0.1)
    for _ in range(100):
        opt.zero_grad()
        lung_prior_loss(raw, masks).backward()
        opt.step()
    assert float(lung_prior_loss(raw, masks).detach()) < start / 3
    cells = cell_shares(dilate_masks(masks, 0.10), (8, 8))[0, 0]
    for k in LUNG_FIELD_INDEX:
        peak = int(raw[0, k].argmax())
        assert cells.flatten()[peak] > 0.5
    # the prior leaves the other findings' maps alone (Cardiomegaly, Pleural Effusion, ...)
    other = [i for i in range(len(FINDING_CODES)) if i not in LUNG_FIELD_INDEX]
    assert raw.grad is not None and float(raw.grad[:, other].abs().max()) == 0.0


def test_films_without_lungs_are_left_out() -> None:
    raw = torch.randn(3, len(FINDING_CODES), 8, 8, requires_grad=True)
    masks = torch.zeros(3, 1, 64, 64)
    assert lung_prior_loss(raw, masks).item() == 0.0
    masks[1] = _two_lungs(64)[0]
    alone = lung_prior_loss(raw[1:2], masks[1:2])
    assert lung_prior_loss(raw, masks).item() == pytest.approx(alone.item())
    with pytest.raises(ValueError, match="lung masks"):
        lung_prior_loss(raw, masks[:, 0])


def test_lung_field_codes_are_findings() -> None:
    assert set(LUNG_FIELD_CODES) <= set(FINDING_CODES) and "CA" not in LUNG_FIELD_CODES


def test_forward_with_maps_is_the_reports_cam(tiny) -> None:
    torch.manual_seed(0)
    model = create_model("dn121-512-lung", **tiny.dn).eval()
    x = torch.randn(2, 2, 128, 128)
    with torch.no_grad():
        plain = model(x)
        logits, feats = model(x, 2)
        _, raw, stride = cam_forward(model, x, 2)
    assert torch.allclose(plain, logits, atol=1e-5)  # the dense pass's logits are the normal ones
    assert feats.shape[-1] == 4 and stride == 32
    out = class_activation_maps(model, x, dense_levels=2)
    assert torch.allclose(out.raw["frontal"], raw) and torch.allclose(out.logits, plain, atol=1e-5)


def _cfg(tmp_path: Path, tiny, **sets):
    base = {
        "model.name": "dn121-512-lung",
        "model.kwargs": tiny.dn,
        "data.size": 128,
        "loss.lung_cam_weight": 1.0,
        "run.tensorboard": False,
        "run.progress": False,
    }
    return load_config(
        None,
        task="classifier",
        name="p",
        out_dir=str(tmp_path),
        **{"data.manifests": ["m.csv"]},
        **{
            **base,
            **sets,
        },
    )


def test_classifier_loss_adds_the_prior_and_trains_it(tmp_path: Path, tiny) -> None:
    torch.manual_seed(0)
    task = ClassifierTask(_cfg(tmp_path, tiny))
    modules = task.build()
    lung = torch.nn.functional.interpolate(_two_lungs(64), size=128).expand(4, -1, -1, -1).contiguous()
    labels = torch.full((4, len(FINDING_CODES)), float("nan"))
    labels[:, 0] = torch.tensor([0.0, 1.0, 0.0, 1.0])
    batch = {"image": torch.randn(4, 2, 128, 128), "labels": labels, "lung": lung}
    loss, logs = task.loss("main", batch, modules, {})
    assert set(logs) == {"bce", "lung_prior"} and loss.item() == pytest.approx(logs["bce"] + logs["lung_prior"])
    opt = torch.optim.Adam(modules["model"].parameters(), lr=3e-3)
    first = logs["lung_prior"]
    for _ in range(15):
        opt.zero_grad()
        loss, logs = task.loss("main", batch, modules, {})
        loss.backward()
        opt.step()
    assert logs["lung_prior"] < first
    # without the weight (or without masks in the batch) it is the plain BCE
    plain = ClassifierTask(_cfg(tmp_path, tiny, **{"loss.lung_cam_weight": 0.0}))
    _, logs = plain.loss("main", batch, modules, {})
    assert set(logs) == {"bce"}


def test_the_prior_is_refused_where_it_cannot_apply(tmp_path: Path, tiny) -> None:
    with pytest.raises(ConfigError, match="lung_cam_weight is for task=classifier"):
        load_config(None, task="triage", **{"data.manifests": ["m.csv"], "loss.lung_cam_weight": 0.5})
    with pytest.raises(ConfigError, match="lung_cam_levels"):
        _cfg(tmp_path, tiny, **{"loss.lung_cam_levels": 5})
    with pytest.raises(ConfigError, match="fed the lung_segmented channel"):
        ClassifierTask(_cfg(tmp_path, tiny, **{"model.name": "dn121-512"})).build()


class _Derived:
    """Stands in for DerivedChannels: a fixed lung mask and bone image for every film."""

    def __init__(self, size: int) -> None:
        self.lung = _two_lungs(size)[0, 0].numpy()
        self.bone = np.full((size, size), 0.25, np.float32)

    def get(self, path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
        return self.lung, self.bone


def test_dataset_returns_the_mask_its_lung_channel_was_made_with(cls_manifest: Path) -> None:
    from cxrassist.data.augment import AugmentConfig
    from cxrassist.data.dataset import CxrDataset
    from cxrassist.data.manifest import load_manifest
    from cxrassist.preprocess import denormalize

    records = load_manifest(cls_manifest)
    ds = CxrDataset(
        records,
        task="classifier",
        size=64,
        augment=AugmentConfig(rotate_deg=10.0, translate=0.1),
        derived=_Derived(64),
        channels=2,
        lung_mask=True,
    )
    item = ds[0]
    img = denormalize(item["image"])
    assert item["lung"].shape == (1, 64, 64)
    assert torch.allclose(img[1], img[0] * item["lung"][0], atol=1e-5)  # the augmented mask, not the stored one
    assert not torch.equal(item["lung"][0], torch.from_numpy(_Derived(64).lung))
    assert "lung" not in CxrDataset(records, task="classifier", size=64, derived=_Derived(64), channels=2)[0]
    with pytest.raises(DatasetError, match="lung_mask needs"):
        CxrDataset(records, task="classifier", size=64, lung_mask=True)


def test_classifier_init_from_a_classifier_continues_it(tmp_path: Path, tiny) -> None:
    from cxrassist.weights import ModelCard, save_weights

    torch.manual_seed(1)
    earlier = create_model("dn121-512-lung", **tiny.dn)
    save_weights(earlier, tmp_path / "earlier", ModelCard.new("dn121-512-lung", kwargs=tiny.dn))
    modules = ClassifierTask(_cfg(tmp_path, tiny, **{"model.init_from": str(tmp_path / "earlier")})).build()
    got, want = modules["model"].state_dict(), earlier.state_dict()
    assert all(torch.allclose(got[k].float(), want[k].float(), atol=1e-3) for k in want)  # head included


def test_derived_cache_is_keyed_by_content(tmp_path: Path, cls_manifest: Path) -> None:
    from cxrassist.data.derived import DerivedChannels

    class _Card:
        sha256 = "abc"

    d = DerivedChannels((None, _Card()), None, tmp_path / "cache")
    src = next((cls_manifest.parent / "images").glob("*.png"))
    copy = tmp_path / "elsewhere" / "copy.png"
    copy.parent.mkdir()
    shutil.copy(src, copy)  # a new path and a new time stamp: a re-mounted or copied data set
    assert d._file(copy, 64) == d._file(src, 64)
    assert d._file(src, 64) != d._file(src, 128)
    other = next(p for p in (cls_manifest.parent / "images").glob("*.png") if p.read_bytes() != src.read_bytes())
    assert d._file(other, 64) != d._file(src, 64)
