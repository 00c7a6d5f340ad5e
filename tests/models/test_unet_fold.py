"""The lung U-Net folded for inference (batch norm into the convolutions, channels-last memory): the same logits,
and it refuses to train (the pipeline's use: tests/pipeline/test_bone_fold_pipeline.py)."""

from __future__ import annotations

import pytest
import torch

from cxrassist.models import create_model


@pytest.mark.parametrize("batch_norm", [True, False])
def test_folded_unet_gives_the_same_logits(batch_norm: bool) -> None:
    torch.manual_seed(0)
    built = create_model("lungseg-vgg16unet-compact", width=0.125, batch_norm=batch_norm).eval()
    with torch.no_grad():  # batch norms with statistics that are not the identity, so folding has work to do
        for m in built.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    folded = create_model("lungseg-vgg16unet-compact", width=0.125, batch_norm=batch_norm)
    folded.load_state_dict(built.state_dict())
    folded.fold_for_inference()
    assert folded.folded and folded.fold_for_inference() is folded  # idempotent
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 1, 64, 96)
    with torch.inference_mode():
        want, got = built(x), folded(x)
    assert got.shape == want.shape == (2, 1, 64, 96)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    with pytest.raises(RuntimeError, match="folded for inference"):
        folded.train()
    folded.eval()  # eval stays allowed
