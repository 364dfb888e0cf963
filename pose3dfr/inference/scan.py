"""Point clouds for inference: a user's 3D scan, or a pseudo point cloud built from a photo's 3D landmarks.

* `load_scan(path)`: read (.ply/.pcd/.obj/.stl/.off/.xyz), clean, align to the canonical face frame and
  sample P points, all through `pose3dfr.data.pointcloud` (the one implementation of those steps).
* `canonical_points_array(points)`: points already in the canonical frame (a synthetic render's) sampled
  and given the model's feature count.
* `pseudo_point_cloud(landmarks)`: MediaPipe's 468 3D landmarks put into the canonical frame (a similarity
  Procrustes fit onto the canonical mesh removes head pose, position and scale) and densified over the
  canonical mesh's triangles. It is the subject's landmark shape, not a true scan: used when no scan is
  given (the app's 3D view) and by the ARL-VTF loader, which has no 3D data.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from pose3dfr.errors import InvalidScanError, Pose3DFRError

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
    from pose3dfr.data.mesh import load_canonical_mesh

    lm = np.asarray(landmarks_xyz, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] < NUM_MESH_LANDMARKS or lm.shape[1] < 3:
        raise Pose3DFRError(f"expected MediaPipe 3D landmarks (468 or 478 x 3), got shape {lm.shape}")
    if not np.isfinite(lm[:NUM_MESH_LANDMARKS, :3]).all():
        raise Pose3DFRError("landmarks hold NaN or Inf values")
    src = lm[:NUM_MESH_LANDMARKS, :3] * _IMAGE_TO_CANONICAL_AXES
    dst = load_canonical_mesh().vertices
    scale, rotation, shift = _umeyama(src, dst)
    return scale * src @ rotation.T + shift


def pseudo_point_cloud(landmarks_xyz: np.ndarray, num_points: int = DEFAULT_NUM_POINTS,
                       image: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """P x 9 float32 (xyz cm, normals, rgb in [0, 1]) densified over the canonical mesh triangles.

    Points are drawn uniformly by area (seeded), which covers the surface evenly in expectation; no
    farthest-point pass, so a cloud costs ~2 ms and fits the interactive latency budget.

    `landmarks_xyz`: 468/478 x 3 MediaPipe landmarks in image pixels. With `image` (the photo they came
    from, H x W x 3 uint8 RGB) each point takes the photo's colour at its landmark position, else grey.
    """
    from pose3dfr.data.mesh import load_canonical_mesh
    from pose3dfr.data.pointcloud import sample_mesh

    if num_points < 1:
        raise Pose3DFRError(f"num_points must be >= 1, got {num_points}")
    vertices = landmarks_to_canonical(landmarks_xyz)
    colours = _vertex_colours(image, np.asarray(landmarks_xyz)[:NUM_MESH_LANDMARKS, :2]) if image is not None else None
    return sample_mesh(vertices, load_canonical_mesh().faces, num_points, colours, seed=seed)


def pseudo_point_cloud_from_image(image, num_points: int = DEFAULT_NUM_POINTS, face_index: int = 0,
                                  analyzer=None, seed: int = 0) -> np.ndarray:
    """P x 9 pseudo point cloud of the face at `face_index` (0 = largest) in a photo (any load_image input).

    `analyzer`: a FaceAnalyzer to reuse (one is created and cached otherwise). NoFaceError if no face.
    """
    from pose3dfr.inference.image_io import load_image

    name = Path(image).name if isinstance(image, (str, Path)) else "image"
    rgb = load_image(image)
    face = (analyzer or _default_analyzer()).analyze(rgb, name=name).select(face_index)
    return pseudo_point_cloud(face.require_landmarks(name), num_points=num_points, image=rgb, seed=seed)


def load_scan(path: str | Path, num_points: int = DEFAULT_NUM_POINTS, features: int = 9, seed: int = 0) -> np.ndarray:
    """A user's 3D scan as P x `features` float32 in the canonical face frame (cm): read, cleaned (NaN and
    outliers dropped), aligned (PCA hypotheses + ICP onto the canonical face) and farthest-point sampled by
    `pose3dfr.data.pointcloud.load_scan`. InvalidScanError naming the file if it is unusable."""
    from pose3dfr.data import pointcloud

    path = Path(path)
    if not path.exists():
        raise InvalidScanError(f"{path.name}: no such scan file")
    return pointcloud.load_scan(path, num_points=num_points, point_features=features, seed=seed).points


def canonical_points_array(points: np.ndarray, num_points: int = DEFAULT_NUM_POINTS, features: int = 9,
                           seed: int = 0, name: str = "scan points") -> np.ndarray:
    """Points already in the canonical frame (P x 3/6/9 array, cm; e.g. a synthetic render's) made model-ready:
    NaN/Inf rows dropped, farthest-point sampled to `num_points`, `features` columns. InvalidScanError if unusable."""
    from pose3dfr.data import pointcloud

    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] not in (3, 6, 9):
        raise InvalidScanError(f"{name}: expected a P x 3, 6 or 9 array, got shape {pts.shape}")
    if len(pts) > pointcloud.MAX_SCAN_POINTS:
        raise InvalidScanError(f"{name}: {len(pts):,} points is over the limit of {pointcloud.MAX_SCAN_POINTS:,}")
    if len(pts) == 0:
        raise InvalidScanError(f"{name}: no points (empty array)")
    pts = pointcloud.drop_nonfinite(pts, name=name)
    pointcloud.check_not_degenerate(pts[:, :3].astype(np.float64), name)
    pts = pts[pointcloud.farthest_point_sample(pts[:, :3], num_points, seed=seed)]
    return np.ascontiguousarray(pointcloud.with_features(pts, features))


def _vertex_colours(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] of the image at each landmark (nearest pixel, clamped to the image)."""
    h, w = image.shape[:2]
    cols = np.clip(np.round(xy[:, 0]).astype(int), 0, w - 1)
    rows = np.clip(np.round(xy[:, 1]).astype(int), 0, h - 1)
    return image[rows, cols, :3].astype(np.float64) / 255.0


def _umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity dst ~ scale * R @ src + t (3D, proper rotation)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    var_s = (s_c ** 2).sum() / len(src)
    if var_s < 1e-12:
        raise Pose3DFRError("landmarks are degenerate (all at one place)")
    u, sig, vt = np.linalg.svd(d_c.T @ s_c / len(src))
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rotation = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / var_s)
    return scale, rotation, mu_d - scale * rotation @ mu_s


_ANALYZER = None
_ANALYZER_LOCK = threading.Lock()


def _default_analyzer():
    """A FaceAnalyzer shared by the module-level helpers (loading one costs ~0.3 s)."""
    global _ANALYZER
    with _ANALYZER_LOCK:
        if _ANALYZER is None:
            from pose3dfr.inference.detect import FaceAnalyzer

            _ANALYZER = FaceAnalyzer()
        return _ANALYZER
