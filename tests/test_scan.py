"""Point clouds for inference: pseudo clouds from landmarks, and users' scans (pose3dfr.inference.scan)."""

from __future__ import annotations

import numpy as np
import pytest

from pose3dfr.data import pointcloud
from pose3dfr.face.mesh import load_canonical_mesh
from pose3dfr.errors import InvalidScanError, NoFaceError
from pose3dfr.geometry import rotation_matrix
from pose3dfr.data.pseudo_cloud import landmarks_to_canonical, pseudo_point_cloud
from pose3dfr.data.scan_alignment import load_scan
from pose3dfr.inference.scan import pseudo_point_cloud_from_image


def _as_photo_landmarks(vertices: np.ndarray, yaw: float, scale: float = 12.0) -> np.ndarray:
    """Canonical vertices posed and put into MediaPipe's pixel convention (x right, y down, z away)."""
    posed = vertices @ rotation_matrix(yaw, 10.0, -5.0).T * scale
    return posed * np.array([1.0, -1.0, -1.0]) + np.array([320.0, 240.0, 0.0])


@pytest.mark.parametrize("yaw", [0.0, 40.0, -75.0])
def test_landmarks_to_canonical_removes_pose_and_scale(yaw):
    vertices = load_canonical_mesh().vertices
    recovered = landmarks_to_canonical(_as_photo_landmarks(vertices, yaw))
    assert np.abs(recovered - vertices).max() < 1e-6


def test_pseudo_point_cloud_is_p_by_9_on_the_face_surface():
    vertices = load_canonical_mesh().vertices
    image = np.zeros((480, 640, 3), np.uint8)
    image[..., 0] = 255  # a red photo: every point takes its colour
    cloud = pseudo_point_cloud(_as_photo_landmarks(vertices, 30.0), num_points=256, image=image, seed=3)
    assert cloud.shape == (256, 9) and cloud.dtype == np.float32
    lo, hi = vertices.min(0), vertices.max(0)
    assert ((cloud[:, :3] >= lo - 1e-3) & (cloud[:, :3] <= hi + 1e-3)).all()
    assert np.allclose(np.linalg.norm(cloud[:, 3:6], axis=1), 1.0, atol=1e-4)
    assert cloud[:, 5].mean() > 0.3  # normals point out of the face (+z) on average
    assert np.allclose(cloud[:, 6:], [1.0, 0.0, 0.0])
    again = pseudo_point_cloud(_as_photo_landmarks(vertices, 30.0), num_points=256, image=image, seed=3)
    assert np.array_equal(cloud, again)  # seeded


def test_pseudo_point_cloud_without_image_is_grey():
    cloud = pseudo_point_cloud(_as_photo_landmarks(load_canonical_mesh().vertices, 0.0), num_points=64)
    assert np.allclose(cloud[:, 6:], pointcloud.DEFAULT_GREY)


def test_pseudo_point_cloud_from_photo(photos_dir):
    cloud = pseudo_point_cloud_from_image(photos_dir / "obama2.jpg", num_points=128)
    assert cloud.shape == (128, 9) and np.isfinite(cloud).all()
    extent = np.ptp(cloud[:, :3], axis=0)
    assert 8 < extent[0] < 25 and 8 < extent[1] < 25  # a face-sized cloud in cm
    with pytest.raises(NoFaceError):
        pseudo_point_cloud_from_image(np.full((200, 200, 3), 128, np.uint8), num_points=16)


def test_load_scan_mesh_in_mm_lands_in_canonical_cm(tmp_path):
    mesh = load_canonical_mesh()
    path = pointcloud.save_mesh(tmp_path / "face.ply", mesh.vertices * 10.0 + 500.0, mesh.faces)  # mm, offset
    points = load_scan(path, num_points=300, point_features=6).points
    assert points.shape == (300, 6) and points.dtype == np.float32
    assert np.abs(np.ptp(points[:, :3], axis=0) - np.ptp(mesh.vertices, axis=0)).max() < 1.5
    assert np.abs(points[:, :3].mean(0) - pointcloud.canonical_centroid()).max() < 1.5


def test_load_scan_point_file(tmp_path):
    rng = np.random.default_rng(0)
    xyz = load_canonical_mesh().vertices + rng.normal(scale=0.01, size=(468, 3))
    path = tmp_path / "face.xyz"
    np.savetxt(path, xyz)
    assert load_scan(path, num_points=100, point_features=3).points.shape == (100, 3)


def test_bad_scans_raise_invalid_scan_error(tmp_path, monkeypatch, photos_dir):
    empty = tmp_path / "empty.ply"
    empty.write_bytes(b"")
    with pytest.raises(InvalidScanError, match="empty.ply"):
        load_scan(empty)
    nan = tmp_path / "nan.xyz"
    nan.write_text("nan nan nan\n" * 50)
    with pytest.raises(InvalidScanError, match="nan.xyz"):
        load_scan(nan)
    not_3d = tmp_path / "photo.ply"
    not_3d.write_bytes((photos_dir / "obama.jpg").read_bytes())
    with pytest.raises(InvalidScanError, match="photo.ply"):
        load_scan(not_3d)
    with pytest.raises(InvalidScanError, match="unsupported"):
        load_scan(photos_dir / "obama.jpg")
    with pytest.raises(InvalidScanError, match="missing.ply"):
        load_scan(tmp_path / "missing.ply")
    big = tmp_path / "big.xyz"
    np.savetxt(big, np.random.default_rng(0).normal(size=(200, 3)))
    monkeypatch.setattr(pointcloud, "MAX_SCAN_POINTS", 100)
    with pytest.raises(InvalidScanError, match="over the limit"):
        load_scan(big)


def test_canonical_points_array_samples_and_validates():
    from pose3dfr.inference.scan import canonical_points_array

    xyz = load_canonical_mesh().vertices.astype(np.float32)
    with_nan = np.concatenate([xyz, np.full((5, 3), np.nan, np.float32)])
    out = canonical_points_array(with_nan, num_points=100, features=3)
    assert out.shape == (100, 3) and np.isfinite(out).all()
    nearest = np.linalg.norm(out[:, None, :] - xyz[None], axis=2).min(axis=1)
    assert nearest.max() < 1e-6  # a subset of the input: kept in the canonical frame, not moved
    with pytest.raises(InvalidScanError, match="every point is NaN"):
        canonical_points_array(np.full((50, 3), np.nan), num_points=10)
    with pytest.raises(InvalidScanError, match="P x 3, 6 or 9"):
        canonical_points_array(np.zeros((50, 4)), num_points=10)
