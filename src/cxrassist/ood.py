"""The out-of-distribution gate: is this film like the chest films the models were trained on?

Why: the chest check reads metadata and a few image statistics; it cannot tell a chest film from anything else
that happens to look like one to those statistics, and a network scores whatever it is given. The gate measures
how far the film's features lie from the training films' features, in the triage network's own feature space: for
each layer the gate's card names (the shipped gate: the last dense block, spatially averaged), the Mahalanobis
distance to the training films' mean under their Ledoit-Wolf shrunk covariance (the feature-space detector of Lee
et al., NeurIPS 2018), divided by its median on the val films; the score is the largest of them.

A second, learned check reads the same features (no extra pass through the network): the *view head*, a
logistic regression fitted on the train films against transformed copies of them (lateral views, rotations,
upside-down, heavy crops, inverted grey scale). Why: those inputs are still chest films, so their content features
sit close to the training films' mean and the distance alone let most of them through (laterals 10 %, 180 degree
rotations 28 % refused); a linear direction in the same feature space separates them. A film must pass both.

The statistics live in a folder next to the weights (``<weights>/ood/``: ``stats.safetensors`` + ``gate.json``
+ ``MODEL_CARD.md``), written by ``scripts/fit_ood_gate.py``. They only make sense with the triage weights they
were fitted on: ``gate.json`` records that file's sha256 and :func:`load_gate` refuses any other.

Films are first reduced to the gate's effective size (long side 224 px: the resolution of the smallest training
sets), so that a film's sharpness does not count as "unlike training". Nothing here runs at import.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxrassist.errors import WeightsError

if TYPE_CHECKING:
    from cxrassist.preprocess import Reductions

GATE_DIR = "ood"
GATE_CARD = "gate.json"  # not card.json: the gate is not a model the weights catalogue should list
STATS_FILE = "stats.safetensors"
REFIT_COMMAND = "python scripts/fit_ood_gate.py"
TRANSFORMS = ("none", "sqrt")


@dataclass(frozen=True)
class OodResult:
    """One film's verdict: its distance and the view head's probability, their thresholds, and whether it passed."""

    score: float
    threshold: float
    passed: bool
    view_score: float | None = None  # the view head's probability that the film is not an upright whole frontal
    view_threshold: float | None = None

    @property
    def distance_passed(self) -> bool:
        return self.score <= self.threshold

    @property
    def view_passed(self) -> bool:
        return self.view_score is None or self.view_threshold is None or self.view_score <= self.view_threshold

    @property
    def reason(self) -> str:
        if not self.distance_passed:
            return (
                f"out-of-distribution score {self.score:.2f} is over the gate's threshold {self.threshold:.2f}: "
                "the image is unlike the chest films the models were trained on"
            )
        return (
            f"view check {self.view_score:.2f} is over its threshold {self.view_threshold:.2f}: the image does "
            "not look like a whole, upright frontal chest film (lateral, rotated, upside down, cropped or "
            "inverted?)"
        )

    def to_dict(self, card: Mapping[str, Any]) -> dict[str, Any]:
        """What report.json says (see docs/report-schema.md)."""
        out: dict[str, Any] = {
            "score": round(min(self.score, 1e6), 4),  # JSON has no infinity
            "threshold": round(self.threshold, 4),
            "passed": self.passed,
            "gate": {
                "name": str(card.get("name", "")),
                "version": str(card.get("version", "")),
                "sha256": card.get("sha256"),
            },
        }
        if self.view_score is not None and self.view_threshold is not None:
            out["view"] = {
                "score": round(self.view_score, 4),
                "threshold": round(self.view_threshold, 4),
                "passed": self.view_passed,
            }
        return out


@dataclass
class ViewHead:
    """Logistic regression on one gate layer's (transformed) features: P(not a whole, upright frontal chest film)."""

    layer: int  # index into the gate's layers
    center: np.ndarray  # (D,) feature standardisation
    spread: np.ndarray  # (D,)
    coef: np.ndarray  # (D,)
    intercept: float
    threshold: float

    def probability(self, feats: Sequence[np.ndarray]) -> np.ndarray:
        z = (np.asarray(feats[self.layer], dtype=np.float64) - self.center) / self.spread
        logit = np.clip(z @ self.coef + self.intercept, -50.0, 50.0)
        return 1.0 / (1.0 + np.exp(-logit))


