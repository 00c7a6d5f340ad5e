"""The one "make this JSON-safe" helper (model cards, reports, training export, evaluation results).

No heavy imports on purpose (no numpy, no torch): ``weights/card.py`` and ``cxr models`` must stay torch-free and
fast, so numpy/torch values are recognised by duck typing (``tolist``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

_JSON_KEY_TYPES = (str, int, float, bool)


def jsonable(value: Any, *, strict: bool = False) -> Any:
    """``value`` as plain JSON types, recursively; NaN and +/-inf become ``None``.

    Why None: ``json.dumps`` would write ``NaN``/``Infinity``, which strict parsers (browsers' ``JSON.parse``, the
    report viewer) reject, and a metric that could not be measured is "no value", not a number.
    Mappings -> dict (keys json cannot take become ``str``), list/tuple/set -> list, numpy/torch scalars and arrays ->
    Python numbers/lists, paths -> str. Anything else is returned unchanged, or with ``strict=True`` raises
    ``TypeError`` (model cards must hold JSON only).
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):  # also numpy float64, a float subclass
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {
            (k if k is None or isinstance(k, _JSON_KEY_TYPES) else str(k)): jsonable(v, strict=strict)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, strict=strict) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars / arrays, torch tensors
        return jsonable(value.tolist(), strict=strict)
    if strict:
        raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
    return value
