"""Speed and memory of the full analysis on this machine (prints a table; not a test).

Measures, frontal only, warm: the full analysis per study (all four models + CAMs + triage); the classifier with its
CAMs against a plain torchvision DenseNet-121 at 224 x 224 x 3 in the same run (the ratio is what carries across
machines); the cold start (process start -> report written, ``cxr analyze`` in a subprocess) with its peak memory
(ru_maxrss); and the batch throughput. Uses the shipped weights when present, else ``--allow-untrained``
full-size architectures (said in the output: the timings are then of the same networks, the outputs meaningless).

    python benchmarks/bench_analyze.py [--weights DIR] [--repeats 3] [--batch 4] [--threads N] [--skip-cold]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOALS = {
    "analysis": 1.0,
    "ratio": 1.0,
    "cold": 6.0,
    "cold_full": 3.0,
    "memory_gb": 2.0,
    "batch_full": 60.0,
    "bone_ms": 150.0,  # issue 13: the bone step, warm, on RG1, 2 cores
}


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _cold_start(dicom: Path, weights: str | None, untrained: bool, formats: str) -> tuple[float, float]:
    cxr = Path(sys.executable).with_name("cxr")
    cmd = [str(cxr) if cxr.exists() else sys.executable, *([] if cxr.exists() else ["-m", "cxrassist.cli"])]
    with tempfile.TemporaryDirectory() as tmp:
        cmd += ["analyze", str(dicom), "--out", str(Path(tmp) / "r"), "--format", formats]
        if weights:
            cmd += ["--weights", weights]
        if untrained:
            cmd += ["--allow-untrained"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = proc.communicate()
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"cold start failed: {err.decode()[-500:]}")
    maxrss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, maxrss_kb / 1024 / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="weights folder (default: shipped)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4, help="studies in the batch throughput run (0 to skip)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-cold", action="store_true")
    args = ap.parse_args()

    import numpy as np
    import torch
    import torchvision
    from PIL import Image
    from pydicom.data import get_testdata_file

    from cxrassist.batch import run_batch
    from cxrassist.errors import WeightsError
    from cxrassist.explain.cam import class_activation_maps
    from cxrassist.io import read_xray
    from cxrassist.pipeline import Pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        pipe = Pipeline.load(args.weights)
        untrained = False
    except WeightsError as exc:
        print(f"NOTE: {exc}\nNOTE: using --allow-untrained FULL-SIZE architectures (timings valid, outputs not)")
        pipe = Pipeline.load(args.weights, allow_untrained=True)
        untrained = True
    dicom = Path(get_testdata_file("RG1_UNCI.dcm"))
    xray = read_xray(dicom)
    print(
        f"machine: {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; "
        f"input RG1 {xray.shape[1]}x{xray.shape[0]}"
    )
    for m in pipe.models.values():
        card = m[1]
        print(f"  {card.name:<28} {card.architecture:<28} size {card.input.get('size')} status {card.status}")

    rows: list[tuple[str, str, str, str]] = []
    stages: dict[str, list[float]] = {}

    def full() -> None:
        for k, v in pipe.analyze(xray).timings_ms.items():
            stages.setdefault(k, []).append(v)

    t_full = _median_time(full, args.repeats)
    rows.append(
        (
            "full analysis / study (warm)",
            f"{t_full:.2f} s",
            f"<= {GOALS['analysis']:.1f} s",
            f"{t_full / GOALS['analysis']:.2f}x goal",
        )
    )
    stage = {k: statistics.median(v[1:] or v) for k, v in stages.items()}  # warm runs (the first is the warm-up)
    rows.append(("  stages (ms, median)", ", ".join(f"{k} {v:.0f}" for k, v in stage.items() if k != "total"), "", ""))
    if "bone" in stage:
        bone_ms = stage["bone"]
        rows.append(
            (
                "  bone step (warm, median)",
                f"{bone_ms:.0f} ms",
                f"<= {GOALS['bone_ms']:.0f} ms",
                "OK" if bone_ms <= GOALS["bone_ms"] else "over",
            )
        )

    # Writing one report (json + html + the PNGs), warm: what PNG encoding costs on top of the analysis.
    from cxrassist.report import write_outputs

    result = pipe.analyze(xray)
    with tempfile.TemporaryDirectory() as tmp:
        for formats in ("json", "json,html,png"):
            cpu0 = time.process_time()
            t_write = _median_time(lambda f=formats: write_outputs(result, Path(tmp) / "r", f), args.repeats)
            cpu = (time.process_time() - cpu0) / (args.repeats + 1)  # CPU seconds, all threads: load-independent
            rows.append((f"report write --format {formats} (warm)", f"{t_write:.2f} s wall, {cpu:.2f} s CPU", "", ""))

    cls_model = pipe.models["classifier"][0]
    size = pipe.settings.classifier.input.size
    x = torch.rand(1, len(pipe.settings.classifier.input.channels), size, size)
    t_cls = _median_time(lambda: class_activation_maps(cls_model, x), args.repeats)
    ref = torchvision.models.densenet121(weights=None).eval()
    xr = torch.rand(1, 3, 224, 224)

    def plain() -> None:
        with torch.inference_mode():
            ref(xr)

    t_ref = _median_time(plain, args.repeats)
    rows.append((f"classifier + 13 CAMs @{size}", f"{t_cls * 1000:.0f} ms", "", ""))
    rows.append(("torchvision DenseNet-121 @224x3", f"{t_ref * 1000:.0f} ms", "", ""))
    rows.append(
        (
            "  ratio classifier+CAM / plain DN121",
            f"{t_cls / t_ref:.2f}",
            f"<= {GOALS['ratio']:.1f}",
            "OK" if t_cls / t_ref <= GOALS["ratio"] else "over",
        )
    )
    rows.append(("  ratio full analysis / plain DN121", f"{t_full / t_ref:.2f}", "", ""))
    # The design's full-size configuration (512 input, 3 channels), whatever size the shipped card uses.
    from cxrassist.models import create_model

    design = create_model("dn121-512-lung-bone").eval()
    x512 = torch.rand(1, 3, 512, 512)
    t_design = _median_time(lambda: class_activation_maps(design, x512), args.repeats)
    rows.append(("design dn121-512-lung-bone + 13 CAMs @512", f"{t_design * 1000:.0f} ms", "", ""))
    rows.append(
        (
            "  ratio design classifier+CAM / plain DN121",
            f"{t_design / t_ref:.2f}",
            f"<= {GOALS['ratio']:.1f}",
            "OK" if t_design / t_ref <= GOALS["ratio"] else "over",
        )
    )

    if not args.skip_cold:
        for formats in ("json", "json,html,png"):
            wall, peak = _cold_start(dicom, args.weights, untrained, formats)
            goal = GOALS["cold"] if formats == "json" else GOALS["cold_full"]
            rows.append(
                (
                    f"cold start cxr analyze --format {formats}",
                    f"{wall:.2f} s",
                    f"<= {goal:.0f} s",
                    f"{wall / goal:.2f}x goal",
                )
            )
        rows.append(
            (
                "peak memory (max RSS of the subprocesses)",
                f"{peak:.2f} GB",
                f"<= {GOALS['memory_gb']:.0f} GB",
                "OK" if peak <= GOALS["memory_gb"] else "over",
            )
        )

    if args.batch:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "in"
            src.mkdir()
            img = Image.fromarray((np.clip(xray.pixels, 0, 1) * 255).astype(np.uint8))
            for i in range(args.batch):
                img.save(src / f"study{i}.png")
            for formats in ("json", "json,html,png"):
                summary = run_batch(
                    src, Path(tmp) / f"out-{formats.replace(',', '-')}", pipeline=pipe, formats=formats, progress=False
                )
                full = formats != "json"
                rows.append(
                    (
                        f"batch throughput ({args.batch} studies, {formats})",
                        f"{summary.studies_per_minute:.1f} studies/min",
                        f">= {GOALS['batch_full']:.0f}/min" if full else "",
                        ("OK" if summary.studies_per_minute >= GOALS["batch_full"] else "under") if full else "",
                    )
                )

    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'value':<28} {'goal':<10} vs goal")
    for name, value, goal, verdict in rows:
        print(f"{name:<{width}}  {value:<28} {goal:<10} {verdict}")
    if untrained:
        print("\n(untrained full-size architectures: timings are representative, outputs meaningless)")


if __name__ == "__main__":
    main()
