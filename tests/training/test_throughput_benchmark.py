"""The training-throughput benchmark runs the trainer's own step: smoke-run it on CPU with tiny models."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_throughput_benchmark_times_the_trainer_step_and_checks_bf16(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_train_throughput.py"),
            "--quick",
            "--threads",
            "1",
            "--rows",
            "triage",
            "lungs",
            "--modes",
            "fp32",
            "bf16",
            "--warmup",
            "1",
            "--steps",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["mode"]) for r in rows] == [
        ("triage-dn121-512", "fp32"),
        ("triage-dn121-512", "bf16"),
        ("lungseg-vgg16unet", "fp32"),
        ("lungseg-vgg16unet", "bf16"),
    ]
    for r in rows:
        assert r["images_per_s"] > 0 and r["ms_per_step"] > 0
        assert r["peak_gib"] is None  # CPU: no accelerator memory to report (NaN is written as null)
    fp32 = [r for r in rows if r["mode"] == "fp32"]
    assert all(r["loss_rel_vs_fp32"] == 0 and r["grad_cos_vs_fp32"] == 1 for r in fp32)
    bf16 = [r for r in rows if r["mode"] == "bf16"]
    # bf16 really ran (not the fp32 path again): the first loss differs, but only at bf16 precision
    assert all(0 < r["loss_rel_vs_fp32"] < 0.05 and math.isfinite(r["grad_cos_vs_fp32"]) for r in bf16)
    assert math.isnan(fp32[1]["chexpert_epoch_min"] or math.nan) and fp32[0]["chexpert_epoch_min"] > 0
    assert "img/s" in proc.stdout and "triage dn121-512" in proc.stdout
