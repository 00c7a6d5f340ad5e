"""scripts/ablation_table.py --oof: out-of-fold rows compared film by film with a paired bootstrap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cxrassist.labels import FINDING_CODES


@pytest.fixture(scope="module")
def table(load_script):
    return load_script("ablation_table")


def _write(root: Path, name: str, ids: list[str], y: np.ndarray, p: np.ndarray) -> Path:
    from cxrassist.evaluation.metrics import auroc

    out = root / name / "oof.json"
    out.parent.mkdir(parents=True)
    codes = ["AT", "PE"]
    per = {c: {"auroc": auroc(y[:, FINDING_CODES.index(c)], p[:, FINDING_CODES.index(c)])} for c in codes}
    out.write_text(json.dumps({"recipe": name, "findings": per, "mean_over": codes, "reference_mean": 0.77}))
    np.savez_compressed(out.with_suffix(".npz"), ids=np.array(ids), y=y, p=p)
    return out


def test_oof_rows_are_compared_on_the_same_films(table, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 300
    ids = [f"f{i}" for i in range(n)]
    y = np.full((n, len(FINDING_CODES)), np.nan)
    for c in ("AT", "PE"):
        y[:, FINDING_CODES.index(c)] = rng.random(n) < 0.3
    noise = rng.normal(size=y.shape)
    weak = np.nan_to_num(y) * 0.3 + noise  # barely informative
    strong = np.nan_to_num(y) * 2.0 + noise  # the same noise, far more signal
    a = _write(tmp_path, "weak", ids, y, weak)
    order = rng.permutation(n)  # another file order: rows are matched by film id
    b = _write(tmp_path, "strong", [ids[i] for i in order], y[order], strong[order])
    text = table.oof_table([a, b], boot=200)
    weak_row, strong_row = (line for line in text.splitlines() if line.startswith(("| weak", "| strong")))
    assert weak_row.split("|")[-2].strip() == "—"
    diff, lo, hi = (float(v) for v in _numbers(strong_row.split("|")[-2]))
    assert 0 < lo < diff < hi  # a real gain: the paired CI excludes 0
    assert "| CheXNet reference, same films |" in text and "0.770" in text
    twin = _write(tmp_path, "twin", ids, y, weak)  # the same predictions again: no difference, no spread
    same = table.oof_table([a, twin], boot=100).splitlines()[-2]
    assert _numbers(same.split("|")[-2]) == [0.0, 0.0, 0.0]
    other = _write(tmp_path, "other", ids[:-1], y[:-1], weak[:-1])
    with pytest.raises(SystemExit, match="not the same films"):
        table.oof_table([a, other], boot=10)


def _numbers(cell: str) -> list[float]:
    import re

    return [float(v) for v in re.findall(r"[+-]?\d+\.\d+", cell)]
