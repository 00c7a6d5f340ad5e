"""Turn a training run's best export into a shipped model: fp16 weights, measured figures, an honest card.

    python scripts/ship_weights.py lung --run runs/lungseg-compact
    python scripts/ship_weights.py heart --run runs/shipped-heart
    python scripts/ship_weights.py bone --run runs/bone-c8-512
    python scripts/ship_weights.py triage --run runs/triage-256
    python scripts/ship_weights.py classifier --run runs/classifier-lung-bone

What it does, per model:
1. copies the run's resolved config to ``configs/shipped/<role>.yaml`` (the file that reproduces the weights:
   ``cxr train TASK --config configs/shipped/<role>.yaml``, with ``run.max_steps`` set to the step of the exported
   weights so the rerun stops where they were taken);
2. saves the run's export (the val-best checkpoint, or the final weights with ``export.when: last``; the card's
   ``training.checkpoint`` says which, see ``checkpoint_choice``) as fp16 safetensors under
   ``src/cxrassist/weights/shipped/<dir>/`` and checks that the fp16 model's outputs match the fp32 ones on a real
   validation image;
3. evaluates THE SHIPPED FILE with ``cxrassist.evaluation.runner.evaluate`` on every ``split=val`` manifest (the same
   call as ``cxr evaluate``, so the card's numbers can be reproduced), sets thresholds on val where the task has them,
   and writes the figures, limits and intended use into ``card.json`` and a readable ``MODEL_CARD.md``.

This is a maintainer's script (it needs ../shared/data); it is never imported by the package.
"""

from __future__ import annotations

import argparse
import json
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

#: The labelled chest sets the triage and findings models are scored on, one figure per set.
CHEST_EVAL_SETS: tuple[str, ...] = (
    "nih_cxr14_sample",
    "rsna_normal",
    "rsna_lung_opacity",
    "montgomery",
    "shenzhen",
    "jsrt",
    "covid19_gb_seg",
    "covid_chestxray",
    "covid_radiography",
)

