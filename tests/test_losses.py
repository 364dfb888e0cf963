"""Joint entropy / mutual information / identity loss: analytic values, ordering, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pose3dfr.losses import (identity_loss, joint_entropy, joint_histogram, mutual_information,
                             rescale_attention)


def _random_attention(b: int, n: int, seed: int, sharp: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(b, n, n, generator=g) * sharp, dim=-1)


def test_joint_entropy_matches_hand_computed_case():
    # Values exactly on the centres of 2 bins (0.25, 0.75) and a tiny kernel: hard counts.
    # Pairs (lo,lo), (lo,hi), (hi,hi), (hi,hi) -> P = [[1/4, 1/4], [0, 1/2]].
    a2 = torch.tensor([[0.25, 0.25, 0.75, 0.75]]).view(1, 2, 2)
    a3 = torch.tensor([[0.25, 0.75, 0.75, 0.75]]).view(1, 2, 2)
    expected = -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    p = joint_histogram(a2, a3, bins=2, bandwidth=0.01, rescale="none")
    assert torch.allclose(p[0], torch.tensor([[0.25, 0.25], [0.0, 0.5]]), atol=1e-6)
    got = joint_entropy(a2, a3, bins=2, bandwidth=0.01, rescale="none")
    assert got.item() == pytest.approx(expected, abs=1e-5)
    # MI of the same case: H(A2) = log 2, H(A3) = H(1/4, 3/4).
    h3 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    mi = mutual_information(a2, a3, bins=2, bandwidth=0.01, rescale="none")
    assert mi.item() == pytest.approx(math.log(2) + h3 - expected, abs=1e-5)


def test_default_rescale_brings_uniform_rows_to_half():
    n = 49
    uniform = torch.full((1, n, n), 1.0 / n)
    assert torch.allclose(rescale_attention(uniform), torch.full_like(uniform, 0.5))
    mm = rescale_attention(_random_attention(2, n, 0), "minmax").flatten(1)
    assert torch.allclose(mm.min(1).values, torch.zeros(2)) and torch.allclose(mm.max(1).values, torch.ones(2))


def test_identical_maps_have_lower_joint_entropy_than_independent_ones():
    a = _random_attention(4, 49, 1)
    b = _random_attention(4, 49, 2)
    same = joint_entropy(a, a.clone())
    independent = joint_entropy(a, b)
    assert same < independent - 0.5
    assert mutual_information(a, a.clone()) > mutual_information(a, b) + 0.5


def test_histogram_is_a_distribution_with_subsampling():
    a, b = _random_attention(3, 49, 3), _random_attention(3, 49, 4)
    p = joint_histogram(a, b, bins=8, bandwidth=0.05, max_entries=100, generator=torch.Generator().manual_seed(0))
    assert p.shape == (3, 8, 8)
    assert torch.allclose(p.sum((1, 2)), torch.ones(3), atol=1e-5)
    assert (p >= 0).all()


def test_joint_entropy_gradients_are_finite_and_nonzero():
    logits2 = torch.randn(2, 49, 49, requires_grad=True)
    logits3 = torch.randn(2, 49, 49, requires_grad=True)
    loss = joint_entropy(torch.softmax(logits2, -1), torch.softmax(logits3, -1))
    loss.backward()
    for g in (logits2.grad, logits3.grad):
        assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_joint_entropy_rejects_mismatched_maps():
    with pytest.raises(ValueError, match="differ in shape"):
        joint_entropy(torch.rand(1, 4, 4), torch.rand(1, 9, 9))


def test_identity_loss_is_cross_entropy_of_logits():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 2])
    by_hand = -(F.log_softmax(logits, 1)[0, 0] + F.log_softmax(logits, 1)[1, 2]) / 2
    assert identity_loss(logits, labels).item() == pytest.approx(by_hand.item(), abs=1e-6)


# ---------------- the training objective outside the model ----------------
LOSS_TINY = dict(backbone="mobilefacenet", num_classes=3, num_points=256, sa1_centres=64, sa2_centres=16,
                 point_group_size=8)
LOSS_CONFIGS = {"full": {}, "paper": {}, "full-floored": {"je_variant": "floored_joint_entropy"}, "jam": {},
                "baseline-2d": {"use_3d": False}}
# What the model computed as its own loss before the loss left it (Pose3DFR._losses and the trainer's distillation
# term, commit ef37c75, where Pose3DFRLoss was shown equal to it bit for bit) on _fixed_batch, distill weight 0.5.
OLD_LOSSES = {
    "baseline-2d": {"loss": 31.18271827697754, "loss_2d": 30.712711334228516, "loss_3d": 0.0, "loss_je": 0.0},
    "full": {"loss": 56.91387939453125, "loss_2d": 29.00660514831543, "loss_3d": 27.43726921081543,
             "loss_je": -2.384185791015625e-07},
    "full-floored": {"loss": 57.1138801574707, "loss_2d": 29.00660514831543, "loss_3d": 27.43726921081543,
                     "loss_je": 1.999999761581421},
    "jam": {"loss": 56.91387939453125, "loss_2d": 29.00660514831543, "loss_3d": 27.43726921081543, "loss_je": 0.0},
    "paper": {"loss": 59.782928466796875, "loss_2d": 27.87387466430664, "loss_3d": 31.28238296508789,
              "loss_je": 1.5666399002075195},
}
OLD_DISTILL = 0.9400134682655334
# The old Pose3DFR.je_loss of each variant on _correlated_attention (same commit).
OLD_REGULARISERS = {("joint_entropy", 1.0): 2.909554958343506, ("mutual_information", 1.0): -0.3822774887084961,
                    ("floored_joint_entropy", 2.5): 4.617722511291504}


def _fixed_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(4, 3, 112, 112, generator=g)
    points = torch.rand(4, 256, 3, generator=g) * torch.tensor([16.0, 18.0, 6.0]) - torch.tensor([8.0, 9.5, 3.0])
    return images, points, torch.tensor([0, 1, 2, 0])


def _correlated_attention() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 2 x 49 x 49 attention maps, the second a noisy copy of the first (mutual information well above 0)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 49, 49, generator=g)
    return torch.softmax(3.0 * x, -1), torch.softmax(3.0 * (x + 0.5 * torch.randn(2, 49, 49, generator=g)), -1)


@pytest.mark.parametrize("name", sorted(LOSS_CONFIGS))
def test_pose3dfr_loss_gives_the_models_old_loss_values_on_a_fixed_batch(name):
    from pose3dfr.losses import Pose3DFRLoss
    from pose3dfr.models import create_model

    torch.manual_seed(0)
    model = create_model(name.split("-floored")[0], **LOSS_TINY, **LOSS_CONFIGS[name]).eval()
    images, points, labels = _fixed_batch()
    with torch.no_grad():
        out = model(images, points if model.cfg.use_3d else None, labels)
        rows = torch.tensor([True, False, True, True])
        target = torch.randn(3, out["emb_2d"].shape[1], generator=torch.Generator().manual_seed(1))
        new = Pose3DFRLoss(model.cfg, distill_weight=0.5)(out, labels, rows, target)
        plain = Pose3DFRLoss(model.cfg)(out, labels)
    old = OLD_LOSSES[name]
    for key in ("loss_2d", "loss_3d", "loss_je"):
        assert new[key].item() == pytest.approx(old[key], rel=1e-5, abs=1e-6), key
    assert new["loss_distill"].item() == pytest.approx(OLD_DISTILL, rel=1e-5)
    assert new["loss"].item() == pytest.approx(old["loss"], rel=1e-5)
    assert "loss_distill" not in plain and plain["loss"].item() == pytest.approx(old["loss"] - 0.5 * OLD_DISTILL,
                                                                                 rel=1e-5)


@pytest.mark.parametrize("variant, floor", sorted(OLD_REGULARISERS))
def test_attention_regulariser_gives_the_models_old_values(variant, floor):
    from pose3dfr.losses import Pose3DFRLoss
    from pose3dfr.models.config import ModelConfig

    regulariser = Pose3DFRLoss(ModelConfig(je_variant=variant, je_entropy_floor=floor)).attention_regulariser
    assert regulariser(*_correlated_attention()).item() == pytest.approx(OLD_REGULARISERS[(variant, floor)], rel=1e-5)
