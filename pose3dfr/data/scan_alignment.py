"""Scan alignment: a face scan moved rigidly (with its scale) onto the canonical face, and the model-ready Scan
built on it; `load_scan` is the one reader of a user's scan file. (Not view registration, which places a cloud's
points in one view's chip: pose3dfr.data.view_registration.)

Coarse: scale from units/extent, then PCA axes of scan and canonical surface matched under all 24 proper
axis/sign hypotheses, each refined by a short point-to-point ICP (Open3D). Fine: point-to-plane ICP at
shrinking distances. `prepare_points` / `load_scan` chain reading, cleaning, this alignment and
farthest-point sampling (pose3dfr.data.pointcloud) into a Scan.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose3dfr.data import pointcloud
from pose3dfr.errors import InvalidScanError, Pose3DFRError

# Points kept (seeded random subset) before outlier removal, alignment and farthest-point sampling: bounds
# their time and memory (FPS is O(P x num_points)); 200k is far denser than the 2048 the model uses.
MAX_PREPARE_POINTS = 200_000
# Scale factors to cm of the units a scan may come in; "auto" snaps the extent-based estimate to one.
UNIT_SCALES: dict[str, float] = {"mm": 0.1, "cm": 1.0, "m": 100.0, "inch": 2.54}
# "auto" snaps to a unit when the extent-based scale is within this factor of it (head vs face extent).
UNIT_SNAP_FACTOR = 1.6
# Points of the scan and of the canonical surface used for the 24 coarse hypotheses (speed).
COARSE_POINTS = 800
# ICP correspondence distances (cm): coarse, then two point-to-plane refinements.
ICP_DISTANCES_CM = (2.0, 1.0, 0.5)


@dataclass
class Alignment:
    """A similarity taking scan coordinates to the canonical frame: x_canonical = transform @ [x, 1]."""

    transform: np.ndarray  # 4 x 4 float64, upper-left 3 x 3 = scale * rotation
    scale: float  # scan units -> cm
    fitness: float  # fraction of scan points within the last ICP distance of the canonical surface
    rmse: float  # cm, over those inliers


@dataclass
class Scan:
    """A scan ready for the model: P x F float32 points in the canonical frame, and how it got there."""

    points: np.ndarray  # P x F float32 (F = 3, 6 or 9: xyz cm, normals, rgb in [0, 1])
    transform: np.ndarray  # 4 x 4 float64 from the file's coordinates to the canonical frame
    fitness: float
    rmse: float  # cm
    scale: float


def unit_scale(xyz: np.ndarray, units: str | float = "auto") -> float:
    """Factor taking `xyz` to cm: a named unit, a number, or 'auto' (extent compared with the canonical face,
    snapped to mm/cm/m/inch when close to one)."""
    if isinstance(units, (int, float)):
        return float(units)
    if units != "auto":
        try:
            return UNIT_SCALES[units]
        except KeyError:
            raise Pose3DFRError(f"unknown units {units!r}; use auto, a number or one of {sorted(UNIT_SCALES)}") from None
    estimate = _rms_radius(pointcloud.canonical_points()[:, :3]) / max(_rms_radius(xyz), 1e-12)
    best = min(UNIT_SCALES.values(), key=lambda s: abs(np.log(s / estimate)))
    return best if abs(np.log(best / estimate)) < np.log(UNIT_SNAP_FACTOR) else estimate


def align_to_canonical(points: np.ndarray, units: str | float = "auto", name: str = "scan",
                       clean: bool = True) -> np.ndarray:
    """P x F float32 points of a face scan (any frame and units) moved into the canonical frame (cm):
    NaN/Inf dropped, outliers removed (clean=True), then `estimate_alignment` applied."""
    pts = pointcloud.drop_nonfinite(np.asarray(points, dtype=np.float32), name)
    if clean:
        pts = pointcloud.remove_outliers(pts)
    return apply_transform(pts, estimate_alignment(pts, units, name).transform)


def estimate_alignment(points: np.ndarray, units: str | float = "auto", name: str = "scan") -> Alignment:
    """Rigidly align a face scan (P x 3+, any frame and units) to the canonical face.

    Coarse: scale from units/extent; PCA axes of scan and canonical surface matched under all 24 proper
    axis/sign hypotheses, each refined by a short point-to-point ICP and scored by the symmetric median
    distance. Fine: point-to-plane ICP at shrinking distances. A mirror image is never produced.
    """
    o3d = pointcloud.open3d_quiet()
    xyz = np.asarray(points, dtype=np.float64)[:, :3]
    pointcloud.check_not_degenerate(xyz, name)
    scale = unit_scale(xyz, units)
    target_pts = pointcloud.canonical_points()
    target = _cloud(target_pts[:, :3], target_pts[:, 3:6])
    source_full = xyz * scale
    rng = np.random.default_rng(0)
    coarse_src = source_full[rng.choice(len(source_full), min(COARSE_POINTS, len(source_full)), replace=False)]
    coarse_tgt = target_pts[rng.choice(len(target_pts), COARSE_POINTS, replace=False), :3].astype(np.float64)
    best, best_score = None, np.inf
    for init in _pca_hypotheses(coarse_src, coarse_tgt):
        result = o3d.pipelines.registration.registration_icp(
            _cloud(coarse_src), _cloud(coarse_tgt), ICP_DISTANCES_CM[0], init,
            o3d.pipelines.registration.TransformationEstimationPointToPoint(),
            o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=15))
        score = _symmetric_median(_apply(coarse_src, result.transformation), coarse_tgt)
        if score < best_score:
            best, best_score = result.transformation, score
    source = _cloud(source_full[rng.choice(len(source_full), min(20000, len(source_full)), replace=False)])
    result = None
    for distance in ICP_DISTANCES_CM[1:]:
        result = o3d.pipelines.registration.registration_icp(
            source, target, distance, best, o3d.pipelines.registration.TransformationEstimationPointToPlane(),
            o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=50))
        best = result.transformation
    transform = np.asarray(best, dtype=np.float64).copy()
    transform[:3, :3] = transform[:3, :3] * scale
    return Alignment(transform=transform, scale=scale, fitness=float(result.fitness), rmse=float(result.inlier_rmse))


def apply_transform(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Apply a 4 x 4 similarity to P x F points: xyz moved, normals rotated (and renormalised), rgb kept."""
    pts = np.array(points, dtype=np.float32, copy=True)
    pts[:, :3] = _apply(pts[:, :3].astype(np.float64), transform)
    if pts.shape[1] >= 6:
        rotated = pts[:, 3:6].astype(np.float64) @ transform[:3, :3].T
        pts[:, 3:6] = rotated / np.maximum(np.linalg.norm(rotated, axis=1, keepdims=True), 1e-12)
    return pts


