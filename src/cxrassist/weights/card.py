"""Model cards: the JSON that travels with every weights file (what it is, how it was made, how good it is).

Torch-free on purpose: ``cxr models`` and the report writer read cards without importing torch.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cxrassist._jsonsafe import jsonable
from cxrassist._version import __version__
from cxrassist.errors import WeightsError

INPUT_DOMAIN = "preprocess.normalize of [0,1], 1 = bone white"
INTENDED_USE = "Decision support for qualified readers; not a diagnosis."
CARD_FILE = "card.json"
WEIGHTS_FILE = "model.safetensors"
STATUSES = ("trained", "untrained")


def _default_input() -> dict[str, Any]:
    return {"size": 512, "channels": ["radiograph"], "domain": INPUT_DOMAIN}


def _default_training() -> dict[str, Any]:
    return {"data": None, "split": None, "command": None, "config": None}


@dataclass
class ModelCard:
    """Metadata of one set of weights. ``architecture`` + ``kwargs`` rebuild the network via ``create_model``.

    ``thresholds`` (per label; :meth:`new` writes a placeholder 0.5) are the operating points; ``validated`` says
    per label whether the metrics were measured on held-out data with that label (an unvalidated label must be
    shown as such). ``weights.settings.card_settings`` reads and checks a card for running it.
    """

    name: str
    architecture: str
    version: str = "0.1.0"
    kwargs: dict[str, Any] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=_default_input)
    labels: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    validated: dict[str, bool] = field(default_factory=dict)
    # per label {"a": slope, "b": intercept}: calibrated p = sigmoid(a * logit(p) + b) (cxrassist.calibration);
    # thresholds are on the calibrated probability when a label has an entry here
    calibration: dict[str, dict[str, float]] = field(default_factory=dict)
    # per label: the measured figures a reader sees with every result (AUROC + CI, sensitivity/specificity at the
    # threshold, positives/n, how the threshold was chosen); written by `cxr evaluate --write-thresholds`
    operating_points: dict[str, dict[str, Any]] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=_default_training)
    metrics: dict[str, Any] = field(default_factory=dict)
    sha256: str | None = None
    code_version: str = __version__
    date: str | None = None
    intended_use: str = INTENDED_USE
    status: str = "untrained"
    notes: str = ""
    storage_dtype: str | None = None  # "float32" | "float16", set by save_weights
    num_parameters: int | None = None  # set by save_weights
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys of newer cards are kept here

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise WeightsError(f"model card {self.name!r}: status must be one of {STATUSES}, got {self.status!r}")
        self.labels = list(self.labels)
        # no threshold is invented here: ModelCard.new writes its placeholder 0.5 per label into the card, and
        # weights.settings refuses a card whose label has none
        self.thresholds = {k: float(v) for k, v in self.thresholds.items()}
        self.validated = {label: bool(self.validated.get(label, False)) for label in self.labels} | {
            k: bool(v) for k, v in self.validated.items() if k not in self.labels
        }
        self.input = {**_default_input(), **self.input}
        self.training = {**_default_training(), **self.training}

    @classmethod
    def new(cls, architecture: str, name: str | None = None, **overrides: Any) -> ModelCard:
        """A card pre-filled from the registry: labels and input channels follow the architecture and kwargs."""
        from cxrassist.labels import FINDING_NAMES
        from cxrassist.models.registry import channel_names, get_model_spec

        spec = get_model_spec(architecture)
        kwargs = dict(overrides.pop("kwargs", {}))
        merged = {**spec.default_kwargs, **kwargs}
        labels = {
            "classifier": list(FINDING_NAMES),
            "triage": ["Abnormal"],
            "segmentation": ["Lung"],
            "bone": ["Bone"],
        }[spec.task]
        chans = channel_names(merged.get("in_chans", 1)) if spec.task in ("classifier", "triage") else ["radiograph"]
        card_input = {"size": 512, "channels": chans, "domain": INPUT_DOMAIN}
        if spec.family == "densenet121-dual":
            card_input["lateral_channels"] = channel_names(merged.get("lateral_in_chans", 1))
        overrides.setdefault("input", card_input)
        overrides.setdefault("labels", labels)
        # the placeholder operating point of a new card, until `cxr evaluate --write-thresholds` measures one
        # (its labels stay unvalidated until then, so no finding is ever called positive on it)
        overrides["thresholds"] = dict.fromkeys(overrides["labels"], 0.5) | dict(overrides.get("thresholds", {}))
        return cls(name=name or architecture, architecture=architecture, kwargs=kwargs, **overrides)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        return {**d, **extra}

    def to_json(self) -> str:
        return json.dumps(jsonable(self.to_dict(), strict=True), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        known = {f.name for f in fields(cls)} - {"extra"}
        missing = [k for k in ("name", "architecture") if k not in data]
        if missing:
            raise WeightsError(f"model card lacks required field(s): {', '.join(missing)}")
        return cls(
            **{k: v for k, v in data.items() if k in known}, extra={k: v for k, v in data.items() if k not in known}
        )

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WeightsError(f"model card is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise WeightsError("model card JSON must be an object")
        return cls.from_dict(data)

    @classmethod
    def read(cls, path: str | Path) -> ModelCard:
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"model card not found: {path}")
        return cls.from_json(path.read_text(encoding="utf-8"))

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    def runs_at(self) -> str:
        """What the model runs at, from ``input`` (the architecture name says the design's size: ``dn121-512-lung``
        is the 512-px design; the shipped one runs at 256 px, 224 px effective)."""
        return _runs_at(self.input)

    def summary(self) -> dict[str, Any]:
        """The key figures shown by ``cxr models`` and in reports."""
        return {
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "runs_at": self.runs_at(),
            "status": self.status,
            "metrics": self.metrics,
            "sha256": (self.sha256 or "")[:12],
            "date": self.date,
            "validated_labels": [k for k, v in self.validated.items() if v],
        }


def _runs_at(inp: dict[str, Any]) -> str:
    size, eff = inp.get("size"), inp.get("effective_size")
    chans = " + ".join(str(c) for c in inp.get("channels") or [])
    return f"{size} px" + (f" ({eff} px effective)" if eff else "") + (f", {chans}" if chans else "")


def today() -> str:
    return _dt.date.today().isoformat()