ROLES: dict[str, dict[str, Any]] = {
    "lung": {
        "dir": "lungseg",
        "task": "segmentation",
        "name": "cxrassist-lungseg",
        "eval": ["montgomery", "shenzhen", "jsrt", "covid19_gb_seg"],
        "terms": "Trained on Montgomery and Shenzhen (NLM, research; the Shenzhen lung masks are CC BY-NC-SA 4.0), "
        "JSRT/SCR (research and education; commercial use needs JSRT's permission) and covid19_gb_seg "
        "(CC BY 4.0 masks; per-image licences, many CC BY-NC-SA). Treat the weights as research-use only.",
        "limits": "Trained on ~740 adult frontal films (TB screening, JSRT nodules, COVID-19). Montgomery and Shenzhen "
        "were stored squashed to 512x512 and JSRT at 224 px, so outlines are learned at low resolution. "
        "The covid19_gb_seg outlines follow another convention: they run across the heart shadow to the "
        "mediastinum (the lung behind the heart is included), where the other three sets stop at the heart "
        "border; that set is repeated 4x in training so the model learns it on such films, and the mask "
        "it draws over the heart varies with the film's look. Not validated on children, on "
        "portable AP films with devices, or on lateral views (the pipeline runs it on the frontal only).",
    },
    "heart": {
        "dir": "heartseg",
        "task": "segmentation",
        "name": "cxrassist-heartseg",
        "eval": ["jsrt"],
        "init_from": "lungseg",  # the shipped lung model's weights (its own config reproduces them)
        "terms": "Trained on JSRT/SCR heart outlines (research and education; commercial use needs JSRT's "
        "permission), starting from the lung model (Montgomery, Shenzhen: CC BY-NC-SA 4.0 masks; covid19_gb_seg). "
        "Treat the weights as research-use only.",
        "limits": "Trained at 128 px on the heart outlines of 185 JSRT train films (one scanner type, digitised "
        "film, PA, adult Japanese patients, 103 with a lung nodule), the only heart outlines in "
        "../shared/data, for 11 epochs from the lung model's weights; final weights (val not consulted). "
        "The lung model it starts from had seen 21 of the JSRT val films (their lungs, not their hearts) "
        "before JSRT was keyed by patient with BSE-JSRT. Its purpose is the cardiothoracic ratio that "
        "scores Cardiomegaly (cxrassist.measured): judge it by that figure on NIH films, which it never "
        "saw (the findings card), more than by its JSRT Dice. Not validated on AP or portable films, "
        "children, or films with the heart border hidden by effusion or consolidation (the outline then "
        "follows what is visible). Its augmentation adds gamma (0.6-1.6), contrast +-30 % and a 30 % "
        "chance of a film reduced to 45 % of its side: trained like the lung model without them (at 256 "
        "px), it outlined a sliver of mediastinum (ratio under 0.3, refused as unmeasurable) on 35 of the"
        " 528 NIH films, over-exposed ones among them; with them on 7 at 256 px and 15 at 128 px. It runs"
        " at 128 px (at the lung model's 256 px the heart stage took 71 ms on RG1 with 2 cores, at 128 px"
        " 34-54 ms; the ratio's AUROC on the NIH films moved from 0.768 to 0.762). Pacemaker leads over "
        "the heart can cut the outline short.",
    },
    "bone": {
        "dir": "bone",
        "task": "bone",
        "name": "cxrassist-bone",
        "eval": ["bse_jsrt"],
        # 2.1.0 continues 1.0.0 -> 2.0.0 -> the crop stage: their configs are kept and rerun first, in order
        "init_from": "runs/shipped-bone-2.1.0-crops/export/cxrassist-bone",
        "stage_before": " && ".join(
            f"cxr train bone --config configs/shipped/bone-{stage}.yaml --threads 2"
            for stage in ("1.0.0", "2.0.0", "2.1.0-crops")
        ),
        "terms": "Trained on BSE-JSRT pairs of JSRT films (JSRT: research and education, commercial use needs "
        "JSRT's permission; the BSE-JSRT copy is listed CC0 by its uploader). Treat the weights as "
        "research-use only.",
        "limits": "Trained on 109 BSE-JSRT pairs (one scanner type, digitised film, PA, adults); the target is the "
        "difference between a radiograph and its software bone-suppressed version, i.e. it learns that "
        "software's notion of bone: ribs and clavicles, not the spine (which stays in its soft-tissue "
        "image). Expect weaker suppression on CR/DR films, AP films and children. 2.1.0 is 2.0.0 trained on "
        "with the squared error and 1 - SSIM added to the L1 losses, 168 steps on 256-px crops, then 168 steps "
        "(6 epochs) on the whole 512-px pairs; 2.0.0 is 1.0.0 (a GAN: spectral norm, self-attention, TTUR, "
        "2-scale discriminator with feature matching) trained on with the generator alone, L1 and gradient-L1 "
        "losses weighted 10x and stronger augmentation. What each step bought is in README.md. The recipe was "
        "chosen among 3 tries (squared error; + SSIM; + whole pairs) on the same 17 val pairs the figures "
        "come from, and no checkpoint was picked (each stage's last one is used): there is no test split of "
        "BSE-JSRT here, so the figures carry that one choice.",
    },
    "triage": {
        "dir": "triage",
        "task": "triage",
        "name": "cxrassist-triage",
        "eval": list(CHEST_EVAL_SETS),
        # 1.3.0 continues 1.2.0 (from scratch): 1.2.0's config is kept and rerun first
        "init_from": "runs/shipped-triage-1.2.0/export/triage-dn121-512",
        "stage_before": "cxr train triage --config configs/shipped/triage-1.2.0.yaml --threads 2",
        "limits": "Normal vs abnormal learned from every labelled film of ../shared/data except covid_radiography "
        "(left out of training for its site-shortcut risk; scored here as a source the model never saw): "
        "RSNA radiologist-normal NIH films, RSNA abnormal NIH films, the NIH sample, TB (Shenzhen, "
        "Montgomery), JSRT nodules, COVID-19 pneumonia. Every film passes through 224 px first "
        "(input.effective_size), so 224-px and 512-px sources carry the same detail. The figure to judge it "
        "by is the NIH-source AUROC (one source: no set-telling can lift it); the threshold (sensitivity "
        "0.95) and the calibration were chosen on NIH-source val films by 2-fold patient-wise "
        "cross-fitting, so its reported sensitivity/specificity come from points that never saw the film. "
        "RSNA abnormal films are 80 % AP (portable) while the normals are mostly PA: part of the NIH-source "
        "figure may be view. NIH labels are text-mined (noisy). Trained from scratch (no ImageNet weights "
        "could be had), warm-started from triage 1.2.0; score = mean logit over three centred zooms.",
        "terms": "Trained on data with non-commercial or research-only terms (RSNA challenge data: non-commercial "
        "research; Shenzhen masks CC BY-NC-SA 4.0; JSRT: research/education, commercial use needs JSRT's "
        "permission; COVID-19 image collection: per-image licences, many CC BY-NC-SA). Treat the weights as "
        "research-use only; commercial use needs a licence check of every source.",
    },
    "classifier": {
        "dir": "classifier",
        "task": "classifier",
        "name": "cxrassist-findings",
        "eval": list(CHEST_EVAL_SETS),
        # 1.4.0 continues 1.3.0 (trained from triage) for one epoch with the lung prior: 1.3.0's config is rerun first
        "init_from": "runs/shipped-classifier-1.3.0/export/dn121-lung",
        "stage_before": "cxr train classifier --config configs/shipped/classifier-1.3.0.yaml --threads 2",
        "limits": "13 CheXpert findings learned from partial labels (an unknown label is masked out of the loss): "
        "the NIH ChestX-ray14 sample (449 films, text-mined labels, distilled from a CheXNet reproduction "
        "with weight 0.5 on its 8 mappable findings), RSNA radiologist-normal NIH films as negatives for "
        "the 12 non-device findings, RSNA abnormal films for Lung Opacity, TB -> Lung Opacity, JSRT "
        "nodules -> Lung Lesion, COVID-19 -> Pneumonia/Lung Opacity. Channels: radiograph + lung-segmented "
        "(the bone channel was dropped: the bone model sees 512-px detail that 224-px sources lack, a "
        "resolution shortcut, and it added nothing in the earlier ablation). A finding is called positive "
        "only when validated (>= 10 NIH-source positives and AUROC CI lower bound >= 0.65 on NIH-source "
        "val); thresholds at specificity 0.90 and calibration chosen on NIH-source val by 2-fold "
        "patient-wise cross-fitting. Enlarged Cardiomediastinum, Fracture and Support Devices have no "
        "labelled data at all. Heatmaps: 1.4.0 is 1.3.0 (the first of its 2 epochs, picked by pooled val mean "
        "AUROC) trained one more epoch (2,000 of the 6,534 RSNA normal train films drawn) with a lung prior on the "
        "class activation maps of the 7 lung findings (training/lung_prior.py, weight 0.5): it asks that their "
        "maps look inside the dilated lung mask, on every film. It makes the maps point into the lungs; it does "
        "not make them point at the lesion (see the pointing game in README.md), and the weight was not tuned. "
        "1.5.0 is 1.4.0's network unchanged; Cardiomegaly is no longer its output but the cardiothoracic ratio "
        "measured on the heart model's and lung model's outlines (measured_findings; cxrassist.measured), a fixed "
        "transform sigmoid((ratio - 0.5) / 0.05) calibrated and thresholded on val like every finding. The ratio "
        "was chosen because it beat the network out of fold on all 528 NIH films (README.md); the heart model "
        "never saw an NIH film. AP films magnify the heart, so the ratio runs high on them. 1.6.0 is 1.5.0 with "
        "Cardiomegaly validated, calibrated and thresholded on the NIH-source val films plus the 449 train films of "
        "the NIH sample (held_out_sets): neither the heart nor the lung model learnt from any of them, so all 528 "
        "NIH sample films (50 positives, where val has 5) judge the measurement; the network's other findings are "
        "still judged on val alone. From 1.6.0 the heart outline is also opened (a disk of 4 % of the thorax width, "
        "postprocess.heart_outline) before it is measured, so a mass hanging on the heart border is not heart; the "
        "disk was chosen on JSRT outlines and RG1, not on NIH films.",
        "measured_findings": {
            "Cardiomegaly": {
                "measure": "cardiothoracic_ratio",
                "model": "heartseg",
                "center": 0.5,
                "scale": 0.05,
                "held_out_sets": ["nih_cxr14_sample"],
            }
        },
        "terms": "Trained on data with non-commercial or research-only terms (RSNA challenge data: non-commercial "
        "research; Shenzhen masks CC BY-NC-SA 4.0; JSRT: research/education; COVID-19 image collection: "
        "per-image licences, many CC BY-NC-SA); distilled from a BSD-3-Clause CheXNet reproduction's "
        "published probabilities. Treat the weights as research-use only.",
    },
}
TEACHER = SHARED / "nih_cxr14_sample" / "teacher_chexnet_preds.csv"


