"""Test-time zooms (cxrassist.tta): what the views are, that the triage score averages them, that cards validate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrassist.errors import WeightsError
from cxrassist.tta import card_zooms, tta_logits, zoom_views


def test_zoom_views_keep_the_centred_square() -> None:
    x = torch.zeros(1, 1, 64, 64)
    x[..., 16:48, 16:48] = 1.0  # a bright centred square of half the side
    views = zoom_views(x, (1.0, 0.5))
    assert views.shape == (2, 1, 64, 64)
    assert torch.equal(views[0], x[0])  # zoom 1.0 is the film itself, untouched
    # zoom 0.5 keeps the centred half side: the square now fills the view (only the outermost pixel row blends
    # with the dark border, bilinear)
    assert float(views[1][..., 1:-1, 1:-1].min()) > 0.99 and float(views[1].min()) > 0.5
    assert float(x.mean()) == pytest.approx(0.25) and float(views[1].mean()) > 0.9


class _MeanModel(torch.nn.Module):
    """Logit = mean intensity of the image: makes the expected average easy to write down."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3))[:, None]


def test_tta_logits_average_the_views_per_image() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 32, 32, generator=g)
    x[1, :, 8:24, 8:24] += 2.0  # images differ in their centre: the zoom changes their logits differently
    zooms = (1.0, 0.9, 0.5)
    got = tta_logits(_MeanModel(), x, zooms)
    views = zoom_views(x, zooms).reshape(3, 3, 1, 32, 32)
    want = torch.stack([views[v].mean(dim=(1, 2, 3)) for v in range(3)]).mean(0)[:, None]
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, _MeanModel()(x))  # the views really changed the score
    assert torch.equal(tta_logits(_MeanModel(), x, (1.0,)), _MeanModel()(x))  # one plain view = the model itself


def test_card_zooms_default_and_refusals() -> None:
    assert card_zooms({"input": {"size": 256}}) == (1.0,)
    assert card_zooms({"input": {"tta_zooms": [1, 0.95, 0.9]}}) == (1.0, 0.95, 0.9)
    for bad in ([], [1.2], [0.0], ["wide"], 0.9):
        with pytest.raises(WeightsError, match="tta_zooms"):
            card_zooms({"input": {"tta_zooms": bad}})


def test_pipeline_triage_score_uses_the_cards_zooms(tiny_kwargs: dict, phantom_png: Path) -> None:
    from cxrassist.io import read_xray
    from cxrassist.pipeline import ROLES, Pipeline, build_untrained

    torch.manual_seed(0)
    models = {role: build_untrained(role, **dict(tiny_kwargs[role])) for role in ROLES}
    xray = read_xray(phantom_png)
    plain = Pipeline(**models).analyze(xray).triage.abnormal_probability
    model, card = models["triage"]
    one = Pipeline(**{**models, "triage": (model, dataclasses.replace(card, input={**card.input, "tta_zooms": [1.0]}))})
    assert one.analyze(xray).triage.abnormal_probability == pytest.approx(plain, abs=1e-6)
    zoomed_card = dataclasses.replace(card, input={**card.input, "tta_zooms": [1.0, 0.8, 0.6]})
    zoomed = Pipeline(**{**models, "triage": (model, zoomed_card)}).analyze(xray).triage.abnormal_probability
    assert abs(zoomed - plain) > 1e-6  # the score is the zoom average, not the plain view
    assert np.isfinite(zoomed) and 0 < zoomed < 1
    bad = dataclasses.replace(card, input={**card.input, "tta_zooms": [1.5]})
    with pytest.raises(WeightsError, match="tta_zooms"):
        Pipeline(**{**models, "triage": (model, bad)})  # refused when the models load, before any film
