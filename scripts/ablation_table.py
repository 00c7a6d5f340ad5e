"""Print the design's ablation table from `cxr evaluate classifier --json` outputs.

    python scripts/ablation_table.py runs/ablation/abl-1ch-nih.json runs/ablation/abl-2ch-nih.json ...

Each JSON is one row (its model name and channels are read from the file); columns are the 13 findings in the
design's order, then the mean over all findings with positives and over those with >= 10 positives.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cxrassist.labels import FINDING_CODES


def row(path: Path) -> str:
    res = json.loads(path.read_text())
    cells = []
    for code in FINDING_CODES:
        v = res["auroc"].get(code)
        cells.append("n/a" if v is None else f"{v:.3f}")
    mean = res.get("mean_auroc")
    solid = res.get("mean_auroc_min_pos")
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    return f"| {res['model']} | {res['n_cases']} | " + " | ".join(cells) + f" | {fmt(mean)} | {fmt(solid)} |"


def main(paths: list[str]) -> None:
    head = "| model | n | " + " | ".join(FINDING_CODES) + " | AVG | AVG (>=10 pos) |"
    print(head)
    print("|" + "---|" * (len(FINDING_CODES) + 4))
    for p in paths:
        print(row(Path(p)))


if __name__ == "__main__":
    main(sys.argv[1:])
