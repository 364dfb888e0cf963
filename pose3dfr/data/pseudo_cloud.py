"""Pseudo point clouds: a photo's 468 MediaPipe 3D landmarks put into the canonical face frame (a similarity
Procrustes fit onto the canonical mesh removes head pose, position and scale) and densified over the
canonical mesh's triangles. It is the subject's landmark shape, not a true scan: used when no scan is given
(the app's 3D view) and by the ARL-VTF loader, which has no 3D data.
"""

from __future__ import annotations

import numpy as np

from pose3dfr.data.pointcloud import sample_mesh
from pose3dfr.errors import Pose3DFRError
from pose3dfr.face.align import umeyama
from pose3dfr.face.mesh import load_canonical_mesh

# Points per cloud: the model's default (ModelConfig.num_points); callers pass the model's own value.
DEFAULT_NUM_POINTS = 2048


NUM_MESH_LANDMARKS = 468


# MediaPipe landmarks are image pixels (x right, y down) with z growing away from the camera;
# this flips them into a right-handed y-up, z-towards-viewer frame like the canonical mesh.
_IMAGE_TO_CANONICAL_AXES = np.array([1.0, -1.0, -1.0])


def landmarks_to_canonical(landmarks_xyz: np.ndarray) -> np.ndarray:
    """468 x 3 landmarks (pixels, MediaPipe depth) -> the canonical frame (cm), head pose removed.

    A least-squares similarity (Umeyama, no reflection) maps the landmarks onto the canonical mesh's
    vertices, so the result keeps the subject's shape but sits frontal, centred and at canonical scale.
    """
    scale, rotation, shift = canonical_similarity(landmarks_xyz)
    src = np.asarray(landmarks_xyz, dtype=np.float64)[:NUM_MESH_LANDMARKS, :3] * _IMAGE_TO_CANONICAL_AXES
    return scale * src @ rotation.T + shift


def canonical_similarity(landmarks_xyz: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, 3 x 3 rotation, shift) of the least-squares similarity that `landmarks_to_canonical` applies:
    canonical ~ scale * R @ (landmarks * (1, -1, -1)) + shift, for 468/478 x 3 landmarks in image pixels."""
    lm = np.asarray(landmarks_xyz, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] < NUM_MESH_LANDMARKS or lm.shape[1] < 3:
        raise Pose3DFRError(f"expected MediaPipe 3D landmarks (468 or 478 x 3), got shape {lm.shape}")
    if not np.isfinite(lm[:NUM_MESH_LANDMARKS, :3]).all():
        raise Pose3DFRError("landmarks hold NaN or Inf values")
    src = lm[:NUM_MESH_LANDMARKS, :3] * _IMAGE_TO_CANONICAL_AXES
    return umeyama(src, load_canonical_mesh().vertices, "landmarks")


def pseudo_point_cloud(landmarks_xyz: np.ndarray, num_points: int = DEFAULT_NUM_POINTS,
                       image: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """P x 9 float32 (xyz cm, normals, rgb in [0, 1]) densified over the canonical mesh triangles.

    Points are drawn uniformly by area (seeded), which covers the surface evenly in expectation; no
    farthest-point pass, so a cloud costs ~2 ms and fits the interactive latency budget.

    `landmarks_xyz`: 468/478 x 3 MediaPipe landmarks in image pixels. With `image` (the photo they came
    from, H x W x 3 uint8 RGB) each point takes the photo's colour at its landmark position, else grey.
    """
    if num_points < 1:
        raise Pose3DFRError(f"num_points must be >= 1, got {num_points}")
    vertices = landmarks_to_canonical(landmarks_xyz)
    colours = _vertex_colours(image, np.asarray(landmarks_xyz)[:NUM_MESH_LANDMARKS, :2]) if image is not None else None
    return sample_mesh(vertices, load_canonical_mesh().faces, num_points, colours, seed=seed)


def _vertex_colours(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] of the image at each landmark (nearest pixel, clamped to the image)."""
    h, w = image.shape[:2]
    cols = np.clip(np.round(xy[:, 0]).astype(int), 0, w - 1)
    rows = np.clip(np.round(xy[:, 1]).astype(int), 0, h - 1)
    return image[rows, cols, :3].astype(np.float64) / 255.0
