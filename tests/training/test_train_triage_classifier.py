"""Triage and the 13-finding classifier (1-channel, lung+bone derived channels, dual view) on synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrassist.cli import main as cli_main
from cxrassist.training.config import load_config
from cxrassist.training.engine import train


def _cli(args: list[str]) -> None:
    try:
        cli_main(args)
    except SystemExit as exc:
        assert exc.code in (0, None), f"cxr {' '.join(args)} exited {exc.code}"


def _cfg(task: str, manifest: Path, out: Path, name: str, model: str, tiny, **sets):
    base = {
        "model.name": model,
        "model.kwargs": tiny.dn,
        "data.size": 128,
        "data.batch_size": 4,
        "data.val_batch_size": 8,
        "optim.lr": 3e-3,
        "optim.warmup_epochs": 0,
        "run.tensorboard": False,
        "run.progress": False,
        "run.log_every": 0,
        "data.cache_dir": str(out / "cache"),
    }
    return load_config(
        None, task=task, name=name, out_dir=str(out), **{"data.manifests": [str(manifest)]}, **{**base, **sets}
    )


def _last(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False, map_location="cpu")["modules"]["model"]


def test_triage_then_classifier_with_derived_channels(cls_manifest: Path, tmp_path: Path, tiny) -> None:
    # --- triage: learns, resumes exactly, evaluates with thresholds + ROC PNG
    res = train(
        _cfg(
            "triage",
            cls_manifest,
            tmp_path,
            "tri",
            "triage-dn121-512",
            tiny,
            **{"run.epochs": 5, "augment.enabled": False, "loss.label_smoothing": 0.05},
        )
    )
    assert res.history[-1]["train_bce"] < res.history[0]["train_bce"]
    a = train(
        _cfg("triage", cls_manifest, tmp_path, "a", "triage-dn121-512", tiny, **{"run.epochs": 2, "run.max_steps": 6})
    )
    train(
        _cfg("triage", cls_manifest, tmp_path, "b", "triage-dn121-512", tiny, **{"run.epochs": 2, "run.max_steps": 3})
    )
    b = train(
        _cfg("triage", cls_manifest, tmp_path, "b", "triage-dn121-512", tiny, **{"run.epochs": 2, "run.max_steps": 6}),
        resume=True,
    )
    sa, sb = _last(a.run_dir), _last(b.run_dir)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)

    tri_dir = res.export_dir
    before = json.loads((tri_dir / "card.json").read_text())
    out = tmp_path / "tri.json"
    _cli(
        [
            "evaluate",
            "triage",
            "--manifest",
            str(cls_manifest),
            "--weights",
            str(tri_dir),
            "--json",
            str(out),
            "--roc-dir",
            str(tmp_path / "roc"),
            "--write-thresholds",
            "youden",
            "--bootstrap",
            "50",
        ]
    )
    m = json.loads(out.read_text())
    assert m["n_cases"] == 8 and 0 <= m["auroc"] <= 1 and "sensitivity" in m and "specificity" in m
    assert (tmp_path / "roc" / "roc_abnormal.png").is_file()
    after = json.loads((tri_dir / "card.json").read_text())
    assert after["sha256"] == before["sha256"]
    # the one rule: 8 films (no NIH-source ones) are too few to validate anything, however good the AUROC
    op = after["operating_points"]["Abnormal"]
    assert op["measured_on"] == "all evaluation films" and op["n"] == 8
    assert after["validated"]["Abnormal"] is False
    assert after["thresholds"]["Abnormal"] == pytest.approx(m["per_label"]["abnormal"]["operating"]["threshold"])
    assert set(after["calibration"]["Abnormal"]) == {"a", "b"}
    # test-time zooms come from the card (as `cxr analyze` scores a film); --no-tta scores the plain view alone
    after["input"]["tta_zooms"] = [1.0, 0.9]
    (tri_dir / "card.json").write_text(json.dumps(after))
    for flag, name in ((), "tta.json"), (("--no-tta",), "plain.json"):
        _cli(
            [
                "evaluate",
                "triage",
                "--manifest",
                str(cls_manifest),
                "--weights",
                str(tri_dir),
                "--json",
                str(tmp_path / name),
                "--bootstrap",
                "0",
                *flag,
            ]
        )
    with_tta, plain = (json.loads((tmp_path / n).read_text()) for n in ("tta.json", "plain.json"))
    assert with_tta["tta_zooms"] == [1.0, 0.9] and plain["tta_zooms"] == [1.0]
    assert plain["auroc"] == pytest.approx(m["auroc"])  # the plain view is what was measured before

    # --- tiny (untrained) lung and bone models provide the derived channels
    from cxrassist.models import create_model
    from cxrassist.weights import ModelCard, save_weights

    torch.manual_seed(0)
    lung = tmp_path / "w" / "lung"
    bone = tmp_path / "w" / "bone"
    c = ModelCard.new("lungseg-vgg16unet-compact", kwargs=tiny.seg)
    c.input["size"] = 64
    save_weights(create_model("lungseg-vgg16unet-compact", **tiny.seg), lung, c)
    c = ModelCard.new("bone-gan-compact", kwargs=tiny.gan)
    c.input["size"] = 64
    save_weights(create_model("bone-gan-compact", **tiny.gan), bone, c)

    cfg = _cfg(
        "classifier",
        cls_manifest,
        tmp_path,
        "cls",
        "dn121-512-lung-bone",
        tiny,
        **{
            "run.epochs": 3,
            "augment.enabled": False,
            "model.init_from": str(tri_dir),
            "data.lung_weights": str(lung),
            "data.bone_weights": str(bone),
        },
    )
    res = train(cfg)
    assert res.history[-1]["train_bce"] < res.history[0]["train_bce"]
    cached = list((tmp_path / "cache" / "derived").glob("*.npz"))
    assert len(cached) == 24  # every train + val image once
    with np.load(cached[0]) as z:
        assert z["lung"].shape == (128, 128) and set(np.unique(z["lung"])) <= {0, 1}
        assert z["bone"].dtype == np.float16
    out = tmp_path / "cls.json"
    _cli(
        [
            "evaluate",
            "classifier",
            "--manifest",
            str(cls_manifest),
            "--weights",
            str(res.export_dir),
            "--json",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--bootstrap",
            "20",
        ]
    )
    m = json.loads(out.read_text())
    assert m["n_cases"] == 8
    assert m["auroc"]["LL"] is not None  # nodules -> Lung Lesion has positives and negatives
    assert m["auroc"]["FR"] is None  # no fracture positives: n/a, not a number
    assert m["mean_auroc"] is not None


def test_triage_init_copies_body(cls_manifest: Path, tmp_path: Path, tiny) -> None:
    """init_from loads the triage body into the classifier (checked before any training step)."""
    from cxrassist.models import create_model
    from cxrassist.training.tasks import make_task
    from cxrassist.weights import ModelCard, save_weights

    torch.manual_seed(1)
    tri = create_model("triage-dn121-512", **tiny.dn)
    save_weights(tri, tmp_path / "tri", ModelCard.new("triage-dn121-512", kwargs=tiny.dn))
    cfg = _cfg(
        "classifier", cls_manifest, tmp_path, "c", "dn121-512", tiny, **{"model.init_from": str(tmp_path / "tri")}
    )
    model = make_task(cfg).build()["model"]
    key = next(k for k in tri.state_dict() if k.startswith("features.") and k.endswith("weight"))
    assert torch.equal(model.state_dict()[key], tri.state_dict()[key])


def test_dual_view_classifier(tmp_path: Path, tiny) -> None:
    manifest = tiny.make_cls(tmp_path / "dual", n_train=8, n_val=4, lateral=True)
    res = train(
        _cfg(
            "classifier", manifest, tmp_path, "dual", "dn121-512-dual", tiny, **{"run.epochs": 1, "data.lateral": True}
        )
    )
    assert res.global_step == 2 and res.export_dir is not None
    out = tmp_path / "dual.json"
    _cli(
        [
            "evaluate",
            "classifier",
            "--manifest",
            str(manifest),
            "--weights",
            str(res.export_dir),
            "--json",
            str(out),
            "--bootstrap",
            "0",
        ]
    )
    assert json.loads(out.read_text())["n_cases"] == 4


def test_ema_weights_are_validated_exported_and_resumed_exactly(cls_manifest: Path, tmp_path: Path, tiny) -> None:
    """run.ema_decay: the exported model is the weight average (not the raw weights), and a stop + resume gives
    the same average as a straight run."""
    from cxrassist.weights import load_model

    sets = {"run.epochs": 2, "run.max_steps": 6, "run.ema_decay": 0.9, "augment.enabled": False}
    a = train(_cfg("triage", cls_manifest, tmp_path, "ema-a", "triage-dn121-512", tiny, **sets))
    train(_cfg("triage", cls_manifest, tmp_path, "ema-b", "triage-dn121-512", tiny, **{**sets, "run.max_steps": 3}))
    b = train(_cfg("triage", cls_manifest, tmp_path, "ema-b", "triage-dn121-512", tiny, **sets), resume=True)
    ckpt_a = torch.load(a.run_dir / "checkpoints" / "last.pt", weights_only=False, map_location="cpu")
    ckpt_b = torch.load(b.run_dir / "checkpoints" / "last.pt", weights_only=False, map_location="cpu")
    assert ckpt_a["progress"]["ema_updates"] == ckpt_b["progress"]["ema_updates"] == 6
    for k, v in ckpt_a["modules"]["ema"].items():
        assert torch.equal(v, ckpt_b["modules"]["ema"][k]), f"ema {k} differs after resume"
    raw, avg = ckpt_a["modules"]["model"], ckpt_a["modules"]["ema"]
    assert not torch.equal(raw["classifier.weight"], avg["classifier.weight"])

    best = torch.load(a.run_dir / "checkpoints" / "best.pt", weights_only=False, map_location="cpu")["modules"]["ema"]
    exported, _ = load_model(a.export_dir)
    for k, v in exported.state_dict().items():
        assert torch.equal(v, best[k].to(v.dtype)), f"export is not the EMA weights ({k})"


def test_weight_ema_follows_the_warmed_up_average() -> None:
    from cxrassist.training.ema import WeightEma

    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = WeightEma(model, decay=0.9)
    expected = 0.0
    for step in range(30):
        with torch.no_grad():
            model.weight.fill_(float(step + 1))
        d = min(0.9, (1 + step) / (10 + step))
        expected = d * expected + (1 - d) * (step + 1)
        ema.update(model)
        assert torch.allclose(ema.model.weight, torch.full_like(ema.model.weight, expected))
    assert not ema.model.weight.requires_grad
    from cxrassist.errors import ConfigError

    with pytest.raises(ConfigError, match="ema_decay"):
        WeightEma(model, decay=1.5)
