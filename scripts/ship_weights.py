"""Turn a training run's best export into a shipped model: fp16 weights, measured figures, an honest card.

    python scripts/ship_weights.py lung --run runs/lungseg-compact
    python scripts/ship_weights.py bone --run runs/bone-c8-512
    python scripts/ship_weights.py triage --run runs/triage-256
    python scripts/ship_weights.py classifier --run runs/classifier-lung-bone

What it does, per model:
1. copies the run's resolved config to ``configs/shipped/<role>.yaml`` (the file that reproduces the weights:
   ``cxr train TASK --config configs/shipped/<role>.yaml``, with ``run.max_steps`` set to the step of the best
   checkpoint so the rerun stops where this one was taken);
2. saves the best checkpoint as fp16 safetensors under ``src/cxrassist/weights/shipped/<dir>/`` and checks that the
   fp16 model's outputs match the fp32 ones on a real validation image;
3. evaluates THE SHIPPED FILE with ``cxrassist.evaluation.runner.evaluate`` on every ``split=val`` manifest (the same
   call as ``cxr evaluate``, so the card's numbers can be reproduced), sets thresholds on val where the task has them,
   and writes the figures, limits and intended use into ``card.json`` and a readable ``MODEL_CARD.md``.

This is a maintainer's script (it needs ../shared/data); it is never imported by the package.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = Path("../shared/data")
SHIPPED = REPO / "src" / "cxrassist" / "weights" / "shipped"

ROLES: dict[str, dict[str, Any]] = {
    "lung": {
        "dir": "lungseg", "task": "segmentation", "name": "cxrassist-lungseg",
        "eval": ["montgomery", "shenzhen", "jsrt", "covid19_gb_seg"],
        "limits": "Trained on ~740 adult frontal films (TB screening, JSRT nodules, COVID-19). Montgomery and Shenzhen "
                  "were stored squashed to 512x512 and JSRT at 224 px, so outlines are learned at low resolution. "
                  "The covid19_gb_seg outlines follow another convention: they run across the heart shadow to the "
                  "mediastinum (the lung behind the heart is included), where the other three sets stop at the heart "
                  "border; that set is repeated 4x in training so the model learns it on such films, and the mask "
                  "it draws over the heart varies with the film's look. Not validated on children, on "
                  "portable AP films with devices, or on lateral views (the pipeline runs it on the frontal only).",
    },
    "bone": {
        "dir": "bone", "task": "bone", "name": "cxrassist-bone",
        "eval": ["bse_jsrt"],
        "limits": "Trained on 109 BSE-JSRT pairs (one scanner type, digitised film, PA, adults); the target is the "
                  "difference between a radiograph and its software bone-suppressed version, i.e. it learns that "
                  "software's notion of bone. Expect weaker suppression on CR/DR films, AP films and children.",
    },
    "triage": {
        "dir": "triage", "task": "triage", "name": "cxrassist-triage",
        "eval": ["montgomery", "shenzhen", "jsrt", "covid19_gb_seg", "nih_cxr14_sample", "covid_chestxray"],
        "limits": "Normal vs abnormal learned from small public sets whose 'abnormal' is mostly tuberculosis "
                  "(Shenzhen, Montgomery), JSRT nodules, COVID-19 pneumonia and an NIH sample enriched for findings. "
                  "The data sets differ in origin and in label mix, so the model can partly tell the SOURCE apart "
                  "rather than the disease; the pooled AUROC is optimistic for that reason, and the threshold was "
                  "chosen on the same val split it is reported on. NIH labels are text-mined (noisy). Trained from "
                  "scratch (no ImageNet weights can be fetched here), 256 px, weight EMA 0.995. The score is the mean "
                  "logit over three centred zooms (side 1.0, 0.95, 0.90: the range of the random crops it was "
                  "trained on; input.tta_zooms); the plain single view is reported beside it. JSRT nodules (224 px "
                  "source) are the hardest part and the NIH sample has only 7 normals in val: see val_by_dataset.",
    },
    "classifier": {
        "dir": "classifier", "task": "classifier", "name": "cxrassist-findings",
        "eval": ["nih_cxr14_sample", "montgomery", "shenzhen", "jsrt", "covid19_gb_seg", "covid_chestxray"],
        "limits": "13 CheXpert findings learned from a 449-image NIH ChestX-ray14 sample (text-mined, noisy labels, "
                  "enriched for findings) plus the findings the other small sets carry (JSRT nodules -> Lung Lesion, "
                  "TB -> Lung Opacity, COVID-19 -> Pneumonia/Lung Opacity). Findings with fewer than 10 positive "
                  "val cases are marked validated: false; Enlarged Cardiomediastinum, Fracture and Support Devices "
                  "have no labelled data at all. Thresholds were chosen on the same val split they are reported on.",
    },
}


def shared_manifest(name: str) -> str:
    return str(SHARED / name / "manifest.csv")


def best_step(run: Path) -> int | None:
    """Global step of the best epoch in the run's log: the last row where the ``best`` column changed."""
    import csv

    step, best = None, None
    for row in csv.DictReader(open(run / "log.csv")):
        if row["best"] != best:
            step, best = int(row["global_step"]), row["best"]
    return step


