"""Pipeline: XRay(s) -> AnalysisResult. Pure compute, no files written.

Order of the stages (each one's output feeds the next): chest check -> lung segmentation -> (heart outline and
cardiothoracic ratio, when the classifier's card scores a finding from it: ``cxrassist.measured``) -> bone
subtraction -> classifier with CAMs (inputs built from the earlier stages as the classifier's card says) -> triage.
Models are loaded once and reused (the batch runner and the service keep one Pipeline per process).
``torch.set_num_threads`` is left to the caller.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrassist._jsonsafe import jsonable
from cxrassist.calibration import platt
from cxrassist.channels import classifier_planes, predict_bone, predict_lung_mask
from cxrassist.errors import NotChestXRayError, OutOfDistributionError, WeightsError
from cxrassist.labels import FINDINGS
from cxrassist.measured import AP_NOTE, MeasuredFinding, measure_film, measured_findings
from cxrassist.postprocess import CardiacMeasure, lung_areas, lung_tilt_deg, normalize_heatmap
from cxrassist.preprocess import Reductions, SpatialRecord, normalize, resize
from cxrassist.result import AnalysisResult, FindingResult, TriageResult, triage_priority
from cxrassist.tta import tta_logits
from cxrassist.types import ChestCheck, View, XRay
from cxrassist.weights.settings import (
    INPUT_CHANNELS,
    CardSettings,
    InputSettings,
    LabelSettings,
    card_dict,
    card_settings,
)

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


def channel_names(card: Any, key: str = "channels") -> list[str]:
    """The card's ``input.channels`` (or ``input.lateral_channels``), read by ``weights.settings``."""
    return list(getattr(card_settings(card).input, key))


def is_untrained(card: Any) -> bool:
    return not card_settings(card).trained


LoadedModel = tuple[Any, Any]  # (torch.nn.Module, ModelCard)


@dataclass(frozen=True)
class ModelSettings:
    """What the pipeline needs from the four cards, resolved once when it loads (``weights.settings``)."""

    lung: CardSettings
    bone: CardSettings
    classifier: CardSettings
    triage: CardSettings
    finding_index: tuple[int, ...]  # the classifier output of each of FINDINGS, in FINDINGS order
    finding_labels: tuple[LabelSettings, ...]  # the card's label of each of FINDINGS
    lateral_channels: tuple[str, ...]  # the classifier's lateral branch (empty: frontal-only)
    summaries: tuple[dict[str, Any], ...]  # model_summary of each role, in ROLES order
    heatmap_meaning: str  # what the classifier's heatmap colours mean (explain.cam.heatmap_meaning of its card)

    @property
    def triage_label(self) -> LabelSettings:
        return self.triage.labels[0]


def resolve_settings(models: Mapping[str, LoadedModel]) -> ModelSettings:
    """Read the four cards once: a malformed or incomplete card fails here (one line naming it), not on a film."""
    from cxrassist.explain.cam import heatmap_meaning

    s = {role: card_settings(models[role][1]) for role in ROLES}
    cls, (cls_model, _) = s["classifier"], models["classifier"]
    index, labels = [], []
    for f in FINDINGS:
        hits = [j for j, lab in enumerate(cls.label_names) if lab.lower() in (f.name.lower(), f.code.lower())]
        if not hits:
            raise WeightsError(f"classifier {cls.name!r} has no output for {f.name!r}")
        index.append(hits[0])
        labels.append(cls.labels[hits[0]])
    for role in ("classifier", "triage"):  # the card's channels are what the network takes
        n_in = getattr(models[role][0], "in_chans", None)
        if n_in is not None and int(n_in) != len(s[role].input.channels):
            raise WeightsError(
                f"{role} {s[role].name!r}: the card names {len(s[role].input.channels)} input "
                f"channels ({', '.join(s[role].input.channels)}), the network takes {int(n_in)}"
            )
    if not s["triage"].labels:
        raise WeightsError(f"triage model {s['triage'].name!r}: the card names no output label")
    # The lateral branch's channels: the card's input.lateral_channels, else the model's lateral_in_chans (the lung
    # and bone models are frontal-only, so derived lateral channels, if any, are zeros).
    lateral: tuple[str, ...] = ()
    if hasattr(cls_model, "lateral_in_chans") or cls.input.lateral_channels:
        n = int(getattr(cls_model, "lateral_in_chans", 1) or 1)
        lateral = cls.input.lateral_channels or INPUT_CHANNELS[:n]
    return ModelSettings(
        lung=s["lung"],
        bone=s["bone"],
        classifier=cls,
        triage=s["triage"],
        finding_index=tuple(index),
        finding_labels=tuple(labels),
        lateral_channels=lateral,
        summaries=tuple(model_summary(role, models[role][1]) for role in ROLES),
        heatmap_meaning=heatmap_meaning(models["classifier"][1]),
    )


