"""Weight transfer into our DenseNet-121 classifiers: public DenseNet-121 layouts, and triage -> classifier.

Layouts understood by :func:`import_densenet121_state_dict` (all map onto torchvision's ``features.*`` names):

- torchvision: ``features.denseblock1.denselayer1.norm1.weight``; also the *old* torchvision style
  ``...denselayer1.norm.1.weight`` / ``conv.1`` / ``conv.2`` (the regex torchvision itself uses);
- CheXNet (arnoweng/CheXNet checkpoints): ``module.densenet121.features...``, head ``module.densenet121.classifier.0``
  (14 NIH outputs + sigmoid), old-style layer names;
- torchxrayvision: ``features...``, head ``classifier.weight`` with 18 outputs, 1-channel ``conv0``.

The source heads are never imported (other label sets); ``conv0`` is adapted to the model's stem width by
:func:`adapt_input_conv` (sum for 1 channel, replicate-and-rescale otherwise, response to gray kept), which is logged
and reported.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from cxrassist.errors import WeightsError

logger = logging.getLogger(__name__)

_OLD_LAYER = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)
_PREFIXES = ("module.", "densenet121.", "model.", "backbone.")


@dataclass
class ImportReport:
    """What an import did: counts, adapted tensors, skipped source keys, target keys left at their init."""

    source_layout: str
    loaded: int = 0
    adapted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    head: tuple[int, ...] | None = None  # shape of the source head (not imported)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_layout": self.source_layout,
            "loaded": self.loaded,
            "adapted": self.adapted,
            "skipped": self.skipped,
            "missing": self.missing,
            "head": list(self.head) if self.head else None,
        }


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file (``weights_only=True``: never unpickles code)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]  # CheXNet-style checkpoint {"epoch", "state_dict", ...}
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: not a state dict")
    return dict(obj)


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt a first-conv weight [O, I, k, k] to ``in_chans`` inputs, keeping the response to equal channels.

    The source filters are repeated cyclically and scaled by I / in_chans (timm's rule, exact when in_chans is a
    multiple of I); any remaining difference between the filter sums is spread equally over the channels, so an
    image whose channels are all equal (a gray radiograph) gets exactly the response the source gave to its gray
    RGB image. For ``in_chans == 1`` this is the sum of the RGB filters.
    """
    src = weight.shape[1]
    if src == in_chans:
        return weight.clone()
    reps = math.ceil(in_chans / src)
    tiled = weight.repeat(1, reps, 1, 1)[:, :in_chans] * (src / in_chans)
    deficit = weight.sum(1, keepdim=True) - tiled.sum(1, keepdim=True)
    return tiled + deficit / in_chans


