"""Training throughput of the design's full-size models, and what bf16 autocast / channels-last change (prints a table).

Each row runs the trainer's own step (:func:`cxrassist.training.engine.training_step`: the task's loss, backward,
AdamW) on synthetic tensors of the training shape, so data loading is left out: this is the ceiling the model sets,
which a data pipeline then has to feed. Per row and mode it reports images/s, ms/step, peak accelerator memory and,
for the reduced-precision modes, how far the first step's loss and gradients are from the fp32 step on the same
weights and batch (the "is AMP safe here" check).

Rows (the design at paper scale): triage ``triage-dn121-512`` and the findings classifier ``dn121-512-lung-bone`` at
512 px, the dual-view classifier (frontal + lateral), the VGG16 U-Net for the lungs at 512 px and the bone GAN
(generator + 3-scale discriminator, two optimizers) on 256-px crops. ``--quick`` shrinks everything for a CPU smoke
run (the numbers then say nothing about a GPU).

Run: ``.venv/bin/python benchmarks/bench_train_throughput.py [--device cuda] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from cxrassist.training.config import load_config
from cxrassist.training.engine import autocast_for, batch_to_device, make_optimizers, training_step
from cxrassist.training.tasks import make_task

CHEXPERT_TRAIN_IMAGES = 223_414  # one epoch of CheXpert's training set, to put images/s in scale


@dataclass(frozen=True)
class Row:
    label: str
    task: str
    model: str
    size: int
    batch: int
    kwargs: tuple[tuple[str, Any], ...] = ()


ROWS = (
    Row("triage dn121-512 (1 ch)", "triage", "triage-dn121-512", 512, 16),
    Row("findings dn121-512-lung-bone (3 ch)", "classifier", "dn121-512-lung-bone", 512, 16),
    Row("findings dual-lung-bone (F+L)", "classifier", "dn121-512-dual-lung-bone", 512, 16),
    Row("lungs vgg16 U-Net", "segmentation", "lungseg-vgg16unet", 512, 8),
    Row("bones GAN (G + 3-scale D)", "bone", "bone-gan", 256, 8),
)
QUICK_KWARGS = {  # tiny versions of the same architectures for a CPU smoke run
    "triage": (("growth_rate", 8), ("block_config", (2, 2, 2, 2)), ("num_init_features", 16)),
    "classifier": (("growth_rate", 8), ("block_config", (2, 2, 2, 2)), ("num_init_features", 16)),
    "segmentation": (("width", 0.125),),
    "bone": (("base_channels", 8),),  # generator and discriminator
}
MODES = {  # label -> (run.amp, run.channels_last)
    "fp32": ("off", False),
    "bf16": ("bf16", False),
    "bf16+cl": ("bf16", True),
}


def synthetic_batch(task: str, model: torch.nn.Module, batch: int, size: int, seed: int = 0) -> dict[str, Any]:
    """A collated batch with the keys and shapes the task's dataset yields (values random but fixed by ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    chans = int(getattr(model, "in_chans", 1))
    out: dict[str, Any] = {"image": torch.randn(batch, chans, size, size, generator=g)}
    if task == "triage":
        out["target"] = torch.randint(0, 2, (batch, 1), generator=g).float()
    elif task == "classifier":
        labels = torch.randint(0, 2, (batch, int(getattr(model, "num_classes", 13))), generator=g).float()
        labels[torch.rand(labels.shape, generator=g) < 0.3] = float("nan")  # unknown labels are masked, as in data
        out["labels"] = labels
        if hasattr(model, "lateral"):
            out["lateral"] = torch.randn(batch, int(model.lateral_in_chans), size, size, generator=g)
            out["has_lateral"] = torch.rand(batch, generator=g) < 0.5
    elif task == "segmentation":
        out["mask"] = (torch.rand(batch, 1, size, size, generator=g) < 0.4).float()
    elif task == "bone":
        out["bone"] = torch.rand(batch, 1, size, size, generator=g) * 0.3
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _grads(modules: dict[str, torch.nn.Module]) -> torch.Tensor:
    return torch.cat(
        [p.grad.detach().float().flatten() for m in modules.values() for p in m.parameters() if p.grad is not None]
    )


