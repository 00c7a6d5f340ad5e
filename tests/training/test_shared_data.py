"""The real shared layouts (../shared/data) load and evaluate (tiny untrained models; skipped when absent)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from cxrassist.cli import main as cli_main

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.skipif(
        not SHARED.is_dir() and os.environ.get("CI", "").lower() != "true",
        reason="../shared/data is not present (in CI it must be: CI=true runs these)",
    ),
]


def _cli(args: list[str]) -> None:
    try:
        cli_main(args)
    except SystemExit as exc:
        assert exc.code in (0, None), f"cxr {' '.join(args)} exited {exc.code}"


def _tiny_weights(tmp: Path, arch: str, kwargs: dict, size: int) -> Path:
    from cxrassist.models import create_model
    from cxrassist.weights import ModelCard, save_weights

    torch.manual_seed(0)
    card = ModelCard.new(arch, kwargs=kwargs)
    card.input["size"] = size
    save_weights(create_model(arch, **kwargs), tmp / arch, card)
    return tmp / arch


def test_all_manifests_parse() -> None:
    from cxrassist.data.manifest import load_manifests
    from cxrassist.data.splits import check_disjoint

    recs = load_manifests(sorted(SHARED.glob("*/manifest.csv")))
    assert {r.split for r in recs} == {"train", "val"}
    for name in ("montgomery", "shenzhen", "jsrt", "covid19_gb_seg", "bse_jsrt", "nih_cxr14_sample", "covid_chestxray"):
        check_disjoint([r for r in recs if r.dataset == name])
    assert sum(r.lateral is not None for r in recs) == 40
    assert all(r.bone_suppressed is not None for r in recs if r.dataset == "bse_jsrt")


@pytest.mark.parametrize(
    ("task", "dataset", "arch", "kwargs", "keys"),
    [
        ("segmentation", "montgomery", "lungseg-vgg16unet-compact", {"width": 1 / 16}, ("dice", "iou", "hd95")),
        ("bone", "bse_jsrt", "bone-gan-compact", {"base_channels": 4}, ("psnr", "ssim", "bone_suppression_ratio")),
        (
            "triage",
            "nih_cxr14_sample",
            "triage-dn121-512",
            {"growth_rate": 4, "block_config": [1, 1, 1, 1], "num_init_features": 8},
            ("auroc", "sensitivity"),
        ),
        (
            "classifier",
            "nih_cxr14_sample",
            "dn121-512",
            {"growth_rate": 4, "block_config": [1, 1, 1, 1], "num_init_features": 8},
            ("mean_auroc", "auroc", "mean_auroc_validation", "calls_per_normal_film"),
        ),
    ],
)
def test_evaluate_on_real_layout(task, dataset, arch, kwargs, keys, tmp_path: Path) -> None:
    weights = _tiny_weights(tmp_path, arch, kwargs, 128)
    out = tmp_path / "m.json"
    _cli(
        [
            "evaluate",
            task,
            "--manifest",
            str(SHARED / dataset / "manifest.csv"),
            "--weights",
            str(weights),
            "--split",
            "val",
            "--limit",
            "16",
            "--json",
            str(out),
            "--bootstrap",
            "10",
        ]
    )
    m = json.loads(out.read_text())
    assert m["n_cases"] == 16
    for k in keys:
        assert k in m
