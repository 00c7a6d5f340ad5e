"""Patient-disjoint splits with an explicit seed (a local generator; the global RNG is never touched)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from cxrassist.data.records import Record
from cxrassist.errors import ConfigError


def patient_split(
    records: Sequence[Record], fractions: Mapping[str, float], *, seed: int, only_unassigned: bool = False
) -> list[Record]:
    """Assign ``split`` so that every patient (:attr:`Record.group`) falls in exactly one split.

    Groups are shuffled with ``numpy.random.default_rng(seed)`` and filled in the order of ``fractions`` until each
    split holds its share of the *records*. With ``only_unassigned`` records that already have a split (an official
    test list) keep it, and only the others are distributed.
    """
    total = sum(fractions.values())
    if total <= 0 or any(v < 0 for v in fractions.values()):
        raise ConfigError(f"split fractions must be >= 0 and sum to > 0, got {dict(fractions)}")
    todo = [r for r in records if not (only_unassigned and r.split)]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(todo):
        groups[r.group].append(i)
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    names = list(fractions)
    targets = np.cumsum([fractions[n] / total * len(todo) for n in names])
    assigned: dict[int, str] = {}
    filled = 0
    k = 0
    for gi in order:
        idx = groups[keys[gi]]
        while k < len(names) - 1 and filled >= targets[k] - 1e-9:
            k += 1
        for i in idx:
            assigned[i] = names[k]
        filled += len(idx)
    out = []
    j = 0
    for r in records:
        if only_unassigned and r.split:
            out.append(r)
        else:
            out.append(r.with_(split=assigned[j]))
            j += 1
    return out


def check_disjoint(records: Sequence[Record]) -> None:
    """Raise if a patient appears in two splits (a leak that inflates every validation number)."""
    seen: dict[str, str] = {}
    for r in records:
        prev = seen.setdefault(r.group, r.split)
        if prev != r.split:
            raise ConfigError(f"patient group {r.group.split(':')[0]}:<id> is in splits {prev!r} and {r.split!r}")