def _setup(row: Row, mode: str, device: torch.device, kwargs: dict[str, Any]):
    """(config, task, modules, batch) for one row and mode, as the trainer builds them (same seed: same weights)."""
    amp, channels_last = MODES[mode]
    # the manifest is never read: the batches are synthetic
    sets = [
        f"task={row.task}",
        f"model.name={row.model}",
        f"run.amp={amp}",
        f"run.channels_last={channels_last}",
        "data.manifests=[synthetic.csv]",
    ]
    top: dict[str, Any] = {"model.kwargs": kwargs or None}
    if row.task == "bone":
        sets.append(f"model.discriminator={row.model}")
        top["model.discriminator_kwargs"] = kwargs or None
    cfg = load_config(None, sets, **top)
    torch.manual_seed(0)
    task = make_task(cfg)
    modules = {k: m.to(device) for k, m in task.build().items()}
    for m in modules.values():
        if channels_last:
            m.to(memory_format=torch.channels_last)
        m.train()
    batch = batch_to_device(synthetic_batch(row.task, modules["model"], row.batch, row.size), device, channels_last)
    return cfg, task, modules, batch


def first_step_check(row: Row, mode: str, device: torch.device, kwargs: dict[str, Any]) -> tuple[float, float]:
    """Loss relative difference and gradient cosine of ``mode``'s first step against fp32 (same weights, batch).

    For the GAN the discriminator phase is compared (the generator's step depends on the updated D)."""
    results = []
    for m in ("fp32", mode):
        cfg, task, modules, batch = _setup(row, m, device, kwargs)
        with autocast_for(cfg, device):
            loss, _ = task.loss(task.phases[0], batch, modules, {})
        loss.backward()
        results.append((float(loss.detach()), _grads(modules)))
    (l32, g32), (lx, gx) = results
    rel = abs(lx - l32) / max(abs(l32), 1e-12)
    cos = float(torch.nn.functional.cosine_similarity(g32.double(), gx.double(), dim=0))
    return rel, cos


def time_row(
    row: Row, mode: str, device: torch.device, warmup: int, steps: int, kwargs: dict[str, Any]
) -> dict[str, Any]:
    cfg, task, modules, batch = _setup(row, mode, device, kwargs)
    optimizers = make_optimizers(task, modules, cfg)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(warmup):
        training_step(task, batch, modules, optimizers, cfg, device, step=i)
    _sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        training_step(task, batch, modules, optimizers, cfg, device, step=warmup + i)
    _sync(device)
    seconds = (time.perf_counter() - t0) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan
    return {
        "row": row.label,
        "model": row.model,
        "input": f"{row.size}x{row.size}",
        "batch": row.batch,
        "mode": mode,
        "images_per_s": row.batch / seconds,
        "ms_per_step": seconds * 1e3,
        "peak_gib": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny models and 128-px inputs (CPU smoke run)")
    parser.add_argument("--rows", nargs="*", help="substrings of row labels to keep")
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    parser.add_argument("--batch", type=int, help="one batch size for every row (default: each row's own)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    rows = [r for r in ROWS if not args.rows or any(s in r.label for s in args.rows)]
    if args.batch:
        rows = [Row(r.label, r.task, r.model, r.size, args.batch, r.kwargs) for r in rows]
    if args.quick:
        rows = [Row(r.label, r.task, r.model, 128, 2, QUICK_KWARGS[r.task]) for r in rows]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device {name}, torch {torch.__version__}, {args.warmup} warm-up + {args.steps} timed steps per cell; "
        "fp32 convolutions may use TF32 (PyTorch's default)"
    )
    header = (
        f"{'row':36s} {'input':>9s} {'batch':>5s} {'mode':>8s} {'img/s':>8s} {'ms/step':>8s} {'peak GiB':>8s} "
        f"{'loss rel':>9s} {'grad cos':>8s} {'CheXpert epoch':>14s}"
    )
    print(header)
    results = []
    for row in rows:
        kwargs = dict(row.kwargs)
        for mode in args.modes:
            r = time_row(row, mode, device, args.warmup, args.steps, kwargs)
            r["loss_rel_vs_fp32"], r["grad_cos_vs_fp32"] = (
                (0.0, 1.0) if mode == "fp32" else first_step_check(row, mode, device, kwargs)
            )
            r["chexpert_epoch_min"] = (
                CHEXPERT_TRAIN_IMAGES / r["images_per_s"] / 60 if row.task in ("triage", "classifier") else math.nan
            )
            results.append(r)
            epoch = "" if math.isnan(r["chexpert_epoch_min"]) else f"{r['chexpert_epoch_min']:.1f} min"
            print(
                f"{row.label:36s} {r['input']:>9s} {row.batch:5d} {mode:>8s} {r['images_per_s']:8.1f} "
                f"{r['ms_per_step']:8.1f} {r['peak_gib']:8.2f} {r['loss_rel_vs_fp32']:9.1e} "
                f"{r['grad_cos_vs_fp32']:8.4f} {epoch:>14s}",
                flush=True,
            )
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            rows_out = [
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in results
            ]
            json.dump({"device": name, "torch": torch.__version__, "rows": rows_out}, f, indent=1)


if __name__ == "__main__":
    main()
