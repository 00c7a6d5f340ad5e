"""Training configuration: frozen dataclasses built from a YAML file plus ``--set key=value`` overrides.

Unknown keys and wrong types are refused with :class:`~cxrassist.errors.ConfigError` (a typo in a key must not be
silently ignored in a multi-hour run). The resolved configuration is written next to the run (``config.yaml``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cxrassist.data.augment import AugmentConfig
from cxrassist.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    name: str = "lungseg-vgg16unet-compact"
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    discriminator: str | None = None  # bone GAN: create_discriminator(name, **discriminator_kwargs)
    discriminator_kwargs: Mapping[str, Any] = field(default_factory=dict)
    init_from: str | None = None  # triage/bone: earlier weights of the same model; classifier: triage weights
    freeze_bn: bool = False  # BatchNorm in eval mode (running stats) while training
    sync_bn: str = "auto"  # "auto" (SyncBatchNorm for multi-process GPU runs), "on", "off"


@dataclass(frozen=True)
class DataConfig:
    manifests: tuple[str, ...] = ()
    train_split: str = "train"
    val_split: str = "val"
    size: int = 256
    crop: int | None = None  # random crop of the training images (fully convolutional models)
    batch_size: int = 8  # GLOBAL batch (split over DDP ranks)
    val_batch_size: int = 8
    num_workers: int = 0
    cache_dir: str | None = None  # letterboxed uint8 cache (and derived-channel cache)
    max_train: int | None = None  # first N training records (smoke runs)
    max_val: int | None = None
    # Training records of these datasets appear N times per epoch ({covid19_gb_seg: 4}): a small set whose
    # annotation convention differs would otherwise be outvoted by the large ones. Validation is never repeated.
    repeat: Mapping[str, int] = field(default_factory=dict)
    # At most N training records of these datasets ({rsna_normal: 2000}, a fixed random subset seeded by run.seed),
    # applied before ``repeat``: a short budget is not spent on one large set. Validation is never subsampled.
    subsample: Mapping[str, int] = field(default_factory=dict)
    lateral: bool = False  # dual-branch classifiers: feed the lateral view where the manifest has one
    # Segmentation target: the manifest column naming the mask files (``heart_mask`` trains the heart model on JSRT)
    mask_column: str = "mask"
    # Classifier input channels follow the model (in_chans: 1 radiograph, 2 + lung-segmented, 3 + bone image);
    # channels 2 and 3 are computed once by these models and cached (data.cache_dir or runs/<name>/derived).
    lung_weights: str | None = None  # lung model weights (name or directory)
    bone_weights: str | None = None
    # Effective resolution of the radiograph (triage/classifier): every film is first reduced so its long side is at
    # most this many pixels, then letterboxed to `size` (preprocess.letterbox). Sources stored at 224 px and at
    # 512 px then look alike; written into the card (input.effective_size) so inference does the same.
    effective_size: int | None = None
    # Soft targets of a reference model, per dataset: {nih_cxr14_sample: path/to/teacher_chexnet_preds.csv}
    # (columns id + prob_<NIH label>; see cxrassist.data.teacher). Used with loss.distill_weight.
    teacher: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01  # cosine ends at lr * min_lr_ratio
    grad_accum: int = 1
    clip_grad: float | None = None
    lr_d: float = 4e-4  # GAN discriminator (TTUR); generator uses lr
    betas_gan: tuple[float, float] = (0.5, 0.999)


@dataclass(frozen=True)
class LossConfig:
    dice_weight: float = 1.0  # segmentation: Dice + BCE
    bce_weight: float = 1.0
    label_smoothing: float = 0.0  # triage / classifier BCE targets -> t * (1 - s) + s / 2
    pos_weight: float | None = None
    adversarial: str = "hinge"  # bone GAN: "hinge" or "lsgan"
    adv_weight: float = 1.0
    l1_weight: float = 100.0
    grad_weight: float = 0.0  # bone GAN: L1 of the bone image's finite differences (rib/clavicle edges)
    mse_weight: float = 0.0  # bone GAN: squared error of the bone image (what PSNR and the suppression ratio score)
    ssim_weight: float = 0.0  # bone GAN: 1 - SSIM of the bone image (the evaluation's SSIM, differentiable)
    fm_weight: float = 10.0
    # classifier: where a teacher probability is known, the BCE target is (1 - w) * label + w * teacher
    # (= (1 - w) * BCE(label) + w * BCE(teacher); a label that is unknown takes the teacher alone)
    distill_weight: float = 0.0
    # classifier: weight of the lung prior on the lung findings' CAMs (training/lung_prior.py; needs the
    # lung_segmented channel); the maps are taken at lung_cam_levels (explain.cam's dense_levels, 2 = the reports')
    lung_cam_weight: float = 0.0
    lung_cam_levels: int = 2
    lung_cam_beta: float = 4.0


@dataclass(frozen=True)
class RunConfig:
    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimizer steps (smoke runs, tests)
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1"
    amp: str = "auto"  # "auto" = bf16 autocast on GPU, off on CPU; "bf16"; "off"
    channels_last: bool = False
    threads: int | None = None  # torch.set_num_threads
    checkpoint_every_steps: int | None = None
    early_stopping: int | None = None  # epochs without val improvement before stopping
    ema_decay: float | None = None  # validate/export an EMA of the weights (e.g. 0.99; see training/ema.py)
    val_every: int = 1
    log_every: int = 10
    tensorboard: bool = True
    progress: bool = True


@dataclass(frozen=True)
class ExportConfig:
    name: str | None = None  # model card name; default = model name
    version: str = "0.1.0"
    dtype: str = "float32"
    dir: str | None = None  # default runs/<name>/export/<card name>
    # "improve": export at every new val best (usable weights early); "end": the val-best checkpoint, once, at the
    # end; "last": the final weights (the weight average when there is one), val never consulted: a fixed budget,
    # so val figures carry no checkpoint choice; "never"
    when: str = "improve"
    intended_use: str = "Research use; decision support for a qualified reader, not a diagnosis."
    # The card's labels when they are not the task's own (a segmentation model of the heart: [Heart])
    labels: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TrainConfig:
    task: str = "segmentation"
    name: str = "run"
    out_dir: str = "runs"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    run: RunConfig = field(default_factory=RunConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return build(tp, value, f"{where}.")
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            value = [value]
        value = list(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
    if origin in (Mapping, dict) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string; a number is meant
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, bool):  # YAML 1.1 reads off/on (run.amp=off, model.sync_bn=on) as booleans
            return "on" if value else "off"
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def build(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """Recursively build dataclass ``cls`` from plain data, refusing unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(sorted(f'{where}{k}' for k in unknown))}")
    kwargs = {k: _coerce(v, hints[k], f"{where}{k}") for k, v in data.items()}
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {p} is not a section")
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` -> ("a.b", YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse {raw!r}: {exc}") from None
    return key.strip(), value


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (), **top: Any) -> TrainConfig:
    """YAML file (optional) + dotted overrides + top-level keyword overrides -> validated :class:`TrainConfig`."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            tree = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {p} is not valid YAML: {exc}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"config {p} must be a mapping at the top level")
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(tree, key, value)
    for key, value in top.items():
        if value is not None:
            _set_dotted(tree, key, value)
    cfg = build(TrainConfig, _nest(tree))
    validate(cfg)
    return cfg


def _nest(tree: Mapping[str, Any]) -> dict[str, Any]:
    """Allow dotted keys inside the YAML too (``optim.lr: 1e-3``)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            v = _nest(v)
        if "." in k:
            _set_dotted(out, k, v)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k].update(v)
        else:
            out[k] = v
    return out


def validate(cfg: TrainConfig) -> None:
    from cxrassist.data.dataset import TASKS

    if cfg.task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {cfg.task!r}")
    if not cfg.data.manifests:
        raise ConfigError("data.manifests is empty: give at least one manifest.csv")
    if cfg.data.size <= 0 or cfg.data.batch_size <= 0 or cfg.optim.grad_accum <= 0:
        raise ConfigError("data.size, data.batch_size and optim.grad_accum must be positive")
    if cfg.loss.adversarial not in ("hinge", "lsgan"):
        raise ConfigError(f"loss.adversarial must be hinge or lsgan, got {cfg.loss.adversarial!r}")
    if cfg.export.when not in ("improve", "end", "last", "never"):
        raise ConfigError(f"export.when must be improve, end, last or never, got {cfg.export.when!r}")
    if cfg.run.amp not in ("auto", "bf16", "off"):
        raise ConfigError(f"run.amp must be auto, bf16 or off, got {cfg.run.amp!r}")
    if not 0.0 <= cfg.loss.label_smoothing < 1.0:
        raise ConfigError("loss.label_smoothing must be in [0, 1)")
    if not 0.0 <= cfg.loss.distill_weight <= 1.0:
        raise ConfigError(f"loss.distill_weight must be in [0, 1], got {cfg.loss.distill_weight}")
    if cfg.loss.distill_weight > 0 and not cfg.data.teacher:
        raise ConfigError("loss.distill_weight > 0 needs data.teacher ({dataset: teacher predictions CSV})")
    if cfg.loss.lung_cam_weight < 0 or cfg.loss.lung_cam_beta <= 0 or not 0 <= cfg.loss.lung_cam_levels <= 3:
        raise ConfigError(
            "loss.lung_cam_weight must be >= 0, loss.lung_cam_beta > 0 and loss.lung_cam_levels 0..3, got "
            f"{cfg.loss.lung_cam_weight}, {cfg.loss.lung_cam_beta}, {cfg.loss.lung_cam_levels}"
        )
    if cfg.loss.lung_cam_weight > 0 and cfg.task != "classifier":
        raise ConfigError(f"loss.lung_cam_weight is for task=classifier (its lung findings), not {cfg.task}")
    if cfg.data.effective_size is not None and cfg.data.effective_size < 8:
        raise ConfigError(f"data.effective_size must be >= 8 px, got {cfg.data.effective_size}")


def dump_config(cfg: TrainConfig, path: Path, extra: Mapping[str, Any] | None = None) -> None:
    data = cfg.to_dict()
    if extra:
        data = {**data, "_run": dict(extra)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