def prepare_points(points: np.ndarray, num_points: int = 2048, point_features: int = 9, align: bool = True,
                   units: str | float = "auto", clean: bool = True, seed: int = 0, name: str = "scan") -> Scan:
    """Turn raw P x F points (any frame/units) into a model-ready Scan: drop NaN/Inf, remove outliers,
    align (or only scale and centre when align=False), farthest-point downsample, fix the feature count."""
    pts = np.asarray(points, dtype=np.float32)
    if len(pts) > pointcloud.MAX_SCAN_POINTS:
        raise InvalidScanError(f"{name}: {len(pts):,} points is over the limit of {pointcloud.MAX_SCAN_POINTS:,} "
                               "(pose3dfr.data.pointcloud.MAX_SCAN_POINTS); downsample the scan first")
    pts = pointcloud.drop_nonfinite(pts, name)
    if len(pts) > MAX_PREPARE_POINTS:
        pts = pts[np.sort(np.random.default_rng(seed).choice(len(pts), MAX_PREPARE_POINTS, replace=False))]
    pointcloud.check_not_degenerate(pts[:, :3].astype(np.float64), name)
    if clean:
        pts = pointcloud.remove_outliers(pts)
    if align:
        alignment = estimate_alignment(pts, units, name)
    else:
        scale = unit_scale(pts[:, :3].astype(np.float64), units)
        transform = np.eye(4)
        transform[:3, :3] *= scale
        transform[:3, 3] = pointcloud.canonical_centroid() - scale * pts[:, :3].astype(np.float64).mean(axis=0)
        alignment = Alignment(transform, scale, fitness=float("nan"), rmse=float("nan"))
    pts = apply_transform(pts, alignment.transform)
    pts = pts[pointcloud.farthest_point_sample(pts[:, :3], num_points, seed=seed)]
    if pts.shape[1] < 6 and point_features >= 6:  # normals from the scan surface, oriented out of the face
        pts = np.concatenate([pts[:, :3], pointcloud.estimate_normals(pts[:, :3]).astype(np.float32), pts[:, 6:]], axis=1)
    return Scan(pointcloud.with_features(pts, point_features), alignment.transform, alignment.fitness, alignment.rmse, alignment.scale)