class Pipeline:
    """The four models with their cards; ``analyze`` runs one study through the stage functions below.

    ``heart``: the heart model, needed when the classifier's card scores a finding from the cardiothoracic ratio
    (``cxrassist.measured``); ``load`` finds it beside the classifier.
    """

    def __init__(
        self,
        *,
        lung: LoadedModel,
        bone: LoadedModel,
        classifier: LoadedModel,
        triage: LoadedModel,
        heart: LoadedModel | None = None,
        device: str = "cpu",
    ) -> None:
        import torch

        self.device = torch.device(device)
        self.spec: dict[str, Any] | None = None  # set by load(): the arguments that rebuild this pipeline
        self.ood_gate: Any = None  # cxrassist.ood.OodGate, set by load() when the weights folder has one
        self.models: dict[str, LoadedModel] = {}
        from cxrassist.models.fold import prepare_for_inference

        for role, (model, card) in zip(ROLES, (lung, bone, classifier, triage), strict=True):
            prepare_for_inference(model.eval().to(self.device))  # the bone generator folds (same outputs, faster)
            self.models[role] = (model, card)
        self.settings = resolve_settings(self.models)
        self.measured: tuple[MeasuredFinding, ...] = measured_findings(classifier[1])
        self.heart: LoadedModel | None = None
        if self.measured and heart is None:
            m = self.measured[0]
            raise WeightsError(
                f"classifier {self.settings.classifier.name!r} scores {m.label} from the {m.measure} and needs the "
                f"heart model {m.model!r}, which was not given"
            )
        if self.measured and heart is not None:
            prepare_for_inference(heart[0].eval().to(self.device))
            self.heart = (heart[0], card_settings(heart[1]))
            summary = model_summary("heart", heart[1])
            self.settings = dataclasses.replace(self.settings, summaries=(*self.settings.summaries, summary))

    @property
    def takes_lateral(self) -> bool:
        return bool(self.settings.lateral_channels)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        weights_dir: Path | str | None = None,
        *,
        names: Mapping[str, str] | None = None,
        allow_untrained: bool = False,
        untrained_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        device: str = "cpu",
    ) -> Pipeline:
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
        heart = None
        for m in measured_findings(loaded["classifier"][1]):  # a measuring model lives beside the classifier
            path = Path(m.model) if Path(m.model).is_absolute() else base / m.model
            if not ((path / wmod.CARD_FILE).is_file() or (path / wmod.WEIGHTS_FILE).is_file()):
                raise WeightsError(
                    f"classifier {chosen['classifier']!r} scores {m.label} from the {m.measure} and needs the "
                    f"heart model {m.model!r}, not found in {base}"
                )
            heart = wmod.load_model(path)
        pipe = cls(**loaded, heart=heart, device=device)
        from cxrassist.ood import load_gate

        pipe.ood_gate = load_gate(base, loaded["triage"][1])  # None without <weights>/ood; refuses a stale gate
        # How to load it again (worker processes cannot receive the models themselves: spectral-norm
        # parametrisations do not pickle).
        pipe.spec = {
            "weights_dir": str(base),
            "names": dict(chosen),
            "allow_untrained": allow_untrained,
            "untrained_kwargs": {k: dict(v) for k, v in (untrained_kwargs or {}).items()},
            "device": device,
        }
        return pipe

    # ------------------------------------------------------------------ inference
    def analyze(self, frontal: XRay, lateral: XRay | None = None, *, force: bool = False) -> AnalysisResult:
        """Analyse one study. Refuses a non-chest or non-frontal image with NotChestXRayError unless ``force``."""
        import torch

        s, timings = self.settings, {}
        t_all = t0 = time.perf_counter()
        check, lateral_check, refused, warnings = check_study(frontal, lateral, force)
        timings["check"] = _ms(t0)
        t0 = time.perf_counter()
        reductions = Reductions(frontal.pixels)  # the gate, the classifier and triage share the 224-px reduction
        ood = ood_verdict(
            self.ood_gate, self.models["triage"][0], s.triage, frontal, force, self.device, warnings, reductions
        )
        refused = refused or (ood is not None and not ood["passed"])
        timings["ood"] = _ms(t0)

        with torch.inference_mode():
            t0 = time.perf_counter()
            lung_small, _, lung_mask = predict_lung_mask(self.models["lung"][0], s.lung, frontal.pixels)
            tilt = lung_tilt_deg(lung_small)
            refused = lung_tilt_verdict(tilt, force, warnings) or refused
            timings["lung"] = _ms(t0)
            cardiac, heart_mask = None, None
            if self.heart is not None:
                t0 = time.perf_counter()
                cardiac, heart_mask = measure_film(self.heart, frontal.pixels, lung_small)
                timings["heart"] = _ms(t0)
            t0 = time.perf_counter()
            bone = predict_bone(self.models["bone"][0], s.bone, frontal.pixels)[2]
            suppressed = np.subtract(frontal.pixels, bone, dtype=np.float32)  # one full-size array, no copies
            np.clip(suppressed, 0.0, 1.0, out=suppressed)
            timings["bone"] = _ms(t0)

        # The classifier runs outside inference_mode: Grad-CAM of the dual-branch model needs autograd
        # (class_activation_maps disables gradients wherever it does not need them).
        t0 = time.perf_counter()
        derived = {"lung_mask": lung_mask, "bone": bone}
        x, rec = model_input(
            frontal.pixels, s.classifier.input, s.classifier.input.channels, derived, self.device, reductions
        )
        x_lat, rec_lat = None, None
        if lateral is not None and self.takes_lateral:
            x_lat, rec_lat = model_input(lateral.pixels, s.classifier.input, s.lateral_channels, {}, self.device)
        elif lateral is not None:
            warnings.append("the classifier is frontal-only: the lateral view was not used")
        probs, cams, lat_cams = classify(self.models["classifier"][0], x, x_lat, s.finding_index)
        timings["classifier"] = _ms(t0)

        with torch.inference_mode():
            t0 = time.perf_counter()
            xt, _ = model_input(
                frontal.pixels, s.triage.input, s.triage.input.channels, derived, self.device, reductions
            )
            p_abn = triage_probability(self.models["triage"][0], xt, s.triage.input.tta_zooms)
            timings["triage"] = _ms(t0)

        measured = (
            self._measured(probs, cams, cardiac, heart_mask, warnings, frontal.view) if heart_mask is not None else {}
        )
        findings = finding_results(probs, s.finding_labels, trained=s.classifier.trained)
        findings = [dataclasses.replace(f, **measured[i]) if i in measured else f for i, f in enumerate(findings)]
        triage = triage_result(p_abn, s.triage_label, findings)
        models = [dict(m) for m in s.summaries]
        first, last = study_warnings(models, findings)
        warnings = [*first, *warnings, *last]
        timings["total"] = _ms(t_all)
        return AnalysisResult(
            frontal=frontal,
            lateral=lateral,
            chest_check=check,
            forced=refused,
            lung_mask=lung_mask,
            lung_areas=lung_areas(lung_mask, frontal.pixel_spacing_mm),
            lung_tilt_deg=tilt,
            bone=bone,
            bone_suppressed=suppressed,
            findings=findings,
            triage=triage,
            cams=cams,
            cam_record=rec,
            lateral_cams=lat_cams,
            lateral_record=rec_lat,
            lateral_check=lateral_check,
            models=models,
            timings_ms=timings,
            warnings=warnings,
            ood=ood,
            heatmap_meaning=s.heatmap_meaning,
            cardiac=cardiac,
        )

    def _measured(
        self,
        probs: np.ndarray,
        cams: np.ndarray,
        cardiac: CardiacMeasure | None,
        heart_mask: np.ndarray,
        warnings: list[str],
        view: View = View.UNKNOWN,
    ) -> dict[int, dict[str, Any]]:
        """Findings scored from the cardiothoracic ratio: their raw probability and map (the heart outline) written
        into ``probs`` and ``cams``; returns, per finding index, what its FindingResult says besides (the method).

        ``heart_mask`` is in the heart model's letterbox square, the same geometry as the classifier's (both
        letterbox the film, centred, aspect kept), so it is only resized to the CAM grid. Where the ratio cannot be
        measured the classifier's probability stays, the finding is not called positive, and a warning says so. On a
        film the header calls AP the method and a warning say that the ratio runs high there (the threshold was
        fitted on NIH films whose view is not recorded).
        """
        assert self.heart is not None
        heart_card = self.heart[1]
        out: dict[int, dict[str, Any]] = {}
        for m in self.measured:
            i = next(k for k, f in enumerate(FINDINGS) if m.label.lower() in (f.name.lower(), f.code.lower()))
            if cardiac is None:
                warnings.append(
                    f"{m.label}: the cardiothoracic ratio could not be measured (no heart outline, not two lungs, "
                    "or an outline too narrow to be a heart); the classifier's own score is shown, not called positive"
                )
                out[i] = {"positive": False, "validated": False}
                continue
            probs[i] = m.probability(cardiac.ratio)
            cams[i] = normalize_heatmap(resize(heart_mask.astype(np.float32), cams.shape[1:]))
            method = m.method(cardiac, heart_card.name, heart_card.version)
            if view is View.AP:
                method += AP_NOTE
                warnings.append(
                    f"{m.label}: the cardiothoracic ratio {cardiac.ratio:.2f} was measured{AP_NOTE}; read it with that "
                    "in mind"
                )
            out[i] = {"method": method}
        return out