def write_config(role: str, run: Path, step: int | None) -> tuple[Path, str]:
    cfg = yaml.safe_load(open(run / "config.yaml"))
    for key in ("_run", "git", "git_revision", "command", "argv", "versions"):
        cfg.pop(key, None)
    cfg["data"]["manifests"] = [re.sub(r"^.*/shared/data/", "../shared/data/", m) for m in cfg["data"]["manifests"]]
    for key in ("lung_weights", "bone_weights"):
        if cfg["data"].get(key):
            cfg["data"][key] = {"lung_weights": "lungseg", "bone_weights": "bone"}[key]  # the shipped models
    if cfg["model"].get("init_from"):
        cfg["model"]["init_from"] = "triage"
    cfg["name"] = f"shipped-{role}"
    if step is not None:
        cfg["run"]["max_steps"] = step
    out = REPO / "configs" / "shipped" / f"{role}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Reproduces src/cxrassist/weights/shipped/{ROLES[role]['dir']} (written by scripts/ship_weights.py)\n"
              f"# cxr train {cfg['task']} --config configs/shipped/{role}.yaml --threads 2\n")
    out.write_text(header + yaml.safe_dump(cfg, sort_keys=False))
    return out, f"cxr train {cfg['task']} --config configs/shipped/{role}.yaml --threads 2"


def fp16_check(model32: torch.nn.Module, model16: torch.nn.Module, size: int, in_chans: int) -> float:
    """Largest output difference between the fp32 model and the reloaded fp16-stored model on a real image."""
    from cxrassist.data.images import load_image01
    from cxrassist.preprocess import letterbox, normalize

    image = load_image01(SHARED / "jsrt" / "images" / "JPCLN001.png")
    x = torch.from_numpy(normalize(letterbox(image, size)[0]))[None, None].repeat(1, in_chans, 1, 1)
    with torch.no_grad():
        return float((model32.eval()(x) - model16.eval()(x)).abs().max())


def evaluate_all(role: str, weights: Path) -> dict[str, Any]:
    from cxrassist.evaluation.runner import evaluate

    spec = ROLES[role]
    out: dict[str, Any] = {}
    if spec["task"] == "segmentation":
        for ds in spec["eval"]:
            res = evaluate("segmentation", [shared_manifest(ds)], weights=str(weights), postprocess=True)
            print(res["_table"], f"[{ds}]")
            out[ds] = {k: res[k] for k in ("dice", "iou", "hd95", "dice_median", "n_cases")}
        return {"val": out, "postprocessed": True}
    if spec["task"] == "bone":
        res = evaluate("bone", [shared_manifest(d) for d in spec["eval"]], weights=str(weights))
        print(res["_table"])
        return {"val": {k: v for k, v in res.items() if not k.startswith("_") and k not in ("weights", "manifests")}}
    manifests = [shared_manifest(d) for d in spec["eval"]]
    res = evaluate(spec["task"], manifests, weights=str(weights), write_thresholds="youden", bootstrap=1000,
                   roc_dir=weights / "roc")
    print(res["_table"])
    pooled = {k: v for k, v in res.items() if not k.startswith("_") and k not in ("weights",)}
    metrics: dict[str, Any] = {"val_pooled": pooled, "val_by_dataset": {}}
    if spec["task"] == "triage":  # the plain view beside the zoom average, so the card shows what the zooms add
        plain = evaluate("triage", manifests, weights=str(weights), bootstrap=1000, tta=False)
        print(plain["_table"], "[plain view]")
        metrics["val_pooled_single_view"] = {k: plain[k] for k in ("auroc", "auroc_ci95", "n_cases", "tta_zooms")}
    for ds in spec["eval"]:  # per source: shows how much of the pooled figure is telling the data sets apart
        try:
            one = evaluate(spec["task"], [shared_manifest(ds)], weights=str(weights), bootstrap=0)
        except Exception as exc:  # noqa: BLE001 - a set without labels for this task
            metrics["val_by_dataset"][ds] = {"error": str(exc)}
            continue
        key = "auroc" if spec["task"] == "triage" else "mean_auroc"
        metrics["val_by_dataset"][ds] = {key: one[key], "n_cases": one["n_cases"]}
    if spec["task"] == "classifier":
        nih = evaluate("classifier", [shared_manifest("nih_cxr14_sample")], weights=str(weights), bootstrap=1000)
        print(nih["_table"], "[NIH val only]")
        metrics["val_nih"] = {k: v for k, v in nih.items() if not k.startswith("_") and k not in ("weights",)}
    return metrics


