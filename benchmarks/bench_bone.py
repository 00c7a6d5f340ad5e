"""The bone step on RG1, warm, on a CPU: what ``timings_ms.bone`` of a report measures (issue 13: <= 150 ms on 2
cores). Prints a table: weights, input size, parameters, GFLOPs, min / median of N warm runs.

Run: ``.venv/bin/python benchmarks/bench_bone.py [--threads 2] [--runs 10] [--weights DIR ...]``. On a shared machine
the minimum is the figure to compare (the median shows the contention).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode


def main() -> None:
    from pydicom.data import get_testdata_file

    from cxrassist.channels import card_input_size, predict_bone
    from cxrassist.io import read_xray
    from cxrassist.weights import load_model, shipped_dir

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--weights", type=Path, nargs="*", default=[shipped_dir() / "bone"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pixels = read_xray(get_testdata_file("RG1_UNCI.dcm")).pixels
    print(f"bone step on RG1 ({pixels.shape[1]}x{pixels.shape[0]}), {args.threads} threads, {args.runs} warm runs")
    print(f"{'weights':34s} {'size':>5s} {'params':>8s} {'GFLOPs':>7s} {'min ms':>7s} {'median ms':>9s}")
    for weights in args.weights:
        model, card = load_model(weights, inference=True)  # folded, as the pipeline runs it
        size = card_input_size(card)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 1, size, size))
        times = []
        with torch.inference_mode():
            predict_bone(model, card, pixels)  # warm-up
            for _ in range(args.runs):
                t0 = time.perf_counter()
                bone = predict_bone(model, card, pixels)[2]
                np.clip(pixels - bone, 0.0, 1.0)  # the soft-tissue image, as the pipeline's bone step
                times.append((time.perf_counter() - t0) * 1000)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        name = f"{card.name} {card.version}"
        print(
            f"{name:34s} {size:5d} {params:7.2f}M {counter.get_total_flops() / 1e9:7.2f} {min(times):7.0f} "
            f"{statistics.median(times):9.0f}"
        )


if __name__ == "__main__":
    main()
