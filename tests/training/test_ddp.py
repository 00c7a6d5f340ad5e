"""Two CPU processes under torchrun (gloo) train like one process with the same global batch.

BatchNorm is frozen (eval mode, ``model.freeze_bn``) so that per-rank batch statistics cannot differ from the
single-process ones; every loss is a mean of per-sample terms, so the averaged DDP gradient equals the global-batch
gradient up to floating-point summation order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow


def _args(manifest: Path, out: Path, name: str) -> list[str]:
    sets = {
        "model.name": "lungseg-vgg16unet-compact",
        "model.kwargs": "{width: 0.0625}",
        "model.freeze_bn": "true",
        "data.size": 64,
        "data.batch_size": 4,
        "optim.lr": 1e-3,
        "optim.warmup_epochs": 0,
        "run.epochs": 1,
        "run.tensorboard": "false",
        "run.progress": "false",
        "run.device": "cpu",
    }
    args = ["train", "segmentation", "--manifest", str(manifest), "--name", name, "--out-dir", str(out)]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    return args


def test_two_process_gloo_matches_single_process(seg_manifest: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "cxrassist.cli",
            *_args(seg_manifest, tmp_path, "ddp"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    check = json.loads((tmp_path / "ddp" / "ddp_check.json").read_text())
    assert check["world_size"] == 2 and check["identical"] is True

    single = subprocess.run(
        [sys.executable, "-m", "cxrassist.cli", *_args(seg_manifest, tmp_path, "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-3000:]

    a = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "one" / "checkpoints" / "last.pt", weights_only=False)
    assert a["progress"]["global_step"] == b["progress"]["global_step"] == 3
    init = None
    for k, va in a["modules"]["model"].items():
        vb = b["modules"]["model"][k]
        torch.testing.assert_close(va, vb, rtol=1e-4, atol=1e-5, msg=f"{k} differs between DDP and single process")
    # and training moved the weights (the comparison is not between two untouched initialisations)
    torch.manual_seed(0)
    from cxrassist.models import create_model

    init = create_model("lungseg-vgg16unet-compact", width=0.0625).state_dict()
    moved = max((a["modules"]["model"][k] - init[k]).abs().max().item() for k in init if init[k].is_floating_point())
    assert moved > 1e-4
