"""Saving and loading weights: ``model.safetensors`` + ``card.json``, sha256-verified, never unpickled."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cxrassist.errors import HashMismatchError, UnknownModelError, WeightsError
from cxrassist.weights.card import CARD_FILE, WEIGHTS_FILE, ModelCard, today
from cxrassist.weights.catalog import _cards_in, sha256_file, shipped_dir

logger = logging.getLogger(__name__)

#: Kwargs that only matter at construction time and must not be replayed when rebuilding from a card.
_BUILD_ONLY_KWARGS = ("imagenet_weights",)


def _tuples(obj: Any) -> Any:
    """JSON lists back to tuples (``block_config``), recursively."""
    if isinstance(obj, list):
        return tuple(_tuples(v) for v in obj)
    if isinstance(obj, dict):
        return {k: _tuples(v) for k, v in obj.items()}
    return obj


def _rebuild_kwargs(card: ModelCard) -> dict[str, Any]:
    return {k: _tuples(v) for k, v in card.kwargs.items() if k not in _BUILD_ONLY_KWARGS}


def save_weights(
    model: nn.Module, directory: str | Path, card: ModelCard, *, dtype: torch.dtype = torch.float32
) -> ModelCard:
    """Write ``directory/model.safetensors`` and ``directory/card.json``; return the card with sha256 filled in.

    Checks first that ``create_model(card.architecture, **card.kwargs)`` has exactly this state dict's keys and
    shapes (on the meta device, so it costs nothing): a card that cannot rebuild its model is refused at save time.
    """
    from safetensors.torch import save_file

    from cxrassist.models.registry import create_model

    if dtype not in (torch.float32, torch.float16):
        raise ValueError(f"dtype must be torch.float32 or torch.float16, got {dtype}")
    state = model.state_dict()
    with torch.device("meta"):
        try:
            ref = create_model(card.architecture, **_rebuild_kwargs(card)).state_dict()
        except UnknownModelError:
            raise
        except Exception as exc:  # any constructor failure means the card is wrong
            raise WeightsError(f"card cannot rebuild {card.architecture!r} with kwargs {card.kwargs}: {exc}") from exc
    bad = sorted(set(ref) ^ set(state)) or [k for k in ref if tuple(ref[k].shape) != tuple(state[k].shape)]
    if bad:
        raise WeightsError(f"model does not match card architecture {card.architecture!r} + kwargs: {bad[:3]}")
    tensors = {}
    for k, v in state.items():
        t = v.detach().to("cpu")
        if t.is_floating_point():
            t = t.to(dtype)
        tensors[k] = t.contiguous().clone()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights_path = directory / WEIGHTS_FILE
    save_file(tensors, str(weights_path), metadata={"architecture": card.architecture, "name": card.name})
    card = dataclasses.replace(
        card,
        sha256=sha256_file(weights_path),
        storage_dtype=str(dtype).replace("torch.", ""),
        num_parameters=sum(p.numel() for p in model.parameters()),
        date=card.date or today(),
    )
    card.write(directory / CARD_FILE)
    logger.info("saved %s (%s, %s) to %s", card.name, card.architecture, card.storage_dtype, directory)
    return card


def _cards_in_one(folder: Path) -> list[ModelCard]:
    try:
        return [ModelCard.read(folder / CARD_FILE)]
    except WeightsError:
        return []


def _resolve(name_or_path: str | Path, search_dirs: list[Path]) -> tuple[Path, Path]:
    """(weights file, card file) for a shipped name, a directory, or a ``.safetensors`` with its card beside it."""
    path = Path(name_or_path)
    if path.is_dir():
        return path / WEIGHTS_FILE, path / CARD_FILE
    if path.suffix == ".safetensors":
        for card in (path.with_suffix(".json"), path.parent / f"{path.stem}.card.json", path.parent / CARD_FILE):
            if card.is_file():
                return path, card
        return path, path.parent / CARD_FILE
    if path.suffix in (".pt", ".pth", ".ckpt", ".bin"):
        raise WeightsError(
            f"{path}: load_model reads safetensors + card only; import torch files with "
            "cxrassist.models.read_state_dict (weights_only) and save_weights"
        )
    for base in search_dirs:
        if (base / str(name_or_path)).is_dir():
            return base / str(name_or_path) / WEIGHTS_FILE, base / str(name_or_path) / CARD_FILE
    for base in search_dirs:  # the card's name (what `cxr models` prints), not only the folder's
        if base.is_dir():
            for sub in sorted(p for p in base.iterdir() if (p / CARD_FILE).is_file()):
                if any(c.name == str(name_or_path) for c in _cards_in_one(sub)):
                    return sub / WEIGHTS_FILE, sub / CARD_FILE
    known = [c.name for d in search_dirs for c in _cards_in(d)]
    raise UnknownModelError(f"no weights named {str(name_or_path)!r}; shipped: {', '.join(known) or 'none'}")


def load_model(
    name_or_path: str | Path,
    *,
    map_location: str | torch.device = "cpu",
    search_dirs: list[str | Path] | None = None,
    inference: bool = False,
) -> tuple[nn.Module, ModelCard]:
    """Rebuild a model from its card and load its verified weights (fp16-stored -> float32 model, eval mode).

    ``inference=True``: the model will only run forward, so it is folded for that
    (:func:`cxrassist.models.fold.prepare_for_inference`; the bone generator's spectral norm, batch norm and
    upsampling and the lung U-Net's batch norms fold into plain weights, same outputs up to float rounding). Its
    state dict then differs from the card's: leave it False to train on from the weights or to save them again.
    """
    from safetensors.torch import load_file

    from cxrassist.models.registry import create_model

    dirs = [Path(d) for d in search_dirs] if search_dirs else [shipped_dir()]
    weights_path, card_path = _resolve(name_or_path, dirs)
    if not weights_path.is_file():
        raise WeightsError(f"weights file not found: {weights_path}")
    card = ModelCard.read(card_path)
    if not card.sha256:
        raise WeightsError(f"{card_path}: model card has no sha256; refusing unverified weights")
    actual = sha256_file(weights_path)
    if actual != card.sha256:
        raise HashMismatchError(f"{weights_path}: sha256 {actual} does not match the model card's {card.sha256}")
    try:
        state = load_file(str(weights_path), device=str(map_location))
    except Exception as exc:  # safetensors raises its own error types
        raise WeightsError(f"{weights_path}: cannot read safetensors ({exc})") from exc
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model = create_model(card.architecture, **_rebuild_kwargs(card))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{weights_path}: weights do not fit {card.architecture!r}: {str(exc)[:300]}") from exc
    model.to(map_location).eval()
    if inference:
        from cxrassist.models.fold import prepare_for_inference

        prepare_for_inference(model)
    return model, card