@dataclass
class LayerStats:
    """One layer's pooled-feature statistics: which layer, how it is pooled, mean, precision, and its scale."""

    name: str  # a child of the DenseNet's ``features`` ("denseblock1", ..., "norm5")
    pool: str  # "mean" or "mean+std" over the spatial positions
    mean: np.ndarray  # (D,)
    precision: np.ndarray  # (D, D)
    scale: float = 1.0  # median distance of the val chest films: layers become comparable

    def distances(self, feats: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row, divided by sqrt(D), then by the layer's scale."""
        diff = np.asarray(feats, dtype=np.float64) - self.mean
        d2 = np.einsum("bi,ij,bj->b", diff, self.precision, diff)
        return np.sqrt(np.maximum(d2, 0.0) / self.mean.size) / self.scale


@dataclass
class OodGate:
    """The layers' statistics and the threshold on the score (the largest scaled layer distance)."""

    layers: list[LayerStats]
    threshold: float
    effective_size: int
    input_size: int
    transform: str = "sqrt"
    card: dict[str, Any] = field(default_factory=dict)
    view: ViewHead | None = None

    # ------------------------------------------------------------------ features
    def planes(self, pixels: np.ndarray, reductions: Reductions | None = None) -> np.ndarray:
        """[1, S, S] in [0, 1]: the film reduced to the effective size, then letterboxed like the triage input
        (``reductions``: the film's shared :class:`~cxrassist.preprocess.Reductions`)."""
        from cxrassist.preprocess import letterbox, reduce_detail

        small = (
            reduce_detail(pixels, self.effective_size)
            if reductions is None
            else reductions.of(pixels, self.effective_size)
        )
        canvas, _ = letterbox(np.asarray(small, dtype=np.float32), self.input_size)
        return canvas[None]

    def features(self, model: Any, batch: np.ndarray, device: Any = "cpu") -> list[np.ndarray]:
        """Pooled features of planes [B, 1, S, S] (see :meth:`planes`), one [B, D] array per layer."""
        return pooled_features(model, batch, [(lay.name, lay.pool) for lay in self.layers], device, self.transform)

    # ------------------------------------------------------------------ scores
    def scores(self, feats: Sequence[np.ndarray]) -> np.ndarray:
        """The score of each row: the largest of the layers' scaled distances (~1 for a typical val film)."""
        return np.max([lay.distances(f) for lay, f in zip(self.layers, feats, strict=True)], axis=0)

    def verdicts(self, feats: Sequence[np.ndarray]) -> list[OodResult]:
        """One verdict per row of pooled features (see :meth:`features`)."""
        scores = self.scores(feats)
        views = self.view.probability(feats) if self.view is not None else [None] * len(scores)
        out = []
        for score, view in zip(scores, views, strict=True):
            score = float(score) if math.isfinite(score) else float("inf")
            view_score = None if view is None else float(view)
            view_threshold = None if self.view is None else self.view.threshold
            passed = score <= self.threshold and (view_score is None or view_score <= float(view_threshold or 0.0))
            out.append(OodResult(score, self.threshold, passed, view_score, view_threshold))
        return out

    def check(
        self, model: Any, pixels: np.ndarray, device: Any = "cpu", reductions: Reductions | None = None
    ) -> OodResult:
        """Score one film (float [0, 1], 1 = bone white) with the triage network ``model``."""
        return self.verdicts(self.features(model, self.planes(pixels, reductions)[None], device))[0]


def pooled_features(
    model: Any, batch: np.ndarray, layers: Sequence[tuple[str, str]], device: Any = "cpu", transform: str = "sqrt"
) -> list[np.ndarray]:
    """Spatially pooled activations of the named DenseNet layers for planes in [0, 1] (normalised here).

    ``norm5`` is taken after the ReLU the classifier head applies; "mean+std" concatenates the two poolings.
    """
    import torch

    from cxrassist.preprocess import normalize

    wanted = dict(layers)
    out: dict[str, np.ndarray] = {}
    x = torch.from_numpy(normalize(np.asarray(batch, dtype=np.float32))).to(device)
    with torch.inference_mode():
        h = model.stem(x)
        for name, module in model.features.named_children():
            h = module(h)
            if name in wanted:
                a = torch.relu(h) if name == "norm5" else h
                parts = [a.mean(dim=(2, 3))] + ([a.std(dim=(2, 3))] if wanted[name] == "mean+std" else [])
                out[name] = torch.cat(parts, 1).float().cpu().numpy().astype(np.float64)
            if len(out) == len(wanted):
                break
    missing = [n for n in wanted if n not in out]
    if missing:
        raise WeightsError(f"the triage network has no layer {missing[0]!r} the out-of-distribution gate reads")
    feats = [out[name] for name, _ in layers]
    if transform == "sqrt":  # pooled activations are skewed; a signed square root makes them closer to Gaussian
        feats = [np.sign(f) * np.sqrt(np.abs(f)) for f in feats]
    return feats


# ---------------------------------------------------------------------------------------------------- files
def triage_sha(triage_card: Any) -> str | None:
    from cxrassist.channels import card_get

    value = card_get(triage_card, "sha256")
    return str(value) if value else None


def save_gate(
    directory: Path | str, layers: Sequence[LayerStats], card: dict[str, Any], view: ViewHead | None = None
) -> dict[str, Any]:
    """Write stats.safetensors and gate.json (layers, view head, the stats file's sha256); returns the card written."""
    from safetensors.numpy import save_file

    from cxrassist.weights.catalog import sha256_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for i, lay in enumerate(layers):
        tensors[f"mean.{i}"] = np.ascontiguousarray(lay.mean, dtype=np.float32)
        tensors[f"precision.{i}"] = np.ascontiguousarray(lay.precision, dtype=np.float32)
    if view is not None:
        for key in ("center", "spread", "coef"):
            tensors[f"view.{key}"] = np.ascontiguousarray(getattr(view, key), dtype=np.float32)
        card = dict(
            card,
            view=dict(
                card.get("view", {}), layer=layers[view.layer].name, intercept=view.intercept, threshold=view.threshold
            ),
        )
    save_file(tensors, str(out / STATS_FILE))
    card = dict(
        card,
        layers=[{"name": lay.name, "pool": lay.pool, "scale": lay.scale, "dim": int(lay.mean.size)} for lay in layers],
        sha256=sha256_file(out / STATS_FILE),
    )
    (out / GATE_CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


def load_gate(weights_dir: Path | str, triage_card: Any) -> OodGate | None:
    """The gate in ``<weights_dir>/ood/``, or None when there is none.

    Refuses (``WeightsError``, one line) a gate whose stats file does not match its card, or one fitted on other
    triage weights than ``triage_card``'s: distances in another network's feature space mean nothing.
    """
    from safetensors.numpy import load_file

    from cxrassist.weights.catalog import sha256_file

    folder = Path(weights_dir) / GATE_DIR
    card_path, stats_path = folder / GATE_CARD, folder / STATS_FILE
    if not card_path.is_file():
        return None
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        expected_triage = str(card["triage"]["sha256"])
        threshold = float(card["threshold"])
        effective, size = int(card["effective_size"]), int(card["input_size"])
        transform = str(card.get("transform", "sqrt"))
        specs = [(str(lay["name"]), str(lay["pool"]), float(lay["scale"])) for lay in card["layers"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WeightsError(
            f"out-of-distribution gate {card_path} is unreadable ({type(exc).__name__}); refit it with: {REFIT_COMMAND}"
        ) from exc
    if transform not in TRANSFORMS or not specs:
        raise WeightsError(
            f"out-of-distribution gate {card_path}: unknown transform or no layers; refit it with: {REFIT_COMMAND}"
        )
    loaded_triage = triage_sha(triage_card)
    if loaded_triage != expected_triage:
        raise WeightsError(
            f"the out-of-distribution gate in {folder} was fitted on triage weights {expected_triage[:12]}, but the "
            f"loaded triage weights are {(loaded_triage or 'untrained')[:12]}: refit it with: {REFIT_COMMAND}"
        )
    if not stats_path.is_file() or sha256_file(stats_path) != card.get("sha256"):
        raise WeightsError(
            f"out-of-distribution gate {stats_path} is missing or does not match the sha256 in "
            f"{GATE_CARD}; refit it with: {REFIT_COMMAND}"
        )
    tensors = load_file(str(stats_path))
    layers = []
    for i, (name, pool, scale) in enumerate(specs):
        mean, precision = tensors[f"mean.{i}"].astype(np.float64), tensors[f"precision.{i}"].astype(np.float64)
        if precision.shape != (mean.size, mean.size) or scale <= 0:
            raise WeightsError(
                f"out-of-distribution gate {stats_path}: layer {name} is malformed; refit it with: {REFIT_COMMAND}"
            )
        layers.append(LayerStats(name, pool, mean, precision, scale))
    return OodGate(layers, threshold, effective, size, transform, card, _load_view(card, layers, tensors, stats_path))


def _load_view(
    card: Mapping[str, Any], layers: Sequence[LayerStats], tensors: Mapping[str, np.ndarray], stats_path: Path
) -> ViewHead | None:
    """The view head recorded in gate.json + stats.safetensors, or None for a gate without one (1.0 gates)."""
    spec = card.get("view")
    if not spec:
        return None
    try:
        layer = [lay.name for lay in layers].index(str(spec["layer"]))
        arrays = {k: tensors[f"view.{k}"].astype(np.float64) for k in ("center", "spread", "coef")}
        head = ViewHead(
            layer,
            arrays["center"],
            arrays["spread"],
            arrays["coef"],
            float(spec["intercept"]),
            float(spec["threshold"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise WeightsError(
            f"out-of-distribution gate {stats_path}: the view head is malformed "
            f"({type(exc).__name__}); refit it with: {REFIT_COMMAND}"
        ) from exc
    dim = layers[layer].mean.size
    if not all(a.shape == (dim,) for a in (head.center, head.spread, head.coef)) or not np.all(head.spread > 0):
        raise WeightsError(
            f"out-of-distribution gate {stats_path}: the view head does not fit layer "
            f"{layers[layer].name}; refit it with: {REFIT_COMMAND}"
        )
    return head


def fit_view_head(
    positive: np.ndarray, negative: np.ndarray, layer: int = 0, c: float = 0.05, seed: int = 0
) -> ViewHead:
    """Fit the view head: features of whole upright frontal films (``positive``) against transformed ones.

    Balanced class weights (there are more films than transformed copies); the threshold is left at 0.5 for the
    caller to set on films the head was not fitted on.
    """
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([positive, negative]).astype(np.float64)
    y = np.r_[np.zeros(len(positive)), np.ones(len(negative))]
    center, spread = x.mean(axis=0), x.std(axis=0) + 1e-6
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed)
    lr.fit((x - center) / spread, y)
    return ViewHead(layer, center, spread, lr.coef_[0].astype(np.float64), float(lr.intercept_[0]), 0.5)


def fit_statistics(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean, precision and shrinkage of training features [N, D] (scikit-learn's Ledoit-Wolf estimate)."""
    from sklearn.covariance import LedoitWolf

    lw = LedoitWolf(assume_centered=False).fit(np.asarray(feats, dtype=np.float64))
    return lw.location_, lw.precision_, float(lw.shrinkage_)


def threshold_for(scores: Sequence[float], pass_fraction: float = 0.99) -> float:
    """The smallest threshold under which at least ``pass_fraction`` of ``scores`` pass (score <= threshold)."""
    values = np.sort(np.asarray(scores, dtype=np.float64))
    if values.size == 0:
        raise ValueError("no scores to set a threshold on")
    k = max(0, math.ceil(pass_fraction * values.size) - 1)
    return float(values[k])
