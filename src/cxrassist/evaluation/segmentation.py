"""Lung segmentation evaluation in ORIGINAL pixel space (what a reader sees), not in model space.

Each image is letterboxed to the card's input size, the lung probability is mapped back with the image's
:class:`~cxrassist.preprocess.SpatialRecord`, thresholded at 0.5 and compared with the original mask: Dice, IoU and
HD95 (pixels of the stored image) per image. With ``postprocess`` the mask is exactly the one the analysis pipeline
shows (:func:`cxrassist.channels.predict_lung_mask`: card threshold, two largest components, holes filled; one
component for the heart model), so the
figures in a model card describe what a reader gets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cxrassist.data.images import load_image01, load_mask
from cxrassist.data.records import Record
from cxrassist.evaluation.common import chunks, progress, run_model
from cxrassist.evaluation.metrics import dice, hd95, iou
from cxrassist.preprocess import letterbox


def evaluate_segmentation(
    model: Any,
    size: int,
    records: Sequence[Record],
    *,
    device: Any = "cpu",
    postprocess: bool = False,
    batch_size: int = 8,
    show_progress: bool = True,
    card: Any = None,
) -> dict[str, Any]:
    records = [r for r in records if r.mask is not None]
    rows: list[dict[str, Any]] = []
    for group in progress(
        chunks(records, batch_size), (len(records) + batch_size - 1) // batch_size, "segmentation", show_progress
    ):
        images = [load_image01(r.image) for r in group]
        boxed = [letterbox(im, size) for im in images]
        logits = run_model(model, np.stack([b[0] for b in boxed])[:, None], device)
        for rec, (_, spatial), lg in zip(group, boxed, logits, strict=True):
            if postprocess:
                from cxrassist.channels import predict_organ_mask

                pred = predict_organ_mask(
                    model, card if card is not None else {"input": {"size": size}}, images[group.index(rec)]
                )[2]
            else:
                pred = spatial.to_original(1.0 / (1.0 + np.exp(-lg[0]))) > 0.5
            true = load_mask(rec.mask) > 0.5  # type: ignore[arg-type]
            if true.shape != pred.shape:
                from cxrassist.preprocess import resize

                true = resize(true.astype(np.float32), pred.shape, nearest=True) > 0.5
            rows.append(
                {
                    "id": rec.id,
                    "dataset": rec.dataset,
                    "dice": dice(pred, true),
                    "iou": iou(pred, true),
                    "hd95": hd95(pred, true),
                }
            )
    hd = [r["hd95"] for r in rows if r["hd95"] == r["hd95"]]
    return {
        "task": "segmentation",
        "n_cases": len(rows),
        "dice": float(np.mean([r["dice"] for r in rows])) if rows else float("nan"),
        "iou": float(np.mean([r["iou"] for r in rows])) if rows else float("nan"),
        "hd95": float(np.mean(hd)) if hd else float("nan"),
        "dice_median": float(np.median([r["dice"] for r in rows])) if rows else float("nan"),
        "postprocess": postprocess,
        "per_image": rows,
    }
