"""Importing DenseNet-121 weights (torchvision / old torchvision / CheXNet / torchxrayvision) and triage ->
classifier."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision
from tiny_models import TINY_DENSENET

from cxrassist.errors import WeightsError
from cxrassist.models import (
    adapt_input_conv,
    create_model,
    import_densenet121_state_dict,
    init_classifier_from_triage,
    read_state_dict,
)


@pytest.fixture(scope="module")
def tv_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    return torchvision.models.densenet121(weights=None).state_dict()


def _old_style(key: str) -> str:
    return re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key)


def _layouts(tv: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    chexnet = {f"module.densenet121.{_old_style(k)}": v for k, v in tv.items() if not k.startswith("classifier")}
    chexnet["module.densenet121.classifier.0.weight"] = torch.randn(14, 1024)
    chexnet["module.densenet121.classifier.0.bias"] = torch.randn(14)
    xrv = {k: v for k, v in tv.items() if not k.startswith("classifier")}
    xrv["features.conv0.weight"] = tv["features.conv0.weight"].sum(1, keepdim=True)  # xrv models are 1-channel
    xrv["classifier.weight"], xrv["classifier.bias"] = torch.randn(18, 1024), torch.randn(18)
    old = {_old_style(k): v for k, v in tv.items()}
    return {"torchvision": dict(tv), "torchvision-old": old, "chexnet": chexnet, "torchxrayvision": xrv}


@pytest.mark.parametrize("layout", ["torchvision", "torchvision-old", "chexnet", "torchxrayvision"])
def test_import_layouts(tv_state, layout: str) -> None:
    source = _layouts(tv_state)[layout]
    model = create_model("dn121-512")
    head_before = model.classifier.weight.clone()
    report = import_densenet121_state_dict(model, source)
    assert report.source_layout == {"torchvision-old": "torchvision"}.get(layout, layout)
    assert not report.missing and report.loaded == len([k for k in tv_state if k.startswith("features.")])
    own = model.state_dict()
    for key in (
        "features.denseblock3.denselayer7.conv2.weight",
        "features.norm5.running_var",
        "features.transition2.conv.weight",
    ):
        torch.testing.assert_close(own[key], tv_state[key])
    if layout == "torchxrayvision":  # 1 -> 3 channels: replicated and scaled by 1/3 (same response to gray)
        assert any("conv0" in a for a in report.adapted)
        w1 = tv_state["features.conv0.weight"].sum(1, keepdim=True)
        torch.testing.assert_close(own["features.conv0.weight"], w1.repeat(1, 3, 1, 1) / 3)
    else:
        torch.testing.assert_close(own["features.conv0.weight"], tv_state["features.conv0.weight"])
    assert torch.equal(model.classifier.weight, head_before)  # heads of other label sets are never imported
    assert report.head == {"chexnet": (14, 1024), "torchxrayvision": (18, 1024)}.get(layout, (1000, 1024))


def test_import_into_dual_branch_and_adapted_stem_width(tv_state) -> None:
    dual = create_model("dn121-512-dual")
    report = import_densenet121_state_dict(dual, tv_state)
    sd = dual.state_dict()
    for branch in ("frontal", "lateral"):
        torch.testing.assert_close(
            sd[f"{branch}.features.denseblock2.denselayer3.conv1.weight"],
            tv_state["features.denseblock2.denselayer3.conv1.weight"],
        )
    torch.testing.assert_close(
        sd["features.denseblock4.denselayer16.conv2.weight"], tv_state["features.denseblock4.denselayer16.conv2.weight"]
    )
    assert not report.missing
    one = create_model("dn121-512", stem_channels=1)
    rep = import_densenet121_state_dict(one, tv_state)
    torch.testing.assert_close(
        one.state_dict()["features.conv0.weight"], tv_state["features.conv0.weight"].sum(1, keepdim=True)
    )
    assert rep.adapted


def test_adapt_input_conv_preserves_response_to_equal_channels() -> None:
    w = torch.randn(8, 3, 7, 7)
    gray = torch.randn(1, 1, 16, 16)
    ref = torch.nn.functional.conv2d(gray.repeat(1, 3, 1, 1), w)
    for c in (1, 2, 5):
        out = torch.nn.functional.conv2d(gray.repeat(1, c, 1, 1), adapt_input_conv(w, c))
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_import_rejects_wrong_architecture() -> None:
    small = create_model("dn121-512", **TINY_DENSENET).state_dict()
    with pytest.raises(WeightsError, match="shape mismatch"):
        import_densenet121_state_dict(create_model("dn121-512"), small)
    with pytest.raises(WeightsError, match="not a DenseNet"):
        import_densenet121_state_dict(create_model("dn121-512"), {"foo.weight": torch.zeros(1)})


def test_read_state_dict_torch_file_weights_only(tmp_path) -> None:
    path = tmp_path / "chexnet.pth.tar"
    torch.save({"epoch": 3, "state_dict": {"module.densenet121.features.conv0.weight": torch.ones(2)}}, path)
    assert set(read_state_dict(path)) == {"module.densenet121.features.conv0.weight"}

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception):  # noqa: B017 - the refusal type is torch's and varies by version
        read_state_dict(tmp_path / "evil.pt")  # weights_only refuses to unpickle code


@pytest.mark.parametrize("target", ["dn121-512", "dn121-512-lung-bone", "dn121-512-dual-lung"])
def test_init_classifier_from_triage(target: str) -> None:
    triage = create_model("triage-dn121-512", **TINY_DENSENET).eval()
    with torch.no_grad():  # give the triage model distinctive weights
        for p in triage.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    clf = create_model(target, **TINY_DENSENET).eval()
    head = clf.classifier.weight.clone()
    report = init_classifier_from_triage(clf, triage)
    assert report.loaded > 0 and torch.equal(clf.classifier.weight, head)
    x = torch.randn(2, 1, 128, 128)
    if target == "dn121-512-dual-lung":
        sd, tsd = clf.state_dict(), triage.state_dict()
        torch.testing.assert_close(
            sd["frontal.features.denseblock1.denselayer1.conv1.weight"],
            tsd["features.denseblock1.denselayer1.conv1.weight"],
        )
        torch.testing.assert_close(
            sd["features.denseblock4.denselayer1.conv2.weight"], tsd["features.denseblock4.denselayer1.conv2.weight"]
        )
        return
    # extra channels start at zero, so the classifier's features equal the triage features on the radiograph
    extra = torch.randn(2, clf.in_chans - 1, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(clf.forward_features(torch.cat([x, extra], 1)), triage.forward_features(x))