def shared_manifest(name: str) -> str:
    return str(SHARED / name / "manifest.csv")


def _log_rows(run: Path) -> list[dict[str, str]]:
    """The run's log.csv, one dict per val evaluation."""
    import csv

    return list(csv.DictReader((run / "log.csv").read_text().splitlines()))


def best_step(run: Path) -> int | None:
    """Global step of the best epoch in the run's log: the last row where the ``best`` column changed."""
    step, best = None, None
    for row in _log_rows(run):
        if row["best"] != best:
            step, best = int(row["global_step"]), row["best"]
    return step


def _export_when(run: Path) -> str:
    return str((yaml.safe_load((run / "config.yaml").read_text()).get("export") or {}).get("when", "improve"))


def shipped_step(run: Path) -> int | None:
    """The step the run's export holds: its last step for ``export.when: last``, else the val-best one."""
    rows = _log_rows(run)
    if _export_when(run) == "last":
        return int(rows[-1]["global_step"]) if rows else None
    return best_step(run)


def checkpoint_choice(run: Path, monitor: str) -> str:
    """How the shipped weights were picked, from the run's config and log.csv, in one sentence for the card: a
    reader must know whether the val figures carry a choice made on the same films."""
    rows = _log_rows(run)
    last, step, n = int(rows[-1]["global_step"]), best_step(run), len(rows)
    if _export_when(run) == "last":
        return f"Checkpoint: the final weights (step {last}) of a fixed budget; val was not consulted."
    if n == 1:
        return f"Checkpoint: step {last}, the run's only val evaluation (at its end); no checkpoint was chosen."
    if step == last:
        return (
            f"Checkpoint: step {step}, the last of {n} val evaluations; it was also the best by val {monitor}, which "
            "the run would have shipped had an earlier one been better."
        )
    return (
        f"Checkpoint: step {step} of {last}, picked among {n} val evaluations by val {monitor}: the val figures "
        "below come from the films that picked it."
    )


