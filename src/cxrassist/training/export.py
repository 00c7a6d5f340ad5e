"""Best checkpoint -> the weights format (``cxrassist.weights``): safetensors + a model card filled from the run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cxrassist._jsonsafe import jsonable
from cxrassist.data.records import Record, describe
from cxrassist.training import provenance
from cxrassist.training.config import TrainConfig

log = logging.getLogger(__name__)


def _data_summary(cfg: TrainConfig, train: list[Record], val: list[Record]) -> dict[str, Any]:
    return {
        "manifests": list(cfg.data.manifests),
        "train": describe(train),
        "val": describe(val),
    }


#: How the exported weights were chosen (card ``training.checkpoint``): a reader must know whether the val figures
#: carry a checkpoint choice made on those same films.
CHECKPOINT_CHOICE = {
    "last": "last: the final weights of a fixed budget, val not consulted",
    "end": "val-best: the checkpoint with the best val monitor, chosen on the split its val figures come from",
    "improve": "val-best: the checkpoint with the best val monitor, chosen on the split its val figures come from",
    "never": "none",
}


def _choice_note(cfg: TrainConfig, monitor: str) -> str:
    if cfg.export.when == "last":
        return "the final weights; no checkpoint chosen on val"
    return f"best {monitor} on split {cfg.data.val_split!r}"


def export_weights(
    cfg: TrainConfig,
    task: Any,
    model: nn.Module,
    metrics: dict[str, Any],
    train: list[Record],
    val: list[Record],
    command: str | None,
    export_root: Path,
) -> Path:
    """Write ``export_root/<card name>/`` (or ``export.dir``) and return that directory."""
    from cxrassist.weights import ModelCard, save_weights

    name = cfg.export.name or cfg.model.name
    directory = Path(cfg.export.dir) if cfg.export.dir else export_root / name
    card = ModelCard.new(
        cfg.model.name,
        name=name,
        kwargs=dict(cfg.model.kwargs),
        version=cfg.export.version,
        training={
            "data": _data_summary(cfg, train, val),
            "split": {"train": cfg.data.train_split, "val": cfg.data.val_split},
            "command": provenance.command_line(command),
            "config": cfg.to_dict(),
            "git_revision": provenance.git_revision(),
            "task": task.name,
            "monitor": task.monitor,
            "checkpoint": CHECKPOINT_CHOICE[cfg.export.when],
        },
        metrics={"val": jsonable(metrics)},
        intended_use=cfg.export.intended_use,
        status="trained",
        notes=f"exported from run {cfg.run_dir} ({_choice_note(cfg, task.monitor)})",
        **({"labels": list(cfg.export.labels)} if cfg.export.labels else {}),
    )
    card.input["size"] = cfg.data.size
    if cfg.data.effective_size is not None and task.name in ("triage", "classifier"):
        card.input["effective_size"] = int(cfg.data.effective_size)
    if task.name in ("triage", "classifier"):
        card.validated = dict.fromkeys(card.labels, False)  # set by `cxr evaluate --write-thresholds`
    dtype = {"float32": torch.float32, "float16": torch.float16}[cfg.export.dtype]
    was_training = model.training
    model.eval()
    card = save_weights(model, directory, card, dtype=dtype)
    model.train(was_training)
    log.info("exported %s to %s", name, directory)
    return directory
