"""Strict numpy parsers of scan files: the shared parts (ScanArrays, limits, checks) and the OBJ, OFF, STL,
.xyz-family and PCD readers (PLY is in pose3dfr.data.scan_ply).

No C++ reader, nothing unpickled, no file named inside a scan ever opened. Header counts are parsed as
plain decimals and checked against the point limit and against the bytes the file holds before anything
is allocated. These run in the isolated reader process (pose3dfr.data.scan_io), which imports only numpy
and the scan modules: keep it so.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose3dfr.errors import InvalidScanError

MESH_SUFFIXES = (".obj", ".stl", ".off")
POINT_SUFFIXES = (".pcd", ".xyz", ".xyzn", ".xyzrgb", ".pts")
SCAN_SUFFIXES = (".ply",) + MESH_SUFFIXES + POINT_SUFFIXES
# Largest scan file read (bytes); the reader's memory limit (scan_io.READER_MEMORY_BYTES) is what really
# bounds a file's cost.
MAX_SCAN_BYTES = 1024 * 1024 * 1024
# Faces allowed per allowed point: a triangulated surface has about 2 faces a vertex; 4 leaves room.
FACES_PER_POINT = 4
# Longest PLY / PCD header read (bytes); real headers are a few hundred bytes.
MAX_HEADER_BYTES = 64 * 1024
PLAIN_COUNT = re.compile(rb"[0-9]{1,12}")  # header counts: plain decimals only ("+1", "-1", "0x10" refused)


@dataclass(frozen=True)
class ScanArrays:
    """A scan as read from disk (file units and frame), every value finite, every face index valid."""

    xyz: np.ndarray  # N x 3 float64
    normals: np.ndarray | None = None  # N x 3 float32
    colors: np.ndarray | None = None  # N x 3 float32 in [0, 1]
    faces: np.ndarray | None = None  # F x 3 int64 triangles (polygons fan-triangulated); None for points


def check_scan_file(path: Path) -> None:
    """Suffix, existence and size checks that need no parsing."""
    suffix = path.suffix.lower()
    if suffix not in SCAN_SUFFIXES:
        raise InvalidScanError(f"{path.name}: unsupported scan format {suffix or '(none)'}; use one of "
                               f"{', '.join(SCAN_SUFFIXES)}")
    if not path.is_file():
        raise InvalidScanError(f"{path.name}: no such scan file")
    size = path.stat().st_size
    if size == 0:
        raise InvalidScanError(f"{path.name}: the file is empty (0 bytes)")
    if size > MAX_SCAN_BYTES:
        raise InvalidScanError(f"{path.name}: {size / 2**20:.0f} MiB is over the {MAX_SCAN_BYTES // 2**20} MiB scan limit")


@dataclass(frozen=True)
class ScanLimits:
    """The file's name (for messages) and its point budget; faces get FACES_PER_POINT a point."""

    name: str
    max_points: int

    def points(self, count: int) -> int:
        if count > self.max_points:
            raise InvalidScanError(f"{self.name}: {count:,} points is over the limit of {self.max_points:,} "
                                   "(pose3dfr.data.pointcloud.MAX_SCAN_POINTS); downsample the scan first")
        return count

    def faces(self, count: int) -> int:
        if count > FACES_PER_POINT * self.max_points:
            raise InvalidScanError(f"{self.name}: {count:,} faces is over the limit of "
                                   f"{FACES_PER_POINT * self.max_points:,}")
        return count

    def corrupt(self, fmt: str, why: str) -> InvalidScanError:
        return InvalidScanError(f"{self.name}: corrupt {fmt} ({why})")


def header_count(token: bytes, what: str, limits: ScanLimits, fmt: str) -> int:
    if not PLAIN_COUNT.fullmatch(token):
        shown = token[:20].decode("ascii", errors="replace")
        raise limits.corrupt(fmt, f"{what} count {shown!r} is not a plain decimal number")
    return int(token)