# ---------------------------------------------------------------------- the stages, each callable on its own
def check_study(
    frontal: XRay, lateral: XRay | None, force: bool
) -> tuple[ChestCheck, ChestCheck | None, bool, list[str]]:
    """(frontal check, lateral check, refused-but-forced, warnings). Refuses a non-chest or non-frontal film with
    NotChestXRayError unless ``force``."""
    warnings: list[str] = []
    check = _check(frontal)
    refused = (not check.is_chest) or check.is_frontal is False
    if refused and not force:
        raise NotChestXRayError(f"not a frontal chest radiograph: {check.reason}")
    if refused:
        warnings.append(f"FORCED: analysed although the chest check refused it ({check.reason})")
    lateral_check = _check(lateral) if lateral is not None else None
    if lateral_check is not None and not lateral_check.is_chest:
        warnings.append(f"the lateral view may not be a chest radiograph: {lateral_check.reason}")
    return check, lateral_check, refused, warnings


#: Most turn of the two lungs (``postprocess.lung_tilt_deg``) on a film that is read. Chosen on the train films of
#: ../shared/data (1,871 films, 9 chest sets, at most 300 each): 2 of them (0.1 %) lie beyond it, so the gate's
#: >= 99 % of chest films passing still holds; val films, where it is reported, show what it costs. Why: a film
#: rotated by 30 degrees is still a chest film to the gate (a quarter of them passed it), and the lungs say it.
MAX_LUNG_TILT_DEG = 15.0
LUNG_TILT_METHOD = (
    "how far the two lungs are turned together: the smaller of the centroid line's angle to the horizontal and the "
    "mean long axis's angle to the vertical when both turn the same way, else 0 (null without two lungs); over the "
    "limit the film is refused (or, forced, marked)"
)