def normalize_densenet_keys(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Strip wrapper prefixes and old-style layer names -> torchvision keys; also guess the source layout."""
    keys = list(state_dict)
    if any(k.startswith("module.densenet121.") for k in keys):
        layout = "chexnet"
    elif any(k == "classifier.weight" for k in keys) and state_dict["classifier.weight"].shape[0] == 18:
        layout = "torchxrayvision"
    else:
        layout = "torchvision"
    out = {}
    for key, value in state_dict.items():
        k = key
        stripped = True
        while stripped:
            stripped = False
            for p in _PREFIXES:
                if k.startswith(p):
                    k, stripped = k[len(p) :], True
        m = _OLD_LAYER.match(k)
        if m:
            k = m.group(1) + m.group(2)
        out[k] = value
    return out, layout


def _copy_into(
    target: nn.Module,
    prefix_map: list[tuple[str, str]],
    source: Mapping[str, torch.Tensor],
    report: ImportReport,
    conv_keys: Mapping[str, int],
) -> None:
    """Copy ``source[src_prefix + rest]`` into ``target[dst_prefix + rest]``; adapt first convs in ``conv_keys``."""
    own = target.state_dict()
    new = {}
    used = set()
    for dst_key, dst_val in own.items():
        for dst_prefix, src_prefix in prefix_map:
            if dst_key.startswith(dst_prefix):
                src_key = src_prefix + dst_key[len(dst_prefix) :]
                break
        else:
            continue
        if src_key not in source:
            report.missing.append(dst_key)
            continue
        val = source[src_key]
        if dst_key in conv_keys and val.shape[1] != dst_val.shape[1]:
            logger.info("adapting %s from %d to %d input channels", dst_key, val.shape[1], dst_val.shape[1])
            val = adapt_input_conv(val, dst_val.shape[1])
            report.adapted.append(f"{dst_key}: {source[src_key].shape[1]} -> {dst_val.shape[1]} input channels")
        if val.shape != dst_val.shape:
            raise WeightsError(
                f"shape mismatch for {dst_key}: source {src_key} has {tuple(val.shape)}, "
                f"model needs {tuple(dst_val.shape)}"
            )
        new[dst_key] = val.to(dst_val.dtype)
        used.add(src_key)
    target.load_state_dict(new, strict=False)
    report.loaded += len(new)


def import_densenet121_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> ImportReport:
    """Import a public DenseNet-121 body (torchvision / CheXNet / torchxrayvision) into a classifier's ``features``.

    Works for :class:`DenseNetClassifier` (body -> ``features``) and :class:`DualBranchClassifier` (early blocks ->
    both branches, later blocks -> trunk). The stems and the head keep their initialisation. Returns a report.
    """
    from cxrassist.models.dual import DualBranchClassifier

    source, layout = normalize_densenet_keys(state_dict)
    report = ImportReport(source_layout=layout)
    head = source.get("classifier.weight", source.get("classifier.0.weight"))
    report.head = tuple(head.shape) if head is not None else None
    body = {k: v for k, v in source.items() if k.startswith("features.")}
    if not body:
        raise WeightsError("no 'features.*' tensors found: not a DenseNet state dict")
    report.skipped = sorted(k for k in source if not k.startswith("features."))
    if isinstance(model, DualBranchClassifier):
        branch = [(f"{b}.features.{n}.", f"features.{n}.") for b in ("frontal", "lateral") for n in model.branch_names]
        trunk = [(f"features.{n}.", f"features.{n}.") for n in model.trunk_names]
        convs = {"frontal.features.conv0.weight": 1, "lateral.features.conv0.weight": 1}
        _copy_into(model, branch + trunk, body, report, convs)
    else:
        _copy_into(model, [("features.", "features.")], body, report, {"features.conv0.weight": 1})
    logger.info(
        "imported %d DenseNet-121 tensors from a %s state dict (head %s not imported)",
        report.loaded,
        layout,
        report.head,
    )
    return report


def init_classifier_from_triage(classifier: nn.Module, triage: nn.Module | Mapping[str, torch.Tensor]) -> ImportReport:
    """Initialise a finding classifier from the triage model: everything but the head.

    Same-width classifiers copy stem and body 1:1. Extra input channels (lung, bone) of the stem conv start at zero,
    so at initialisation the classifier computes exactly the triage features. Dual-branch classifiers get the triage
    stem + early blocks in both branches and the later blocks in the trunk.
    """
    from cxrassist.models.dual import DualBranchClassifier

    state = dict(triage.state_dict() if isinstance(triage, nn.Module) else triage)
    report = ImportReport(source_layout="triage")
    report.head = tuple(state["classifier.weight"].shape) if "classifier.weight" in state else None
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}

    def stem_for(prefix: str, in_chans: int) -> dict[str, torch.Tensor]:
        out = {}
        for k, v in state.items():
            if k.startswith("stem."):
                if k == "stem.conv.weight" and v.shape[1] != in_chans:
                    w = torch.zeros(v.shape[0], in_chans, *v.shape[2:], dtype=v.dtype)
                    n = min(in_chans, v.shape[1])
                    w[:, :n] = v[:, :n]
                    report.adapted.append(f"{prefix}stem.conv.weight: {v.shape[1]} -> {in_chans} channels (zeros)")
                    v = w
                out[prefix + k] = v
        return out

    if isinstance(classifier, DualBranchClassifier):
        mapped = {}
        for b, chans in (("frontal", classifier.in_chans), ("lateral", classifier.lateral_in_chans)):
            mapped.update(stem_for(f"{b}.", chans))
            for n in classifier.branch_names:
                mapped.update({f"{b}.{k}": v for k, v in state.items() if k.startswith(f"features.{n}.")})
        for n in classifier.trunk_names:
            mapped.update({k: v for k, v in state.items() if k.startswith(f"features.{n}.")})
    else:
        mapped = {
            **stem_for("", cast(int, classifier.in_chans)),
            **{k: v for k, v in state.items() if k.startswith("features.")},
        }
    _copy_into(classifier, [("", "")], mapped, report, {})
    report.missing = [k for k in report.missing if not k.startswith("classifier.")]
    report.skipped = sorted(
        set(state) - {k.split(".", 1)[1] if k.startswith(("frontal.", "lateral.")) else k for k in mapped}
    )
    return report
