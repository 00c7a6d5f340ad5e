"""Class activation maps for every finding: CAM from the head weights, Grad-CAM per branch, Grad-CAM fallback.

Normalisation (``CamOutput.cams``, :func:`normalize_maps`): per image and per class, ``(raw - min) / (max - min)``
over the map, so 0 is the cell with the least evidence for that finding in that image and 1 the cell with the most
(:data:`HEATMAP_MEANING` is the sentence reports and the viewer show). It is relative to the map's own range: it
says *where* in this film the evidence for the finding is strongest, never *how likely* the finding is, and it is
not comparable between findings or films (show it with the probability). It used to be ``relu(raw) / max``, which
left every map with no positive cell all zero: a finding called positive at a threshold below 0.5 (negative logit,
bias ~ 0) got an empty map and a peak "at" pixel (0, 0). Only a map that is constant over the image (no spatial
preference at all) is all zero now. The un-normalised maps are kept in ``CamOutput.raw`` (CAM: ``w_k . f(i, j)``,
the per-cell contribution to logit k minus the bias, whose mean over the aligned cells is ``logit_k - b_k``).

Resolution. Single-view classifiers: CAM on the final map made denser by ``dense_levels`` (see
``cxrassist.models.densenet``): 512 input -> 4x4 (0: 1.85 GFLOPs), 8x8 (1: 2.06), 16x16 (2, default: 4.15 GFLOPs for
the one pass that gives logits and maps), 32x32 (3: 14.1); benchmarks/bench_models.py prints the trade-off; the
logits are the normal ones (``forward_features_dense``'s every 2**levels-th cell is the normal map, exactly; the
CAM is then re-gridded by :func:`regrid_map` so that cell q covers model pixels [q*stride, (q+1)*stride); cells
whose centre lies outside the span the dense samples cover fade to the map's minimum instead of copying the edge
value). Dual-branch
classifiers: Grad-CAM at each branch's output (16x16 at 512), keyed "frontal" and "lateral".

Maps are in model space (the letterboxed square); ``SpatialRecord.to_original`` maps them onto the original pixels.
Call ``model.eval()`` first (batch-norm statistics of a training-mode model couple the images of a batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class CamOutput:
    logits: torch.Tensor  # [B, K]
    cams: dict[str, torch.Tensor]  # view -> [B, K, h, w] in [0, 1]
    raw: dict[str, torch.Tensor] = field(default_factory=dict)  # view -> [B, K, h, w] un-normalised
    method: str = "cam"  # "cam" | "grad-cam"
    stride: dict[str, int] = field(default_factory=dict)  # view -> model-space pixels per map cell

    def upsampled(self, view: str = "frontal", size: tuple[int, int] | None = None) -> torch.Tensor:
        """The normalised maps of one view bilinearly resized to ``size`` (default: the model input size)."""
        cam = self.cams[view]
        size = size or (cam.shape[-2] * self.stride[view], cam.shape[-1] * self.stride[view])
        return F.interpolate(cam, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


#: What the colours of a heatmap mean (reports and the viewer print it next to the colour bar).
HEATMAP_MEANING = (
    "Relative to this map's own range in this film: the warmest colour (1) marks where the model found the most "
    "evidence for this finding, the coldest (0) where it found the least. The colours show where, not how likely "
    "(read the probability), and cannot be compared between findings or films."
)


#: Added to :data:`HEATMAP_MEANING` when the classifier was trained with the lung prior (``training.lung_prior``): the
#: reader must know that a lung finding's map lying in the lungs is what training asked for, not evidence in itself.
LUNG_PRIOR_MEANING = (
    "This model was trained to keep the maps of the lung findings (atelectasis, consolidation, edema, pneumonia, "
    "pneumothorax, lung lesion, lung opacity) inside the lung fields: that they lie in the lungs is by design; "
    "where within the lungs they are warmest is the model's evidence, coarsely (about an eighth of the image per cell)."
)


def heatmap_meaning(card: Any) -> str:
    """The sentence a report shows beside a classifier's heatmaps: :data:`HEATMAP_MEANING`, plus
    :data:`LUNG_PRIOR_MEANING` when the card's training used the lung prior (``loss.lung_cam_weight`` > 0)."""
    from cxrassist.weights.settings import card_dict

    loss = ((card_dict(card).get("training") or {}).get("config") or {}).get("loss") or {}
    try:
        prior = float(loss.get("lung_cam_weight") or 0.0) > 0
    except (TypeError, ValueError):
        prior = False
    return f"{HEATMAP_MEANING} {LUNG_PRIOR_MEANING}" if prior else HEATMAP_MEANING


