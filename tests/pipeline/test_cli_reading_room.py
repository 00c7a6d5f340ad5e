"""CLI fixes of issue 16 (item 9): --model by the card's name, `cxr models` at 80 columns, why the spacing is
unknown, and the status lines while the models load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_models_table_keeps_names_whole_at_80_columns(cxr_main, monkeypatch: pytest.MonkeyPatch) -> None:
    from cxrassist.models.registry import list_models
    from cxrassist.weights.catalog import list_shipped

    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = cxr_main(["models"])
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 80
    words = set(out.replace("│", " ").split())
    missing = [n for n in list_models() if n not in words]
    assert not missing, missing  # each registry name on one line, whole (copyable)
    for card in list_shipped():
        assert card.name in words, card.name


def test_model_found_by_its_card_name(cxr_main) -> None:
    """The name `cxr models` prints (the card's) resolves, like the folder name does."""
    from cxrassist.weights.catalog import list_shipped
    from cxrassist.weights.store import load_model

    lung = next(c for c in list_shipped() if c.name.endswith("lungseg"))
    _, by_card = load_model(lung.name)
    _, by_folder = load_model("lungseg")
    assert by_card.sha256 == by_folder.sha256 == lung.sha256
    code, _, err = cxr_main(["evaluate", "lung", "--model", "no-such-model", "--manifest", "missing.csv"])
    assert code != 0 and "no-such-model" in err and lung.name in err and len(err.strip().splitlines()) == 1


def test_info_says_why_the_spacing_is_unknown(cxr_main, rg1_file: Path) -> None:
    code, out, err = cxr_main(["info", str(rg1_file)])
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("spacing"))
    assert "unknown (PixelSpacing is 0\\0 (not positive); ImagerPixelSpacing absent" in line


def test_analyze_says_models_are_loading(tiny_weights_dir: Path, phantom_png: Path, tmp_path: Path, cxr_main) -> None:
    out = tmp_path / "r"
    code, _, err = cxr_main(
        [
            "analyze",
            str(phantom_png),
            "--out",
            str(out),
            "--weights",
            str(tiny_weights_dir),
            "--format",
            "json",
            "--progress",
        ]
    )
    assert code == 0, err
    lines = err.splitlines()
    assert lines[0].startswith("loading models (") and lines[1].startswith("models loaded in ")
    assert json.loads((out / "report.json").read_text())["impression"]
    # without a terminal and without --progress: quiet (one-line errors stay one line)
    code, _, err = cxr_main(
        ["analyze", str(phantom_png), "--out", str(out), "--weights", str(tiny_weights_dir), "--format", "json"]
    )
    assert code == 0 and "loading models" not in err
