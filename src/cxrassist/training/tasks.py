"""What differs between the four trainings: models, datasets, losses and the validation metric.

The engine (:mod:`cxrassist.training.engine`) runs any :class:`Task`: for each micro-batch it calls
:meth:`Task.loss` once per optimizer ``phase`` (one phase ``"main"``; the GAN has ``"d"`` then ``"g"``), and after each
epoch :meth:`Task.validate`, whose ``monitor`` entry decides best checkpoints and early stopping.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxrassist.data.cache import ImageCache
from cxrassist.data.dataset import CxrDataset
from cxrassist.data.records import Record, repeat_datasets, select, subsample_datasets
from cxrassist.data.teacher import attach_teacher
from cxrassist.errors import ConfigError, DatasetError
from cxrassist.labels import FINDING_CODES
from cxrassist.training.checkpoint import unwrap
from cxrassist.training.config import TrainConfig
from cxrassist.training.gan import discriminator_step_loss, generator_step_loss, validate_generator

log = logging.getLogger(__name__)


class Task:
    name = "base"
    monitor = "loss"
    mode = "max"  # "max" or "min"
    phases: tuple[str, ...] = ("main",)

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    # ---- building
    def build(self) -> dict[str, nn.Module]:
        from cxrassist.models import create_model

        return {"model": create_model(self.cfg.model.name, **dict(self.cfg.model.kwargs))}

    def optim_groups(self, modules: dict[str, nn.Module]) -> dict[str, tuple[list[nn.Parameter], float, tuple]]:
        """phase -> (parameters, lr, betas)."""
        o = self.cfg.optim
        return {"main": (list(modules["model"].parameters()), o.lr, o.betas)}

    def datasets(
        self, records: list[Record], modules: dict[str, nn.Module], device: torch.device, cache: ImageCache
    ) -> tuple[CxrDataset, CxrDataset | None]:
        d = self.cfg.data
        train = select(records, d.train_split)[: d.max_train]
        val = select(records, d.val_split)[: d.max_val]
        if not train:
            raise DatasetError(f"no records with split {d.train_split!r} in {', '.join(d.manifests)}")
        train = repeat_datasets(subsample_datasets(train, d.subsample, self.cfg.run.seed), d.repeat)
        if d.teacher:
            train = attach_teacher(train, d.teacher)
        common = self.dataset_kwargs(modules, device, cache)
        train_ds = CxrDataset(
            train,
            task=self.name,
            size=d.size,
            augment=self.cfg.augment,
            seed=self.cfg.run.seed,
            crop=d.crop,
            cache=cache,
            **common,
        )
        val_ds = None
        if val:
            try:
                val_ds = CxrDataset(
                    val, task=self.name, size=d.size, augment=None, seed=self.cfg.run.seed, cache=cache, **common
                )
            except DatasetError:
                log.warning("no usable validation records for %s", self.name)
        if common.get("derived") is not None:  # compute the cached lung/bone channels once, before the loop
            common["derived"].prepare(train_ds.records + (val_ds.records if val_ds else []), d.size)
        return train_ds, val_ds

    def dataset_kwargs(self, modules: dict[str, nn.Module], device: torch.device, cache: ImageCache) -> dict:
        return {}

    # ---- steps
    def loss(
        self, phase: str, batch: dict[str, Any], modules: dict[str, nn.Module], state: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    @torch.no_grad()
    def validate(self, modules: dict[str, nn.Module], loader: Any, device: torch.device) -> dict[str, float]:
        raise NotImplementedError

    def export_module(self) -> str:
        """The module exported as weights (the generator for the GAN)."""
        return "model"


def warm_start(modules: dict[str, nn.Module], init_from: str | None, what: str) -> dict[str, nn.Module]:
    """Load ``init_from`` (weights of the same architecture, a name or a folder) into ``modules["model"]``."""
    if init_from:
        from cxrassist.weights import load_model

        previous, _ = load_model(init_from)
        modules["model"].load_state_dict(previous.state_dict())
        log.info("%s initialised from %s", what, init_from)
    return modules


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice, per image, then the batch mean (a mean of per-sample terms: DDP-equivalent)."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    inter = (p * t).sum(1)
    return (1 - (2 * inter + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


class SegmentationTask(Task):
    name = "segmentation"
    monitor = "dice_worst_set"

    def build(self):  # noqa: ANN201
        """``model.init_from``: start from earlier segmentation weights of the same architecture (the heart model
        starts from the lung model: the encoder has already learnt chest films from four sources)."""
        return warm_start(super().build(), self.cfg.model.init_from, self.name)

    def loss(
        self, phase: str, batch: dict[str, Any], modules: dict[str, nn.Module], state: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        logits = modules["model"](batch["image"])
        target = batch["mask"]
        bce = F.binary_cross_entropy_with_logits(logits.float(), target)
        dl = soft_dice_loss(logits.float(), target)
        w = self.cfg.loss
        return w.bce_weight * bce + w.dice_weight * dl, {"bce": bce.item(), "dice_loss": dl.item()}

    @torch.no_grad()
    def validate(self, modules: dict[str, nn.Module], loader: Any, device: torch.device) -> dict[str, float]:
        """Mean Dice/IoU, and Dice per dataset: the best epoch is the one whose WORST dataset is best, since a
        lung mask must hold on every source, not on average (one set can be outvoted by the others)."""
        from cxrassist.evaluation.metrics import dice, iou

        model = modules["model"]
        records = loader.dataset.records
        d, j = [], []
        per_set: dict[str, list[float]] = {}
        for batch in loader:
            pred = (model(batch["image"].to(device)).float() > 0).cpu().numpy()
            true = batch["mask"].numpy() > 0.5
            for p, t, index in zip(pred, true, batch["index"].tolist(), strict=True):
                d.append(dice(p[0], t[0]))
                j.append(iou(p[0], t[0]))
                per_set.setdefault(records[index].dataset or "data", []).append(d[-1])
        out = {"dice": float(np.mean(d)), "iou": float(np.mean(j)), "n_val": len(d)}
        set_means = {name: float(np.mean(v)) for name, v in sorted(per_set.items())}
        out["dice_worst_set"] = min(set_means.values())
        out.update({f"dice_{name}": v for name, v in set_means.items()})
        return out


class _BinaryOrMulti(Task):
    """Shared by triage (one logit) and the 13-finding classifier (masked BCE over known labels)."""

    def dataset_kwargs(self, modules: dict[str, nn.Module], device: torch.device, cache: ImageCache) -> dict:
        model = modules["model"]
        chans = int(getattr(model, "in_chans", 1))
        kw: dict[str, Any] = {
            "channels": chans,
            "lateral": self.cfg.data.lateral,
            "detail": self.cfg.data.effective_size,
            "lung_mask": self.cfg.loss.lung_cam_weight > 0,
        }
        if chans > 1:
            from cxrassist.data.derived import DerivedChannels

            d = self.cfg.data
            cache_dir = d.cache_dir or str(self.cfg.run_dir / "derived")
            kw["derived"] = DerivedChannels.from_weights(
                d.lung_weights, d.bone_weights if chans > 2 else None, cache_dir=cache_dir, device=device
            )
        return kw

    def targets(self, batch: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        if "lateral" in batch:
            return model(batch["image"], batch["lateral"], batch["has_lateral"])
        return model(batch["image"])

    def loss(
        self, phase: str, batch: dict[str, Any], modules: dict[str, nn.Module], state: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        prior = None
        if self.cfg.loss.lung_cam_weight > 0 and "lung" in batch:
            from cxrassist.explain.cam import cam_forward
            from cxrassist.training.lung_prior import lung_prior_loss

            logits, raw, _ = cam_forward(modules["model"], batch["image"], self.cfg.loss.lung_cam_levels)
            logits = logits.float()
            prior = lung_prior_loss(raw.float(), batch["lung"], beta=self.cfg.loss.lung_cam_beta)
        else:
            logits = self.forward(modules["model"], batch).float()
        y = self.targets(batch).to(logits.dtype).reshape(logits.shape)
        w = self.cfg.loss.distill_weight
        if w > 0 and "teacher" in batch:  # soft targets: (1 - w) * label + w * teacher, the teacher alone if unknown
            soft = batch["teacher"].to(y.device, y.dtype).reshape(y.shape)
            mix = torch.where(torch.isnan(y), soft, (1 - w) * y + w * soft)
            y = torch.where(torch.isnan(soft), y, mix)
        known = ~torch.isnan(y)
        s = self.cfg.loss.label_smoothing
        t = torch.where(known, y, torch.zeros_like(y)) * (1 - s) + s / 2
        pw = None if self.cfg.loss.pos_weight is None else torch.tensor(self.cfg.loss.pos_weight, device=y.device)
        per = F.binary_cross_entropy_with_logits(logits, t, reduction="none", pos_weight=pw)
        loss = (per * known).sum() / known.sum().clamp_min(1)
        if prior is None:
            return loss, {"bce": loss.item()}
        logs = {"bce": loss.item(), "lung_prior": prior.item()}
        return loss + self.cfg.loss.lung_cam_weight * prior, logs

    @torch.no_grad()
    def predict(self, model: nn.Module, loader: Any, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
        ys, ps = [], []
        for batch in loader:
            b = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            ps.append(torch.sigmoid(self.forward(model, b).double()).cpu().numpy())  # no float32 saturation ties
            ys.append(self.targets(batch).numpy())
        return np.concatenate(ys).reshape(len(loader.dataset), -1), np.concatenate(ps).reshape(len(loader.dataset), -1)


class TriageTask(_BinaryOrMulti):
    name = "triage"
    monitor = "auroc"

    def build(self):  # noqa: ANN201
        """``model.init_from``: continue from earlier triage weights of the same architecture (a warm start)."""
        return warm_start(super().build(), self.cfg.model.init_from, self.name)

    def targets(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch["target"]

    @torch.no_grad()
    def validate(self, modules: dict[str, nn.Module], loader: Any, device: torch.device) -> dict[str, float]:
        from cxrassist.evaluation.metrics import auroc

        y, p = self.predict(modules["model"], loader, device)
        return {
            "auroc": auroc(y[:, 0], p[:, 0]),
            "n_val": len(y),
            **per_source_auroc(loader.dataset.records, y[:, 0], p[:, 0]),
        }


class ClassifierTask(_BinaryOrMulti):
    name = "classifier"
    monitor = "mean_auroc"

    def build(self):  # noqa: ANN201
        """``model.init_from``: triage weights (everything but the head, the design's order), or earlier classifier
        weights of the same architecture and outputs (all of it: a continuation, e.g. with another loss)."""
        modules = super().build()
        if self.cfg.model.init_from:
            from cxrassist.models import init_classifier_from_triage
            from cxrassist.weights import load_model

            previous, _ = load_model(self.cfg.model.init_from)
            model = modules["model"]
            mine, theirs = model.state_dict(), previous.state_dict()
            if (
                type(previous) is type(model)
                and mine.keys() == theirs.keys()
                and all(theirs[k].shape == v.shape for k, v in mine.items())
            ):
                model.load_state_dict(theirs)
                log.info("classifier continued from classifier weights %s", self.cfg.model.init_from)
            else:
                init_classifier_from_triage(model, theirs)
                log.info("classifier initialised from triage weights %s", self.cfg.model.init_from)
        if self.cfg.loss.lung_cam_weight > 0:
            from cxrassist.models.densenet import DenseNetClassifier
            from cxrassist.weights.settings import LUNG_SEGMENTED, channels_of

            model = modules["model"]
            chans = channels_of(int(getattr(model, "in_chans", 1)), "classifier")
            if not isinstance(model, DenseNetClassifier) or LUNG_SEGMENTED not in chans:
                raise ConfigError(
                    f"loss.lung_cam_weight needs a single-view classifier fed the lung_segmented channel; "
                    f"{self.cfg.model.name} has channels {', '.join(chans)}"
                )
        return modules

    def targets(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch["labels"]

    @torch.no_grad()
    def validate(self, modules: dict[str, nn.Module], loader: Any, device: torch.device) -> dict[str, float]:
        from cxrassist.evaluation.metrics import auroc

        y, p = self.predict(modules["model"], loader, device)
        per = {f"auroc_{c}": auroc(y[:, i], p[:, i]) for i, c in enumerate(FINDING_CODES)}
        vals = [v for v in per.values() if not math.isnan(v)]
        return {"mean_auroc": float(np.mean(vals)) if vals else float("nan"), **per, "n_val": len(y)}


def per_source_auroc(records: list[Record], y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Triage AUROC per data set, and over the NIH-source sets together (a pooled figure across sources rewards
    telling the sources apart; these are the ones to watch)."""
    from cxrassist.evaluation.metrics import auroc
    from cxrassist.labels import NIH_SOURCE_DATASETS

    names = np.array([r.dataset for r in records])
    out = {f"auroc_{n}": auroc(y[names == n], p[names == n]) for n in sorted(set(names))}
    nih = np.isin(names, list(NIH_SOURCE_DATASETS))
    if nih.any():
        out["auroc_nih_source"] = auroc(y[nih], p[nih])
    rsna = np.isin(names, ["rsna_normal", "rsna_lung_opacity"])  # same processing chain: no look shortcut
    if rsna.any():
        out["auroc_rsna_matched"] = auroc(y[rsna], p[rsna])
    return out


class BoneTask(Task):
    """The bone GAN (losses in :mod:`cxrassist.training.gan`): phases D then G, or G alone when the adversarial and
    feature-matching weights are both 0 (the ablation without a discriminator: D is then neither run nor trained)."""

    name = "bone"
    monitor = "bone_suppression_ratio"

    @property
    def phases(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("d", "g") if self.adversarial else ("g",)

    @property
    def adversarial(self) -> bool:
        return bool(self.cfg.loss.adv_weight or self.cfg.loss.fm_weight)

    def build(self) -> dict[str, nn.Module]:
        from cxrassist.models import create_discriminator, create_model

        m = self.cfg.model
        g = create_model(m.name, **dict(m.kwargs))
        if m.init_from:  # continue from earlier bone weights of the same generator (a warm start; D starts afresh)
            from cxrassist.weights import load_model

            previous, _ = load_model(m.init_from)
            g.load_state_dict(previous.state_dict())
            log.info("bone generator initialised from %s", m.init_from)
        d = create_discriminator(m.discriminator or m.name, **dict(m.discriminator_kwargs))
        return {"model": g, "disc": d}

    def optim_groups(self, modules: dict[str, nn.Module]) -> dict[str, tuple[list[nn.Parameter], float, tuple]]:
        o = self.cfg.optim
        groups = {"g": (list(modules["model"].parameters()), o.lr, o.betas_gan)}
        if self.adversarial:  # D then G (the order of the phases)
            groups = {"d": (list(modules["disc"].parameters()), o.lr_d, o.betas_gan), **groups}
        return groups

    def loss(
        self, phase: str, batch: dict[str, Any], modules: dict[str, nn.Module], state: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        x, real = batch["image"], batch["bone"]
        if phase == "d":
            state["fake"] = modules["model"](x)
            return discriminator_step_loss(modules["disc"], x, real, state["fake"], self.cfg.loss.adversarial)
        fake = state.pop("fake") if "fake" in state else modules["model"](x)
        # G's step must not run D's DDP gradient sync (D gets no gradient from it): the unwrapped D
        d = unwrap(modules["disc"]) if self.adversarial else None
        return generator_step_loss(d, x, real, fake, self.cfg.loss)

    @torch.no_grad()
    def validate(self, modules: dict[str, nn.Module], loader: Any, device: torch.device) -> dict[str, float]:
        return validate_generator(modules["model"], loader, device)


def make_task(cfg: TrainConfig) -> Task:
    tasks = {"segmentation": SegmentationTask, "bone": BoneTask, "triage": TriageTask, "classifier": ClassifierTask}
    return tasks[cfg.task](cfg)