def number_rows(block: bytes, dtype, limits: ScanLimits, fmt: str, what: str) -> np.ndarray:
    """Rows of whitespace-separated numbers (C parser; every row the same length) as a 2-D array."""
    if not block.strip():
        return np.zeros((0, 0), dtype)
    try:
        return np.loadtxt(io.BytesIO(block), dtype=dtype, ndmin=2, comments=None)
    except ValueError:
        raise limits.corrupt(fmt, f"{what} rows are not rows of numbers of one length") from None


def line_ends(data: bytes) -> np.ndarray:
    """Byte offsets just past every line of `data` (8 bytes a line, vectorised)."""
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10) + 1
    return ends if data.endswith(b"\n") else np.append(ends, len(data))


def unit_colors(rgb: np.ndarray, integer: bool) -> np.ndarray:
    rgb = np.asarray(rgb, np.float64)
    return (rgb / 255.0 if integer or (rgb.size and np.nanmax(rgb) > 1.0) else rgb).astype(np.float32)


def fan_triangulate(polygons: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Triangles (F x 3) of polygons by fan triangulation, vectorised per polygon size."""
    if not isinstance(polygons, np.ndarray):
        sizes = np.fromiter((len(p) for p in polygons), np.int64, len(polygons))
        return np.concatenate([np.zeros((0, 3), np.int64)] + [
            fan_triangulate(np.stack([polygons[i] for i in np.flatnonzero(sizes == k)])) for k in np.unique(sizes) if k >= 3])
    k = polygons.shape[1]
    if k < 3:
        return np.zeros((0, 3), np.int64)
    return np.stack([np.stack([polygons[:, 0], polygons[:, i], polygons[:, i + 1]], 1) for i in range(1, k - 1)],
                    1).reshape(-1, 3).astype(np.int64)


def check_indices(faces: np.ndarray, vertices: int, limits: ScanLimits, fmt: str) -> np.ndarray:
    if faces.size and (faces.min() < 0 or faces.max() >= vertices):
        bad = int(faces.max()) if faces.max() >= vertices else int(faces.min())
        raise limits.corrupt(fmt, f"a face refers to vertex {bad} of {vertices}")
    return faces


def drop_nonfinite(scan: ScanArrays, name: str) -> ScanArrays:
    """Drop points (and faces touching them) with a NaN/Inf value; InvalidScanError if nothing is left."""
    if len(scan.xyz) == 0:
        raise InvalidScanError(f"{name}: no points could be read (empty or corrupt file)")
    finite = np.isfinite(scan.xyz).all(axis=1)
    for extra in (scan.normals, scan.colors):
        if extra is not None:
            finite &= np.isfinite(extra).all(axis=1)
    if not finite.any():
        raise InvalidScanError(f"{name}: every point is NaN or Inf")
    faces = scan.faces
    if finite.all():
        return scan
    if faces is not None:
        new_index = np.cumsum(finite) - 1
        faces = new_index[faces[finite[faces].all(axis=1)]]
        if len(faces) == 0:
            raise InvalidScanError(f"{name}: no triangle has finite vertices")
    pick = lambda a: None if a is None else a[finite]  # noqa: E731
    return ScanArrays(scan.xyz[finite], pick(scan.normals), pick(scan.colors), faces)


def point_columns(table: dict[str, np.ndarray], limits: ScanLimits, fmt: str) -> tuple:
    """xyz, normals, colours from named per-point columns (PLY/PCD property names)."""
    if not all(k in table for k in "xyz"):
        raise limits.corrupt(fmt, "no x, y, z properties")
    xyz = np.stack([table[k] for k in "xyz"], 1).astype(np.float64)
    normals = np.stack([table[k] for k in ("nx", "ny", "nz")], 1).astype(np.float32) if all(
        k in table for k in ("nx", "ny", "nz")) else None
    colors = None
    for keys in (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue")):
        if all(k in table for k in keys):
            cols = [table[k] for k in keys]
            colors = unit_colors(np.stack(cols, 1), np.issubdtype(cols[0].dtype, np.integer))
            break
    return xyz, normals, colors


# ----------------------------------------------------------------------------------------------
# Text meshes and point lists: OBJ, OFF, ASCII STL, .xyz family
# ----------------------------------------------------------------------------------------------

def _read_text(path: Path, limits: ScanLimits, fmt: str) -> bytes:
    data = path.read_bytes()
    if b"\x00" in data[:4096]:
        raise InvalidScanError(f"{limits.name}: binary content in a text scan format ({fmt})")
    return data


def read_obj(path: Path, limits: ScanLimits) -> ScanArrays:
    """OBJ: 'v x y z [r g b]' and 'f i[/t[/n]] ...' records (negative indices relative); mtllib and every other
    record are ignored: no file named in the scan is opened."""
    data = _read_text(path, limits, ".obj")
    vertices, faces = [], []
    for line in data.split(b"\n"):
        if line[:2] in (b"v ", b"v\t"):
            vertices.append(line[2:])
        elif line[:2] in (b"f ", b"f\t"):
            faces.append((len(vertices), line[2:]))
    if not vertices:
        raise InvalidScanError(f"{limits.name}: not an OBJ file (no 'v' vertex records)")
    limits.points(len(vertices))
    limits.faces(len(faces))
    table = number_rows(b"\n".join(vertices), np.float64, limits, "OBJ", "vertex")
    if table.shape[1] not in (3, 4, 6, 7):
        raise limits.corrupt("OBJ", f"vertex records hold {table.shape[1]} values (expected 3, 4, 6 or 7)")
    colors = unit_colors(table[:, -3:], integer=False) if table.shape[1] >= 6 else None
    polygons = []
    try:
        for seen, body in faces:
            idx = np.asarray([int(token.split(b"/")[0]) for token in body.split()], np.int64)
            polygons.append(np.where(idx < 0, seen + idx, idx - 1))  # 1-based; negative: relative to the last v
    except ValueError:
        raise limits.corrupt("OBJ", "a face record is not a list of vertex indices") from None
    tris = check_indices(fan_triangulate(polygons), len(table), limits, "mesh")
    if len(tris) == 0:
        raise InvalidScanError(f"{limits.name}: no triangles could be read (empty or not a mesh)")
    return ScanArrays(table[:, :3], None, colors, tris)


def read_off(path: Path, limits: ScanLimits) -> ScanArrays:
    """OFF / COFF / NOFF / CNOFF: counts (strict decimals), vertex rows, then 'n i1 .. in [colour]' face rows."""
    data = _read_text(path, limits, ".off")
    lines = [ln.split(b"#")[0].strip() for ln in data.split(b"\n")]
    lines = [ln for ln in lines if ln]
    keyword = lines[0].split()[0] if lines else b""
    if keyword not in (b"OFF", b"COFF", b"NOFF", b"CNOFF"):
        raise InvalidScanError(f"{limits.name}: not an OFF file (no OFF header)")
    counts, first = (lines[0].split()[1:], 1) if len(lines[0].split()) > 1 else (
        (lines[1].split(), 2) if len(lines) > 1 else ([], 2))
    if len(counts) < 2:
        raise limits.corrupt("OFF", "no vertex and face counts")
    n_vertices = limits.points(header_count(counts[0], "vertex", limits, "OFF"))
    n_faces = limits.faces(header_count(counts[1], "face", limits, "OFF"))
    if first + n_vertices + n_faces > len(lines):
        raise InvalidScanError(f"{limits.name}: truncated OFF ({len(lines) - first} of {n_vertices + n_faces} "
                               "vertex and face rows)")
    table = number_rows(b"\n".join(lines[first: first + n_vertices]), np.float64, limits, "OFF", "vertex")
    if n_vertices and table.shape[1] < 3:
        raise limits.corrupt("OFF", "vertex rows hold fewer than 3 values")
    normals = table[:, 3:6].astype(np.float32) if b"N" in keyword and table.shape[1] >= 6 else None
    color_at = 6 if normals is not None else 3
    colors = None
    if b"C" in keyword and table.shape[1] >= color_at + 3:
        colors = unit_colors(table[:, color_at: color_at + 3], integer=False)
    polygons = []
    try:
        for line in lines[first + n_vertices: first + n_vertices + n_faces]:
            tokens = line.split()
            k = int(tokens[0])
            if k < 0 or len(tokens) < 1 + k:
                raise ValueError
            polygons.append(np.asarray([int(t) for t in tokens[1: 1 + k]], np.int64))
    except (ValueError, IndexError):
        raise limits.corrupt("mesh", "malformed OFF face rows") from None
    tris = check_indices(fan_triangulate(polygons), len(table), limits, "mesh")
    if len(tris) == 0:
        raise InvalidScanError(f"{limits.name}: no triangles could be read (empty or not a mesh)")
    return ScanArrays(table[:, :3], normals, colors, tris)


def read_stl(path: Path, limits: ScanLimits) -> ScanArrays:
    """Binary STL (size must be 84 + 50 x triangles) or ASCII STL ('vertex x y z' records)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(84)
        if len(head) == 84 and size == 84 + 50 * int(np.frombuffer(head[80:84], "<u4")[0]):
            triangles = int(np.frombuffer(head[80:84], "<u4")[0])
            limits.points(3 * triangles)  # three corners a triangle
            record = np.dtype([("normal", "<f4", 3), ("corners", "<f4", (3, 3)), ("attr", "<u2")])
            corners = np.fromfile(handle, record, triangles)["corners"].reshape(-1, 3)
            return ScanArrays(corners.astype(np.float64), None, None, np.arange(len(corners)).reshape(-1, 3))
    data = path.read_bytes()
    if not data.lstrip().startswith(b"solid"):
        raise InvalidScanError(f"{limits.name}: not an STL file")
    limits.points(data.count(b"vertex"))
    found = re.findall(rb"(?m)^\s*vertex\s+(\S+)\s+(\S+)\s+(\S+)\s*$", data)
    if not found or len(found) % 3:
        raise InvalidScanError(f"{limits.name}: no triangles could be read (empty or corrupt STL)")
    try:
        corners = np.asarray(found, dtype=np.bytes_).astype(np.float64)
    except ValueError:
        raise limits.corrupt("STL", "a vertex record is not three numbers") from None
    return ScanArrays(corners, None, None, np.arange(len(corners)).reshape(-1, 3))


def read_xyz(path: Path, limits: ScanLimits) -> ScanArrays:
    """.xyz (x y z ...), .xyzn (+ normals), .xyzrgb (+ rgb in [0, 1]), .pts ([count line,] x y z [i] [r g b])."""
    suffix = path.suffix.lower()
    data = _read_text(path, limits, suffix)
    limits.points(data.count(b"\n") + (not data.endswith(b"\n")))  # one point a line, before any parsing
    body = data.replace(b",", b" ")
    if suffix == ".pts":
        first, _, rest = body.partition(b"\n")
        if PLAIN_COUNT.fullmatch(first.strip()):
            body = rest
    lines = b"\n".join(ln for ln in body.split(b"\n") if ln.strip() and not ln.lstrip().startswith(b"#"))
    if not lines:
        raise InvalidScanError(f"{limits.name}: no points could be read (empty or corrupt file)")
    table = number_rows(lines, np.float64, limits, suffix, "point")
    need = {".xyzn": 6, ".xyzrgb": 6}.get(suffix, 3)
    if table.shape[1] < need:
        raise InvalidScanError(f"{limits.name}: not a point list (expected rows of {need} numbers: "
                               f"x y z{' and 3 more' if need == 6 else ''})")
    normals = table[:, 3:6].astype(np.float32) if suffix == ".xyzn" else None
    colors = None
    if suffix == ".xyzrgb":
        colors = unit_colors(table[:, 3:6], integer=False)
    elif suffix == ".pts" and table.shape[1] in (6, 7):
        colors = unit_colors(table[:, -3:], integer=True)
    return ScanArrays(table[:, :3], normals, colors, None)


# ----------------------------------------------------------------------------------------------
# PCD
# ----------------------------------------------------------------------------------------------

_PCD_TYPES = {(b"F", b"4"): "f4", (b"F", b"8"): "f8", (b"I", b"1"): "i1", (b"I", b"2"): "i2", (b"I", b"4"): "i4",
              (b"I", b"8"): "i8", (b"U", b"1"): "u1", (b"U", b"2"): "u2", (b"U", b"4"): "u4", (b"U", b"8"): "u8"}
_PCD_NAMES = {"normal_x": "nx", "normal_y": "ny", "normal_z": "nz"}


def read_pcd(path: Path, limits: ScanLimits) -> ScanArrays:
    """PCD v0.7 'DATA ascii' or 'DATA binary' (binary_compressed is refused with a message)."""
    with path.open("rb") as handle:
        head = handle.read(MAX_HEADER_BYTES)
        fields: dict[bytes, list[bytes]] = {}
        pos = 0
        while b"DATA" not in fields:
            end = head.find(b"\n", pos)
            if end < 0:
                raise InvalidScanError(f"{limits.name}: not a PCD file (no FIELDS/DATA header)")
            parts = head[pos:end].split()
            pos = end + 1
            if parts and not parts[0].startswith(b"#"):
                fields[parts[0].upper()] = parts[1:]
        if b"FIELDS" not in fields:
            raise InvalidScanError(f"{limits.name}: not a PCD file (no FIELDS/DATA header)")
        names = [f.decode("ascii", "replace") for f in fields[b"FIELDS"]]
        sizes, types = fields.get(b"SIZE", []), fields.get(b"TYPE", [])
        counts = fields.get(b"COUNT", [b"1"] * len(names))
        if not (len(sizes) == len(types) == len(counts) == len(names)) or any(
                (t, s) not in _PCD_TYPES for t, s in zip(types, sizes)):
            raise limits.corrupt("PCD", "FIELDS, SIZE, TYPE and COUNT do not match")
        if b"POINTS" in fields:
            points = header_count((fields[b"POINTS"] or [b""])[0], "POINTS", limits, "PCD")
        else:
            points = header_count((fields.get(b"WIDTH") or [b""])[0], "WIDTH", limits, "PCD") * header_count(
                (fields.get(b"HEIGHT") or [b""])[0], "HEIGHT", limits, "PCD")
        limits.points(points)
        dtype = np.dtype([(n, "<" + _PCD_TYPES[(t, s)], (header_count(c, "COUNT", limits, "PCD"),))
                          for n, t, s, c in zip(names, types, sizes, counts)])
        mode = (fields[b"DATA"] or [b""])[0].lower()
        handle.seek(pos)
        remaining = path.stat().st_size - pos
        if mode == b"binary":
            if remaining < points * dtype.itemsize:
                raise InvalidScanError(f"{limits.name}: truncated PCD ({remaining} data bytes, the header promises "
                                       f"{points * dtype.itemsize})")
            data = np.fromfile(handle, dtype, points)
        elif mode == b"ascii":
            if remaining < points * 2 * len(names):
                raise InvalidScanError(f"{limits.name}: truncated PCD ({remaining} data bytes for {points:,} points)")
            table = number_rows(handle.read(), np.float64, limits, "PCD", "point")
            if table.shape != (points, sum(dtype[n].shape[0] for n in names)):
                raise InvalidScanError(f"{limits.name}: truncated or corrupt PCD ({len(table)} of {points:,} point rows)")
            data = np.zeros(points, dtype)
            col = 0
            for n in names:
                data[n] = table[:, col: col + dtype[n].shape[0]].astype(dtype[n].base)
                col += dtype[n].shape[0]
        elif mode == b"binary_compressed":
            raise InvalidScanError(f"{limits.name}: PCD 'DATA binary_compressed' is not supported; "
                                   "save it as binary or ascii")
        else:
            raise limits.corrupt("PCD", f"unknown DATA mode {mode[:20].decode('ascii', 'replace')!r}")
    table = {_PCD_NAMES.get(n, n): data[n][:, 0] for n in names}
    xyz, normals, _ = point_columns(table, limits, "PCD")
    colors = None
    packed = next((n for n in ("rgb", "rgba") if n in table), None)
    if packed is not None:  # 0x00RRGGBB, stored as the bits of a float32 or as an integer
        values = np.ascontiguousarray(table[packed]).astype(table[packed].dtype.newbyteorder("="))
        bits = values.view(np.uint32) if values.dtype == np.float32 else values.astype(np.uint32)
        colors = np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], 1).astype(np.float32) / 255.0
    return ScanArrays(xyz, normals, colors, None)
