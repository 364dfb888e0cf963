"""Pose-aware registration of the 3D map: the cell of the aligned 2D chip each cloud point appears in, per view.

The 3D branch pools per-point features into the H_F x W_F grid of the 2D feature map. Pooled by each point's
*frontal* position, cell (i, j) of the 3D map and of a turned face's 2D map look at different parts of the
face (issue #18: 85% of visible landmarks share a cell at yaw 0, 9% at 45, 0% at 90). Registration brings
the cloud into the view instead: the view's camera (K, Rt: the head turned by its yaw, pitch and roll)
projects every point into the photo, the same 2 x 3 alignment matrix as the chip maps it into the chip, and
the chip position picks the cell. Points whose normal faces away from the camera, or that fall off the
chip, get INVISIBLE and are not pooled.

Clouds must be in the camera's world frame (the synthetic benchmark's are); other data falls back to the
frontal cells (pose3dfr.models.point_encoder).
"""

from __future__ import annotations

import numpy as np

INVISIBLE = -1  # cell of a point the view does not see


def canonical_to_chip_matrix(template: str, input_size: int) -> np.ndarray:
    """2 x 3 matrix taking canonical (x, -y) in cm to chip pixels, exactly as a frontal 2D chip is aligned."""
    from pose3dfr.face.align import alignment_matrix
    from pose3dfr.face.mesh import load_canonical_mesh

    vertices = load_canonical_mesh().vertices
    frontal = np.stack([vertices[:, 0], -vertices[:, 1]], axis=1)  # frontal projection, image y down
    matrix, _ = alignment_matrix(frontal, template, input_size, mode="five_point")
    return matrix


def grid_cells(chip_xy: np.ndarray, chip_size: int, grid: int) -> np.ndarray:
    """N x 2 chip pixels -> N flat cell indices row * grid + col (INVISIBLE off the chip)."""
    cell = np.floor(np.asarray(chip_xy, np.float64) / chip_size * grid).astype(np.int64)
    inside = np.all((cell >= 0) & (cell < grid), axis=1)
    return np.where(inside, cell[:, 1] * grid + cell[:, 0], INVISIBLE)


def chip_positions(xyz: np.ndarray, K: np.ndarray, Rt: np.ndarray, chip_matrix: np.ndarray) -> np.ndarray:
    """N x 3 world points -> N x 2 chip pixels: the view's projection, then the chip's alignment matrix."""
    from pose3dfr.data.render import project

    pixels = project(np.asarray(xyz, np.float64), K, Rt)[:, :2]
    return pixels @ np.asarray(chip_matrix, np.float64)[:, :2].T + np.asarray(chip_matrix, np.float64)[:, 2]


def view_cells(points: np.ndarray, K: np.ndarray, Rt: np.ndarray, chip_matrix: np.ndarray, chip_size: int,
               grid: int) -> np.ndarray:
    """P int64 cells of P x F (F >= 6: xyz + normals) world points in one view's chip; INVISIBLE where the
    normal faces away from the camera or the point falls off the chip."""
    from pose3dfr.data.render import facing_camera

    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 6:
        raise ValueError(f"view_cells needs P x 6+ points (xyz + normals), got {points.shape}")
    cells = grid_cells(chip_positions(points[:, :3], K, Rt, chip_matrix), chip_size, grid)
    return np.where(facing_camera(points[:, :3], points[:, 3:6], Rt), cells, INVISIBLE)


def mirror_cells(cells: np.ndarray, grid: int) -> np.ndarray:
    """The cells after mirroring the chip left-right (column c -> grid - 1 - c); INVISIBLE stays."""
    cells = np.asarray(cells, np.int64)
    row, col = np.divmod(cells, grid)
    return np.where(cells == INVISIBLE, INVISIBLE, row * grid + (grid - 1 - col))


def frontal_cells(xyz: np.ndarray, template: str, chip_size: int, grid: int) -> np.ndarray:
    """P cells of canonical points on a frontal chip (the paper's pooling, without registration)."""
    matrix = canonical_to_chip_matrix(template, chip_size)
    xy = np.stack([xyz[:, 0], -xyz[:, 1]], axis=1)
    chip = xy @ matrix[:, :2].T + matrix[:, 2]
    return np.clip(np.floor(chip / chip_size * grid).astype(np.int64), 0, grid - 1) @ np.array([1, grid])


def landmark_agreement(points: np.ndarray, cells: np.ndarray, vertices: np.ndarray, landmarks: np.ndarray,
                       chip_matrix: np.ndarray, chip_size: int, grid: int, max_distance_cm: float = 1.0
                       ) -> tuple[int, int]:
    """(agreeing, counted) visible landmarks: those whose nearest cloud point (within max_distance_cm of the
    landmark's 3D vertex) has the cell the 2D landmark falls in on the chip. landmarks: L x 3 (x, y, visible)."""
    landmarks = np.asarray(landmarks, np.float64)
    seen = landmarks[:, 2] > 0.5
    target = grid_cells(landmarks[:, :2] @ chip_matrix[:, :2].T + chip_matrix[:, 2], chip_size, grid)
    seen &= target != INVISIBLE
    if not seen.any():
        return 0, 0
    distance = np.linalg.norm(np.asarray(vertices, np.float64)[seen, None, :3] - points[None, :, :3], axis=2)
    nearest = distance.argmin(1)
    close = distance[np.arange(len(nearest)), nearest] <= max_distance_cm
    agree = (np.asarray(cells)[nearest] == target[seen]) & close
    return int(agree.sum()), int(close.sum())
