"""Finding weights on disk without torch: the shipped directory, card listing, file hashes."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from cxrassist.errors import WeightsError
from cxrassist.weights.card import CARD_FILE, ModelCard

logger = logging.getLogger(__name__)


def shipped_dir() -> Path:
    """Where the shipped weights live: ``cxrassist/weights/shipped/<name>/{model.safetensors, card.json}``."""
    return Path(__file__).resolve().parent / "shipped"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _cards_in(directory: Path) -> list[ModelCard]:
    if not directory.is_dir():
        return []
    cards = []
    for sub in sorted(p for p in directory.iterdir() if (p / CARD_FILE).is_file()):
        try:
            cards.append(ModelCard.read(sub / CARD_FILE))
        except WeightsError as exc:
            logger.warning("skipping unreadable model card in %s: %s", sub, exc)
    return cards


def list_shipped(directory: str | Path | None = None) -> list[ModelCard]:
    """The cards of the shipped models (or of every ``<dir>/<name>/card.json`` under ``directory``)."""
    return _cards_in(Path(directory) if directory else shipped_dir())