def normalize_maps(raw: torch.Tensor) -> torch.Tensor:
    """Per image and class: ``(raw - min) / (max - min)`` over the map (see the module docstring for why).

    Never empty unless the map is constant (no spatial preference), which gives all zeros.
    """
    flat = raw.flatten(2)
    lo = flat.amin(dim=2)[..., None, None]
    span = flat.amax(dim=2)[..., None, None] - lo
    # A span at float noise level relative to the values is a constant map, not a localisation.
    tiny = 1e-6 * flat.abs().amax(dim=2)[..., None, None] + 1e-12
    return torch.where(span > tiny, ((raw - lo) / span.clamp(min=1e-12)).clamp(0, 1), torch.zeros_like(raw))


def regrid_map(cam: torch.Tensor, levels: int, stride: int, offset_px: float = 0.0) -> torch.Tensor:
    """Re-grid a (dense) map so that cell q is centred on model pixel ``(q + 0.5) * stride`` like any aligned map.

    Dense cell p is the network evaluated with its pooling grid shifted by p fine cells: its receptive field is
    centred ``(2**levels - 1) / 2`` cells further bottom-right than an aligned cell, plus the network's own
    ``offset_px`` (the odd-kernel stride-2 layers of stem, conv0 and pool0 shift the grid by -7.5 input pixels).
    Bilinear resampling; a no-op shift returns the map unchanged.

    Beyond the first/last dense sample there is no measurement, so those cells fade to the map's own minimum (the
    value outside is taken as the minimum). Edge replication, used before, gave the first ~1.3 rows and columns
    an exact copy of the edge samples while interior peaks were blended with their neighbours, so a border cell
    could out-rank the true peak (Lung Opacity's peak moved from cell (4, 4) to (0, 0)). With the fade a border
    cell can never exceed the edge sample it borders, and an interior peak stays where it is plus the shift.
    The price: the dense samples only shift one way, so no sample is centred in the top and left ~1.3 cells (at 256
    px with level 2: the first 56 px, where the lung apices can lie); the heat drawn there is a fade from the
    nearest sample, weaker than that sample. Sampling symmetric shifts (in ``models.densenet``) would remove it.
    """
    shift = (2**levels - 1) / 2 + offset_px / stride  # in cells; value at cell q = dense value at q - shift
    if abs(shift) < 1e-6:
        return cam
    b, _, h, w = cam.shape
    ys = (torch.arange(h, dtype=cam.dtype, device=cam.device) - shift + 0.5) * 2 / h - 1
    xs = (torch.arange(w, dtype=cam.dtype, device=cam.device) - shift + 0.5) * 2 / w - 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1).expand(b, h, w, 2)
    floor = cam.flatten(2).amin(dim=2)[..., None, None]
    shifted = F.grid_sample(cam - floor, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return shifted + floor


def _cam(features: torch.Tensor, classifier: nn.Linear) -> torch.Tensor:
    return torch.einsum("kc,bchw->bkhw", classifier.weight, features)


def cam_forward(model: nn.Module, x: torch.Tensor, dense_levels: int = 2) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(logits, raw re-gridded CAMs [B, K, h, w], model pixels per cell) of a single-view classifier in one pass.

    Differentiable (no ``no_grad`` here), so training can put a loss on the very maps that reports show
    (``training.lung_prior``); :func:`class_activation_maps` wraps it for inference.
    """
    net: Any = getattr(model, "module", model)  # a DenseNet-121 classifier, possibly inside DDP (duck-typed)
    classifier = getattr(net, "classifier", None)
    if not isinstance(classifier, nn.Linear):
        raise TypeError(f"{type(net).__name__} has no Linear 'classifier' head; use grad_cam(model, x, layer, k)")
    if hasattr(net, "block_config"):  # a 2-block test model has only one transition to densify
        dense_levels = min(dense_levels, len(net.block_config) - 1)
    if hasattr(net, "forward_features_dense"):
        dense_levels = max(dense_levels, 0)
        logits, feats = model(x, dense_levels)  # through forward: DDP syncs only what forward computed
        stride = net.reduction // 2**dense_levels if dense_levels else x.shape[-1] // feats.shape[-1]
    else:
        dense_levels = 0
        feats = net.forward_features(x)
        logits = net.forward_head(feats)
        stride = x.shape[-1] // feats.shape[-1]
    raw = regrid_map(_cam(feats, classifier), dense_levels, stride, getattr(net, "feature_offset_px", 0.0))
    return logits, raw, stride


def class_activation_maps(
    model: nn.Module,
    x: torch.Tensor,
    lateral: torch.Tensor | None = None,
    *,
    dense_levels: int = 2,
    lateral_present: torch.Tensor | None = None,
) -> CamOutput:
    """Logits and per-finding maps of a classifier for a batch (see the module docstring for the method used)."""
    from cxrassist.models.dual import DualBranchClassifier

    if isinstance(model, DualBranchClassifier):
        return _branch_grad_cams(model, x, lateral, lateral_present)
    if lateral is not None:
        raise ValueError(f"{type(model).__name__} is a single-view model; it takes no lateral view")
    with torch.no_grad():
        logits, raw, stride = cam_forward(model, x, dense_levels)
    return CamOutput(
        logits=logits,
        cams={"frontal": normalize_maps(raw)},
        raw={"frontal": raw},
        method="cam",
        stride={"frontal": stride},
    )


def _grad_weighted(acts: list[torch.Tensor], logits: torch.Tensor) -> list[torch.Tensor]:
    """Grad-CAM raw maps [B, K, h, w] for each activation in ``acts`` (one backward pass per class)."""
    out: list[list[torch.Tensor]] = [[] for _ in acts]
    k_total = logits.shape[1]
    for k in range(k_total):
        grads = torch.autograd.grad(logits[:, k].sum(), acts, retain_graph=k < k_total - 1, allow_unused=True)
        for i, (a, g) in enumerate(zip(acts, grads, strict=True)):
            if g is None:
                g = torch.zeros_like(a)
            weights = g.mean(dim=(2, 3), keepdim=True)
            out[i].append((weights * a).sum(1))
    return [torch.stack(maps, 1).detach() for maps in out]


def _branch_grad_cams(
    model: Any, frontal: torch.Tensor, lateral: torch.Tensor | None, lateral_present: torch.Tensor | None
) -> CamOutput:
    with torch.no_grad():  # gradients are only needed from the branch outputs on
        f_map, l_map = model.forward_branches(frontal, lateral, lateral_present)
    with torch.enable_grad():
        f_map = f_map.detach().requires_grad_(True)
        l_map = l_map.detach().requires_grad_(True)
        logits = model.forward_head(model.forward_trunk(f_map, l_map))
        views = ["frontal"] + (["lateral"] if lateral is not None else [])
        acts = [f_map, l_map][: len(views)]
        raws = _grad_weighted(acts, logits)
    raw = dict(zip(views, raws, strict=True))
    if lateral is not None and lateral_present is not None:  # no map for a stand-in
        raw["lateral"] = raw["lateral"] * lateral_present.to(raw["lateral"].device, torch.float32)[:, None, None, None]
    return CamOutput(
        logits=logits.detach(),
        cams={v: normalize_maps(r) for v, r in raw.items()},
        raw=raw,
        method="grad-cam",
        stride=dict.fromkeys(views, model.branch_reduction),
    )


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    target_layer: nn.Module,
    class_index: int | list[int] | None = None,
    **forward_kwargs: object,
) -> torch.Tensor:
    """Grad-CAM at any layer of any model whose forward returns [B, K] logits.

    Returns normalised maps [B, h, w] for an int ``class_index``, else [B, K', h, w] (all classes when None).
    ``forward_kwargs`` go to ``model(x, ...)`` (e.g. ``lateral=`` for the dual-branch model).
    """
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inp: object, output: torch.Tensor) -> None:
        captured.append(output)

    handle = target_layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(x, **forward_kwargs)
            if not captured:
                raise ValueError("target_layer was not used in the forward pass")
            act = captured[-1]
            indices = (
                range(logits.shape[1])
                if class_index is None
                else ([class_index] if isinstance(class_index, int) else list(class_index))
            )
            raw = _grad_weighted([act], logits[:, list(indices)])[0]
    finally:
        handle.remove()
    maps = normalize_maps(raw)
    return maps[:, 0] if isinstance(class_index, int) else maps