def lungs_turned(tilt: float | None) -> bool:
    """The rotation rule: the lungs turned past MAX_LUNG_TILT_DEG (no two lungs, ``tilt`` None: no verdict)."""
    return tilt is not None and tilt > MAX_LUNG_TILT_DEG


def lung_tilt_verdict(tilt: float | None, force: bool, warnings: list[str]) -> bool:
    """True when the lungs are turned (``lungs_turned``) and ``force`` analyses the film anyway (marked); without
    ``force`` that refuses it (``NotChestXRayError``)."""
    if tilt is None or not lungs_turned(tilt):
        return False
    reason = f"the lungs are turned {tilt:.0f} degrees off upright (at most {MAX_LUNG_TILT_DEG:.0f}): a rotated film?"
    if not force:
        raise NotChestXRayError(f"not an upright frontal chest radiograph: {reason} (--force analyses it, marked)")
    warnings.append(f"FORCED: analysed although {reason}")
    return True


def ood_verdict(
    gate: Any,
    triage_model: Any,
    triage: CardSettings,
    frontal: XRay,
    force: bool,
    device: Any,
    warnings: list[str],
    reductions: Reductions | None = None,
) -> dict[str, Any] | None:
    """The out-of-distribution gate's verdict (report.json's ``ood``); over its threshold the study is refused
    (``OutOfDistributionError``) unless ``force``, which analyses it and marks it."""
    if gate is None:
        if triage.trained:
            warnings.append(
                "no out-of-distribution gate with these weights: images unlike the training films are not refused"
            )
        return None
    verdict = gate.check(triage_model, frontal.pixels, device, reductions)
    if not verdict.passed and not force:
        raise OutOfDistributionError(f"refused: {verdict.reason} (--force analyses it anyway, marked)")
    if not verdict.passed:
        warnings.append(f"FORCED: analysed although the out-of-distribution gate refused it ({verdict.reason})")
    return verdict.to_dict(gate.card)


