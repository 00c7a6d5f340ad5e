"""Model cards (JSON round trip, defaults) and the ``cxr models`` command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from tiny_models import tiny_kwargs
from typer.testing import CliRunner

from cxrassist.errors import WeightsError
from cxrassist.labels import FINDING_NAMES
from cxrassist.models import create_model, list_models
from cxrassist.weights import INTENDED_USE, ModelCard, list_shipped, save_weights


def test_card_defaults_and_json_round_trip() -> None:
    card = ModelCard.new(
        "dn121-512-lung-bone",
        version="1.2.0",
        metrics={"auroc_macro": 0.81},
        thresholds={"Edema": 0.3},
        validated={"Edema": True},
    )
    assert card.labels == list(FINDING_NAMES)
    assert card.input["channels"] == ["radiograph", "lung_segmented", "bone_subtracted"]
    assert card.thresholds["Edema"] == 0.3 and card.thresholds["Pneumothorax"] == 0.5
    assert card.validated["Edema"] and not card.validated["Fracture"]
    assert card.intended_use == INTENDED_USE and card.status == "untrained"
    again = ModelCard.from_json(card.to_json())
    assert again == card
    data = card.to_dict() | {"future_field": 1}
    assert ModelCard.from_dict(data).extra == {"future_field": 1}
    assert ModelCard.from_dict(data).to_dict()["future_field"] == 1
    with pytest.raises(WeightsError, match="status"):
        ModelCard(name="x", architecture="dn121-512", status="great")
    with pytest.raises(WeightsError, match="not valid JSON"):
        ModelCard.from_json("{")
    dual = ModelCard.new("dn121-512-dual-lung")
    assert dual.input["channels"] == ["radiograph", "lung_segmented"]
    assert dual.input["lateral_channels"] == ["radiograph"]


@pytest.fixture()
def weights_dir(tmp_path):
    name = "triage-dn121-512"
    model = create_model(name, **tiny_kwargs(name))
    card = ModelCard.new(
        name,
        name="triage-test",
        kwargs=tiny_kwargs(name),
        status="trained",
        metrics={"auroc": 0.912, "val": {"loss": 0.25}},
    )
    save_weights(model, tmp_path / "triage-test", card, dtype=torch.float16)
    return tmp_path


def test_list_shipped_reads_cards(weights_dir) -> None:
    cards = list_shipped(weights_dir)
    assert [c.name for c in cards] == ["triage-test"] and cards[0].status == "trained"


def test_cli_models_json_and_table(weights_dir) -> None:
    from cxrassist.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["models", "--json", "--weights-dir", str(weights_dir)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [r["name"] for r in data["registry"]] == list_models()
    (shipped,) = data["shipped"]
    assert shipped["status"] == "trained" and shipped["metrics"] == {"auroc": 0.912, "val": {"loss": 0.25}}
    assert len(shipped["sha256"]) == 12
    card = json.loads((weights_dir / "triage-test" / "card.json").read_text())
    assert card["sha256"].startswith(shipped["sha256"])
    table = runner.invoke(app, ["models", "--weights-dir", str(weights_dir)], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "triage-test" in table.output
    assert "auroc=0.912" in table.output and "val.loss=0.250" in table.output
    assert "lungseg-vgg16unet-compact" in table.output


def test_cli_models_does_not_import_torch() -> None:
    code = (
        "import sys; from cxrassist.cli import main\n"
        "try:\n    main(['models', '--json'])\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO_TORCH')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().endswith("NO_TORCH"), out.stdout[-300:] + out.stderr[-300:]