def load_scan(path: str | Path, num_points: int = 2048, point_features: int = 9, align: bool = True,
              units: str | float = "auto", seed: int = 0) -> Scan:
    """Read a user scan (.ply/.pcd/.obj/.stl/.off/.xyz) and bring it to the canonical frame; see prepare_points.
    Raises InvalidScanError naming the file for missing, unreadable, empty, all-NaN, degenerate or over-limit
    scans."""
    path = Path(path)
    if not path.exists():
        raise InvalidScanError(f"{path.name}: no such scan file")
    points = pointcloud.read_point_cloud(path, seed=seed)
    return prepare_points(points, num_points, point_features, align, units, seed=seed, name=path.name)


def _cloud(xyz: np.ndarray, normals: np.ndarray | None = None):
    o3d = pointcloud.open3d_quiet()
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(xyz, dtype=np.float64)))
    if normals is not None:
        cloud.normals = o3d.utility.Vector3dVector(np.asarray(normals, dtype=np.float64))
    return cloud


def _apply(xyz: np.ndarray, transform: np.ndarray) -> np.ndarray:
    t = np.asarray(transform, dtype=np.float64)
    return xyz @ t[:3, :3].T + t[:3, 3]


def _rms_radius(xyz: np.ndarray) -> float:
    centred = np.asarray(xyz, dtype=np.float64) - np.mean(xyz, axis=0)
    return float(np.sqrt((centred ** 2).sum(axis=1).mean()))


def _pca_frame(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroid and 3 x 3 rows = principal axes (largest variance first), a proper rotation."""
    mean = xyz.mean(axis=0)
    _, _, vt = np.linalg.svd(xyz - mean, full_matrices=False)
    if np.linalg.det(vt) < 0:
        vt[2] *= -1
    return mean, vt


@functools.lru_cache(maxsize=1)
def _proper_signed_permutations() -> tuple[np.ndarray, ...]:
    """The 24 rotations that map coordinate axes onto coordinate axes (signed permutations, det +1)."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            q = np.zeros((3, 3))
            q[range(3), perm] = signs
            if np.linalg.det(q) > 0:
                out.append(q)
    return tuple(out)


def _pca_hypotheses(source: np.ndarray, target: np.ndarray) -> list[np.ndarray]:
    """4 x 4 initial transforms mapping the source's PCA frame onto the target's under each axis hypothesis."""
    mu_s, axes_s = _pca_frame(source)
    mu_t, axes_t = _pca_frame(target)
    out = []
    for q in _proper_signed_permutations():
        rotation = axes_t.T @ q @ axes_s
        init = np.eye(4)
        init[:3, :3] = rotation
        init[:3, 3] = mu_t - rotation @ mu_s
        out.append(init)
    return out


def _symmetric_median(source: np.ndarray, target: np.ndarray) -> float:
    """Median nearest-neighbour distance source->target plus target->source (robust to partial overlap)."""
    a, b = _cloud(source), _cloud(target)
    return float(np.median(np.asarray(a.compute_point_cloud_distance(b))) +
                 np.median(np.asarray(b.compute_point_cloud_distance(a))))
