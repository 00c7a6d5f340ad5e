"""Triage and 13-finding classifier evaluation: AUROC with bootstrap 95% CI, ROC PNGs, operating thresholds.

The table layout is the fixed finding order AT CA CO ED PE PN PX EC LL AO PO FR SD then AVG (mean of the defined
AUROCs); "n/a" where the evaluation set has no positives (or no negatives) for a finding.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxrassist.data.dataset import CxrDataset, collate
from cxrassist.data.records import Record
from cxrassist.errors import ConfigError, DatasetError
from cxrassist.evaluation.metrics import (
    auroc,
    bootstrap_auroc_ci,
    sensitivity_specificity,
    threshold_at_sensitivity,
    youden_threshold,
)
from cxrassist.labels import FINDING_CODES, FINDING_NAMES
from cxrassist.tta import card_zooms, tta_logits

log = logging.getLogger(__name__)


MIN_POSITIVES = 10  # findings with fewer positives in the evaluation set are reported but not averaged


def _fmt(v: float) -> str:
    return "n/a" if v is None or v != v else f"{v:.3f}"


def auroc_table(per: dict[str, dict[str, Any]], mean: float) -> str:
    """Two rows (AUROC, 95% CI) under the code header, fixed column order."""
    codes = [*FINDING_CODES, "AVG"]
    head = " ".join(f"{c:>13}" for c in codes)
    vals = [_fmt(per[c]["auroc"]) for c in FINDING_CODES] + [_fmt(mean)]
    cis = []
    for c in FINDING_CODES:
        lo, hi = per[c]["ci95"]
        cis.append("n/a" if lo is None or lo != lo else f"{lo:.2f}-{hi:.2f}")
    cis.append("")
    ns = [f"{per[c]['n_pos']}/{per[c]['n']}" for c in FINDING_CODES] + [""]
    return "\n".join([
        "AUROC   " + head,
        "value   " + " ".join(f"{v:>13}" for v in vals),
        "95% CI  " + " ".join(f"{v:>13}" for v in cis),
        "pos/n   " + " ".join(f"{v:>13}" for v in ns),
    ])


def predict(task: str, model: Any, card: Any, records: Sequence[Record], *, device: Any, derived: Any,
            batch_size: int = 16, zooms: Sequence[float] = (1.0,)) -> tuple[np.ndarray, np.ndarray]:
    """(targets [N, K] with NaN, probabilities [N, K]) through the same Dataset as training, no augmentation;
    logits averaged over the test-time ``zooms`` (see :mod:`cxrassist.tta`; frontal-only models)."""
    import torch
    from torch.utils.data import DataLoader

    chans = int(getattr(model, "in_chans", 1))
    lateral = hasattr(model, "lateral_in_chans") and any(r.lateral is not None for r in records)
    ds = CxrDataset(records, task=task, size=int(card.input.get("size", 512)), augment=None, derived=derived,
                    channels=chans, lateral=lateral)
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
            ps.append(torch.sigmoid(out.float()).cpu().numpy())
            ys.append((batch["target"] if task == "triage" else batch["labels"]).numpy())
    return np.concatenate(ys).reshape(len(ds), -1), np.concatenate(ps).reshape(len(ds), -1)


def _threshold(rule: str, y: np.ndarray, p: np.ndarray) -> float:
    if rule == "youden":
        return youden_threshold(y, p)
    if rule.startswith("sens="):
        return threshold_at_sensitivity(y, p, float(rule.split("=", 1)[1]))
    raise ConfigError(f"--write-thresholds must be 'youden' or 'sens=<0..1>', got {rule!r}")


def evaluate_classification(task: str, model: Any, card: Any, records: Sequence[Record], *, weights: str,
                            device: Any = "cpu", roc_dir: Path | None = None, bootstrap: int = 1000,
                            write_thresholds: str | None = None, lung_weights: str | None = None,
                            bone_weights: str | None = None, cache_dir: Path | None = None,
                            seed: int = 0, tta: bool = True) -> tuple[dict[str, Any], str]:
    from sklearn.metrics import roc_curve

    derived = None
    if int(getattr(model, "in_chans", 1)) > 1:
        from cxrassist.data.derived import DerivedChannels

        data_cfg = (card.training.get("config") or {}).get("data", {})
        lw = lung_weights or data_cfg.get("lung_weights")
        bw = bone_weights or (data_cfg.get("bone_weights") if int(model.in_chans) > 2 else None)
        derived = DerivedChannels.from_weights(lw, bw, cache_dir=cache_dir or Path("runs") / "cache", device=device)
    wanted = [r for r in records if (r.has_abnormal if task == "triage" else r.has_findings)]
    if not wanted:
        raise DatasetError(f"no records with {task} labels in the evaluation set")
    # triage: the card's test-time zooms, exactly as `cxr analyze` scores a film (tta=False: the plain view alone)
    zooms = card_zooms(card) if task == "triage" and tta else (1.0,)
    y, p = predict(task, model, card, wanted, device=device, derived=derived, zooms=zooms)
    labels = list(card.labels)
    codes = ["abnormal"] if task == "triage" else list(FINDING_CODES)
    names = labels if task == "triage" else list(FINDING_NAMES)
    per: dict[str, dict[str, Any]] = {}
    new_thresholds: dict[str, float] = {}
    for i, (code, name) in enumerate(zip(codes, names, strict=True)):
        yi, pi = y[:, i], p[:, i]
        keep = ~np.isnan(yi)
        yi, pi = yi[keep], pi[keep]
        a = auroc(yi, pi)
        ci = bootstrap_auroc_ci(yi, pi, n=bootstrap, seed=seed) if bootstrap and a == a else (math.nan, math.nan)
        thr = float(card.thresholds.get(name, 0.5))
        sens, spec = sensitivity_specificity(yi, pi, thr) if yi.size else (math.nan, math.nan)
        entry = {"auroc": a, "ci95": list(ci), "n": int(yi.size), "n_pos": int((yi == 1).sum()), "threshold": thr,
                 "sensitivity": sens, "specificity": spec}
        if a == a and write_thresholds:
            new_thresholds[name] = _threshold(write_thresholds, yi, pi)
            entry["new_threshold"] = new_thresholds[name]
            entry["new_sensitivity"], entry["new_specificity"] = sensitivity_specificity(yi, pi, new_thresholds[name])
        if roc_dir is not None and a == a:
            from cxrassist.evaluation.roc_plot import draw_roc

            fpr, tpr, _ = roc_curve(yi, pi)
            point = None if sens != sens else (1 - spec, sens)
            draw_roc(fpr, tpr, Path(roc_dir) / f"roc_{code}.png", title=name, auc=a, ci=ci, point=point)
        per[code] = entry
    if write_thresholds and new_thresholds:
        _write_card_thresholds(weights, card, new_thresholds, write_thresholds,
                               {names[codes.index(c)]: {k: per[c][k] for k in ("auroc", "ci95", "n", "n_pos")}
                                for c in codes})
    if task == "triage":
        e = per["abnormal"]
        res = {"task": task, "n_cases": len(y), "auroc": e["auroc"], "auroc_ci95": e["ci95"],
               "threshold": e["threshold"], "sensitivity": e["sensitivity"], "specificity": e["specificity"],
               "per_label": per, "tta_zooms": list(zooms)}
        views = "plain view" if zooms == (1.0,) else f"mean of {len(zooms)} zooms {list(zooms)}"
        table = (f"triage  n={len(y)} (abnormal {e['n_pos']})  AUROC {_fmt(e['auroc'])} "
                 f"[{_fmt(e['ci95'][0])}, {_fmt(e['ci95'][1])}]  ({views})\n"
                 f"  at threshold {e['threshold']:.3f}: sensitivity {_fmt(e['sensitivity'])}, "
                 f"specificity {_fmt(e['specificity'])}")
        if "new_threshold" in e:
            table += (f"\n  new threshold ({write_thresholds}) {e['new_threshold']:.3f}: sensitivity "
                      f"{_fmt(e['new_sensitivity'])}, specificity {_fmt(e['new_specificity'])} (written to card)")
        return res, table
    vals = [e["auroc"] for e in per.values() if e["auroc"] == e["auroc"]]
    mean = float(np.mean(vals)) if vals else math.nan
    # The figure to judge a model by: findings with too few positives give AUROCs that are mostly noise.
    solid = [e["auroc"] for e in per.values() if e["auroc"] == e["auroc"] and e["n_pos"] >= MIN_POSITIVES]
    mean_solid = float(np.mean(solid)) if solid else math.nan
    res = {"task": task, "n_cases": len(y), "mean_auroc": mean, "mean_auroc_min_pos": mean_solid,
           "min_positives": MIN_POSITIVES, "auroc": {code: per[code]["auroc"] for code in codes}, "per_finding": per}
    table = (f"classifier  n={len(y)}\n" + auroc_table(per, mean)
             + f"\nmean AUROC over the {len(solid)} findings with >= {MIN_POSITIVES} positives: {_fmt(mean_solid)}")
    if new_thresholds:
        table += f"\nthresholds ({write_thresholds}) written to the model card for {len(new_thresholds)} findings"
    return res, table


def _write_card_thresholds(weights: str, card: Any, thresholds: dict[str, float], rule: str,
                           measured: dict[str, Any]) -> None:
    """Update ``card.json`` beside the weights (the weights' sha256 is unchanged: only the card changes)."""
    from cxrassist.weights import CARD_FILE

    directory = Path(weights)
    if not directory.is_dir():
        raise ConfigError("--write-thresholds needs --weights DIR (shipped cards are read-only)")
    card.thresholds.update(thresholds)
    for name in thresholds:
        card.validated[name] = True
    card.metrics["evaluation"] = {"rule": rule, "per_label": measured}
    card.notes = (card.notes + f" | thresholds: {rule} on evaluation data").strip(" |")
    card.write(directory / CARD_FILE)
    log.info("wrote %d thresholds into %s", len(thresholds), directory / CARD_FILE)
