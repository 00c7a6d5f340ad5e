"""Acceptance lines / required features of the training issue that had no test of their own.

- the 13-finding classifier task resumes exactly (triage, segmentation and bone already did);
- gradient accumulation equals the larger batch; early stopping stops; the resolved config and git revision are
  saved with the run; warmup + cosine by hand;
- ``cxr evaluate classifier`` prints the design's table (AT ... SD AVG, n/a for classes without positives);
- augmentation's level adjustment is the foundation's ``apply_level``.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cxrassist.cli import main as cli_main
from cxrassist.training.config import load_config
from cxrassist.training.engine import cosine_lambda, train

BASE = {
    "optim.warmup_epochs": 0,
    "run.tensorboard": False,
    "run.progress": False,
    "run.log_every": 0,
    "augment.enabled": False,
}


def _cfg(task: str, manifest: Path, out: Path, name: str, **sets):
    return load_config(
        None, task=task, name=name, out_dir=str(out), **{"data.manifests": [str(manifest)]}, **{**BASE, **sets}
    )


def _weights(run_dir: Path, module: str = "model") -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False, map_location="cpu")["modules"][module]


def test_classifier_resumes_exactly(cls_manifest: Path, tmp_path: Path, tiny) -> None:
    sets = {
        "model.name": "dn121-512",
        "model.kwargs": tiny.dn,
        "data.size": 128,
        "data.batch_size": 4,
        "optim.lr": 3e-3,
        "run.epochs": 2,
        "export.when": "never",
    }
    straight = train(_cfg("classifier", cls_manifest, tmp_path, "a", **sets, **{"run.max_steps": 5}))
    train(_cfg("classifier", cls_manifest, tmp_path, "b", **sets, **{"run.max_steps": 2}))
    resumed = train(_cfg("classifier", cls_manifest, tmp_path, "b", **sets, **{"run.max_steps": 5}), resume=True)
    assert straight.global_step == resumed.global_step == 5  # 4 steps per epoch: the resume crosses an epoch
    a, b = _weights(straight.run_dir), _weights(resumed.run_dir)
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    init = train(_cfg("classifier", cls_manifest, tmp_path, "c", **sets, **{"run.max_steps": 1}))
    c = _weights(init.run_dir)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())  # training really moved them


def test_grad_accumulation_equals_the_larger_batch(seg_manifest: Path, tmp_path: Path, tiny) -> None:
    # fp32 math (run.amp off): under bf16 autocast, the GPU default, the two sums agree only to bf16 precision
    sets = {
        "model.name": "lungseg-vgg16unet-compact",
        "model.kwargs": tiny.seg,
        "model.freeze_bn": True,
        "data.size": 64,
        "optim.lr": 1e-3,
        "run.epochs": 1,
        "export.when": "never",
        "run.amp": "off",
    }
    big = train(_cfg("segmentation", seg_manifest, tmp_path, "big", **sets, **{"data.batch_size": 4}))
    acc = train(
        _cfg("segmentation", seg_manifest, tmp_path, "acc", **sets, **{"data.batch_size": 2, "optim.grad_accum": 2})
    )
    one = train(_cfg("segmentation", seg_manifest, tmp_path, "one", **sets, **{"data.batch_size": 2}))
    assert big.global_step == acc.global_step == 3 and one.global_step == 6
    a, b, c = _weights(big.run_dir), _weights(acc.run_dir), _weights(one.run_dir)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    assert any((a[k] - c[k]).abs().max() > 1e-4 for k in a if a[k].is_floating_point())  # not trivially equal


def test_early_stopping_and_run_provenance(seg_manifest: Path, tmp_path: Path, tiny) -> None:
    # lr 0 and frozen BN: the validation Dice cannot improve after the first epoch -> stop after patience 1
    cfg = _cfg(
        "segmentation",
        seg_manifest,
        tmp_path,
        "es",
        **{
            "model.name": "lungseg-vgg16unet-compact",
            "model.kwargs": tiny.seg,
            "model.freeze_bn": True,
            "data.size": 64,
            "data.batch_size": 4,
            "optim.lr": 0.0,
            "run.epochs": 6,
            "run.early_stopping": 1,
            "export.when": "never",
        },
    )
    res = train(cfg)
    assert res.epochs_done == 2 and len(res.history) == 2
    saved = yaml.safe_load((res.run_dir / "config.yaml").read_text())
    assert saved["task"] == "segmentation" and saved["model"]["name"] == "lungseg-vgg16unet-compact"
    assert saved["run"]["early_stopping"] == 1 and saved["data"]["size"] == 64  # the resolved config
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True)
    if head.returncode == 0:
        assert saved["_run"]["git_revision"].split("-")[0] == head.stdout.strip()
    lines = (res.run_dir / "log.csv").read_text().strip().splitlines()
    assert len(lines) == 3 and "val_dice" in lines[0]


def test_warmup_then_cosine_by_hand() -> None:
    f = cosine_lambda(total=10, warmup=2, min_ratio=0.1)
    assert [f(0), f(1)] == [0.5, 1.0]
    assert f(2) == pytest.approx(1.0)
    assert f(6) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(10) == pytest.approx(0.1) and f(50) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(2, 12))


def test_evaluate_classifier_prints_the_results_table(
    cls_manifest: Path, tmp_path: Path, tiny, capsys: pytest.CaptureFixture
) -> None:
    from cxrassist.labels import FINDING_CODES
    from cxrassist.models import create_model
    from cxrassist.weights import ModelCard, save_weights

    torch.manual_seed(0)
    card = ModelCard.new("dn121-512", kwargs=tiny.dn)
    card.input["size"] = 128
    save_weights(create_model("dn121-512", **tiny.dn), tmp_path / "w", card)
    try:
        cli_main(
            [
                "evaluate",
                "classifier",
                "--manifest",
                str(cls_manifest),
                "--weights",
                str(tmp_path / "w"),
                "--bootstrap",
                "0",
            ]
        )
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    out = capsys.readouterr().out
    # one row per finding: code, the population it was validated on, AUROC, [CI], positives/n, threshold, ...
    rows = {
        line.split()[0]: line.split() for line in out.splitlines() if line.split() and line.split()[0] in FINDING_CODES
    }
    assert list(rows) == list(FINDING_CODES)
    # the fake set has Nodule (-> Lung Lesion) positives and nothing else
    assert rows["FR"][2] == "n/a" and 0.0 <= float(rows["LL"][2]) <= 1.0
    assert rows["LL"][1] == "all"  # no NIH-source films: measured on the whole evaluation set, and it says so
    assert rows["LL"][-1] == "no"  # 8 films are far too few for the validated rule
    assert "validated = AUROC on NIH-source val films with >= 10 positives" in out


def test_augment_level_is_the_foundation_function(monkeypatch: pytest.MonkeyPatch) -> None:
    import cxrassist.data.augment as augment
    from cxrassist.preprocess import apply_level

    calls: list[tuple[float, float]] = []

    def spy(x, center, width):
        calls.append((float(center), float(width)))
        return apply_level(x, center, width)

    monkeypatch.setattr(augment, "apply_level", spy)
    cfg = augment.AugmentConfig(
        level_prob=1.0, rotate_deg=0, scale=(1, 1), ratio=(1, 1), translate=0, contrast=0.0, brightness=0.0
    )
    img = torch.linspace(0, 1, 32 * 32).reshape(1, 32, 32)
    out = augment.JointAugment(cfg, 32)(np.random.default_rng(0), img)["image"]
    assert calls and len(set(calls)) == 1  # one random window/level per sample (also used for the contrast pivot)
    center, width = calls[0]
    assert 0.45 <= center <= 0.55 and 0.80 <= width <= 1.15
    expected = apply_level(img.numpy(), center, width)
    np.testing.assert_allclose(out.numpy(), expected, atol=2e-3)


def _initial(tiny) -> dict[str, torch.Tensor]:
    """The weights a segmentation run starts from without ``init_from`` (seeded like every run)."""
    from cxrassist.models import create_model

    torch.manual_seed(0)
    return create_model("lungseg-vgg16unet-compact", **tiny.seg).state_dict()


def test_heart_recipe_trains_on_the_named_mask_column_from_lung_weights(seg_manifest: Path, tmp_path: Path, tiny):
    """The heart model's recipe: masks from ``data.mask_column``, weights warm-started from a segmentation model,
    card labels from ``export.labels``; ``cxr evaluate`` then scores it against that same column."""
    import csv

    from PIL import Image

    from cxrassist.data.manifest import load_manifest
    from cxrassist.evaluation.runner import evaluate
    from cxrassist.weights import load_model

    rows = list(csv.DictReader(seg_manifest.open()))
    for row in rows:  # a "heart": the lower middle of each image, unlike the lung masks
        heart = np.zeros((64, 64))
        heart[36:56, 22:42] = 1.0
        path = seg_manifest.parent / "hearts" / f"{row['id']}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray((heart * 255).astype(np.uint8)).save(path)
        row["heart_mask"] = f"hearts/{row['id']}.png"
    with seg_manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert load_manifest(seg_manifest, mask_column="heart_mask")[0].mask.parent.name == "hearts"

    sets = {"model.name": "lungseg-vgg16unet-compact", "model.kwargs": tiny.seg, "data.size": 64, "data.batch_size": 4}
    lung = train(_cfg("segmentation", seg_manifest, tmp_path, "lung", **sets, **{"run.max_steps": 2}))
    lung_dir = next((lung.run_dir / "export").iterdir())
    start = _weights(lung.run_dir)  # == the lung export (its last weights)
    heart = _cfg(
        "segmentation",
        seg_manifest,
        tmp_path,
        "heart",
        **sets,
        **{
            "model.init_from": str(lung_dir),
            "data.mask_column": "heart_mask",
            "export.labels": ["Heart"],
            "export.when": "last",
            "optim.lr": 0.0,  # no step moves the weights, frozen BN keeps its statistics: it exports its start
            "model.freeze_bn": True,
            "run.max_steps": 1,
        },
    )
    res = train(heart)
    model, card = load_model(next((res.run_dir / "export").iterdir()))
    assert card.labels == ["Heart"] and card.thresholds == {"Heart": 0.5}
    exported = load_model(lung_dir)[0].state_dict()
    for k, v in model.state_dict().items():  # warm-started from the lung export
        if v.is_floating_point():
            torch.testing.assert_close(v, exported[k], msg=k)
    # ... and not a fresh initialisation: the lung run's two steps moved its weights away from where it started
    assert any((start[k] - v).abs().max() > 0 for k, v in _initial(tiny).items() if v.is_floating_point())
    # scored against the masks its card's label names: a model that calls every pixel gets Dice 2|M| / (|M| + 64^2)
    from cxrassist.weights import save_weights

    scores = {}
    for folder, name in ((next((res.run_dir / "export").iterdir()), "Heart"), (lung_dir, "Lung")):
        m, c = load_model(folder)
        with torch.no_grad():
            m.head.bias.fill_(30.0)
        save_weights(m, tmp_path / name, c)
        scores[name] = evaluate("segmentation", [str(seg_manifest)], weights=str(tmp_path / name))
    assert scores["Heart"]["n_cases"] == 4
    assert scores["Heart"]["dice"] == pytest.approx(2 * 400 / (400 + 64 * 64), abs=1e-6)
    assert scores["Lung"]["dice"] != pytest.approx(scores["Heart"]["dice"], abs=1e-3)
    # a manifest without the heart column is refused in one line, not scored as Dice nan on no cases
    from cxrassist.errors import DatasetError

    bare = seg_manifest.parent / "bare.csv"  # beside it: the same relative image paths
    with bare.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[k for k in rows[0] if k != "heart_mask"])
        writer.writeheader()
        writer.writerows([{k: v for k, v in r.items() if k != "heart_mask"} for r in rows])
    with pytest.raises(DatasetError, match="no 'heart_mask' masks"):
        evaluate("segmentation", [str(bare)], weights=str(tmp_path / "Heart"))
