"""PointNet++ encoder: shapes, order invariance, geometric cells aligned with the 2D chip, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pose3dfr.face.mesh import load_canonical_mesh
from pose3dfr.errors import InvalidScanError
from pose3dfr.face.align import ARCFACE_112, LEFT_EYE_CORNERS, NOSE_TIP, RIGHT_EYE_CORNERS
from pose3dfr.models.point_encoder import PointEncoder, ball_query, farthest_point_sample

SMALL = dict(sa1_centres=64, sa2_centres=16, group_size=8)


def _face_points(b: int, p: int, f: int = 3, seed: int = 0) -> torch.Tensor:
    """Random points in the canonical face's box (cm) with optional unit normals and rgb."""
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(b, p, 3, generator=g) * torch.tensor([16.0, 18.0, 6.0]) - torch.tensor([8.0, 9.5, 3.0])
    parts = [xyz]
    if f >= 6:
        parts.append(torch.nn.functional.normalize(torch.randn(b, p, 3, generator=g), dim=-1))
    if f == 9:
        parts.append(torch.rand(b, p, 3, generator=g))
    return torch.cat(parts, -1)


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("features", [3, 6, 9])
def test_output_shapes(batch, features):
    enc = PointEncoder(32, 7, point_features=features, **SMALL).eval()
    with torch.no_grad():
        fmap, cell = enc(_face_points(batch, 256, features))
    assert fmap.shape == (batch, 32, 7, 7) and fmap.dtype == torch.float32
    assert cell.shape == (batch, 256) and cell.dtype == torch.long
    assert int(cell.min()) >= 0 and int(cell.max()) < 49


def test_global_reshape_shape():
    enc = PointEncoder(16, 7, reshape="global", **SMALL).eval()
    with torch.no_grad():
        fmap, cell = enc(_face_points(2, 256))
    assert fmap.shape == (2, 16, 7, 7) and cell.shape == (2, 256)


@pytest.mark.parametrize("reshape", ["grid", "global"])
def test_permutation_invariance(reshape):
    enc = PointEncoder(32, 7, point_features=6, reshape=reshape, **SMALL).eval()
    points = _face_points(2, 256, 6, seed=1)
    perm = torch.randperm(256, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        fmap, cell = enc(points)
        fmap_p, cell_p = enc(points[:, perm])
    assert torch.allclose(fmap, fmap_p, atol=1e-5)
    assert torch.equal(cell[:, perm], cell_p)


def test_fps_spreads_points_and_ignores_order():
    line = torch.linspace(0, 1, 11).view(1, 11, 1) * torch.tensor([1.0, 0.0, 0.0])
    first = farthest_point_sample(line, 3)[0]
    assert sorted(line[0, first, 0].tolist()) == pytest.approx([0.0, 0.5, 1.0])
    perm = torch.randperm(11)
    again = farthest_point_sample(line[:, perm], 3)[0]
    assert sorted(line[0, perm][again, 0].tolist()) == pytest.approx([0.0, 0.5, 1.0])


def test_ball_query_keeps_points_inside_radius():
    xyz = torch.tensor([[[0.0, 0, 0], [0.5, 0, 0], [3.0, 0, 0], [0.2, 0, 0]]])
    centre = torch.tensor([[[0.0, 0, 0]]])
    group = ball_query(xyz, centre, radius=1.0, k=4)[0, 0].tolist()
    assert sorted(group) == [0, 0, 1, 3]  # the far point is replaced by the nearest one (itself)


def test_cells_match_the_frontal_arcface_chip():
    """Canonical eye centres and nose tip land in the cells of the ArcFace template's points."""
    enc = PointEncoder(8, 7, template="arcface", input_size=112, **SMALL)
    v = load_canonical_mesh().vertices
    landmarks = np.stack([v[list(RIGHT_EYE_CORNERS)].mean(0), v[list(LEFT_EYE_CORNERS)].mean(0), v[NOSE_TIP]])
    cells = enc.cells(torch.tensor(landmarks, dtype=torch.float32)[None])[0].tolist()
    expected = [int(y / 112 * 7) * 7 + int(x / 112 * 7) for x, y in ARCFACE_112[:3]]
    assert cells == expected


def test_empty_cells_take_the_learned_embedding():
    enc = PointEncoder(8, 7, **SMALL)
    per_point = torch.randn(1, 5, enc.empty_cell.size(1))
    cell = torch.tensor([[24, 24, 24, 3, 3]])
    pooled = enc.pool_cells(per_point, cell).flatten(2)[0].T  # 49 x Cp
    assert torch.allclose(pooled[24], per_point[0, :3].max(0).values)
    assert torch.allclose(pooled[3], per_point[0, 3:].max(0).values)
    assert torch.allclose(pooled[0], enc.empty_cell[0])


@pytest.mark.parametrize("bad", [torch.zeros(2, 256, 4), torch.zeros(256, 3),
                                 torch.full((1, 256, 3), float("nan"))])
def test_bad_points_raise(bad):
    enc = PointEncoder(8, 7, **SMALL)
    with pytest.raises(InvalidScanError, match="points"):
        enc(bad)
