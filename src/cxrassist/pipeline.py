"""Pipeline: XRay(s) -> AnalysisResult. Pure compute, no files written.

Order of the stages (each one's output feeds the next): chest check -> lung segmentation -> bone subtraction ->
classifier with CAMs (inputs built from the two previous stages as the classifier's card says) -> triage.
Models are loaded once and reused (the batch runner and the service keep one Pipeline per process).
``torch.set_num_threads`` is left to the caller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxrassist._jsonsafe import jsonable
from cxrassist.errors import NotChestXRayError, OutOfDistributionError, WeightsError
from cxrassist.labels import CRITICAL_CODES, FINDINGS
from cxrassist.postprocess import LungAreas, lung_areas, normalize_heatmap
from cxrassist.channels import (
    card_get,
    card_input_size,
    card_effective_size,
    card_threshold,
    classifier_planes,
    predict_bone,
    predict_lung_mask,
)
from cxrassist.calibration import calibrated
from cxrassist.preprocess import SpatialRecord, normalize
from cxrassist.tta import card_zooms, tta_logits
from cxrassist.types import ChestCheck, XRay

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("lung", "bone", "classifier", "triage")
#: Folder names of the models under a weights directory (the shipped one or a hospital's own).
DEFAULT_NAMES: dict[str, str] = {"lung": "lungseg", "bone": "bone", "classifier": "classifier", "triage": "triage"}
#: Architectures built with random weights by ``Pipeline.load(allow_untrained=True)`` when a model is missing.
UNTRAINED_ARCHITECTURES: dict[str, str] = {
    "lung": "lungseg-vgg16unet-compact",
    "bone": "bone-gan-compact",
    "classifier": "dn121-512-dual-lung-bone",
    "triage": "triage-dn121-512",
}
UNTRAINED_WARNING = "UNTRAINED MODEL — outputs are meaningless"

# Names a card may use for each classifier input channel (see preprocess: radiograph, lung-segmented, bone).
_CHANNEL_ALIASES = {
    "radiograph": "radiograph", "image": "radiograph", "raw": "radiograph", "xray": "radiograph", "cxr": "radiograph",
    "lung": "lung", "lungs": "lung", "lung_segmented": "lung", "lung-segmented": "lung", "lung_masked": "lung",
    "bone": "bone", "bones": "bone", "bone_subtracted": "bone", "bone-subtracted": "bone",
}
_DEFAULT_CHANNELS = ("radiograph", "lung", "bone")


def card_to_dict(card: Any) -> dict[str, Any]:
    """A ModelCard (dataclass, pydantic-like or dict) as a plain dict."""
    if isinstance(card, Mapping):
        return dict(card)
    for attr in ("to_dict", "as_dict", "model_dump"):
        if hasattr(card, attr):
            return dict(getattr(card, attr)())
    import dataclasses

    if dataclasses.is_dataclass(card):
        return dataclasses.asdict(card)
    return dict(vars(card))


def channel_names(card: Any, key: str = "channels") -> list[str]:
    """The card's ``input.channels`` as canonical names: an int n means the first n of radiograph, lung, bone."""
    spec = card_get(card_get(card, "input"), key)
    if spec is None:
        return list(_DEFAULT_CHANNELS) if key == "channels" else []
    if isinstance(spec, int):
        if not 1 <= spec <= 3:
            raise WeightsError(f"model {card_get(card, 'name')!r}: unsupported input.{key} = {spec}")
        return list(_DEFAULT_CHANNELS[:spec])
    names = []
    for item in spec:
        canon = _CHANNEL_ALIASES.get(str(item).lower())
        if canon is None:
            raise WeightsError(f"model {card_get(card, 'name')!r}: unknown input channel {item!r}")
        names.append(canon)
    return names


def is_untrained(card: Any) -> bool:
    return str(card_get(card, "status", "trained")).lower() != "trained"


@dataclass(frozen=True)
class FindingResult:
    code: str
    name: str
    probability: float
    threshold: float
    positive: bool
    validated: bool
    # how well this finding was measured (the card's operating_points entry: AUROC + CI, sensitivity and
    # specificity at the threshold, positives/n, where); None when the card has none (e.g. an untrained model)
    measured: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TriageResult:
    abnormal_probability: float
    threshold: float
    priority: str  # "critical" | "high" | "routine"
    priority_score: float
    critical_findings: tuple[str, ...]
    measured: Mapping[str, Any] | None = None  # the triage card's operating point figures


