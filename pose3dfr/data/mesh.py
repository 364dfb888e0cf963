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
