"""Triage and 13-finding classifier evaluation: AUROC with bootstrap 95% CI, ROC PNGs, operating thresholds.

The table layout is the fixed finding order AT CA CO ED PE PN PX EC LL AO PO FR SD then AVG (mean of the defined
AUROCs); "n/a" where the evaluation set has no positives (or no negatives) for a finding.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrassist.data.dataset import CxrDataset, collate
from cxrassist.data.records import Record
from cxrassist.errors import ConfigError, DatasetError
from cxrassist.evaluation.common import progress
from cxrassist.evaluation.metrics import auroc, bootstrap_auroc_ci, sensitivity_specificity
from cxrassist.evaluation.operating import (
    FINDING_RULE,
    TRIAGE_RULE,
    VALIDATION_RULE,
    call_figures,
    cross_fit,
    ece,
    fold_of,
    group_masks,
    is_validated,
    per_group,
)
from cxrassist.labels import FINDING_CODES, FINDING_NAMES, NIH_SOURCE_DATASETS
from cxrassist.tta import card_zooms, tta_logits
from cxrassist.weights.settings import BONE_SUBTRACTED, RADIOGRAPH, card_settings

log = logging.getLogger(__name__)


MIN_POSITIVES = 10  # findings with fewer positives in the evaluation set are reported but not averaged
REFERENCE_MIN_POSITIVES = 5  # the model-vs-teacher mean on nih_cxr14_sample counts findings with this many positives
REFERENCE_SET = "nih_cxr14_sample"


def _fmt(v: float) -> str:
    return "n/a" if v is None or v != v else f"{v:.3f}"


def predict(
    task: str,
    model: Any,
    card: Any,
    records: Sequence[Record],
    *,
    device: Any,
    derived: Any,
    batch_size: int = 16,
    zooms: Sequence[float] = (1.0,),
) -> tuple[np.ndarray, np.ndarray]:
    """(targets [N, K] with NaN, probabilities [N, K]) through the same Dataset as training, no augmentation;
    logits averaged over the test-time ``zooms`` (see :mod:`cxrassist.tta`; frontal-only models)."""
    import torch
    from torch.utils.data import DataLoader

    lateral = hasattr(model, "lateral_in_chans") and any(r.lateral is not None for r in records)
    inp = card_settings(card).input
    ds = CxrDataset(
        records,
        task=task,
        size=inp.size,
        augment=None,
        derived=derived,
        channels=inp.channels,
        lateral=lateral,
        detail=inp.effective_size,
    )  # the card's channels, by name, as cxr analyze
    if derived is not None:
        derived.prepare(ds.records, ds.size)
    ys, ps = [], []
    with torch.no_grad():
        for batch in DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate):
            x = batch["image"].to(device)
            if lateral:
                out = model(x, batch["lateral"].to(device), batch["has_lateral"].to(device))
            else:
                out = tta_logits(model, x, zooms)
            # float64: a confident model saturates float32's sigmoid at exactly 1.0, and ties would blur AUROC
            ps.append(torch.sigmoid(out.double()).cpu().numpy())
            ys.append((batch["target"] if task == "triage" else batch["labels"]).numpy())
    return np.concatenate(ys).reshape(len(ds), -1), np.concatenate(ps).reshape(len(ds), -1)


def apply_measured(
    card: Any,
    weights: str,
    records: Sequence[Record],
    p: np.ndarray,
    *,
    held_out: Sequence[Record] = (),
    derived: Any = None,
    lung_weights: str | None = None,
    device: Any = "cpu",
) -> tuple[dict[str, Any], dict[str, HeldOut]]:
    """Replace, in ``p`` (in place), the columns of the card's measured findings by their measured probability.

    The same functions as the pipeline (``cxrassist.measured.measure_film`` on the lung mask of
    ``channels.predict_lung_mask``), so the card's figures are what ``cxr analyze`` gives. A film whose ratio cannot
    be measured keeps the classifier's probability (as in the pipeline, where it is then never called positive).

    ``held_out``: films of other splits; each measured finding measures those of its card entry's
    ``held_out_sets`` with a known label (after checking that neither measuring model trained on those sets).
    Returns (per measured finding: the method and how many films could not be measured; per finding with held-out
    films: a :class:`HeldOut`).
    """
    from cxrassist.measured import measured_findings

    found = measured_findings(card)
    if not found:
        return {}, {}
    from cxrassist.weights import load_model

    if derived is not None:
        lung = (derived.lung_model, derived.lung_card)
    else:
        data_cfg = (card.training.get("config") or {}).get("data", {})
        lung = load_model(lung_weights or data_cfg.get("lung_weights") or "lungseg")
        lung[0].to(device).eval()
    labels = [str(x).lower() for x in card.labels]
    note: dict[str, Any] = {}
    held: dict[str, HeldOut] = {}
    for m in found:
        beside = Path(weights).parent / m.model
        heart = load_model(beside if beside.is_dir() else m.model)
        heart[0].to(device).eval()
        col = labels.index(m.label.lower())
        measured = _measure(m, heart, lung, records)
        ok = ~np.isnan(measured)
        p[ok, col] = measured[ok]
        note[m.label] = {
            **m.to_dict(),
            "heart_model": f"{heart[1].name} {heart[1].version}",
            "unmeasured": int((~ok).sum()),
        }
        fcol = FINDING_NAMES.index(m.label)
        extra = [r for r in held_out if r.dataset in m.held_out_sets and not math.isnan(r.findings[fcol])]
        if m.held_out_sets:
            for model_card in (heart[1], lung[1]):
                trained = _trained_on(model_card)
                if trained is None:
                    raise ConfigError(
                        f"{m.label} names held-out sets, but {model_card.name}'s card does not record what it was "
                        "trained on, so they cannot be checked"
                    )
                seen = sorted(set(m.held_out_sets) & trained)
                if seen:
                    raise ConfigError(
                        f"{m.label} names {', '.join(seen)} as held out, but {model_card.name} trained on it: "
                        "its films are not held out from the measurement"
                    )
        if extra:
            ph = _measure(m, heart, lung, extra)
            unmeasured = np.isnan(ph)
            ph[unmeasured] = m.floor_probability()  # as if it measured the smallest value accepted
            held[m.label] = HeldOut(extra, ph)
            note[m.label]["held_out"] = {"n": len(extra), "unmeasured": int(unmeasured.sum())}
    return note, held


@dataclass
class HeldOut:
    """Films of other splits that a measured finding is validated on as well (the measurement never saw them).

    ``p`` is the raw measured probability; a film that could not be measured gets that of the smallest value the
    measurement accepts (``MeasuredFinding.floor_probability``), so it ranks at the bottom whatever the other films
    (a population-free rule, so a figure is the same whichever other sets are evaluated beside it): the pipeline
    never calls an unmeasured finding positive, and no network score is fair on a film the network trained on.
    """

    records: list[Record]
    p: np.ndarray


def _measure(m: Any, heart: Any, lung: Any, records: Sequence[Record]) -> np.ndarray:
    """The raw measured probability of every film, NaN where the measurement is refused."""
    from cxrassist.channels import predict_lung_mask
    from cxrassist.data.images import load_image01
    from cxrassist.measured import measure_film

    out = np.full(len(records), math.nan)
    for k, rec in enumerate(progress(records, len(records), f"measuring {m.measure}", True)):
        image = load_image01(rec.image)
        ratio = measure_film(heart, image, predict_lung_mask(lung[0], lung[1], image)[0])[0]
        if ratio is not None:
            out[k] = m.probability(ratio.ratio)
    return out


def _trained_on(card: Any) -> set[str] | None:
    """The data sets a model's card says it was trained (or checkpoint-selected) on; None when it does not say."""
    data = (getattr(card, "training", None) or {}).get("data") or {}
    if not isinstance(data.get("train"), dict) or "datasets" not in data["train"]:
        return None
    return {str(k) for part in ("train", "val") for k in ((data.get(part) or {}).get("datasets") or {})}