def triage_priority(abnormal_probability: float, threshold: float, findings: list[FindingResult],
                    measured: Mapping[str, Any] | None = None) -> TriageResult:
    """The documented worklist priority.

    - ``critical`` when a critical finding (``labels.CRITICAL_CODES``: pneumothorax, edema) is positive (positive
      implies validated: an unvalidated finding never escalates);
      score = 2 + the highest probability among those critical findings (range [2, 3]).
    - ``high`` when the triage model's abnormal probability reaches its card threshold; score = 1 + p ([1, 2)).
    - ``routine`` otherwise; score = p ([0, 1)).
    Sorting by ``priority_score`` descending gives the reading order.
    """
    critical = [f for f in findings if f.code in CRITICAL_CODES and f.positive]
    p = float(abnormal_probability)
    if critical:
        return TriageResult(p, threshold, "critical", 2.0 + max(f.probability for f in critical),
                            tuple(f.code for f in critical), measured)
    if p >= threshold:
        return TriageResult(p, threshold, "high", 1.0 + min(p, 0.999999), (), measured)
    return TriageResult(p, threshold, "routine", min(p, 0.999999), (), measured)


@dataclass
class AnalysisResult:
    """Everything one analysis produced, at the original resolution where it is an image."""

    frontal: XRay
    lateral: XRay | None
    chest_check: ChestCheck
    forced: bool
    lung_mask: np.ndarray  # bool (H, W) on the frontal's pixels
    lung_areas: LungAreas
    bone: np.ndarray  # float32 (H, W) [0, 1]: the predicted bone image ("bone-subtracted")
    bone_suppressed: np.ndarray  # float32 (H, W) [0, 1]: radiograph minus bone
    findings: list[FindingResult]
    triage: TriageResult
    cams: np.ndarray  # float32 (K, h, w) in [0, 1], model-space CAMs of the frontal, FINDINGS order
    cam_record: SpatialRecord
    lateral_cams: np.ndarray | None = None
    lateral_record: SpatialRecord | None = None
    lateral_check: ChestCheck | None = None
    models: list[dict[str, Any]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    ood: dict[str, Any] | None = None  # the out-of-distribution gate's verdict (cxrassist.ood); None without a gate

    @property
    def untrained(self) -> bool:
        return any(m.get("status") != "trained" for m in self.models)

    def heatmap_u8(self, code: str, view: str = "frontal") -> np.ndarray:
        """The finding's heatmap as uint8 (0-255) on the ORIGINAL pixel grid of that view (fast path for images)."""
        from cxrassist.postprocess import heatmap_to_original_u8

        idx = [f.code for f in FINDINGS].index(code)
        if view == "frontal":
            return heatmap_to_original_u8(self.cams[idx], self.cam_record)
        if self.lateral_cams is None or self.lateral_record is None:
            raise ValueError("this analysis has no lateral view")
        return heatmap_to_original_u8(self.lateral_cams[idx], self.lateral_record)

    def heatmap(self, code: str, view: str = "frontal") -> np.ndarray:
        """The finding's heatmap in [0, 1] on the ORIGINAL pixel grid of that view."""
        idx = [f.code for f in FINDINGS].index(code)
        if view == "frontal":
            return np.clip(self.cam_record.to_original(self.cams[idx]), 0.0, 1.0)
        if self.lateral_cams is None or self.lateral_record is None:
            raise ValueError("this analysis has no lateral view")
        return np.clip(self.lateral_record.to_original(self.lateral_cams[idx]), 0.0, 1.0)


LoadedModel = tuple[Any, Any]  # (torch.nn.Module, ModelCard)


class Pipeline:
    """The four models with their cards; ``analyze`` runs one study."""

    def __init__(self, *, lung: LoadedModel, bone: LoadedModel, classifier: LoadedModel, triage: LoadedModel,
                 device: str = "cpu") -> None:
        import torch

        self.device = torch.device(device)
        self.spec: dict[str, Any] | None = None  # set by load(): the arguments that rebuild this pipeline
        self.ood_gate: Any = None  # cxrassist.ood.OodGate, set by load() when the weights folder has one
        self.models: dict[str, LoadedModel] = {}
        for role, (model, card) in zip(ROLES, (lung, bone, classifier, triage)):
            model.eval().to(self.device)
            self.models[role] = (model, card)
        labels = [str(lab).lower() for lab in (card_get(classifier[1], "labels") or [f.name for f in FINDINGS])]
        self._label_index: list[int] = []
        for f in FINDINGS:
            hits = [j for j, lab in enumerate(labels) if lab in (f.name.lower(), f.code.lower())]
            if not hits:
                raise WeightsError(f"classifier {card_get(classifier[1], 'name')!r} has no output for {f.name!r}")
            self._label_index.append(hits[0])
        self._cls_channels = channel_names(classifier[1])
        # The lateral branch's channels: the card's input.lateral_channels, else the model's lateral_in_chans
        # (the lung and bone models are frontal-only, so derived lateral channels, if any, are zeros).
        self.takes_lateral = hasattr(classifier[0], "lateral_in_chans") or bool(
            card_get(card_get(classifier[1], "input"), "lateral_channels"))
        lat_n = int(getattr(classifier[0], "lateral_in_chans", 1) or 1)
        self._lat_channels = channel_names(classifier[1], "lateral_channels") or list(_DEFAULT_CHANNELS[:lat_n])
        self._triage_channels = channel_names(triage[1])
        self._triage_zooms = card_zooms(triage[1])  # a malformed card fails here, not on the first film
        self._cls_detail = card_effective_size(classifier[1])
        self._triage_detail = card_effective_size(triage[1])

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, weights_dir: Path | str | None = None, *, names: Mapping[str, str] | None = None,
             allow_untrained: bool = False, untrained_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
             device: str = "cpu") -> Pipeline:
        """Load the four models from ``weights_dir`` (default: the shipped weights), one sub-folder per model.

        A missing model raises :class:`WeightsError` naming it, unless ``allow_untrained`` builds its architecture
        with random weights and a card whose status is "untrained" (every output then says so).
        """
        from cxrassist import weights as wmod

        base = Path(weights_dir) if weights_dir is not None else wmod.shipped_dir()
        chosen = dict(DEFAULT_NAMES) | dict(names or {})
        loaded: dict[str, LoadedModel] = {}
        for role in ROLES:
            path = base / chosen[role]
            if (path / wmod.CARD_FILE).is_file() or (path / wmod.WEIGHTS_FILE).is_file():
                loaded[role] = wmod.load_model(path)
            elif allow_untrained:
                log.warning("%s model missing at %s: using an UNTRAINED %s", role, path, UNTRAINED_ARCHITECTURES[role])
                loaded[role] = build_untrained(role, **dict((untrained_kwargs or {}).get(role, {})))
            else:
                raise WeightsError(
                    f"{role} model {chosen[role]!r} not found in {base} (install the weights, point --weights at a "
                    "folder holding them, or pass --allow-untrained to try the program with meaningless random models)"
                )
        pipe = cls(**loaded, device=device)
        from cxrassist.ood import load_gate

        pipe.ood_gate = load_gate(base, loaded["triage"][1])  # None without <weights>/ood; refuses a stale gate
        # How to load it again (worker processes cannot receive the models themselves: spectral-norm
        # parametrisations do not pickle).
        pipe.spec = {"weights_dir": str(base), "names": dict(chosen), "allow_untrained": allow_untrained,
                     "untrained_kwargs": {k: dict(v) for k, v in (untrained_kwargs or {}).items()}, "device": device}
        return pipe

    # ------------------------------------------------------------------ inference
    def analyze(self, frontal: XRay, lateral: XRay | None = None, *, force: bool = False) -> AnalysisResult:
        """Analyse one study. Refuses a non-chest or non-frontal image with NotChestXRayError unless ``force``."""
        import torch

        timings: dict[str, float] = {}
        warnings: list[str] = []
        t_all = t0 = time.perf_counter()

        check = _check(frontal)
        refused = (not check.is_chest) or check.is_frontal is False
        if refused and not force:
            raise NotChestXRayError(f"not a frontal chest radiograph: {check.reason}")
        if refused:
            warnings.append(f"FORCED: analysed although the chest check refused it ({check.reason})")
        lateral_check = _check(lateral) if lateral is not None else None
        if lateral_check is not None and not lateral_check.is_chest:
            warnings.append(f"the lateral view may not be a chest radiograph: {lateral_check.reason}")
        timings["check"] = _ms(t0)
        t0 = time.perf_counter()
        ood = self._ood(frontal, force, warnings)
        refused = refused or (ood is not None and not ood["passed"])
        timings["ood"] = _ms(t0)

        with torch.inference_mode():
            t0 = time.perf_counter()
            lung_mask = predict_lung_mask(*self.models["lung"], frontal.pixels)[2]
            timings["lung"] = _ms(t0)

            t0 = time.perf_counter()
            bone = predict_bone(*self.models["bone"], frontal.pixels)[2]
            suppressed = np.clip(frontal.pixels - bone, 0.0, 1.0).astype(np.float32)
            timings["bone"] = _ms(t0)

        # The classifier runs outside inference_mode: Grad-CAM of the dual-branch model needs autograd
        # (class_activation_maps disables gradients wherever it does not need them).
        t0 = time.perf_counter()
        derived = {"lung_mask": lung_mask, "bone": bone}
        cls_model, cls_card = self.models["classifier"]
        size = card_input_size(cls_card)
        x, rec = self._inputs(frontal.pixels, size, self._cls_channels, derived, self._cls_detail)
        x_lat, rec_lat = (None, None)
        if lateral is not None and self.takes_lateral:
            x_lat, rec_lat = self._inputs(lateral.pixels, size, self._lat_channels, {}, self._cls_detail)
        elif lateral is not None:
            warnings.append("the classifier is frontal-only: the lateral view was not used")
        from cxrassist.explain.cam import class_activation_maps

        out = class_activation_maps(cls_model, x, lateral=x_lat)
        probs = torch.sigmoid(out.logits.detach().float())[0].cpu().numpy()[self._label_index]
        cams = _norm_cams(out.cams["frontal"][0].detach().float().cpu().numpy()[self._label_index])
        lat_cams = None
        if x_lat is not None and "lateral" in out.cams:
            lat_cams = _norm_cams(out.cams["lateral"][0].detach().float().cpu().numpy()[self._label_index])
        timings["classifier"] = _ms(t0)

        with torch.inference_mode():
            t0 = time.perf_counter()
            tri_model, tri_card = self.models["triage"]
            xt, _ = self._inputs(frontal.pixels, card_input_size(tri_card), self._triage_channels, derived,
                                 self._triage_detail)
            logits = tta_logits(tri_model, xt, self._triage_zooms).float().reshape(1, -1)
            p_abn = float(torch.sigmoid(logits[0, 0]) if logits.shape[1] == 1 else torch.softmax(logits, 1)[0, 1])
            timings["triage"] = _ms(t0)

        findings = self._findings(probs)
        tri_label = (card_get(tri_card, "labels") or ["Abnormal"])[0]
        p_abn = calibrated(tri_card, tri_label, p_abn)
        tri_threshold = card_threshold(tri_card, ("abnormal", "Abnormal", "triage"), 0.5)
        tri_measured = (card_get(tri_card, "operating_points") or {}).get(tri_label)
        triage = triage_priority(p_abn, tri_threshold, findings, tri_measured)
        models = [model_summary(role, card) for role, (_, card) in self.models.items()]
        untrained = [m["role"] for m in models if m["status"] != "trained"]
        if untrained:
            warnings.insert(0, f"{UNTRAINED_WARNING} (untrained: {', '.join(untrained)})")
        if not all(f.validated for f in findings):
            warnings.append("some findings are not validated: their probabilities have no measured accuracy")
        timings["total"] = _ms(t_all)
        return AnalysisResult(
            frontal=frontal, lateral=lateral, chest_check=check, forced=refused, lung_mask=lung_mask,
            lung_areas=lung_areas(lung_mask, frontal.pixel_spacing_mm), bone=bone, bone_suppressed=suppressed,
            findings=findings, triage=triage, cams=cams, cam_record=rec, lateral_cams=lat_cams,
            lateral_record=rec_lat, lateral_check=lateral_check, models=models, timings_ms=timings, warnings=warnings,
            ood=ood,
        )

    def _ood(self, frontal: XRay, force: bool, warnings: list[str]) -> dict[str, Any] | None:
        """The out-of-distribution gate's verdict (report.json's ``ood``); over its threshold the study is refused
        (``OutOfDistributionError``) unless ``force``, which analyses it and marks it."""
        if self.ood_gate is None:
            if not is_untrained(self.models["triage"][1]):
                warnings.append("no out-of-distribution gate with these weights: images unlike the training films "
                                "are not refused")
            return None
        verdict = self.ood_gate.check(self.models["triage"][0], frontal.pixels, self.device)
        if not verdict.passed and not force:
            raise OutOfDistributionError(f"refused: {verdict.reason} (--force analyses it anyway, marked)")
        if not verdict.passed:
            warnings.append(f"FORCED: analysed although the out-of-distribution gate refused it ({verdict.reason})")
        return verdict.to_dict(self.ood_gate.card)

    def _inputs(self, pixels: np.ndarray, size: int, channels: list[str], derived: Mapping[str, np.ndarray],
                detail: int | None) -> tuple[Any, SpatialRecord]:
        """The [1, C, S, S] normalized input (``channels.classifier_planes``, shared with training)."""
        import torch

        planes, rec = classifier_planes(pixels, size, channels, detail=detail, **derived)
        return torch.from_numpy(normalize(planes))[None].to(self.device), rec

    def _findings(self, probs: np.ndarray) -> list[FindingResult]:
        card = self.models["classifier"][1]
        thresholds = card_get(card, "thresholds") or {}
        validated = card_get(card, "validated") or {}
        measured = card_get(card, "operating_points") or {}
        untrained = is_untrained(card)
        out = []
        for f, p in zip(FINDINGS, probs):
            thr = float(_lookup(thresholds, f, 0.5))
            is_validated = bool(_lookup(validated, f, False)) and not untrained
            p = calibrated(card, f.name, float(p))  # thresholds are on the calibrated probability
            # Only a validated finding is ever called positive (and so can raise the worklist priority): a finding
            # without measured accuracy shows its probability with a "not validated" tag, never a verdict.
            out.append(FindingResult(f.code, f.name, p, thr, is_validated and bool(p >= thr), is_validated,
                                     _lookup(measured, f, None)))
        return out


