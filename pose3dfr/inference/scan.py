"""Point clouds for inference besides a scan file (which pose3dfr.data.scan_alignment.load_scan reads, cleans,
aligns to the canonical face frame and samples):

* `canonical_points_array(points)`: points already in the canonical frame (a synthetic render's) sampled
  and given the model's feature count.
* `pseudo_point_cloud_from_image(photo)`: the pseudo point cloud (pose3dfr.data.pseudo_cloud) of a photo's
  face, found by the face pipeline.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from pose3dfr.data import pointcloud
from pose3dfr.data.pseudo_cloud import DEFAULT_NUM_POINTS, pseudo_point_cloud
from pose3dfr.errors import InvalidScanError
from pose3dfr.face.image_io import load_image
from pose3dfr.inference.detect import FaceAnalyzer


def pseudo_point_cloud_from_image(image, num_points: int = DEFAULT_NUM_POINTS, face_index: int = 0,
                                  analyzer=None, seed: int = 0) -> np.ndarray:
    """P x 9 pseudo point cloud of the face at `face_index` (0 = largest) in a photo (any load_image input).

    `analyzer`: a FaceAnalyzer to reuse (one is created and cached otherwise). NoFaceError if no face.
    """
    name = Path(image).name if isinstance(image, (str, Path)) else "image"
    rgb = load_image(image)
    face = (analyzer or _default_analyzer()).analyze(rgb, name=name).select(face_index)
    return pseudo_point_cloud(face.require_landmarks(name), num_points=num_points, image=rgb, seed=seed)


def canonical_points_array(points: np.ndarray, num_points: int = DEFAULT_NUM_POINTS, features: int = 9,
                           seed: int = 0, name: str = "scan points") -> np.ndarray:
    """Points already in the canonical frame (P x 3/6/9 array, cm; e.g. a synthetic render's) made model-ready:
    NaN/Inf rows dropped, farthest-point sampled to `num_points`, `features` columns. InvalidScanError if unusable."""
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


_ANALYZER = None
_ANALYZER_LOCK = threading.Lock()


def _default_analyzer():
    """A FaceAnalyzer shared by the module-level helpers (loading one costs ~0.3 s)."""
    global _ANALYZER
    with _ANALYZER_LOCK:
        if _ANALYZER is None:
            _ANALYZER = FaceAnalyzer()
        return _ANALYZER