def continues_stage(role: str, init_from: str | None) -> bool:
    """Whether a run of ``role`` continued the role's earlier stage (``ROLES[role]["init_from"]``), so its recipe must
    rerun that stage first. A findings run that started from triage weights (the design's order) did not: only one
    whose ``model.init_from`` holds findings weights (a card with more than one label) did; a triage run did when it
    started from triage weights (one label). Bone stages always do."""
    if not init_from or not ROLES[role].get("init_from"):
        return False
    if ROLES[role]["task"] not in ("classifier", "triage"):
        return True
    card = Path(init_from) / "card.json"
    if card.is_file():
        findings = len(json.loads(card.read_text()).get("labels") or []) > 1
    else:  # a role name ("triage") or a folder that is gone: judged by its name
        findings = Path(init_from).name not in ("triage", "cxrassist-triage", "triage-dn121-512")
    return findings == (ROLES[role]["task"] == "classifier")


def write_config(role: str, run: Path, step: int | None) -> tuple[Path, str]:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    for key in ("_run", "git", "git_revision", "command", "argv", "versions"):
        cfg.pop(key, None)
    cfg["data"]["manifests"] = [re.sub(r"^.*/shared/data/", "../shared/data/", m) for m in cfg["data"]["manifests"]]
    for key in ("lung_weights", "bone_weights"):
        if cfg["data"].get(key):
            cfg["data"][key] = {"lung_weights": "lungseg", "bone_weights": "bone"}[key]  # the shipped models
    staged = continues_stage(role, cfg["model"].get("init_from"))
    if cfg["model"].get("init_from"):  # the weights it started from, as the earlier stage's rerun writes them
        cfg["model"]["init_from"] = ROLES[role]["init_from"] if staged else "triage"
    cfg["name"] = f"shipped-{role}"
    if step is not None:
        cfg["run"]["max_steps"] = step
    out = REPO / "configs" / "shipped" / f"{role}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    command = f"cxr train {cfg['task']} --config configs/shipped/{role}.yaml --threads 2"
    if staged and ROLES[role].get("stage_before"):
        command = f"{ROLES[role]['stage_before']} && {command}"
    header = (
        f"# Reproduces src/cxrassist/weights/shipped/{ROLES[role]['dir']} (written by scripts/ship_weights.py)\n"
        f"# {command}\n"
    )
    out.write_text(header + yaml.safe_dump(cfg, sort_keys=False))
    return out, command


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
    # one pass over every val film: per-source figures, cross-fitted operating points and calibration written into
    # the card (the same call and rule as `cxr evaluate --write-thresholds operating`)
    res = evaluate(
        spec["task"],
        manifests,
        weights=str(weights),
        write_thresholds="operating",
        bootstrap=1000,
        roc_dir=weights / "roc",
        teacher=str(TEACHER) if spec["task"] == "classifier" else None,
        cache_dir=REPO / "runs" / "cache",  # derived lung channels, keyed by film, size and lung weights (as training)
    )
    print(res["_table"])
    metrics: dict[str, Any] = {"val": {k: v for k, v in res.items() if not k.startswith("_") and k != "weights"}}
    if spec["task"] == "triage":  # the plain view beside the zoom average, so the card shows what the zooms add
        plain = evaluate("triage", manifests, weights=str(weights), bootstrap=1000, tta=False)
        print(plain["_table"], "[plain view]")
        e = plain["per_label"]["abnormal"]
        metrics["val_single_view"] = {"validation": e["validation"], "auroc_by_source": plain["auroc_by_source"]}
    return metrics