def before_after(target: Path) -> Path:
    """The card's picture: radiograph | predicted bone | predicted soft tissue | reference soft tissue (a val case)."""
    import csv

    from PIL import Image, ImageDraw

    from cxrassist.channels import predict_bone
    from cxrassist.data.images import load_image01
    from cxrassist.weights import load_model

    row = next(r for r in csv.DictReader(open(SHARED / "bse_jsrt" / "manifest.csv")) if r["split"] == "val")
    image = load_image01(SHARED / "bse_jsrt" / row["image"])
    reference = load_image01(SHARED / "bse_jsrt" / row["bone_suppressed"])
    model, card = load_model(target)
    bone = predict_bone(model, card, image)[2]
    suppressed = np.clip(image - bone, 0, 1)
    stretch = np.clip(bone / max(float(np.percentile(bone, 99.5)), 1e-6), 0, 1)
    tiles = [image, stretch, suppressed, reference]
    titles = ["radiograph", "predicted bone (stretched)", "predicted bone-suppressed", "reference (BSE-JSRT)"]
    side = 320
    panel = Image.new("L", (side * len(tiles), side + 18), 0)
    draw = ImageDraw.Draw(panel)
    for i, (tile, title) in enumerate(zip(tiles, titles, strict=True)):
        panel.paste(Image.fromarray((tile * 255).astype(np.uint8)).resize((side, side), Image.Resampling.LANCZOS),
                    (i * side, 18))
        draw.text((i * side + 4, 3), title, fill=255)
    out = target / "before_after.png"
    panel.save(out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    from cxrassist.weights import ModelCard, load_model, save_weights
    from cxrassist.weights.card import today

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("role", choices=sorted(ROLES))
    ap.add_argument("--run", type=Path, required=True, help="the training run folder (runs/<name>)")
    ap.add_argument("--version", default="1.0.0")
    args = ap.parse_args(argv)
    spec = ROLES[args.role]
    if not SHARED.is_dir():
        sys.exit("../shared/data is needed to measure the shipped model")

    exports = sorted((args.run / "export").iterdir())
    model32, card = load_model(exports[0])
    step = best_step(args.run)
    config_path, command = write_config(args.role, args.run, step)

    target = SHIPPED / spec["dir"]
    card.name, card.version, card.status, card.date = spec["name"], args.version, "trained", today()
    card.training = {**card.training, "command": command, "config_file": str(config_path.relative_to(REPO)),
                     "best_step": step}
    cfg = card.training.get("config") or {}
    if cfg.get("data", {}).get("lung_weights"):
        cfg["data"]["lung_weights"], cfg["data"]["bone_weights"] = "lungseg", "bone"
        if cfg["model"].get("init_from"):
            cfg["model"]["init_from"] = "triage"
    if spec["task"] == "triage":
        from cxrassist.tta import TRAINING_CROP_ZOOMS

        card.input = {**card.input, "tta_zooms": list(TRAINING_CROP_ZOOMS)}
    save_weights(model32, target, card, dtype=torch.float16)
    model16, card = load_model(target)
    size = int(card.input.get("size", 512))
    diff = fp16_check(model32, model16, size, int(getattr(model32, "in_chans", 1)))

    metrics = evaluate_all(args.role, target)
    card = ModelCard.read(target / "card.json")  # evaluation may have written thresholds into it
    card.metrics = json.loads(json.dumps(metrics, default=float))
    card.metrics = {"summary": key_figures(card.to_dict()), **card.metrics}  # what `cxr models` shows first
    if spec["task"] == "classifier":
        per = metrics["val_pooled"]["per_finding"]
        card.validated = {name: bool(per.get(code, {}).get("n_pos", 0) >= 10 and per[code]["auroc"] is not None)
                          for code, name in zip(per, card.labels, strict=False)}
    elif spec["task"] == "triage":
        card.validated = {lab: True for lab in card.labels}
    else:
        card.validated = {lab: True for lab in card.labels}
    card.notes = (f"Limits: {spec['limits']} fp16 storage: largest output difference vs fp32 on a real film "
                  f"{diff:.2e}. Measured on the split=val cases of ../shared/data (public sets, resized); the "
                  "held-back test split of those sets was not used.")
    card.write(target / "card.json")
    markdown = render_markdown(card)
    if spec["task"] == "bone":
        markdown += f"\n![before and after, a val case]({before_after(target).name})\n"
    (target / "MODEL_CARD.md").write_text(markdown)
    print(f"shipped {card.name} {card.version} -> {target} (sha256 {card.sha256[:12]}, fp16 diff {diff:.2e})")
    return 0


def key_figures(d: dict[str, Any]) -> str:
    m = d["metrics"]
    if "val_pooled" in m and "auroc" in m["val_pooled"] and isinstance(m["val_pooled"]["auroc"], float):
        p = m["val_pooled"]
        text = f"pooled AUROC {p['auroc']:.3f} (95% CI {p['auroc_ci95'][0]:.3f}-{p['auroc_ci95'][1]:.3f}), n={p['n_cases']}"
        if "val_pooled_single_view" in m:
            text += (f", mean of {len(p['tta_zooms'])} centred zooms; plain single view "
                     f"{m['val_pooled_single_view']['auroc']:.3f}")
        return text
    if "val_pooled" in m:
        p, n = m["val_pooled"], m.get("val_nih", {})
        return (f"pooled mean AUROC over findings with >=10 positives {p['mean_auroc_min_pos']:.3f}; "
                f"NIH val alone, same rule {n.get('mean_auroc_min_pos', float('nan')):.3f}")
    v = m.get("val", {})
    if "dice" in next(iter(v.values()), {}):
        return "; ".join(f"{ds} Dice {r['dice']:.3f}" for ds, r in v.items())
    return (f"bone-suppressed PSNR {v['psnr']:.2f} dB (identity {v['identity_psnr']:.2f}), SSIM {v['ssim']:.4f}; "
            f"bone image PSNR {v['bone_psnr']:.2f} dB, SSIM {v['bone_ssim']:.4f}; "
            f"suppression ratio {v['bone_suppression_ratio']:.3f}")


def render_markdown(card: Any) -> str:
    d = card.to_dict()
    lines = [f"# {d['name']} {d['version']}", "", f"**Intended use:** {d['intended_use']}", "",
             f"**Key figures (split=val):** {key_figures(d)}", "",
             f"- architecture: `{d['architecture']}` {json.dumps(d['kwargs'])}",
             f"- input: {json.dumps(d['input'])}",
             f"- weights: `model.safetensors` ({d.get('storage_dtype')}), sha256 `{d['sha256']}`",
             f"- parameters: {d.get('num_parameters')}",
             f"- trained with: `{d['training'].get('command')}` (config `{d['training'].get('config_file')}`)",
             f"- code version: {d['code_version']}, date: {d['date']}", "",
             "## Training data", "", "```json", json.dumps(d["training"].get("data"), indent=1)[:3000], "```", "",
             "## Measured on val", "", "```json", json.dumps(d["metrics"], indent=1, default=str)[:12000], "```", "",
             "## Thresholds and validation", "", "| label | threshold | validated |", "|---|---|---|"]
    for lab in d["labels"]:
        thr = d["thresholds"].get(lab)
        lines.append(f"| {lab} | {thr if thr is None else round(float(thr), 4)} | {d['validated'].get(lab, False)} |")
    lines += ["", "## Limits", "", d["notes"], ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
