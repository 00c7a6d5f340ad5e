"""Segmentation and bone GAN: tiny models train (loss goes down), resume exactly, export, and evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cxrassist.cli import main as cli_main
from cxrassist.training.config import load_config
from cxrassist.training.engine import train

TINY_SEG = {"width": 1 / 16}
TINY_GAN = {"base_channels": 4}


def _cfg(task: str, manifest: Path, out: Path, name: str, **sets):
    base = {
        "segmentation": {
            "model.name": "lungseg-vgg16unet-compact",
            "model.kwargs": TINY_SEG,
            "data.size": 64,
            "data.batch_size": 4,
            "optim.lr": 3e-3,
            "optim.warmup_epochs": 0,
        },
        "bone": {
            "model.name": "bone-gan-compact",
            "model.kwargs": TINY_GAN,
            "model.discriminator": "bone-gan-compact",
            "model.discriminator_kwargs": TINY_GAN,
            "data.size": 64,
            "data.batch_size": 4,
            "optim.warmup_epochs": 0,
            "optim.lr": 1e-3,
        },
    }[task]
    merged = {**base, "run.tensorboard": False, "run.progress": False, "run.log_every": 0, **sets}
    return load_config(None, task=task, name=name, out_dir=str(out), **{"data.manifests": [str(manifest)]}, **merged)


def _cli(args: list[str]) -> None:
    try:
        cli_main(args)
    except SystemExit as exc:
        assert exc.code in (0, None), f"cxr {' '.join(args)} exited {exc.code}"


def _state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False, map_location="cpu")["modules"]


def _assert_same(a: dict, b: dict) -> None:
    for mod in a:
        for k in a[mod]:
            assert torch.equal(a[mod][k], b[mod][k]), f"{mod}.{k} differs after resume"


def test_segmentation_learns_resumes_and_evaluates(seg_manifest: Path, tmp_path: Path) -> None:
    res = train(_cfg("segmentation", seg_manifest, tmp_path, "full", **{"run.epochs": 4, "augment.enabled": False}))
    hist = res.history
    assert hist[-1]["train_bce"] + hist[-1]["train_dice_loss"] < hist[0]["train_bce"] + hist[0]["train_dice_loss"]
    assert res.export_dir is not None and (res.export_dir / "card.json").is_file()
    card = json.loads((res.export_dir / "card.json").read_text())
    assert card["status"] == "trained" and card["training"]["config"]["task"] == "segmentation"
    assert card["metrics"]["val"]["dice"] == pytest.approx(res.best)
    assert (res.run_dir / "config.yaml").is_file() and (res.run_dir / "log.csv").is_file()

    # exact resume: 5 steps straight vs 2 steps, stop, resume to 5 (crosses an epoch boundary: 3 steps/epoch)
    straight = train(_cfg("segmentation", seg_manifest, tmp_path, "a", **{"run.epochs": 2, "run.max_steps": 5}))
    assert straight.global_step == 5
    train(_cfg("segmentation", seg_manifest, tmp_path, "b", **{"run.epochs": 2, "run.max_steps": 2}))
    resumed = train(
        _cfg("segmentation", seg_manifest, tmp_path, "b", **{"run.epochs": 2, "run.max_steps": 5}), resume=True
    )
    assert resumed.global_step == 5
    _assert_same(_state(straight.run_dir), _state(resumed.run_dir))

    out = tmp_path / "seg.json"
    _cli(
        [
            "evaluate",
            "segmentation",
            "--manifest",
            str(seg_manifest),
            "--weights",
            str(res.export_dir),
            "--json",
            str(out),
            "--postprocess",
        ]
    )
    metrics = json.loads(out.read_text())
    assert metrics["n_cases"] == 4 and 0.0 <= metrics["dice"] <= 1.0 and "hd95" in metrics and "iou" in metrics


def test_bone_gan_learns_resumes_and_evaluates(bone_manifest: Path, tmp_path: Path) -> None:
    res = train(
        _cfg(
            "bone", bone_manifest, tmp_path, "full", **{"run.epochs": 4, "augment.enabled": False, "export.when": "end"}
        )
    )
    hist = res.history
    assert hist[-1]["train_l1"] < hist[0]["train_l1"]
    assert res.export_dir is not None

    quick = {"run.epochs": 2, "export.when": "never"}
    straight = train(_cfg("bone", bone_manifest, tmp_path, "a", **quick, **{"run.max_steps": 3}))
    train(_cfg("bone", bone_manifest, tmp_path, "b", **quick, **{"run.max_steps": 1}))
    resumed = train(_cfg("bone", bone_manifest, tmp_path, "b", **quick, **{"run.max_steps": 3}), resume=True)
    _assert_same(_state(straight.run_dir), _state(resumed.run_dir))

    out = tmp_path / "bone.json"
    _cli(["evaluate", "bone", "--manifest", str(bone_manifest), "--weights", str(res.export_dir), "--json", str(out)])
    m = json.loads(out.read_text())
    for key in ("psnr", "ssim", "bone_psnr", "bone_ssim", "bone_suppression_ratio", "identity_psnr", "n_cases"):
        assert key in m
    assert m["n_cases"] == 3


def test_existing_run_needs_resume(seg_manifest: Path, tmp_path: Path) -> None:
    from cxrassist.errors import ConfigError

    cfg = _cfg("segmentation", seg_manifest, tmp_path, "x", **{"run.epochs": 1, "run.max_steps": 1})
    train(cfg)
    with pytest.raises(ConfigError, match="--resume"):
        train(cfg)


def test_segmentation_repeats_a_small_set_and_selects_on_the_worst_set(tmp_path: Path, tiny) -> None:
    """data.repeat oversamples one dataset's TRAINING records only; the best epoch is the one whose worst
    dataset Dice is best (every source must hold, not the average)."""
    make_seg = tiny.make_seg
    big = make_seg(tmp_path / "big", n_train=12, n_val=4)
    small = make_seg(tmp_path / "small", n_train=4, n_val=2)
    cfg = load_config(
        None,
        task="segmentation",
        name="rep",
        out_dir=str(tmp_path / "runs"),
        **{
            "data.manifests": [str(big), str(small)],
            "data.repeat": {"small": 3},
            "model.name": "lungseg-vgg16unet-compact",
            "model.kwargs": TINY_SEG,
            "data.size": 64,
            "data.batch_size": 4,
            "optim.warmup_epochs": 0,
            "run.epochs": 2,
            "run.tensorboard": False,
            "run.progress": False,
            "run.log_every": 0,
        },
    )
    res = train(cfg)
    first = res.history[0]
    assert first["global_step"] == (12 + 3 * 4) // 4  # 6 steps an epoch, not 4
    assert first["val_n_val"] == 4 + 2  # validation is not repeated
    for row in res.history:
        assert row["val_dice_worst_set"] == pytest.approx(min(row["val_dice_big"], row["val_dice_small"]))
    assert res.best == pytest.approx(max(row["val_dice_worst_set"] for row in res.history))
    card = json.loads((res.export_dir / "card.json").read_text())
    assert card["training"]["monitor"] == "dice_worst_set"
    best_row = max(res.history, key=lambda row: row["val_dice_worst_set"])  # the card describes the chosen epoch
    assert card["metrics"]["val"]["dice_small"] == pytest.approx(best_row["val_dice_small"])


@pytest.mark.parametrize(
    ("repeat", "message"), [({"smal": 2}, "not among the training records"), ({"small": 0}, "integer >= 1")]
)
def test_repeat_refuses_typos_and_bad_factors(tmp_path: Path, repeat: dict, message: str, tiny) -> None:
    from cxrassist.data.manifest import load_manifest
    from cxrassist.data.records import repeat_datasets
    from cxrassist.errors import ConfigError

    records = load_manifest(tiny.make_seg(tmp_path / "small", n_train=2, n_val=1))
    with pytest.raises(ConfigError, match=message):
        repeat_datasets(records, repeat)
    assert [r.id for r in repeat_datasets(records, {"small": 2})] == ["s0", "s0", "s1", "s1", "s2", "s2"]


def test_subsample_keeps_a_fixed_subset_of_one_set_and_refuses_typos(tmp_path: Path, tiny) -> None:
    """data.subsample: at most N records of the named set, the same ones for the same seed, others untouched."""
    from cxrassist.data.manifest import load_manifest
    from cxrassist.data.records import subsample_datasets
    from cxrassist.errors import ConfigError

    big = load_manifest(tiny.make_seg(tmp_path / "big", n_train=12, n_val=0))
    small = load_manifest(tiny.make_seg(tmp_path / "small", n_train=3, n_val=0))
    records = big + small
    a = subsample_datasets(records, {"big": 5}, seed=0)
    assert sum(r.dataset == "big" for r in a) == 5 and [r for r in a if r.dataset == "small"] == small
    assert [r.id for r in a] == [r.id for r in subsample_datasets(records, {"big": 5}, seed=0)]  # fixed subset
    assert [r.id for r in a] != [r.id for r in subsample_datasets(records, {"big": 5}, seed=1)]
    position = {id(r): i for i, r in enumerate(records)}
    assert [position[id(r)] for r in a] == sorted(position[id(r)] for r in a)  # order kept
    assert len(subsample_datasets(records, {"small": 10})) == len(records)  # more than there are: all
    with pytest.raises(ConfigError, match="not among the training records"):
        subsample_datasets(records, {"bgi": 2})
    with pytest.raises(ConfigError, match="integer >= 1"):
        subsample_datasets(records, {"big": 0})


def test_export_last_ships_the_final_weights_without_a_val_choice(
    seg_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """export.when=last: the final weights and the last evaluation's figures, and the card says no checkpoint was
    chosen on val; "end" ships the val-best checkpoint and says so. The monitor is made to fall after the first
    epoch, so the two choices differ."""
    from safetensors.torch import load_file

    from cxrassist.training.tasks import SegmentationTask

    real = SegmentationTask.validate
    falling = iter([0.9, 0.5, 0.2] * 2)

    def validate(self, modules, loader, device):
        return {**real(self, modules, loader, device), "dice_worst_set": next(falling)}

    monkeypatch.setattr(SegmentationTask, "validate", validate)
    runs = {
        when: train(_cfg("segmentation", seg_manifest, tmp_path, when, **{"run.epochs": 3, "export.when": when}))
        for when in ("last", "end")
    }
    for when, res in runs.items():
        card = json.loads((res.export_dir / "card.json").read_text())
        shipped = load_file(res.export_dir / "model.safetensors")
        ckpt = "last.pt" if when == "last" else "best.pt"
        chosen = torch.load(res.run_dir / "checkpoints" / ckpt, weights_only=False, map_location="cpu")["modules"]
        assert all(torch.equal(shipped[k], chosen["model"][k].float()) for k in shipped), when
        row = res.history[-1] if when == "last" else res.history[0]
        assert card["metrics"]["val"]["dice"] == pytest.approx(row["val_dice"])
        assert card["training"]["checkpoint"].startswith("last:" if when == "last" else "val-best:")
    assert "no checkpoint chosen on val" in json.loads((runs["last"].export_dir / "card.json").read_text())["notes"]
    first, final = (load_file(r.export_dir / "model.safetensors") for r in (runs["end"], runs["last"]))
    assert any(not torch.equal(first[k], final[k]) for k in first)  # the choice mattered


def test_export_when_is_checked(seg_manifest: Path, tmp_path: Path) -> None:
    from cxrassist.errors import ConfigError

    with pytest.raises(ConfigError, match=r"export\.when must be improve, end, last or never"):
        _cfg("segmentation", seg_manifest, tmp_path, "x", **{"export.when": "final"})
