"""Point-cloud utilities on Open3D: read and write scans, validate, clean, sample and downsample them.

Scan files are parsed by pose3dfr.data.scan_io (strict numpy readers in an isolated, resource-limited
process); Open3D works only on the arrays it returns, and writes our own arrays (save_*). Rigid alignment
of a scan to the canonical face, and the model-ready Scan, are in pose3dfr.data.scan_alignment.

Every point cloud handed to the model is P x F float32 in the canonical face frame (MediaPipe's
canonical mesh frame, cm, x image right, y up, z out of the face); F = 3 (xyz), 6 (+ normals) or
9 (+ normals + rgb in [0, 1]), columns in that order. See docs/data.md for the pipeline.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose3dfr.data.scan_io import parse_scan, read_scan_isolated
from pose3dfr.errors import InvalidScanError, Pose3DFRError

# Largest scan accepted (points, or mesh vertices): 5 million covers a dense structured-light head
# scan; more is almost certainly not a face scan and would cost gigabytes in Open3D. Over it: rejected.
MAX_SCAN_POINTS = 5_000_000
# Fewest finite points a scan must keep to be usable (normals need a neighbourhood).
MIN_SCAN_POINTS = 16
# Points sampled (by area) from a mesh scan before cleaning and downsampling.
MESH_SAMPLE_POINTS = 20_000
# Grey used for the rgb columns when a scan has no colours (F = 9 needs them).
DEFAULT_GREY = 0.5


def open3d_quiet():
    """Open3D, imported on first use (it is slow to import) with its console chatter silenced."""
    import open3d as o3d

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    return o3d


# ----------------------------------------------------------------------------------------------
# Writing and reading
# ----------------------------------------------------------------------------------------------

def save_point_cloud(path: str | Path, points: np.ndarray) -> Path:
    """Write P x F points (F = 3, 6 or 9: xyz, normals, rgb in [0, 1]) to a binary .ply (or .pcd)."""
    o3d = open3d_quiet()
    pts = _check_features(np.asarray(points), f"{Path(path).name}: points")
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts[:, :3].astype(np.float64)))
    if pts.shape[1] >= 6:
        cloud.normals = o3d.utility.Vector3dVector(pts[:, 3:6].astype(np.float64))
    if pts.shape[1] == 9:
        cloud.colors = o3d.utility.Vector3dVector(np.clip(pts[:, 6:9], 0.0, 1.0).astype(np.float64))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not o3d.io.write_point_cloud(str(path), cloud, write_ascii=False):
        raise Pose3DFRError(f"{path.name}: Open3D could not write the point cloud")
    return path


def save_mesh(path: str | Path, vertices: np.ndarray, faces: np.ndarray, vertex_colors: np.ndarray | None = None,
              vertex_normals: np.ndarray | None = None) -> Path:
    """Write a triangle mesh (V x 3 vertices, F x 3 int faces, optional V x 3 colours in [0, 1] or uint8,
    optional V x 3 normals) to .ply / .obj / .off / .stl with Open3D."""
    o3d = open3d_quiet()
    verts = np.asarray(vertices, dtype=np.float64)
    tris = np.asarray(faces, dtype=np.int64)
    if verts.ndim != 2 or verts.shape[1] != 3 or tris.ndim != 2 or tris.shape[1] != 3:
        raise Pose3DFRError(f"{Path(path).name}: need V x 3 vertices and F x 3 faces, got {verts.shape}, {tris.shape}")
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(verts), o3d.utility.Vector3iVector(tris.astype(np.int32)))
    if vertex_colors is not None:
        mesh.vertex_colors = o3d.utility.Vector3dVector(_unit_colors(vertex_colors))
    if vertex_normals is not None:
        mesh.vertex_normals = o3d.utility.Vector3dVector(np.asarray(vertex_normals, dtype=np.float64))
    path = Path(path)
    if path.suffix.lower() == ".stl":  # STL stores one normal per triangle
        mesh.compute_triangle_normals()
    path.parent.mkdir(parents=True, exist_ok=True)
    ok = o3d.io.write_triangle_mesh(str(path), mesh, write_ascii=False, write_vertex_normals=vertex_normals is not None,
                                    write_vertex_colors=vertex_colors is not None)
    if not ok:
        raise Pose3DFRError(f"{path.name}: Open3D could not write the mesh")
    return path


@dataclass(frozen=True)
class RawMesh:
    """A triangle mesh as read from disk (arbitrary units and frame)."""

    vertices: np.ndarray  # V x 3 float64
    faces: np.ndarray  # F x 3 int64
    vertex_colors: np.ndarray | None = None  # V x 3 float64 in [0, 1]
    vertex_normals: np.ndarray | None = None  # V x 3 float64


def read_mesh(path: str | Path) -> RawMesh:
    """Read a triangle mesh file (.ply/.obj/.stl/.off) with the isolated reader (pose3dfr.data.scan_io);
    InvalidScanError naming the file if it is not one."""
    path = Path(path)
    scan = read_scan_isolated(path, MAX_SCAN_POINTS)
    if scan.faces is None or len(scan.faces) == 0:
        raise InvalidScanError(f"{path.name}: no triangles could be read (empty or not a mesh)")
    as64 = lambda a: None if a is None else a.astype(np.float64)  # noqa: E731
    return RawMesh(scan.xyz, scan.faces, as64(scan.colors), as64(scan.normals))


def read_point_cloud(path: str | Path, num_mesh_samples: int = MESH_SAMPLE_POINTS, seed: int | None = None,
                     trusted: bool = False) -> np.ndarray:
    """Read any supported scan as P x F float32 (xyz[, normals[, rgb]]) in the file's own units and frame.

    The file is parsed by pose3dfr.data.scan_io's strict numpy readers: in an isolated, resource-limited
    process, or in this process with `trusted` (a data set's own files, read thousands of times in
    training, where a process per file would cost ~0.3 s each); Open3D only sees the checked arrays. A file holding triangles is sampled by area into `num_mesh_samples` points with
    normals (seeded by `seed`, else by the file name, so the same file always gives the same points).
    NaN/Inf points are dropped. Raises InvalidScanError naming the file if it is unreadable, empty, all
    NaN, over the limits or degenerate.
    """
    path = Path(path)
    scan = parse_scan(path, MAX_SCAN_POINTS) if trusted else read_scan_isolated(path, MAX_SCAN_POINTS)
    if scan.faces is not None and len(scan.faces):
        points = sample_mesh(scan.xyz, scan.faces, num_mesh_samples, scan.colors,
                             seed=_file_seed(path) if seed is None else seed, name=path.name)
        if not np.isfinite(points).all():  # coordinates beyond float32's range
            raise InvalidScanError(f"{path.name}: vertex coordinates are out of range (over 3.4e38)")
        return points
    columns = [scan.xyz] + ([scan.normals] if scan.normals is not None else [])
    if scan.normals is not None and scan.colors is not None:
        columns.append(scan.colors)
    with np.errstate(over="ignore"):  # values beyond float32's range become Inf here, dropped below
        points = np.concatenate(columns, axis=1).astype(np.float32)
    finite = np.isfinite(points).all(axis=1)
    points = drop_nonfinite(points, name=path.name)
    if scan.colors is not None and scan.normals is None:  # keep the colours: give them normals to sit behind
        points = np.concatenate([points, estimate_normals(points[:, :3]), scan.colors[finite]], axis=1)
    check_not_degenerate(points[:, :3], path.name)
    return points.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------

def _check_features(points: np.ndarray, name: str) -> np.ndarray:
    if points.ndim != 2 or points.shape[1] not in (3, 6, 9):
        raise Pose3DFRError(f"{name}: expected P x 3, 6 or 9 points, got shape {points.shape}")
    return points


def _unit_colors(colors: np.ndarray) -> np.ndarray:
    c = np.asarray(colors)
    if c.dtype == np.uint8 or (c.size and float(np.nanmax(c)) > 1.0):
        return c.astype(np.float64) / 255.0
    return c.astype(np.float64)


def _file_seed(path: Path) -> int:
    """A seed fixed by the file's name, so sampling a file is reproducible across runs and processes."""
    import zlib

    return zlib.crc32(str(path.resolve()).encode())


