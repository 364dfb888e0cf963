"""Pose-aware registration of the 3D grid (pose3dfr.data.view_registration): points land in the cell of the
chip that shows them, at any yaw; unseen points are not pooled; the training transform carries the cells."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pose3dfr.data.view_registration import INVISIBLE, grid_cells, mirror_cells, view_cells
from pose3dfr.geometry import rotation_matrix

SIZE, GRID = 80, 8  # an 80 px chip of 8 x 8 cells (10 px each)


def _camera(rotation: np.ndarray, distance: float = 50.0) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole K (f = 400, centre 40) and OpenCV Rt looking at the origin along -z after `rotation` of the world."""
    K = np.array([[400.0, 0, 40.0], [0, 400.0, 40.0], [0, 0, 1]])
    flip = np.diag([1.0, -1.0, -1.0])  # OpenGL-style world (y up, z towards the camera) -> OpenCV camera
    R = flip @ rotation
    t = np.array([0.0, 0.0, distance])
    return K, np.concatenate([R, t[:, None]], 1)


def _points(xy: list[tuple[float, float]], normal=(0.0, 0.0, 1.0)) -> np.ndarray:
    return np.array([[x, y, 0.0, *normal] for x, y in xy])


IDENTITY_CHIP = np.array([[1.0, 0, 0], [0, 1.0, 0]])


def test_frontal_view_cells_follow_the_projection():
    K, Rt = _camera(np.eye(3))
    # x = +1 cm -> 40 + 400 / 50 = 48 px (column 4); y = +1 cm (up) -> 32 px (row 3)
    cells = view_cells(_points([(0.0, 0.0), (1.0, 1.0), (-4.0, -4.0)]), K, Rt, IDENTITY_CHIP, SIZE, GRID)
    assert cells.tolist() == [4 * GRID + 4, 3 * GRID + 4, 7 * GRID + 0]


def test_turned_cloud_lands_where_the_turned_view_shows_it():
    """A head turned by yaw: its points' cells equal the cells of the projected turned points (a known answer)."""
    rotation = rotation_matrix(60.0, 0.0, 0.0)
    points = _points([(0.5, 0.2), (-0.8, 1.0), (1.5, -0.5)])
    K, Rt = _camera(rotation)
    turned = points[:, :3] @ rotation.T  # world points seen by an unrotated camera
    _, Rt0 = _camera(np.eye(3))
    pixels = (turned @ Rt0[:, :3].T + Rt0[:, 3]) @ K.T
    expected = grid_cells(pixels[:, :2] / pixels[:, 2:], SIZE, GRID)
    normals_turned = points[:, 3:] @ rotation.T
    cells = view_cells(points, K, Rt, IDENTITY_CHIP, SIZE, GRID)
    assert cells.tolist() == expected.tolist()
    assert (normals_turned @ np.array([0, 0, 1.0]) > 0).all()  # still facing: none invisible at 60 degrees


def test_points_facing_away_or_off_the_chip_are_not_pooled():
    K, Rt = _camera(np.eye(3))
    assert view_cells(_points([(0.0, 0.0)], normal=(0.0, 0.0, -1.0)), K, Rt, IDENTITY_CHIP, SIZE, GRID).tolist() == [INVISIBLE]
    K, Rt = _camera(rotation_matrix(100.0, 0.0, 0.0))  # past profile: the face's own front is turned away
    assert view_cells(_points([(0.0, 0.0)]), K, Rt, IDENTITY_CHIP, SIZE, GRID).tolist() == [INVISIBLE]
    K, Rt = _camera(np.eye(3))
    assert view_cells(_points([(30.0, 0.0)]), K, Rt, IDENTITY_CHIP, SIZE, GRID).tolist() == [INVISIBLE]


def test_mirrored_cells():
    cells = np.array([0, 7, 9, INVISIBLE])
    assert mirror_cells(cells, GRID).tolist() == [7, 0, 14, INVISIBLE]
    assert mirror_cells(mirror_cells(cells, GRID), GRID).tolist() == cells.tolist()


def test_point_encoder_pools_only_seen_points():
    from pose3dfr.models.point_encoder import PointEncoder

    torch.manual_seed(0)
    encoder = PointEncoder(16, 4, template="arcface", input_size=112, point_features=3, sa1_centres=16,
                           sa2_centres=4, group_size=4, point_channels=8).eval()
    per_point = torch.randn(1, 6, 8)
    cells = torch.tensor([[0, 0, 5, INVISIBLE, INVISIBLE, 15]])
    pooled = encoder.pool_cells(per_point, cells).flatten(2)[0].T  # 16 cells x 8
    assert torch.allclose(pooled[0], per_point[0, :2].amax(0))
    assert torch.allclose(pooled[15], per_point[0, 5])
    assert torch.allclose(pooled[1], encoder.empty_cell[1])  # nothing pooled there: the learned code
    with pytest.raises(Exception, match="cells"):
        encoder(torch.randn(1, 32, 3), torch.full((1, 32), 99, dtype=torch.long))


def test_registration_agrees_with_the_renders_where_frontal_pooling_fails(tiny_benchmark):
    """The check of issue #18 on the tiny benchmark: at 90 degrees frontal pooling puts almost no visible landmark
    in its 2D cell, registration most of them."""
    from pose3dfr.eval.registration_check import registration_agreement

    result = registration_agreement(tiny_benchmark, split="train", yaws=(0.0, 90.0), max_views=4, template="arcface",
                                    chip_size=112, grid=7, num_points=256)
    frontal, registered = result["frontal"], result["registered"]
    assert min(result["landmarks"]) > 50
    assert registered[1] > 0.5 and registered[1] > frontal[1] + 0.3
    assert registered[0] > 0.5


def test_training_transform_carries_cells_and_mirrors_them(tiny_benchmark):
    from pose3dfr.data.facescape import FaceScapeMultiView
    from pose3dfr.data.transforms import ModelTransform, collate

    dataset = FaceScapeMultiView(tiny_benchmark, split="train", num_points=256, point_features=6)
    transform = ModelTransform("arcface", 112, 128, 3, train=True, grid=7, fixed_points=True)
    sample = dataset[0]
    flips = [transform(sample, rng=np.random.default_rng(seed)) for seed in range(8)]
    plain = [f for f in flips if f["cloud_key"].endswith("/0")]
    mirrored = [f for f in flips if f["cloud_key"].endswith("/1")]
    assert plain and mirrored
    assert torch.equal(plain[0]["points"], plain[-1]["points"])  # fixed points: a cacheable subsample
    assert mirror_cells(plain[0]["cells"].numpy(), 7).tolist() == mirrored[0]["cells"].tolist()
    batch = collate(flips[:2])
    assert batch["cells"].shape == (2, 128) and batch["cloud_key"] == [f["cloud_key"] for f in flips[:2]]
