"""The training loop shared by every task: AdamW, warmup + cosine, accumulation, AMP, DDP, checkpoints, export.

Run directory ``<out_dir>/<name>/``: ``config.yaml`` (resolved config + git revision + command), ``log.csv`` (one row
per validation), ``checkpoints/last.pt`` (every epoch and every ``run.checkpoint_every_steps``; exact resume),
``checkpoints/best.pt``, ``export/<card name>/`` (weights + model card of the best epoch), ``tb/`` (TensorBoard).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from cxrassist.data.cache import ImageCache
from cxrassist.data.dataset import collate
from cxrassist.data.manifest import load_manifests
from cxrassist.data.records import describe, select
from cxrassist.errors import ConfigError
from cxrassist.training import provenance
from cxrassist.training.checkpoint import load_checkpoint, save_checkpoint, unwrap
from cxrassist.training.config import TrainConfig, dump_config
from cxrassist.training.distributed import (
    DistInfo,
    ResumableSampler,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
)
from cxrassist.training.ema import WeightEma
from cxrassist.training.tasks import Task, make_task

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    global_step: int
    epochs_done: int
    best: float | None
    export_dir: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    images_per_s: float | None = None


def cosine_lambda(total: int, warmup: int, min_ratio: float) -> Callable[[int], float]:
    """Linear warmup to 1, then cosine down to ``min_ratio`` (a multiplier of the base lr per optimizer step)."""

    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f


def _param_groups(params: list[nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and norm scales (1-D tensors), as in timm's ``param_groups_weight_decay``."""
    decay = [p for p in params if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in params if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _set_train(modules: dict[str, nn.Module], freeze_bn: bool) -> None:
    for m in modules.values():
        m.train()
        if freeze_bn:
            for sub in m.modules():
                if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                    sub.eval()


def autocast_for(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The autocast context ``run.amp`` asks for on this device (bf16 on GPU by default, none on CPU)."""
    use = cfg.run.amp == "bf16" or (cfg.run.amp == "auto" and device.type == "cuda")
    if not use:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def batch_to_device(batch: dict[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    """Move a collated batch; 4-D tensors become channels-last when the modules are (``run.channels_last``)."""
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if channels_last and v.ndim == 4:
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


def make_optimizers(task: Task, modules: dict[str, nn.Module], cfg: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    """One AdamW per phase of the task (the GAN has two: TTUR learning rates).

    The fused implementation where the parameters live on a CPU or CUDA device: on a CPU the default falls back to
    a Python loop over the ~360 parameter tensors of a DenseNet-121, which took more time than the backward pass
    (measured with py-spy on 2 cores); the fused kernel does the same arithmetic in one call per group.
    """
    groups = task.optim_groups({k: unwrap(m) for k, m in modules.items()})
    out: dict[str, torch.optim.Optimizer] = {}
    for ph, (p, lr, betas) in groups.items():
        devices = {q.device.type for q in p}
        fused = (devices <= {"cpu", "cuda"} and all(q.dtype == torch.float32 for q in p)) or None
        out[ph] = torch.optim.AdamW(_param_groups(p, cfg.optim.weight_decay), lr=lr, betas=betas, fused=fused)
    return out


def training_step(
    task: Task,
    batch: dict[str, Any],
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    cfg: TrainConfig,
    device: torch.device,
    *,
    accum: int = 1,
    boundary: bool = True,
    step: int = 0,
) -> dict[str, float]:
    """One micro-batch through every phase of the task (forward under ``run.amp``, backward); at an accumulation
    ``boundary`` also clips and steps each phase's optimizer. The trainer and the throughput benchmark share it,
    so what the benchmark times is what training runs."""
    state: dict[str, Any] = {}
    logs_all: dict[str, float] = {}
    for phase in task.phases:
        with autocast_for(cfg, device):
            loss, logs = task.loss(phase, batch, modules, state)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite {phase} loss at step {step}")
        (loss / accum).backward()
        logs_all.update(logs)
        if boundary:
            opt = optimizers[phase]
            if cfg.optim.clip_grad:
                nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.optim.clip_grad)
            opt.step()
            opt.zero_grad(set_to_none=True)
    return logs_all


class _CsvLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if path.is_file():
            with path.open() as fh:
                self.fields = next(csv.reader(fh), None)

    def write(self, row: dict[str, Any]) -> None:
        new = self.fields is None
        if new:
            self.fields = list(row)
        with self.path.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.fields or list(row), extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)


def train(cfg: TrainConfig, *, resume: bool = False, command: str | None = None) -> TrainResult:
    """Train ``cfg.task``; returns where the run and its exported weights are."""
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    info = init_distributed(cfg.run.device)
    try:
        result = _train(cfg, info, resume=resume, command=command)
        # Every rank finishes its last collective (rank 0 exports alone) before the group is torn down: tearing
        # down gloo while the peer still talks aborts the process ("terminate called without an active exception").
        barrier(info)
        return result
    finally:
        cleanup(info)


def _train(cfg: TrainConfig, info: DistInfo, *, resume: bool, command: str | None) -> TrainResult:
    device = info.device
    run_dir = cfg.run_dir
    ckpt_dir = run_dir / "checkpoints"
    last_path = ckpt_dir / "last.pt"
    if last_path.is_file() and not resume:
        raise ConfigError(f"run {run_dir} already has a checkpoint: pass --resume, or choose another --name")
    torch.manual_seed(cfg.run.seed)  # identical initial weights on every rank and every (re)start
    task = make_task(cfg)
    modules = task.build()
    for m in modules.values():
        m.to(device)
        if cfg.run.channels_last:
            m.to(memory_format=torch.channels_last)
    export_key = task.export_module()
    ema = WeightEma(modules[export_key], cfg.run.ema_decay) if cfg.run.ema_decay else None
    records = load_manifests(cfg.data.manifests, mask_column=cfg.data.mask_column)
    cache = ImageCache(cfg.data.cache_dir)
    train_ds, val_ds = task.datasets(records, modules, device, cache)
    if info.world_size > 1 and cfg.data.batch_size % info.world_size:
        raise ConfigError(f"data.batch_size {cfg.data.batch_size} is not divisible by {info.world_size} processes")
    per_rank = cfg.data.batch_size // info.world_size
    sync_bn = cfg.model.sync_bn == "on" or (cfg.model.sync_bn == "auto" and device.type == "cuda")
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        wrapped: dict[str, nn.Module] = {}
        for k, m in modules.items():
            if sync_bn and not cfg.model.freeze_bn:
                m = nn.SyncBatchNorm.convert_sync_batchnorm(m)
            wrapped[k] = DDP(m, device_ids=[device.index] if device.type == "cuda" else None)
        modules = wrapped

    sampler = ResumableSampler(train_ds, info=info, shuffle=True, seed=cfg.run.seed)
    loader = DataLoader(
        train_ds,
        batch_size=per_rank,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(cfg.run.seed),
        pin_memory=device.type == "cuda",
    )
    val_loader = None
    if val_ds is not None and info.is_main:
        val_loader = DataLoader(
            val_ds,
            batch_size=cfg.data.val_batch_size,
            shuffle=False,
            num_workers=cfg.data.num_workers,
            collate_fn=collate,
        )

    accum = cfg.optim.grad_accum
    steps_per_epoch = math.ceil(math.ceil(len(train_ds) / cfg.data.batch_size) / accum)
    total_steps = max(1, steps_per_epoch * cfg.run.epochs)
    warmup = int(round(cfg.optim.warmup_epochs * steps_per_epoch))
    optimizers = make_optimizers(task, modules, cfg)
    lam = cosine_lambda(total_steps, warmup, cfg.optim.min_lr_ratio)
    schedulers = {ph: torch.optim.lr_scheduler.LambdaLR(o, lam) for ph, o in optimizers.items()}

    progress: dict[str, Any] = {
        "epoch": 0,
        "step_in_epoch": 0,
        "global_step": 0,
        "best": None,
        "best_epoch": None,
        "bad_epochs": 0,
    }
    # what a checkpoint holds: the trained modules, plus the weight average when there is one
    saved_modules = {**modules, "ema": ema.model} if ema else modules
    if resume and last_path.is_file():
        progress = load_checkpoint(last_path, modules=saved_modules, optimizers=optimizers, schedulers=schedulers)
        if ema:
            ema.updates = int(progress.get("ema_updates", 0))
        log.info("resumed %s at epoch %d step %d", run_dir, progress["epoch"], progress["global_step"])
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        run_info = provenance.run_info(
            command, records=describe(train_ds.records), val=describe(val_ds.records) if val_ds else None
        )
        dump_config(cfg, run_dir / "config.yaml", run_info)
    csv_log = _CsvLog(run_dir / "log.csv") if info.is_main else None
    tb = _tensorboard(cfg, run_dir) if info.is_main else None
    result = TrainResult(run_dir, progress["global_step"], progress["epoch"], progress["best"], None)
    best_export = run_dir / "export"

    def save_last() -> None:
        if info.is_main:
            save_checkpoint(
                last_path, modules=saved_modules, optimizers=optimizers, schedulers=schedulers, progress=progress
            )
        barrier(info)

    best_metrics: dict[str, Any] = {}
    last_metrics: dict[str, Any] = {}  # the latest evaluation's: what "last" exports carry

    def export(model: nn.Module, metrics: dict[str, Any] | None = None) -> None:
        from cxrassist.training.export import export_weights

        result.export_dir = export_weights(
            cfg,
            task,
            model,
            best_metrics if metrics is None else metrics,
            train_ds.records,
            val_ds.records if val_ds else [],
            command,
            best_export,
        )

    def end_of_period(epoch_label: int, train_logs: dict[str, float], seconds: float, n_images: int) -> bool:
        """Validate, log, keep the best, decide early stopping (same decision on every rank)."""
        metrics: dict[str, Any] = {}
        if val_loader is not None:
            eval_modules = {k: unwrap(m).eval() for k, m in modules.items()}
            if ema:
                eval_modules[export_key] = ema.model
            with torch.no_grad(), autocast_for(cfg, device):
                metrics = task.validate(eval_modules, val_loader, device)
        metrics = broadcast_object(info, metrics)  # type: ignore[assignment]
        last_metrics.clear()
        last_metrics.update(metrics)
        value = metrics.get(task.monitor)
        improved = (
            value is not None
            and not math.isnan(value)
            and (
                progress["best"] is None
                or (value > progress["best"] if task.mode == "max" else value < progress["best"])
            )
        )
        if improved:
            progress.update(best=value, best_epoch=epoch_label, bad_epochs=0)
            best_metrics.clear()
            best_metrics.update(metrics)
            if info.is_main:
                save_checkpoint(
                    ckpt_dir / "best.pt", modules=saved_modules, optimizers={}, schedulers={}, progress=progress
                )
                if cfg.export.when == "improve":
                    export(ema.model if ema else unwrap(modules[export_key]))
        elif value is not None:
            progress["bad_epochs"] += 1
        ips = n_images / seconds if seconds > 0 else float("nan")
        result.images_per_s = ips
        row = {
            "epoch": epoch_label,
            "global_step": progress["global_step"],
            "lr": optimizers[task.phases[-1]].param_groups[0]["lr"],
            "seconds": round(seconds, 2),
            "images_per_s": round(ips, 3),
            **{f"train_{k}": v for k, v in train_logs.items()},
            **{f"val_{k}": v for k, v in metrics.items()},
            "best": progress["best"],
        }
        result.history.append(row)
        if info.is_main:
            csv_log.write(row)  # type: ignore[union-attr]
            log.info(
                "epoch %d step %d: %s",
                epoch_label,
                progress["global_step"],
                ", ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)),
            )
            if tb is not None:
                for k, v in row.items():
                    if isinstance(v, (int, float)) and v is not None and not (isinstance(v, float) and math.isnan(v)):
                        tb.add_scalar(k, v, progress["global_step"])
        es = cfg.run.early_stopping
        return bool(es and progress["bad_epochs"] >= es)

    stop = False
    while progress["epoch"] < cfg.run.epochs and not stop:
        epoch = progress["epoch"]
        train_ds.set_epoch(epoch)
        sampler.set_epoch(epoch)
        sampler.set_start(progress["step_in_epoch"] * accum * per_rank)
        _set_train(modules, cfg.model.freeze_bn)
        n_micro = len(loader)
        sums: dict[str, float] = {}
        count = 0
        t0 = time.perf_counter()
        n_images = 0
        it = _progress(loader, cfg, info, epoch)
        for i, batch in enumerate(it):
            batch = batch_to_device(batch, device, cfg.run.channels_last)
            boundary = (i + 1) % accum == 0 or i + 1 == n_micro
            logs = training_step(
                task,
                batch,
                modules,
                optimizers,
                cfg,
                device,
                accum=accum,
                boundary=boundary,
                step=progress["global_step"],
            )
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            if boundary:
                for scheduler in schedulers.values():
                    scheduler.step()
            if boundary and ema:
                ema.update(unwrap(modules[export_key]))
                progress["ema_updates"] = ema.updates
            count += 1
            n_images += batch["image"].shape[0] * info.world_size
            if not boundary:
                continue
            progress["step_in_epoch"] += 1
            progress["global_step"] += 1
            gs = progress["global_step"]
            if info.is_main and cfg.run.log_every and gs % cfg.run.log_every == 0:
                avg = {k: v / count for k, v in sums.items()}
                log.info("epoch %d step %d: %s", epoch, gs, ", ".join(f"{k}={v:.4g}" for k, v in avg.items()))
                if hasattr(it, "set_postfix"):
                    it.set_postfix({k: f"{v:.3g}" for k, v in avg.items()})
            if cfg.run.checkpoint_every_steps and gs % cfg.run.checkpoint_every_steps == 0:
                save_last()
            if cfg.run.max_steps is not None and gs >= cfg.run.max_steps:
                stop = True
                break
        seconds = time.perf_counter() - t0
        train_logs = {k: v / max(count, 1) for k, v in sums.items()}
        if stop:  # interrupted by max_steps: checkpoint the mid-epoch state first, then evaluate what we have
            if progress["step_in_epoch"] >= steps_per_epoch:
                progress.update(epoch=epoch + 1, step_in_epoch=0)
            save_last()
            end_of_period(epoch, train_logs, seconds, n_images)
            save_last()  # again, now with this evaluation's best value and early-stopping count
            break
        progress.update(epoch=epoch + 1, step_in_epoch=0)
        if (epoch + 1) % cfg.run.val_every == 0 or epoch + 1 == cfg.run.epochs:
            stop = end_of_period(epoch, train_logs, seconds, n_images)
            if stop:
                log.info(
                    "early stopping after epoch %d (best %s at epoch %s)",
                    epoch,
                    progress["best"],
                    progress["best_epoch"],
                )
        save_last()
    if info.enabled:
        _check_ranks_in_sync(info, modules, run_dir)
    if info.is_main and cfg.export.when == "last":  # the weights as trained, no checkpoint chosen on val
        export(ema.model if ema else unwrap(modules[export_key]), last_metrics)
    if info.is_main and cfg.export.when == "end" and best_metrics and (ckpt_dir / "best.pt").is_file():
        model = ema.model if ema else unwrap(modules[export_key])
        load_checkpoint(ckpt_dir / "best.pt", modules={"ema" if ema else export_key: model}, restore_rng=False)
        export(model)
    if info.is_main and result.export_dir is None and (best_export).is_dir():
        result.export_dir = next((p for p in best_export.iterdir() if p.is_dir()), None)
    if tb is not None:
        tb.close()
    result.global_step = progress["global_step"]
    result.epochs_done = progress["epoch"]
    result.best = progress["best"]
    return result


def _check_ranks_in_sync(info: DistInfo, modules: dict[str, nn.Module], run_dir: Path) -> None:
    """Gather a float64 checksum of every rank's parameters; DDP must leave them bit-identical.

    Written to ``<run>/ddp_check.json`` by rank 0 (and logged as an error if the ranks diverged), a cheap guard
    against a silent desynchronisation (a parameter outside DDP, a rank-dependent code path).
    """
    import json

    import torch.distributed as dist

    vals = []
    for m in modules.values():
        for p in unwrap(m).parameters():
            q = p.detach().double()
            vals += [q.sum(), (q * q).sum()]
    local = torch.stack(vals).to(info.device)
    gathered = [torch.zeros_like(local) for _ in range(info.world_size)]
    dist.all_gather(gathered, local)
    if info.is_main:
        same = all(torch.equal(gathered[0], g) for g in gathered[1:])
        (run_dir / "ddp_check.json").write_text(
            json.dumps(
                {"world_size": info.world_size, "identical": same, "checksums": [float(g.sum()) for g in gathered]},
                indent=2,
            )
        )
        if not same:
            log.error("DDP ranks ended with different parameters (see %s)", run_dir / "ddp_check.json")


def _progress(loader: DataLoader, cfg: TrainConfig, info: DistInfo, epoch: int):  # noqa: ANN202
    if not (cfg.run.progress and info.is_main):
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=None, dynamic_ncols=True)


def _tensorboard(cfg: TrainConfig, run_dir: Path):  # noqa: ANN202
    if not cfg.run.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # noqa: BLE001 - tensorboard is optional
        return None
    return SummaryWriter(str(run_dir / "tb"))


__all__ = ["Task", "TrainResult", "select", "train"]