def before_after(target: Path) -> Path:
    """The card's picture: radiograph | predicted bone | predicted soft tissue | reference soft tissue (a val case)."""
    import csv

    from PIL import Image, ImageDraw

    from cxrassist.channels import predict_bone
    from cxrassist.data.images import load_image01
    from cxrassist.weights import load_model

    rows = csv.DictReader((SHARED / "bse_jsrt" / "manifest.csv").read_text().splitlines())
    row = next(r for r in rows if r["split"] == "val")
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
        panel.paste(
            Image.fromarray((tile * 255).astype(np.uint8)).resize((side, side), Image.Resampling.LANCZOS),
            (i * side, 18),
        )
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
    step = shipped_step(args.run)
    config_path, command = write_config(args.role, args.run, step)

    target = SHIPPED / spec["dir"]
    card.name, card.version, card.status, card.date = spec["name"], args.version, "trained", today()
    card.training = {
        **card.training,
        "command": command,
        "config_file": str(config_path.relative_to(REPO)),
        "best_step": step,
        "checkpoint": checkpoint_choice(args.run, str(card.training.get("monitor"))),
    }
    cfg = card.training.get("config") or {}
    staged = continues_stage(args.role, (cfg.get("model") or {}).get("init_from"))
    if cfg.get("data", {}).get("lung_weights"):
        cfg["data"]["lung_weights"], cfg["data"]["bone_weights"] = "lungseg", "bone"
        if cfg["model"].get("init_from"):
            cfg["model"]["init_from"] = "triage"
    if staged:  # a warm start: the earlier stage's output
        cfg["model"]["init_from"] = spec["init_from"]
    if spec.get("measured_findings"):  # findings scored from a measurement (cxrassist.measured), before evaluation
        card.extra["measured_findings"] = spec["measured_findings"]
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
    if spec["task"] not in ("classifier", "triage"):  # classification: evaluation wrote the one validated rule
        card.validated = dict.fromkeys(card.labels, True)
    if spec.get("terms"):
        card.extra["data_terms"] = spec["terms"]
    card.notes = (
        f"{card.training['checkpoint']} Limits: {spec['limits']} fp16 storage: largest output difference vs fp32 "
        f"on a real film {diff:.2e}. Measured on the split=val cases of ../shared/data (public sets, resized); the "
        "held-back test split of those sets was not used."
    )
    card.write(target / "card.json")
    markdown = render_markdown(card)
    if spec["task"] == "bone":
        markdown += f"\n![before and after, a val case]({before_after(target).name})\n"
    (target / "MODEL_CARD.md").write_text(markdown)
    print(f"shipped {card.name} {card.version} -> {target} (sha256 {card.sha256[:12]}, fp16 diff {diff:.2e})")
    return 0


