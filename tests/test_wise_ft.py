"""WiSE-FT interpolation (pose3dfr.eval.wise_ft): its ends are the two networks it interpolates."""

from __future__ import annotations

import torch

from pose3dfr.eval.wise_ft import interpolate
from pose3dfr.models import create_model
from pose3dfr.models.io import pretrained_dlib_model


def test_wise_ft_interpolation_ends_at_the_pretrained_and_the_finetuned_weights():
    pretrained, _ = pretrained_dlib_model()
    finetuned = create_model("jam", backbone="dlib_resnet", num_classes=3, jam_gamma_init=0.5)  # a stand-in fine-tune
    finetuned.backbone.load_state_dict({k: v + 0.01 for k, v in pretrained.backbone.state_dict().items()})
    start, end = interpolate(finetuned, pretrained, 0.0), interpolate(finetuned, pretrained, 1.0)
    fc = "backbone.fc.weight"
    assert torch.equal(start.state_dict()[fc], pretrained.state_dict()[fc])
    assert torch.equal(end.state_dict()[fc], finetuned.state_dict()[fc])
    assert float(start.attention.gamma["2d"]) == 0.0  # no attention at alpha 0: the pretrained network
    half = interpolate(finetuned, pretrained, 0.5).state_dict()[fc]
    assert torch.allclose(half, (pretrained.state_dict()[fc] + finetuned.state_dict()[fc]) / 2)
