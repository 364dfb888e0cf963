"""The canonical face mesh (MediaPipe's 468-vertex model) that synthetic identities and alignment start from."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose3dfr.errors import DatasetError
from pose3dfr.paths import CANONICAL_FACE_MESH


@dataclass(frozen=True)
class TriangleMesh:
    """Vertices in cm in the canonical face frame (see pose3dfr.geometry), triangles, optional UVs."""

    vertices: np.ndarray  # V x 3 float64
    faces: np.ndarray  # F x 3 int64, counter-clockwise seen from outside
    uvs: np.ndarray | None = None  # V x 2 float64 in [0, 1]


@functools.lru_cache(maxsize=4)
def load_canonical_mesh(path: str | Path = CANONICAL_FACE_MESH) -> TriangleMesh:
    """Read the shipped canonical mesh (.obj with v, vt and f records; vertex i = MediaPipe landmark i)."""
    vertices, uvs, faces = [], [], []
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise DatasetError(f"{Path(path).name}: cannot read the canonical mesh ({exc})") from None
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            vertices.append([float(x) for x in parts[1:4]])
        elif parts[0] == "vt":
            uvs.append([float(x) for x in parts[1:3]])
        elif parts[0] == "f":
            faces.append([int(p.split("/")[0]) - 1 for p in parts[1:4]])
    if not vertices or not faces:
        raise DatasetError(f"{Path(path).name}: no vertices or faces in the mesh")
    v = np.asarray(vertices, dtype=np.float64)
    uv = np.asarray(uvs, dtype=np.float64) if len(uvs) == len(vertices) else None
    return TriangleMesh(vertices=v, faces=np.asarray(faces, dtype=np.int64), uvs=uv)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit per-vertex normals (area-weighted sum of the adjacent face normals), V x 3."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # F x 3, length = 2 x area
    normals = np.zeros_like(v)
    for corner in range(3):
        np.add.at(normals, f[:, corner], face_n)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.maximum(length, 1e-12)


def boundary_loop(faces: np.ndarray) -> np.ndarray:
    """Vertex indices of the longest boundary loop, in the faces' winding order (the open rim of a mask)."""
    f = np.asarray(faces, dtype=np.int64)
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    key = np.sort(directed, axis=1)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    rim = directed[counts[inverse.ravel()] == 1]
    following = dict(zip(rim[:, 0].tolist(), rim[:, 1].tolist()))
    loops, seen = [], set()
    for start in sorted(following):
        if start in seen:
            continue
        loop, node = [], start
        while node not in seen and node in following:
            seen.add(node)
            loop.append(node)
            node = following[node]
        loops.append(loop)
    if not loops:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(max(loops, key=len), dtype=np.int64)


def loop_subdivide(mesh: TriangleMesh, levels: int = 1) -> TriangleMesh:
    """Loop subdivision (smooth limit surface; creases along the open boundary). The original vertices stay
    first with their indices (so MediaPipe landmark i is still vertex i), moved to their smoothed
    positions; UVs of new vertices are edge midpoints."""
    for _ in range(levels):
        mesh = _loop_once(mesh)
    return mesh


def _loop_once(mesh: TriangleMesh) -> TriangleMesh:
    v, f = mesh.vertices, mesh.faces
    n_v, n_f = len(v), len(f)
    half = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])  # 3F x 2, edge k of face i at k*F + i
    opposite = np.concatenate([f[:, 2], f[:, 0], f[:, 1]])  # vertex opposite each half edge
    edges, edge_of_half, counts = np.unique(np.sort(half, axis=1), axis=0, return_inverse=True, return_counts=True)
    edge_of_half = edge_of_half.ravel()
    is_boundary = counts == 1  # E
    # New edge vertices: 3/8 (a + b) + 1/8 (c + d) inside, midpoint on the boundary.
    opp_sum = np.zeros((len(edges), 3))
    np.add.at(opp_sum, edge_of_half, v[opposite])
    ends = v[edges[:, 0]] + v[edges[:, 1]]
    edge_pts = np.where(is_boundary[:, None], 0.5 * ends, 0.375 * ends + 0.125 * opp_sum)
    # Moved original vertices: Warren's weights inside, 3/4 v + 1/8 (two rim neighbours) on the boundary.
    nb_sum, valence = np.zeros_like(v), np.zeros(n_v)
    np.add.at(nb_sum, edges[:, 0], v[edges[:, 1]])
    np.add.at(nb_sum, edges[:, 1], v[edges[:, 0]])
    np.add.at(valence, edges.ravel(), 1.0)
    beta = np.where(valence > 3, 3.0 / (8.0 * np.maximum(valence, 1)), 3.0 / 16.0)
    moved = (1.0 - valence * beta)[:, None] * v + beta[:, None] * nb_sum
    rim_sum, rim_count = np.zeros_like(v), np.zeros(n_v)
    rim_edges = edges[is_boundary]
    np.add.at(rim_sum, rim_edges[:, 0], v[rim_edges[:, 1]])
    np.add.at(rim_sum, rim_edges[:, 1], v[rim_edges[:, 0]])
    np.add.at(rim_count, rim_edges.ravel(), 1.0)
    on_rim = rim_count == 2
    moved[on_rim] = 0.75 * v[on_rim] + 0.125 * rim_sum[on_rim]
    # Faces: each triangle (a, b, c) with edge vertices (ab, bc, ca) becomes four.
    mid = n_v + edge_of_half.reshape(3, n_f).T  # F x 3: ab, bc, ca
    a, b, c = f[:, 0], f[:, 1], f[:, 2]
    ab, bc, ca = mid[:, 0], mid[:, 1], mid[:, 2]
    new_faces = np.concatenate([np.stack([a, ab, ca], 1), np.stack([ab, b, bc], 1),
                                np.stack([ca, bc, c], 1), np.stack([ab, bc, ca], 1)])
    uvs = None
    if mesh.uvs is not None:
        uvs = np.concatenate([mesh.uvs, 0.5 * (mesh.uvs[edges[:, 0]] + mesh.uvs[edges[:, 1]])])
    return TriangleMesh(vertices=np.concatenate([moved, edge_pts]), faces=new_faces.astype(np.int64), uvs=uvs)