def model_summary(role: str, card: Any) -> dict[str, Any]:
    """What a report says about one model: identity, provenance and its card's measured numbers."""
    status = "trained" if not is_untrained(card) else "untrained"
    return {
        "role": role,
        "name": str(card_get(card, "name", role)),
        "version": str(card_get(card, "version", "")),
        "architecture": str(card_get(card, "architecture", "")),
        "sha256": card_get(card, "sha256") or None,
        "status": status,
        "metrics": jsonable(card_get(card, "metrics") or {}),
        "intended_use": card_get(card, "intended_use") or None,
        "date": str(card_get(card, "date") or "") or None,
    }


def build_untrained(role: str, **kwargs: Any) -> LoadedModel:
    """A randomly initialised model of the role's default architecture with an "untrained" card.

    kwargs: ``architecture`` and ``size`` (input size) override the defaults; the rest go to ``create_model``
    (tests shrink the networks with them).
    """
    from cxrassist.models import create_model
    from cxrassist.weights import ModelCard

    arch = kwargs.pop("architecture", UNTRAINED_ARCHITECTURES[role])
    size = kwargs.pop("size", None)
    model = create_model(arch, **kwargs)
    card = ModelCard.new(arch, name=f"{role}-untrained", version="0.0.0+untrained", kwargs=kwargs,
                         status="untrained", intended_use=UNTRAINED_WARNING, notes=UNTRAINED_WARNING,
                         date=time.strftime("%Y-%m-%d"))
    if size is not None:
        card.input = {**card.input, "size": int(size)}
    return model, card


def _check(xray: XRay) -> ChestCheck:
    from cxrassist.io import check_chest

    return check_chest(xray)


def _norm_cams(cams: np.ndarray) -> np.ndarray:
    return np.stack([normalize_heatmap(c) for c in cams]).astype(np.float32)


def _lookup(table: Any, f: Any, default: Any) -> Any:
    if not isinstance(table, Mapping):
        return default
    for key in (f.name, f.code, f.name.lower()):
        if key in table:
            return table[key]
    return default


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 1)
