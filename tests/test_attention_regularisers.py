"""The attention regulariser must have a non-trivial optimum (issue #18): optimised alone, mutual information
sharpens the shared attention without collapsing it to one-hot, and shuffling the 2D/3D pairing makes it worse;
the paper's joint entropy, alone, flattens the maps (kept as the documented failure)."""

from __future__ import annotations

import pytest
import torch

from pose3dfr.losses import (attention_row_entropy, floored_joint_entropy, joint_entropy, mutual_information,
                             value_entropies)
from pose3dfr.models.attention import JointAttention


def _paired_maps(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A post-ReLU 2D map and a 3D map of the same faces (the 2D map plus noise): B x C x 7 x 7."""
    generator = torch.Generator().manual_seed(seed)
    z_2d = torch.relu(torch.randn(6, 32, 7, 7, generator=generator))
    return z_2d, z_2d + 0.3 * torch.randn(z_2d.shape, generator=generator)


def _optimise(loss_fn, steps: int = 120) -> tuple[JointAttention, torch.Tensor, torch.Tensor]:
    """Shared query/key trained on the regulariser alone; returns the module and the final maps."""
    torch.manual_seed(1)
    jam = JointAttention(32, reduction=4)
    optimiser = torch.optim.Adam([*jam.query.parameters(), *jam.key.parameters()], lr=1e-2)
    z_2d, z_3d = _paired_maps()
    for _ in range(steps):
        _, a_2d, _, a_3d = jam(z_2d, z_3d)
        loss = loss_fn(a_2d, a_3d)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        _, a_2d, _, a_3d = jam(z_2d, z_3d)
    return jam, a_2d, a_3d


def _shuffled(a_3d: torch.Tensor) -> torch.Tensor:
    """The 3D maps paired with other images and mirrored rows: no pairing left."""
    return a_3d[torch.tensor([3, 4, 5, 0, 1, 2])].flip(1)


def test_mutual_information_neither_flattens_nor_collapses():
    _, a_2d, a_3d = _optimise(lambda a, b: -mutual_information(a, b))
    entropy = attention_row_entropy(a_2d).item()
    assert 0.3 < entropy < 0.95  # initialisation is 0.998 of the maximum; one-hot would be ~0
    assert a_2d.max(-1).values.mean().item() < 0.6  # rows keep several targets
    paired = mutual_information(a_2d, a_3d).item()
    assert paired > mutual_information(a_2d, _shuffled(a_3d)).item() + 0.2  # shuffling lowers MI (raises -MI)


def test_joint_entropy_alone_flattens_and_ignores_the_pairing():
    _, a_2d, a_3d = _optimise(joint_entropy)
    assert attention_row_entropy(a_2d).item() > 0.995
    assert joint_entropy(a_2d, _shuffled(a_3d)).item() == pytest.approx(joint_entropy(a_2d, a_3d).item(), abs=0.02)


def test_floored_joint_entropy_penalises_flat_maps():
    flat = torch.full((2, 49, 49), 1 / 49)
    h_2d, h_3d, joint = value_entropies(flat, flat)
    assert h_2d.item() < 0.8 and h_3d.item() < 0.8  # every entry at 0.5: split between two bins, ln 2 + kernel tails
    assert floored_joint_entropy(flat, flat, floor=1.0).item() == pytest.approx(joint.item() + 2 - h_2d.item() - h_3d.item(), abs=1e-5)
    _, a_2d, _ = _optimise(lambda a, b: floored_joint_entropy(a, b, floor=1.5), steps=60)
    assert attention_row_entropy(a_2d).item() < 0.9985  # not driven flat, as JE alone drives it


def test_row_entropy_bounds():
    assert attention_row_entropy(torch.full((1, 16, 16), 1 / 16)).item() == pytest.approx(1.0)
    assert attention_row_entropy(torch.eye(16)[None]).item() == pytest.approx(0.0, abs=1e-6)
