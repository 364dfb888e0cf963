"""Point-cloud utilities: file round trips, content checks, sampling, downsampling, alignment to the canonical face."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from pose3dfr.data import pointcloud as pc
from pose3dfr.data import scan_alignment
from pose3dfr.face.mesh import load_canonical_mesh
from pose3dfr.errors import InvalidScanError


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """The canonical face sampled by area: 3000 x 9 (cm)."""
    mesh = load_canonical_mesh()
    return pc.sample_mesh(mesh.vertices, mesh.faces, 3000, seed=3)


@pytest.mark.parametrize("features", [3, 6, 9])
@pytest.mark.parametrize("suffix", [".ply", ".pcd"])
def test_point_cloud_round_trip(tmp_path, face, features, suffix):
    path = pc.save_point_cloud(tmp_path / f"cloud{suffix}", face[:500, :features])
    back = pc.read_point_cloud(path)
    assert back.dtype == np.float32 and back.shape == (500, features)
    np.testing.assert_allclose(back[:, :6], face[:500, :min(features, 6)], atol=1e-5)
    if features == 9:  # colours are stored as 8-bit
        np.testing.assert_allclose(back[:, 6:], face[:500, 6:], atol=1 / 255)


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".stl", ".off"])
def test_meshes_are_sampled_by_area_with_unit_normals(tmp_path, suffix):
    mesh = load_canonical_mesh()
    colours = np.tile([[1.0, 0.0, 0.0]], (len(mesh.vertices), 1))
    path = pc.save_mesh(tmp_path / f"face{suffix}", mesh.vertices, mesh.faces, vertex_colors=colours)
    points = pc.read_point_cloud(path, num_mesh_samples=2000, seed=1)
    assert points.shape == (2000, 9)
    np.testing.assert_allclose(np.linalg.norm(points[:, 3:6], axis=1), 1.0, atol=1e-4)
    # every sample lies on the surface: near the mesh's vertices, within the face's bounds
    assert cKDTree(mesh.vertices).query(points[:, :3])[0].max() < 2.0
    assert (points[:, 5] > 0).mean() > 0.9  # outward normals of a face point mostly to +z
    np.testing.assert_array_equal(points, pc.read_point_cloud(path, num_mesh_samples=2000, seed=1))
    if suffix in (".ply", ".off"):  # formats that keep vertex colours
        np.testing.assert_allclose(points[:, 6:], np.tile([1.0, 0.0, 0.0], (2000, 1)), atol=1e-2)


def test_mesh_sampling_is_reproducible_per_file(tmp_path):
    mesh = load_canonical_mesh()
    path = pc.save_mesh(tmp_path / "face.ply", mesh.vertices, mesh.faces)
    np.testing.assert_array_equal(pc.read_point_cloud(path), pc.read_point_cloud(path))


def test_xyz_text_file(tmp_path, face):
    path = tmp_path / "scan.xyz"
    np.savetxt(path, face[:300, :3])
    np.testing.assert_allclose(pc.read_point_cloud(path), face[:300, :3], atol=1e-5)


def _rigid_mm(points: np.ndarray, seed: int) -> np.ndarray:
    """The cloud in millimetres under a random rotation and translation (normals rotated)."""
    rotation = Rotation.random(random_state=seed).as_matrix()
    out = points.copy()
    out[:, :3] = points[:, :3] * 10.0 @ rotation.T + np.random.default_rng(seed).normal(0, 300, 3)
    out[:, 3:6] = points[:, 3:6] @ rotation.T
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scan_under_random_rigid_transform_and_mm_is_aligned_back(face, seed):
    scan = _rigid_mm(face, seed)
    alignment = scan_alignment.estimate_alignment(scan)
    back = scan_alignment.apply_transform(scan, alignment.transform)
    assert alignment.scale == pytest.approx(0.1)
    mean_error_mm = 10 * np.linalg.norm(back[:, :3] - face[:, :3], axis=1).mean()
    assert mean_error_mm < 3.0
    np.testing.assert_allclose(back[:, 3:6], face[:, 3:6], atol=0.05)


def test_noisy_scan_with_outliers_is_cleaned_and_aligned(face):
    rng = np.random.default_rng(5)
    scan = _rigid_mm(face, 7)[:, :3]
    scan = scan + rng.normal(0, 0.3, scan.shape)  # 0.3 mm scanner noise
    outliers = scan.mean(0) + rng.normal(0, 400, (40, 3))  # stray points far from the face
    scan = np.concatenate([scan, outliers, np.full((5, 3), np.nan)]).astype(np.float32)
    aligned = scan_alignment.align_to_canonical(scan)
    distance_cm = cKDTree(face[:, :3]).query(aligned[:, :3])[0]
    assert np.median(distance_cm) < 0.3
    assert len(aligned) < len(scan) - 40  # NaN rows and most outliers removed


def test_load_scan_gives_model_ready_points(tmp_path, face):
    path = pc.save_point_cloud(tmp_path / "scan.ply", _rigid_mm(face, 4)[:, :3])
    scan = scan_alignment.load_scan(path, num_points=256, point_features=9)
    assert scan.points.shape == (256, 9) and scan.points.dtype == np.float32
    assert scan.transform.shape == (4, 4) and scan.fitness > 0.9 and scan.rmse < 0.3
    assert cKDTree(face[:, :3]).query(scan.points[:, :3])[0].mean() < 0.3
    normals = scan.points[:, 3:6]
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-4)
    assert (normals[:, 2] > 0).mean() > 0.9  # estimated normals point out of the face
    np.testing.assert_allclose(scan.points[:, 6:], pc.DEFAULT_GREY)


def test_farthest_point_sampling_covers_the_cloud_evenly(face):
    idx = pc.farthest_point_sample(face[:, :3], 200, seed=0)
    assert len(np.unique(idx)) == 200
    random_idx = pc.random_sample(len(face), 200, seed=0)
    coverage = lambda i: cKDTree(face[i, :3]).query(face[:, :3])[0].max()  # noqa: E731
    assert coverage(idx) < coverage(random_idx)
    padded = pc.farthest_point_sample(face[:50, :3], 80)
    assert len(padded) == 80 and set(padded.tolist()) == set(range(50))


def test_centre_to_canonical_scales_and_centres(face):
    moved = face.copy()
    moved[:, :3] = face[:, :3] * 10 + 1000.0
    back = pc.centre_to_canonical(moved, scale=0.1)
    np.testing.assert_allclose(back[:, :3].mean(0), pc.canonical_centroid(), atol=1e-3)
    np.testing.assert_allclose(back[:, :3] - back[:, :3].mean(0), face[:, :3] - face[:, :3].mean(0), atol=1e-3)


# ---- bad input: each raises InvalidScanError naming the file ----------------------------------

def _expect_invalid(path, match: str = "") -> None:
    with pytest.raises(InvalidScanError, match=path.name) as exc:
        pc.read_point_cloud(path)
    assert match in str(exc.value)


def test_garbage_bytes_named_ply(tmp_path):
    path = tmp_path / "garbage.ply"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    _expect_invalid(path, "not a PLY")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.ply"
    path.write_bytes(b"")
    _expect_invalid(path, "empty")


def test_all_nan_scan(tmp_path):
    path = pc.save_point_cloud(tmp_path / "nan.ply", np.full((100, 3), np.nan, np.float32))
    _expect_invalid(path, "NaN")


def test_some_nan_points_are_dropped(tmp_path, face):
    points = face[:200, :3].copy()
    points[::4] = np.nan
    back = pc.read_point_cloud(pc.save_point_cloud(tmp_path / "some_nan.ply", points))
    assert len(back) == 150 and np.isfinite(back).all()


def test_degenerate_scan_on_a_line(tmp_path):
    line = np.outer(np.linspace(0, 1, 100), [1.0, 2.0, 3.0]).astype(np.float32)
    _expect_invalid(pc.save_point_cloud(tmp_path / "line.ply", line), "degenerate")


def test_truncated_ply(tmp_path, face):
    path = pc.save_point_cloud(tmp_path / "cut.ply", face[:500])
    path.write_bytes(path.read_bytes()[:-2000])
    _expect_invalid(path, "truncated")


def test_text_garbage_in_obj_and_unknown_suffix(tmp_path):
    obj = tmp_path / "notes.obj"
    obj.write_text("hello, this is not a mesh\n")
    _expect_invalid(obj, "OBJ")
    other = tmp_path / "scan.docx"
    other.write_bytes(b"PK\x03\x04")
    _expect_invalid(other, "unsupported")


def test_scan_over_the_point_limit(tmp_path, face, monkeypatch):
    path = pc.save_point_cloud(tmp_path / "big.ply", face[:1000, :3])
    monkeypatch.setattr(pc, "MAX_SCAN_POINTS", 999)
    _expect_invalid(path, "over the limit")


def test_trusted_in_process_read_equals_the_isolated_read(tmp_path):
    """Data-set files are parsed in-process by the same strict reader the isolated child runs."""
    from pose3dfr.data.pointcloud import read_point_cloud, save_point_cloud

    points = np.random.default_rng(3).normal(size=(500, 3)).astype(np.float32) * np.float32([3, 4, 2])
    path = save_point_cloud(tmp_path / "cloud.ply", points)
    isolated = read_point_cloud(path, seed=0)
    trusted = read_point_cloud(path, seed=0, trusted=True)
    np.testing.assert_array_equal(isolated, trusted)
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex +1\nend_header\n0 0 0\n")
    with pytest.raises(InvalidScanError):
        read_point_cloud(tmp_path / "bad.ply", trusted=True)