def _f(v: Any, nd: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and v != v) else f"{v:.{nd}f}"


def key_figures(d: dict[str, Any]) -> str:
    m = d["metrics"]
    v = m.get("val", {})
    if v.get("task") == "triage":
        e = v["per_label"]["abnormal"]
        n, op = e["validation"], d.get("operating_points", {}).get(d["labels"][0], {})
        others = ", ".join(
            f"{k} {_f(x)}"
            for k, x in v["auroc_by_source"].items()
            if k != "nih_source" and isinstance(x, float) and x == x
        )
        return (
            f"NIH-source AUROC {_f(n['auroc'])} (95% CI {_f(n['ci95'][0])}-{_f(n['ci95'][1])}, {n['n_pos']} "
            f"abnormal of {n['n']}); at sensitivity {_f(op.get('sensitivity'))} (cross-fitted) specificity "
            f"{_f(op.get('specificity'))}; other sources: {others}"
        )
    if v.get("task") == "classifier":
        ref = v.get("reference") or {}
        validated = [k for k, x in d["validated"].items() if x]
        return (
            f"NIH-source mean AUROC (findings with >= 10 positives) {_f(v['mean_auroc_validation'])}; on "
            f"nih_cxr14_sample val over {', '.join(ref.get('findings', []))}: model "
            f"{_f(ref.get('model_mean_auroc'))}"
            f", CheXNet reference {_f(ref.get('teacher_mean_auroc'))}; validated: {', '.join(validated) or 'none'}"
        )
    if "dice" in next(iter(v.values()), {}):
        return "; ".join(f"{ds} Dice {r['dice']:.3f}" for ds, r in v.items())
    ci = v.get("ci95") or {}

    def interval(key: str, nd: int) -> str:
        c = ci.get(key)
        return f" (95% CI {c[0]:.{nd}f}-{c[1]:.{nd}f})" if c else ""

    return (
        f"bone-suppressed PSNR {v['psnr']:.2f} dB (identity {v['identity_psnr']:.2f}, gain "
        f"{v['psnr'] - v['identity_psnr']:+.2f} dB{interval('psnr_gain', 2)}), SSIM {v['ssim']:.4f}; "
        f"bone image PSNR {v['bone_psnr']:.2f} dB, SSIM {v['bone_ssim']:.4f}{interval('bone_ssim', 4)}; "
        f"suppression ratio {v['bone_suppression_ratio']:.3f}{interval('bone_suppression_ratio', 3)} "
        f"({v['n_cases']} val pairs)"
    )