def card_derived_channels(
    card: Any,
    *,
    lung_weights: str | None = None,
    bone_weights: str | None = None,
    cache_dir: Path | None = None,
    device: Any = "cpu",
) -> Any:
    """The derived lung/bone channels a classifier's card asks for (``DerivedChannels``), from the lung and bone
    weights it was trained with unless others are given; None for a radiograph-only model."""
    channels = card_settings(card).input.channels
    if channels == (RADIOGRAPH,):
        return None
    from cxrassist.data.derived import DerivedChannels

    data_cfg = (card.training.get("config") or {}).get("data", {})
    lw = lung_weights or data_cfg.get("lung_weights")
    bw = bone_weights or (data_cfg.get("bone_weights") if BONE_SUBTRACTED in channels else None)
    return DerivedChannels.from_weights(lw, bw, cache_dir=cache_dir or Path("runs") / "cache", device=device)


def _auc_entry(bootstrap: int, seed: int) -> Any:
    def fn(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
        keep = ~np.isnan(np.asarray(y, float))
        y, p = np.asarray(y, float)[keep], np.asarray(p, float)[keep]
        a = auroc(y, p)
        ci = bootstrap_auroc_ci(y, p, n=bootstrap, seed=seed) if bootstrap and a == a else (math.nan, math.nan)
        return {"auroc": a, "ci95": list(ci), "n": int(y.size), "n_pos": int((y == 1).sum())}

    return fn


def _mean(values: Sequence[float]) -> float:
    vals = [v for v in values if v == v]
    return float(np.mean(vals)) if vals else math.nan


def evaluate_classification(
    task: str,
    model: Any,
    card: Any,
    records: Sequence[Record],
    *,
    weights: str,
    device: Any = "cpu",
    roc_dir: Path | None = None,
    bootstrap: int = 1000,
    write_thresholds: str | None = None,
    lung_weights: str | None = None,
    bone_weights: str | None = None,
    cache_dir: Path | None = None,
    seed: int = 0,
    tta: bool = True,
    teacher: str | Path | None = None,
    held_out: Sequence[Record] = (),
) -> tuple[dict[str, Any], str]:
    """Per-source AUROCs with CIs, cross-fitted operating points and calibration, the validated rule, and the
    teacher beside the model (see :mod:`cxrassist.evaluation.operating` for the method).

    ``held_out``: films of other splits, used only by measured findings whose card entry names their set in
    ``held_out_sets``: such a finding's validation, operating point and calibration are fitted on the NIH-source
    films of both (its per-source val figures stay on the evaluation split).

    ``write_thresholds``: a threshold rule (``operating`` = the documented default: findings ``spec=0.90``,
    triage ``sens=0.95``; or ``spec=X``/``sens=X``/``youden``): the shipped points, calibration, validated flags and
    measured figures are written into the card beside ``weights``.
    """
    from sklearn.metrics import roc_curve

    channels = card_settings(card).input.channels
    if len(channels) != int(getattr(model, "in_chans", 1)):
        raise ConfigError(
            f"the card names {len(channels)} input channels ({', '.join(channels)}); the model takes "
            f"{getattr(model, 'in_chans', 1)}"
        )
    derived = card_derived_channels(
        card, lung_weights=lung_weights, bone_weights=bone_weights, cache_dir=cache_dir, device=device
    )
    wanted = [r for r in records if (r.has_abnormal if task == "triage" else r.has_findings)]
    if not wanted:
        raise DatasetError(f"no records with {task} labels in the evaluation set")
    rule = (
        (TRIAGE_RULE if task == "triage" else FINDING_RULE)
        if write_thresholds in (None, "operating")
        else write_thresholds
    )
    # triage: the card's test-time zooms, exactly as `cxr analyze` scores a film (tta=False: the plain view alone)
    zooms = card_zooms(card) if task == "triage" and tta else (1.0,)
    y, p = predict(task, model, card, wanted, device=device, derived=derived, zooms=zooms)
    measured_note, held = (
        apply_measured(
            card, weights, wanted, p, held_out=held_out, derived=derived, lung_weights=lung_weights, device=device
        )
        if task == "classifier"
        else ({}, {})
    )
    datasets = [r.dataset for r in wanted]
    masks = group_masks(datasets, NIH_SOURCE_DATASETS)
    folds = np.array([fold_of(r.group) for r in wanted])
    ref = _teacher_matrix(wanted, teacher) if task == "classifier" else None
    codes = ["abnormal"] if task == "triage" else list(FINDING_CODES)
    names = list(card.labels) if task == "triage" else list(FINDING_NAMES)
    settings = card_settings(card)  # read once; a label without a threshold is refused here, not defaulted
    auc = _auc_entry(bootstrap, seed)
    per: dict[str, dict[str, Any]] = {}
    calls = np.zeros_like(p, dtype=bool)
    for i, (code, name) in enumerate(zip(codes, names, strict=True)):
        pooled = auc(y[:, i], p[:, i])
        by_source = per_group(y[:, i], p[:, i], masks, auc)
        # A measured finding with held-out films of other splits is validated and fitted on those too.
        v = _with_held_out(y[:, i], p[:, i], datasets, folds, masks, held.get(name), i, ref, teacher)
        yi, pi, vmasks = v["y"], v["p"], v["masks"]
        # The fitting/validation population: the NIH-source films when the evaluation set has labelled ones (one
        # source: no set-telling), else every film (a site evaluating on its own single-source data).
        nih_fit = vmasks["nih_source"]
        fit_mask = nih_fit if (nih_fit & ~np.isnan(yi)).any() else np.ones(len(yi), bool)
        measured_on = "NIH-source val films" if fit_mask is nih_fit else "all evaluation films"
        if np.isnan(yi).all():
            measured_on = "no labelled evaluation films"
        elif name in held:
            measured_on += f" and the train films of {', '.join(v['held_sets'])} (held out)"
        v_by_source = per_group(yi, pi, vmasks, auc) if name in held else by_source
        nih = v_by_source.get("nih_source") if fit_mask is nih_fit else (auc(yi, pi) if name in held else pooled)
        nih = nih or {"auroc": math.nan, "ci95": [math.nan, math.nan], "n": 0, "n_pos": 0}
        op = cross_fit(yi, pi, fit_mask, v["folds"], rule)
        calls[:, i] = op.calls[: len(wanted)]
        fit_known = fit_mask & ~np.isnan(yi)
        entry: dict[str, Any] = {
            **pooled,
            "pooled_note": "pooled over sources: flattered by telling the sources apart",
            "by_source": by_source,
            "validation": nih,
            "validated": is_validated(nih["n_pos"], nih["ci95"][0]),
            "operating": {
                "rule": rule,
                "threshold": op.threshold,
                "calibration": op.to_card(),
                "chosen_on": f"{measured_on}: Platt calibration + threshold, 2-fold patient-wise cross-fitting",
                "measured_on": measured_on,
                "cross_fitted": {
                    **per_group(yi, op.calls, vmasks, call_figures),
                    "fitting_population": call_figures(yi[fit_mask], op.calls[fit_mask]),
                },
                "ece_raw": ece(yi[fit_known], pi[fit_known]),
                "ece_calibrated": ece(yi[fit_known], op.calibrated[fit_known]),
            },
            "card_threshold": settings.label(name).threshold,
        }
        if ref is not None and not np.isnan(ref[:, i]).all():
            entry["reference"] = _reference(y[:, i], p[:, i], ref[:, i], datasets)
        if name in held:  # the held-out population's own figures, per source, and the teacher on the same films
            entry["held_out"] = {
                "population": measured_on,
                "by_source": v_by_source,
                **({"reference": _reference(yi, pi, v["ref"], v["datasets"])} if v["ref"] is not None else {}),
            }
        if roc_dir is not None and nih["auroc"] == nih["auroc"]:
            from cxrassist.evaluation.roc_plot import draw_roc

            fm = fit_known
            fpr, tpr, _ = roc_curve(yi[fm], pi[fm])
            cf = entry["operating"]["cross_fitted"]["fitting_population"]
            point = (
                None
                if cf.get("sensitivity") is None or cf["sensitivity"] != cf["sensitivity"]
                else (1 - cf["specificity"], cf["sensitivity"])
            )
            draw_roc(
                fpr,
                tpr,
                Path(roc_dir) / f"roc_{code}.png",
                title=f"{name} ({measured_on})",
                auc=nih["auroc"],
                ci=tuple(nih["ci95"]),
                point=point,
            )
        per[code] = entry
    validated = {names[codes.index(c)]: per[c]["validated"] for c in codes}
    res: dict[str, Any] = {
        "task": task,
        "n_cases": len(y),
        "per_label": per,
        "validation_rule": VALIDATION_RULE,
        "threshold_rule": rule,
        "tta_zooms": list(zooms),
        "n_by_source": {k: int(m.sum()) for k, m in masks.items()},
    }
    if measured_note:  # findings scored from a measurement (cxrassist.measured), not by the classifier
        res["measured_findings"] = measured_note
    if task == "triage":
        e = per["abnormal"]
        known = ~np.isnan(y[:, 0])
        sens, spec = sensitivity_specificity(y[known, 0], _card_scale(card, names[0], p[known, 0]), e["card_threshold"])
        res.update(
            {
                "auroc": e["auroc"],
                "auroc_ci95": e["ci95"],
                "auroc_by_source": _auc_by_source(e),
                "threshold": e["card_threshold"],
                "sensitivity": sens,
                "specificity": spec,
                "at_threshold_note": "sensitivity/specificity at the card's current threshold, on every film",
            }
        )
    else:
        res.update(_finding_summary(per, y, calls, datasets, validated))
    if write_thresholds:
        _write_operating_points(weights, card, per, codes, names, rule)
    return res, _table(task, res, per, codes, zooms)


def _with_held_out(
    y: np.ndarray,
    p: np.ndarray,
    datasets: list[str],
    folds: np.ndarray,
    masks: dict[str, np.ndarray],
    held: HeldOut | None,
    col: int,
    ref: np.ndarray | None,
    teacher: str | Path | None,
) -> dict[str, Any]:
    """One finding's evaluation films followed by its held-out films (none: the evaluation films alone)."""
    r = None if ref is None else ref[:, col]
    if held is None:  # the evaluation films alone: their masks as computed once by the caller
        return {"y": y, "p": p, "datasets": datasets, "folds": folds, "masks": masks, "ref": r, "held_sets": []}
    ph = held.p
    d = datasets + [h.dataset for h in held.records]
    if r is not None:
        r = np.concatenate([r, _teacher_matrix(held.records, teacher)[:, col]])  # type: ignore[index]
    return {
        "y": np.concatenate([y, [h.findings[col] for h in held.records]]),
        "p": np.concatenate([p, ph]),
        "datasets": d,
        "folds": np.concatenate([folds, [fold_of(h.group) for h in held.records]]).astype(int),
        "masks": group_masks(d, NIH_SOURCE_DATASETS),
        "ref": r,
        "held_sets": sorted({h.dataset for h in held.records}),
    }


def _reference(y: np.ndarray, p: np.ndarray, teacher: np.ndarray, datasets: Sequence[str]) -> dict[str, Any]:
    """Model and teacher AUROC on the same films of the reference set."""
    m = (np.asarray(datasets) == REFERENCE_SET) & ~np.isnan(teacher) & ~np.isnan(y)
    return {
        "set": REFERENCE_SET,
        "n": int(m.sum()),
        "n_pos": int((y[m] == 1).sum()),
        "model_auroc": auroc(y[m], p[m]),
        "teacher_auroc": auroc(y[m], teacher[m]),
    }


def _card_scale(card: Any, label: str, p: np.ndarray) -> np.ndarray:
    """Probabilities on the scale the card's threshold is on (calibrated where the card has a calibration)."""
    from cxrassist.calibration import label_calibration, platt

    ab = label_calibration(card, label)
    return p if ab is None else np.asarray(platt(p, *ab), float)


def _auc_by_source(e: dict[str, Any]) -> dict[str, float]:
    return {k: v["auroc"] for k, v in e["by_source"].items()}


def _finding_summary(
    per: dict[str, dict[str, Any]], y: np.ndarray, calls: np.ndarray, datasets: list[str], validated: dict[str, bool]
) -> dict[str, Any]:
    """Means per source, model vs teacher on the reference set, and how many calls normal films get."""
    sources = sorted({s for e in per.values() for s in e["by_source"]})
    mean_by_source = {}
    for s in sources:
        vals = [
            e["by_source"][s]["auroc"]
            for e in per.values()
            if s in e["by_source"] and e["by_source"][s]["n_pos"] >= MIN_POSITIVES
        ]
        mean_by_source[s] = {"mean_auroc_min_pos": _mean(vals), "n_findings": len([v for v in vals if v == v])}
    refs = {c: e["reference"] for c, e in per.items() if "reference" in e}
    counted = {c: r for c, r in refs.items() if r["n_pos"] >= REFERENCE_MIN_POSITIVES}
    reference = (
        {
            "set": REFERENCE_SET,
            "min_positives": REFERENCE_MIN_POSITIVES,
            "findings": sorted(counted),
            "model_mean_auroc": _mean([r["model_auroc"] for r in counted.values()]),
            "teacher_mean_auroc": _mean([r["teacher_auroc"] for r in counted.values()]),
        }
        if refs
        else None
    )
    # positive calls of VALIDATED findings (the only ones ever called) on films known to be normal
    vidx = [i for i, c in enumerate(FINDING_CODES) if validated[FINDING_NAMES[i]]]
    normal = np.all(np.nan_to_num(y[:, :12], nan=1.0) == 0, axis=1)  # every non-device finding known negative
    names = np.asarray(datasets)
    calls_normal = {}
    for s in sorted(set(datasets)):
        m = normal & (names == s)
        if m.any():
            n_calls = calls[m][:, vidx].sum(axis=1) if vidx else np.zeros(int(m.sum()))
            calls_normal[s] = {
                "n_films": int(m.sum()),
                "mean_calls": float(n_calls.mean()),
                "share_with_any_call": float((n_calls > 0).mean()),
            }
    nih = [e["validation"]["auroc"] for e in per.values() if e["validation"]["n_pos"] >= MIN_POSITIVES]
    pooled = [e["auroc"] for e in per.values() if e["n_pos"] >= MIN_POSITIVES]
    return {
        "auroc": {c: e["auroc"] for c, e in per.items()},
        "mean_auroc": _mean([e["auroc"] for e in per.values()]),
        "auroc_validation": {c: e["validation"]["auroc"] for c, e in per.items()},
        "mean_auroc_validation": _mean(nih),
        "mean_auroc_pooled_min_pos": _mean(pooled),
        "mean_auroc_by_source": mean_by_source,
        "reference": reference,
        "calls_per_normal_film": calls_normal,
        "validated": validated,
        "min_positives": MIN_POSITIVES,
    }


def _teacher_matrix(records: Sequence[Record], teacher: str | Path | None) -> np.ndarray | None:
    """[N, 13] teacher probabilities (NaN where none) for the records of the reference set."""
    if teacher is None:
        return None
    from cxrassist.data.teacher import read_teacher

    table = read_teacher(teacher)
    nan = (math.nan,) * len(FINDING_CODES)
    return np.array([table.get(r.id, nan) if r.dataset == REFERENCE_SET else nan for r in records], float)


def _table(
    task: str, res: dict[str, Any], per: dict[str, dict[str, Any]], codes: list[str], zooms: Sequence[float]
) -> str:
    lines = [f"{task}  n={res['n_cases']}  ({', '.join(f'{k} {v}' for k, v in res['n_by_source'].items())})"]
    if task == "triage":
        views = "plain view" if tuple(zooms) == (1.0,) else f"mean of {len(zooms)} zooms {list(zooms)}"
        lines.append(f"  ({views})")
    lines.append(
        f"{'':>4} {'AUROC by source (95% CI for NIH-source)':<60} {'thr':>6} "
        f"{'NIH-src sens/spec (cross-fitted)':>34} {'ECE raw->cal':>13} valid"
    )
    for c in codes:
        e = per[c]
        src = " ".join(f"{k[:8]}={_fmt(v['auroc'])}" for k, v in e["by_source"].items() if k != "nih_source")
        n = e["validation"]
        ci = n["ci95"]
        where = "NIH-src" if e["operating"]["measured_on"].startswith("NIH") else "all"
        where += "+held-out" if "held_out" in e else ""
        nih = f"{where} {_fmt(n['auroc'])} [{_fmt(ci[0])}-{_fmt(ci[1])}] {n['n_pos']}/{n['n']}"
        cf = e["operating"]["cross_fitted"]["fitting_population"]
        ref = e.get("reference")
        teacher = (
            f"  | {REFERENCE_SET}: model {_fmt(ref['model_auroc'])} teacher {_fmt(ref['teacher_auroc'])} "
            f"({ref['n_pos']}/{ref['n']})"
            if ref
            else ""
        )
        lines.append(
            f"{c:>4} {nih:<60} {_fmt(e['operating']['threshold']):>6} "
            f"{_fmt(cf.get('sensitivity')):>16}/{_fmt(cf.get('specificity')):<17} "
            f"{_fmt(e['operating']['ece_raw'])}->{_fmt(e['operating']['ece_calibrated'])}"
            f" {'yes' if e['validated'] else 'no'}"
        )
        lines.append(f"{'':>4}   {src}{teacher}")
    if task == "classifier":
        ref = res.get("reference")
        lines.append(
            f"mean AUROC, NIH-source, findings with >= {MIN_POSITIVES} positives: {_fmt(res['mean_auroc_validation'])}"
        )
        if ref:
            lines.append(
                f"mean AUROC on {REFERENCE_SET} over {', '.join(ref['findings'])} (>= {ref['min_positives']} "
                f"positives): model {_fmt(ref['model_mean_auroc'])}, "
                f"teacher {_fmt(ref['teacher_mean_auroc'])}"
            )
        for s, v in res["calls_per_normal_film"].items():
            lines.append(
                f"normal films of {s}: {v['mean_calls']:.2f} positive calls per film "
                f"({v['share_with_any_call']:.0%} with any), n={v['n_films']}"
            )
    lines.append(f"validated = {VALIDATION_RULE}")
    return "\n".join(lines)


def _teacher_entry(e: dict[str, Any]) -> dict[str, Any]:
    """The reference model's AUROC for a card's operating point: on the films the finding was validated on (a
    measured finding's held-out population, else the evaluation split's films of the reference set)."""
    ref = (e.get("held_out") or {}).get("reference") or e.get("reference")
    if not ref:
        return {}
    return {"teacher_auroc": ref["teacher_auroc"], "teacher_set": ref["set"], "teacher_n_pos": ref["n_pos"]}


def _write_operating_points(
    weights: str, card: Any, per: dict[str, dict[str, Any]], codes: list[str], names: list[str], rule: str
) -> None:
    """Write the shipped operating points, calibration, validated flags and measured figures into ``card.json``
    beside the weights (the weights' sha256 is unchanged: only the card changes)."""
    from cxrassist.weights import CARD_FILE

    directory = Path(weights)
    if not directory.is_dir():
        raise ConfigError("--write-thresholds needs --weights DIR (shipped cards are read-only)")
    for code, name in zip(codes, names, strict=True):
        e = per[code]
        op = e["operating"]
        cf = op["cross_fitted"]["fitting_population"]
        thr = op["threshold"]
        card.validated[name] = bool(e["validated"] and thr == thr)
        if thr == thr:
            card.thresholds[name] = float(thr)
            card.calibration[name] = dict(op["calibration"])
        else:
            card.calibration.pop(name, None)
        card.operating_points[name] = {
            "validated": card.validated[name],
            "threshold_rule": rule,
            "chosen_on": op["chosen_on"],
            "auroc": e["validation"]["auroc"],
            "auroc_ci95": e["validation"]["ci95"],
            "n_pos": e["validation"]["n_pos"],
            "n": e["validation"]["n"],
            "measured_on": op["measured_on"],
            "sensitivity": cf.get("sensitivity"),
            "specificity": cf.get("specificity"),
            "ece_raw": op["ece_raw"],
            "ece_calibrated": op["ece_calibrated"],
            **_teacher_entry(e),
        }
    card.extra["validation_rule"] = VALIDATION_RULE
    card.write(directory / CARD_FILE)
    log.info("wrote operating points (%s) into %s", rule, directory / CARD_FILE)
