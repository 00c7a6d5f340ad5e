"""``cxr evaluate`` behind the CLI: load weights, load records, run the task's evaluation, format a table."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cxrassist._jsonsafe import jsonable
from cxrassist.data.manifest import MASK_COLUMNS, load_manifests
from cxrassist.data.records import select
from cxrassist.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

TASK_OF_LABELS = {"Lung": "segmentation", "Heart": "segmentation", "Bone": "bone", "Abnormal": "triage"}


def _fmt(v: Any, nd: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and v != v) else f"{v:.{nd}f}"


def _held_out_films(card: Any, every: list[Any], split: str, limit: int | None) -> list[Any]:
    """The train films of the sets that the card's measured findings hold out (see ``cxrassist.measured``): the
    measurement never learnt from them, so they join the val films in validating it. Never the test split."""
    from cxrassist.measured import measured_findings

    sets = {s for m in measured_findings(card) for s in m.held_out_sets}
    if not sets or split == "train":
        return []
    films = [r for r in every if r.split == "train" and r.dataset in sets]
    if films:
        log.info("measured findings: %d train films of %s are held out from the measurement", len(films), sorted(sets))
    return films[:limit]


def evaluate(
    task: str,
    manifests: list[str],
    *,
    weights: str,
    split: str = "val",
    limit: int | None = None,
    postprocess: bool = False,
    roc_dir: Path | None = None,
    bootstrap: int = 1000,
    write_thresholds: str | None = None,
    lung_weights: str | None = None,
    bone_weights: str | None = None,
    cache_dir: Path | None = None,
    threads: int | None = None,
    device: str = "auto",
    tta: bool = True,
    teacher: str | None = None,
) -> dict[str, Any]:
    import torch

    from cxrassist.device import pick_device
    from cxrassist.weights import load_model
    from cxrassist.weights.settings import card_settings

    if threads:
        torch.set_num_threads(threads)
    dev = pick_device(device)
    model, card = load_model(weights, inference=True)  # forward only: the bone generator folded, as in the pipeline
    model.to(dev).eval()
    # a segmentation model is scored against the masks of the organ its card names (lungs: `mask`, heart: `heart_mask`)
    column = MASK_COLUMNS.get(str(card.labels[0]), "mask") if task == "segmentation" and card.labels else "mask"
    every = load_manifests(manifests, mask_column=column)
    records = select(every, split)[:limit]
    if not records:
        raise DatasetError(f"no records with split {split!r} in {', '.join(manifests)}")
    if task == "segmentation" and not any(r.mask is not None for r in records):
        raise DatasetError(f"no {column!r} masks in the {split!r} rows of {', '.join(manifests)} (model {card.name})")
    size = card_settings(card).input.size  # the card read once; no size is guessed
    if task == "segmentation":
        from cxrassist.evaluation.segmentation import evaluate_segmentation

        res = evaluate_segmentation(model, size, records, device=dev, postprocess=postprocess, card=card)
        table = (
            f"segmentation  n={res['n_cases']}  dice={_fmt(res['dice'])}  iou={_fmt(res['iou'])}  "
            f"hd95={_fmt(res['hd95'], 1)} px  (median dice {_fmt(res['dice_median'])})"
        )
    elif task == "bone":
        from cxrassist.evaluation.bone import evaluate_bone

        res = evaluate_bone(model, size, records, device=dev)
        table = (
            f"bone  n={res['n_cases']}\n"
            f"  suppressed image: psnr={_fmt(res['psnr'], 2)} dB  ssim={_fmt(res['ssim'], 4)}\n"
            f"  bone image:       psnr={_fmt(res['bone_psnr'], 2)} dB  ssim={_fmt(res['bone_ssim'], 4)}\n"
            f"  bone suppression ratio={_fmt(res['bone_suppression_ratio'], 4)}\n"
            f"  identity baseline (no suppression): psnr={_fmt(res['identity_psnr'], 2)} dB  "
            f"ssim={_fmt(res['identity_ssim'], 4)}  ratio=0"
        )
    elif task in ("triage", "classifier"):
        from cxrassist.evaluation.classification import evaluate_classification

        res, table = evaluate_classification(
            task,
            model,
            card,
            records,
            weights=weights,
            device=dev,
            roc_dir=roc_dir,
            bootstrap=bootstrap,
            write_thresholds=write_thresholds,
            lung_weights=lung_weights,
            bone_weights=bone_weights,
            cache_dir=cache_dir,
            tta=tta,
            teacher=teacher,
            held_out=_held_out_films(card, every, split, limit) if task == "classifier" else (),
        )
    else:
        raise ConfigError(f"unknown task {task!r}; known: segmentation, bone, triage, classifier")
    res = jsonable(
        {
            **res,
            "model": card.name,
            "version": card.version,
            "weights": str(weights),
            "manifests": manifests,
            "split": split,
        }
    )
    res["_table"] = table
    return res
