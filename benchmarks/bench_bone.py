"""The bone step on RG1, warm, on a CPU: what ``timings_ms.bone`` of a report measures (issue 13: <= 150 ms on 2
cores). Prints a table: weights, input size, parameters, GFLOPs, min / median of N warm runs, for the generator as
built (spectral norm, batch norm: what training runs) and folded for inference (what the pipeline runs), the runs
interleaved A/B so both see the same load; then the speed-up and the largest difference of the two bone images.

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
        built, card = load_model(weights)
        folded, _ = load_model(weights, inference=True)  # as the pipeline runs it
        size = card_input_size(card)
        variants = {"as built": built, "folded": folded}
        flops, times, bones = {}, {k: [] for k in variants}, {}
        for key, model in variants.items():
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                model(torch.zeros(1, 1, size, size))
            flops[key] = counter.get_total_flops() / 1e9
        with torch.inference_mode():
            for key, model in variants.items():
                bones[key] = predict_bone(model, card, pixels)[2]  # warm-up
            for i in range(args.runs):
                for key in list(variants)[:: 1 if i % 2 == 0 else -1]:  # A/B, then B/A
                    t0 = time.perf_counter()
                    bone = predict_bone(variants[key], card, pixels)[2]
                    soft = np.subtract(pixels, bone, dtype=np.float32)  # the soft-tissue image, as the pipeline
                    np.clip(soft, 0.0, 1.0, out=soft)
                    times[key].append((time.perf_counter() - t0) * 1000)
        params = sum(p.numel() for p in built.parameters()) / 1e6
        for key in variants:
            name = f"{card.name} {card.version} {key}"
            print(
                f"{name:34s} {size:5d} {params:7.2f}M {flops[key]:7.2f} {min(times[key]):7.0f} "
                f"{statistics.median(times[key]):9.0f}"
            )
        diff = float(np.abs(bones["folded"] - bones["as built"]).max())
        span = float(bones["as built"].max() - bones["as built"].min())
        print(
            f"  folded: {statistics.median(times['as built']) / statistics.median(times['folded']):.2f}x faster "
            f"(median), {min(times['as built']) / min(times['folded']):.2f}x (min); bone image max |diff| "
            f"{diff:.1e} = {diff / max(span, 1e-12):.1e} of its range"
        )


if __name__ == "__main__":
    main()