def model_input(
    pixels: np.ndarray,
    inp: InputSettings,
    channels: Sequence[str],
    derived: Mapping[str, np.ndarray],
    device: Any = "cpu",
    reductions: Reductions | None = None,
) -> tuple[Any, SpatialRecord]:
    """The [1, C, S, S] normalized input of a model (``channels.classifier_planes``, shared with training)."""
    import torch

    planes, rec = classifier_planes(
        pixels, inp.size, channels, detail=inp.effective_size, reductions=reductions, **derived
    )
    return torch.from_numpy(normalize(planes))[None].to(device), rec


def classify(
    model: Any, x: Any, x_lat: Any, finding_index: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(raw probabilities, frontal CAMs, lateral CAMs or None), each in FINDINGS order; CAMs scaled to [0, 1]."""
    import torch

    from cxrassist.explain.cam import class_activation_maps

    idx = list(finding_index)
    out = class_activation_maps(model, x, lateral=x_lat)
    probs = torch.sigmoid(out.logits.detach().float())[0].cpu().numpy()[idx]
    cams = _norm_cams(out.cams["frontal"][0].detach().float().cpu().numpy()[idx])
    lat_cams = None
    if x_lat is not None and "lateral" in out.cams:
        lat_cams = _norm_cams(out.cams["lateral"][0].detach().float().cpu().numpy()[idx])
    return probs, cams, lat_cams


def triage_probability(model: Any, x: Any, zooms: Sequence[float]) -> float:
    """The triage model's raw abnormal probability, logits averaged over the card's test-time zooms."""
    import torch

    logits = tta_logits(model, x, zooms).float().reshape(1, -1)
    return float(torch.sigmoid(logits[0, 0]) if logits.shape[1] == 1 else torch.softmax(logits, 1)[0, 1])


def _calibrated(label: LabelSettings, p: float) -> float:
    return float(p) if label.calibration is None else float(platt(p, *label.calibration))


def finding_results(probs: np.ndarray, labels: Sequence[LabelSettings], *, trained: bool) -> list[FindingResult]:
    """One FindingResult per finding (FINDINGS order): calibrated probability against the card's threshold."""
    out = []
    for f, label, raw in zip(FINDINGS, labels, probs, strict=True):
        is_validated = label.validated and trained
        p = _calibrated(label, float(raw))  # thresholds are on the calibrated probability
        # Only a validated finding is ever called positive (and so can raise the worklist priority): a finding
        # without measured accuracy shows its probability with a "not validated" tag, never a verdict.
        out.append(
            FindingResult(
                f.code,
                f.name,
                p,
                label.threshold,
                is_validated and bool(p >= label.threshold),
                is_validated,
                label.measured,
            )
        )
    return out


def triage_result(p_abnormal: float, label: LabelSettings, findings: list[FindingResult]) -> TriageResult:
    """The worklist priority from the raw triage probability (calibrated here) and the findings."""
    return triage_priority(_calibrated(label, p_abnormal), label.threshold, findings, label.measured)


def study_warnings(
    models: Sequence[Mapping[str, Any]], findings: Sequence[FindingResult]
) -> tuple[list[str], list[str]]:
    """The warnings that frame a study's own: (first: untrained models, last: unvalidated findings)."""
    first, last = [], []
    untrained = [m["role"] for m in models if m["status"] != "trained"]
    if untrained:
        first.append(f"{UNTRAINED_WARNING} (untrained: {', '.join(untrained)})")
    if not all(f.validated for f in findings):
        last.append("some findings are not validated: their probabilities have no measured accuracy")
    return first, last


def model_summary(role: str, card: Any) -> dict[str, Any]:
    """What a report says about one model: identity, provenance and its card's measured numbers."""
    d = card_dict(card)
    return {
        "role": role,
        "name": str(d.get("name") or role),
        "version": str(d.get("version") or ""),
        "architecture": str(d.get("architecture") or ""),
        "sha256": d.get("sha256") or None,
        "status": "trained" if card_settings(card).trained else "untrained",
        "metrics": jsonable(d.get("metrics") or {}),
        "intended_use": d.get("intended_use") or None,
        "date": str(d.get("date") or "") or None,
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
    card = ModelCard.new(
        arch,
        name=f"{role}-untrained",
        version="0.0.0+untrained",
        kwargs=kwargs,
        status="untrained",
        intended_use=UNTRAINED_WARNING,
        notes=UNTRAINED_WARNING,
        date=time.strftime("%Y-%m-%d"),
    )
    if size is not None:
        card.input = {**card.input, "size": int(size)}
    return model, card


def _check(xray: XRay) -> ChestCheck:
    from cxrassist.io import check_chest

    return check_chest(xray)


def _norm_cams(cams: np.ndarray) -> np.ndarray:
    return np.stack([normalize_heatmap(c) for c in cams]).astype(np.float32)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 1)