def drop_nonfinite(points: np.ndarray, name: str = "scan") -> np.ndarray:
    """Rows of `points` whose values are all finite; InvalidScanError if none are."""
    pts = np.asarray(points)
    keep = np.isfinite(pts).all(axis=1)
    if not keep.any():
        raise InvalidScanError(f"{name}: every point is NaN or Inf")
    return pts[keep]


def check_not_degenerate(xyz: np.ndarray, name: str = "scan") -> None:
    """Raise InvalidScanError if the points are too few, or lie on one spot or on a line."""
    if len(xyz) < MIN_SCAN_POINTS:
        raise InvalidScanError(f"{name}: only {len(xyz)} finite points (need at least {MIN_SCAN_POINTS})")
    xyz = np.asarray(xyz, dtype=np.float64)  # a float32 mean of values near 3e38 would overflow
    centred = xyz - xyz.mean(axis=0)
    sample = centred[:: max(1, len(centred) // 20000)]
    singular = np.linalg.svd(sample, compute_uv=False)
    if not np.isfinite(singular).all() or singular[0] <= 1e-9 or singular[1] <= 1e-6 * singular[0]:
        raise InvalidScanError(f"{name}: degenerate scan (all points on one spot or on a line)")
    if singular[2] <= 1e-6 * singular[0]:  # a face has depth (nose, cheeks); a flat sheet is not a face scan
        raise InvalidScanError(f"{name}: degenerate scan (all points on one plane)")


# ----------------------------------------------------------------------------------------------
# Sampling, cleaning, normals, downsampling
# ----------------------------------------------------------------------------------------------

def sample_mesh(vertices: np.ndarray, faces: np.ndarray, num_points: int, vertex_colors: np.ndarray | None = None,
                seed: int = 0, name: str = "mesh") -> np.ndarray:
    """Sample `num_points` points uniformly by area: P x 9 float32 (xyz, face normal, rgb in [0, 1]).

    Done in numpy with a per-call generator rather than Open3D's sampler, whose random state is global
    (not reproducible per file when several data-loader threads sample at once).
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = np.cross(b - a, c - a)
    area = np.linalg.norm(cross, axis=1)
    if not np.isfinite(area).all() or area.sum() <= 0:
        raise InvalidScanError(f"{name}: degenerate mesh (no triangle with a positive area)")
    rng = np.random.default_rng(seed)
    tri = rng.choice(len(f), size=num_points, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(num_points)), rng.random(num_points)
    w = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1)  # barycentric weights, P x 3
    xyz = w[:, :1] * a[tri] + w[:, 1:2] * b[tri] + w[:, 2:] * c[tri]
    normals = cross[tri] / np.maximum(area[tri], 1e-12)[:, None]
    if vertex_colors is not None and len(vertex_colors) == len(v):
        col = _unit_colors(vertex_colors)
        rgb = (w[:, :, None] * col[f[tri]]).sum(axis=1)
    else:
        rgb = np.full((num_points, 3), DEFAULT_GREY)
    return np.concatenate([xyz, normals, np.clip(rgb, 0, 1)], axis=1).astype(np.float32)


def remove_outliers(points: np.ndarray, nb_neighbors: int = 20, std_ratio: float = 2.5) -> np.ndarray:
    """Statistical outlier removal (Open3D): drop points whose mean neighbour distance is unusually large."""
    if len(points) <= nb_neighbors:
        return points
    o3d = open3d_quiet()
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points[:, :3], dtype=np.float64)))
    _, kept = cloud.remove_statistical_outlier(nb_neighbors=nb_neighbors, std_ratio=std_ratio)
    return points[np.asarray(kept, dtype=np.int64)]


def estimate_normals(xyz: np.ndarray, knn: int = 20, towards: np.ndarray | None = None) -> np.ndarray:
    """Unit normals (P x 3) from local PCA with Open3D, oriented towards the point `towards`
    (default: far along +z, i.e. out of a face in the canonical frame)."""
    o3d = open3d_quiet()
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(xyz, dtype=np.float64)))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=min(knn, max(len(xyz) - 1, 3))))
    target = np.asarray(xyz, np.float64).mean(0) + np.array([0.0, 0.0, 1e4]) if towards is None else towards
    cloud.orient_normals_towards_camera_location(np.asarray(target, dtype=np.float64))
    return np.asarray(cloud.normals, dtype=np.float64)


def farthest_point_sample(xyz: np.ndarray, num_points: int, seed: int = 0) -> np.ndarray:
    """Indices of `num_points` farthest-point samples of P x 3 `xyz` (vectorised numpy, O(P * num_points)).

    With fewer points than asked, every index is kept and the rest are drawn again at random (the
    model needs a fixed P).
    """
    coords = np.ascontiguousarray(np.asarray(xyz, dtype=np.float32)[:, :3].T)  # 3 x P, in-place float32 is ~10x faster
    count = coords.shape[1]
    rng = np.random.default_rng(seed)
    if count <= num_points:
        extra = rng.choice(count, size=num_points - count, replace=True) if num_points > count else np.empty(0, np.int64)
        return np.concatenate([np.arange(count), extra]).astype(np.int64)
    chosen = np.empty(num_points, dtype=np.int64)
    chosen[0] = rng.integers(count)
    nearest = np.full(count, np.inf, dtype=np.float32)
    dist, term = np.empty(count, np.float32), np.empty(count, np.float32)
    for i in range(1, num_points):
        last = chosen[i - 1]
        dist.fill(0.0)
        for axis in coords:
            np.subtract(axis, axis[last], out=term)
            np.multiply(term, term, out=term)
            dist += term
        np.minimum(nearest, dist, out=nearest)
        chosen[i] = int(nearest.argmax())
    return chosen


def random_sample(count: int, num_points: int, seed: int = 0) -> np.ndarray:
    """`num_points` random indices into `count` points (without replacement when there are enough)."""
    rng = np.random.default_rng(seed)
    return rng.choice(count, size=num_points, replace=count < num_points)


def with_features(points: np.ndarray, features: int) -> np.ndarray:
    """Points with exactly `features` columns (3, 6 or 9): cut extra columns; add missing normals
    (estimated) or grey colours."""
    if features not in (3, 6, 9):
        raise Pose3DFRError(f"point_features must be 3, 6 or 9, got {features}")
    pts = np.asarray(points, dtype=np.float32)
    if pts.shape[1] < 6 and features >= 6:
        pts = np.concatenate([pts[:, :3], estimate_normals(pts[:, :3]).astype(np.float32)], axis=1)
    if pts.shape[1] < 9 and features == 9:
        pts = np.concatenate([pts[:, :6], np.full((len(pts), 3), DEFAULT_GREY, np.float32)], axis=1)
    return np.ascontiguousarray(pts[:, :features])


# ----------------------------------------------------------------------------------------------
# Canonical frame
# ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def canonical_points(num_points: int = 4000) -> np.ndarray:
    """The canonical face mesh sampled by area: P x 9 float32 in cm (fixed seed); the alignment target."""
    from pose3dfr.face.mesh import load_canonical_mesh

    mesh = load_canonical_mesh()
    return sample_mesh(mesh.vertices, mesh.faces, num_points, seed=12345)


def canonical_centroid() -> np.ndarray:
    """Centroid (cm) of the area-sampled canonical face surface; where `centre_to_canonical` puts a face."""
    return canonical_points()[:, :3].astype(np.float64).mean(axis=0)


def centre_to_canonical(points: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Scale xyz by `scale` (e.g. 0.1 for mm -> cm) and move their centroid to the canonical face's centroid.
    Normals and colours are unchanged (a uniform scale and a translation keep normals)."""
    pts = np.array(points, dtype=np.float32, copy=True)
    xyz = pts[:, :3].astype(np.float64) * scale
    pts[:, :3] = xyz - xyz.mean(axis=0) + canonical_centroid()
    return pts
