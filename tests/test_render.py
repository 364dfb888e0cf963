"""The numpy z-buffer rasteriser: coverage, culling, depth order, interpolation, projection, visibility."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pose3dfr.data.render import interpolate, project, rasterize, sample_bilinear, visible_vertices

# A front-facing triangle (clockwise on the y-down screen = counter-clockwise seen from outside).
TRIANGLE = np.array([[2.0, 2.0, 1.0], [2.0, 8.0, 1.0], [8.0, 2.0, 1.0]])


def _inside_brute_force(tri: np.ndarray, h: int, w: int) -> np.ndarray:
    """Pixel centres (x = column, y = row) inside or on the triangle, by explicit edge tests."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    signs = []
    for i in range(3):
        (x0, y0), (x1, y1) = tri[i, :2], tri[(i + 1) % 3, :2]
        signs.append((x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0))
    signs = np.stack(signs)
    return (signs >= -1e-9).all(0) | (signs <= 1e-9).all(0)


def test_single_triangle_covers_exactly_its_pixels():
    frags = rasterize(TRIANGLE, np.array([[0, 1, 2]]), 10, 10)
    assert np.array_equal(frags.mask, _inside_brute_force(TRIANGLE, 10, 10))
    assert frags.mask.sum() == 28  # 7 + 6 + ... + 1 pixel centres of the right triangle with legs 6
    assert np.isclose(frags.depth[frags.mask], 1.0).all() and np.isinf(frags.depth[~frags.mask]).all()


@pytest.mark.parametrize("seed", range(5))
def test_random_triangles_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    tri = np.concatenate([rng.uniform(-3, 23, (3, 2)), np.ones((3, 1))], 1)
    frags = rasterize(tri, np.array([[0, 1, 2]]), 20, 20, cull_backfaces=False)
    expected = _inside_brute_force(tri, 20, 20)
    # Pixel centres exactly on an edge may go either way; everything else must agree.
    assert (frags.mask != expected).sum() <= 2


def test_back_faces_are_culled_only_when_asked():
    back = np.array([[0, 2, 1]])
    assert rasterize(TRIANGLE, back, 10, 10).mask.sum() == 0
    assert rasterize(TRIANGLE, back, 10, 10, cull_backfaces=False).mask.sum() == 28


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_z_buffer_keeps_the_nearest_triangle_in_any_order(order):
    near = TRIANGLE.copy()
    far = TRIANGLE + [1.0, 1.0, 4.0]  # shifted and further away
    screen = np.concatenate([near, far])
    faces = np.array([[0, 1, 2], [3, 4, 5]])[list(order)]
    frags = rasterize(screen, faces, 12, 12)
    near_id = order.index(0)
    overlap = _inside_brute_force(near, 12, 12) & _inside_brute_force(far, 12, 12)
    assert overlap.any()
    assert (frags.face_index[overlap] == near_id).all()
    assert np.isclose(frags.depth[overlap], 1.0).all()
    only_far = _inside_brute_force(far, 12, 12) & ~_inside_brute_force(near, 12, 12)
    assert (frags.face_index[only_far] == 1 - near_id).all()


def test_interpolation_is_perspective_correct():
    # A slanted triangle: interpolating camera depth as an attribute must reproduce the z-buffer.
    screen = np.array([[5.0, 5.0, 1.0], [5.0, 60.0, 4.0], [60.0, 5.0, 2.0]])
    frags = rasterize(screen, np.array([[0, 1, 2]]), 64, 64)
    depth_attr = interpolate(frags, np.array([[0, 1, 2]]), screen[:, 2:3])[:, 0]
    assert np.allclose(depth_attr, frags.depth.ravel()[frags.pixels], rtol=1e-6)
    assert np.allclose(frags.bary.sum(1), 1.0) and (frags.bary >= -1e-9).all()


def test_bilinear_sampling_hits_texel_centres_and_blends_between():
    tex = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    centres = np.array([[0.125, 0.125], [0.375, 0.625], [0.875, 0.875]])  # (u, v): column 0 row 0, col 1 row 2, ...
    assert np.allclose(sample_bilinear(tex, centres)[:, 0], [0, 9, 15])
    assert np.isclose(sample_bilinear(tex, np.array([[0.25, 0.125]]))[0, 0], 0.5)


def test_project_matches_opencv():
    rng = np.random.default_rng(0)
    points = rng.uniform(-5, 5, (20, 3))
    K = np.array([[300.0, 0, 64], [0, 300.0, 60], [0, 0, 1]])
    rvec = np.array([0.1, -0.3, 0.05])
    R, _ = cv2.Rodrigues(rvec)
    t = np.array([0.5, -0.2, 40.0])
    ours = project(points, K, np.concatenate([R, t[:, None]], 1))
    ref, _ = cv2.projectPoints(points, rvec, t, K, np.zeros(5))
    assert np.allclose(ours[:, :2], ref[:, 0], atol=1e-6)
    assert np.allclose(ours[:, 2], points @ R[2] + t[2])


def test_vertices_behind_a_surface_are_not_visible():
    frags = rasterize(TRIANGLE, np.array([[0, 1, 2]]), 10, 10)
    probes = np.array([[3.0, 3.0, 1.05], [3.0, 3.0, 6.0], [9.0, 9.0, 6.0], [-5.0, 3.0, 1.0]])
    assert visible_vertices(probes, frags.depth, tolerance=0.1).tolist() == [True, False, True, False]