def _per_label_table(d: dict[str, Any]) -> list[str]:
    v = d["metrics"].get("val", {})
    per = v.get("per_label")
    if not per:
        return []
    sources = [s for s in v.get("n_by_source", {}) if s != "nih_source"]
    lines = [
        "## Per label, per source (split=val)",
        "",
        "NIH-source = " + ", ".join(sorted(s for s in sources if s.startswith(("nih", "rsna")))) + ". "
        "Sensitivity/specificity: cross-fitted on NIH-source films (each film judged by an operating point "
        "fitted without it). Teacher: a CheXNet reproduction on the same nih_cxr14_sample val films.",
        "",
        "| label | NIH-source AUROC (95% CI) | pos/n | threshold | sens | spec | ECE raw → cal | teacher / model "
        "on nih_cxr14_sample | validated | AUROC per source |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = d["labels"]
    for code, e in per.items():
        name = names[0] if code == "abnormal" else next((x for x in names if x), code)
        if code != "abnormal":
            from cxrassist.labels import finding

            name = finding(code).name
        n, op = e["validation"], e["operating"]
        cf = op["cross_fitted"]["fitting_population"]
        ref = e.get("reference")
        teacher = f"{_f(ref['teacher_auroc'])} / {_f(ref['model_auroc'])} ({ref['n_pos']}/{ref['n']})" if ref else "—"
        src = "; ".join(
            f"{k} {_f(x['auroc'])} ({x['n_pos']}/{x['n']})" for k, x in e["by_source"].items() if k != "nih_source"
        )
        lines.append(
            f"| {name} | {_f(n['auroc'])} ({_f(n['ci95'][0], 2)}–{_f(n['ci95'][1], 2)}) | "
            f"{n['n_pos']}/{n['n']}"
            f" | {_f(d['thresholds'].get(name))} | {_f(cf.get('sensitivity'), 2)} | "
            f"{_f(cf.get('specificity'), 2)} | {_f(op['ece_raw'])} → "
            f"{_f(op['ece_calibrated'])} | {teacher} | {d['validated'].get(name, False)} | {src} |"
        )
    if v.get("calls_per_normal_film"):
        lines += [
            "",
            "Positive calls (validated findings only) per film known to be normal: "
            + "; ".join(
                f"{k} {x['mean_calls']:.2f} ({x['n_films']} films)" for k, x in v["calls_per_normal_film"].items()
            ),
        ]
    lines += ["", f"Validated = {v.get('validation_rule', '')}.", ""]
    return lines


def render_markdown(card: Any) -> str:
    d = card.to_dict()
    lines = [
        f"# {d['name']} {d['version']}",
        "",
        f"**Intended use:** {d['intended_use']}",
        "",
        f"**Key figures (split=val):** {key_figures(d)}",
        "",
        f"- architecture: `{d['architecture']}` {json.dumps(d['kwargs'])}",
        f"- input: {json.dumps(d['input'])}",
        f"- weights: `model.safetensors` ({d.get('storage_dtype')}), sha256 `{d['sha256']}`",
        f"- parameters: {d.get('num_parameters')}",
        f"- trained with: `{d['training'].get('command')}` (config `{d['training'].get('config_file')}`)",
        f"- code version: {d['code_version']}, date: {d['date']}",
        "",
        "## Training data",
        "",
        "```json",
        json.dumps(d["training"].get("data"), indent=1)[:3000],
        "```",
        "",
        *_per_label_table(d),
        "## Thresholds and validation",
        "",
        "| label | threshold | validated |",
        "|---|---|---|",
    ]
    for lab in d["labels"]:
        thr = d["thresholds"].get(lab)
        lines.append(f"| {lab} | {thr if thr is None else round(float(thr), 4)} | {d['validated'].get(lab, False)} |")
    if d.get("measured_findings"):
        lines += ["", "## Findings scored from a measurement, not by this network", ""]
        per = (d["metrics"].get("val") or {}).get("per_label") or {}
        for label, m in d["measured_findings"].items():
            held = m.get("held_out_sets") or []
            where = "on val like every finding" + (
                f", on the train films of {', '.join(held)} as well (the measurement learnt from none of them)"
                if held
                else ""
            )
            lines.append(
                f"- **{label}**: raw probability sigmoid(({m['measure']} - {m['center']}) / {m['scale']}), the "
                f"ratio measured on the outlines of `{m['model']}` (a model folder beside this one) and the lung "
                f"model; validated, calibrated and thresholded {where}; its heatmap is the heart outline. "
                "Where the ratio cannot be measured the network's own output is kept and never called positive."
            )
            from cxrassist.labels import finding

            h = next((x["held_out"] for c, x in per.items() if "held_out" in x and finding(c).name == label), None)
            if h is not None:
                src = "; ".join(
                    f"{k} {_f(x['auroc'])} ({_f(x['ci95'][0], 2)}–{_f(x['ci95'][1], 2)}, {x['n_pos']}/{x['n']})"
                    for k, x in h["by_source"].items()
                    if x["auroc"] is not None and x["auroc"] == x["auroc"]  # sets without positives: nothing to say
                )
                ref = h.get("reference")
                lines.append(
                    f"  - {h['population']}: AUROC {src}"
                    + (
                        f"; CheXNet reference on the same {ref['n']} {ref['set']} films {_f(ref['teacher_auroc'])} "
                        f"(this measurement {_f(ref['model_auroc'])})"
                        if ref
                        else ""
                    )
                )
    lines += ["", "## Limits", "", d["notes"], ""]
    if d.get("data_terms"):
        lines += ["## Data terms", "", d["data_terms"], ""]
    lines += [
        "## How to reproduce the figures",
        "",
        f"`cxr evaluate {d['training'].get('task', '')} --weights <this folder> --manifest "
        "../shared/data/<set>/manifest.csv ...` (the sets listed per source above; `--teacher "
        "../shared/data/nih_cxr14_sample/teacher_chexnet_preds.csv` for the reference column).",
        "",
    ]
    return "\n".join(lines)


def rerender(role: str) -> None:
    """Rewrite MODEL_CARD.md (and the card's data terms) from card.json, without measuring again."""
    from cxrassist.weights import ModelCard

    spec = ROLES[role]
    target = SHIPPED / spec["dir"]
    card = ModelCard.read(target / "card.json")
    if spec.get("terms"):
        card.extra["data_terms"] = spec["terms"]
    d = card.to_dict()
    if d["metrics"].get("val") and "summary" in d["metrics"]:
        card.metrics["summary"] = key_figures(d)
    card.write(target / "card.json")
    markdown = render_markdown(card)
    if spec["task"] == "bone" and (target / "before_after.png").is_file():
        markdown += "\n![before and after, a val case](before_after.png)\n"
    (target / "MODEL_CARD.md").write_text(markdown)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--rerender":
        for r in sys.argv[2:]:
            rerender(r)
        raise SystemExit(0)
    raise SystemExit(main())
