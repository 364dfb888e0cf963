"""Reading scan files (.ply .obj .stl .off .pcd .xyz .xyzn .xyzrgb .pts): the one owner of those formats.

Untrusted scans are parsed by the strict numpy readers below (no C++ reader, nothing unpickled, no file
named inside a scan ever opened) in a child process with an address-space, CPU and wall-time limit, so a
hostile file costs one refused scan, never the caller. Header counts are parsed as plain decimals and
checked against the point limit and against the bytes the file holds before anything is allocated.
`read_scan_isolated` is the entry point; the child imports only numpy and this module.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose3dfr.errors import InvalidScanError

MESH_SUFFIXES = (".obj", ".stl", ".off")
POINT_SUFFIXES = (".pcd", ".xyz", ".xyzn", ".xyzrgb", ".pts")
SCAN_SUFFIXES = (".ply",) + MESH_SUFFIXES + POINT_SUFFIXES
# Largest scan file read (bytes); the reader's memory limit below is what really bounds a file's cost.
MAX_SCAN_BYTES = 1024 * 1024 * 1024
# Address space of the reader process: any file costs at most this, whatever its header claims.
READER_MEMORY_BYTES = 1024 * 1024 * 1024
# CPU seconds and wall seconds the reader may take (a 20 MB upload parses in well under a second).
READER_CPU_SECONDS = 60
READER_WALL_SECONDS = 120
# Faces allowed per allowed point: a triangulated surface has about 2 faces a vertex; 4 leaves room.
FACES_PER_POINT = 4
# Longest PLY / PCD header read (bytes); real headers are a few hundred bytes.
MAX_HEADER_BYTES = 64 * 1024
# Exit codes of the reader process.
_EXIT_REFUSED, _EXIT_MEMORY = 3, 4
_COUNT = re.compile(rb"[0-9]{1,12}")  # header counts: plain decimals only ("+1", "-1", "0x10" refused)


@dataclass(frozen=True)
class ScanArrays:
    """A scan as read from disk (file units and frame), every value finite, every face index valid."""

    xyz: np.ndarray  # N x 3 float64
    normals: np.ndarray | None = None  # N x 3 float32
    colors: np.ndarray | None = None  # N x 3 float32 in [0, 1]
    faces: np.ndarray | None = None  # F x 3 int64 triangles (polygons fan-triangulated); None for points


# ----------------------------------------------------------------------------------------------
# The isolated reader
# ----------------------------------------------------------------------------------------------

def read_scan_isolated(path: str | Path, max_points: int, memory_bytes: int = READER_MEMORY_BYTES) -> ScanArrays:
    """Parse a scan file in a resource-limited child process; InvalidScanError naming the file if it is not
    a readable scan, claims more than `max_points` points, or makes the reader crash, hang or use more
    than `memory_bytes` of address space."""
    path = Path(path)
    check_scan_file(path)
    workdir = Path(tempfile.mkdtemp(prefix="pose3dfr-scan-"))  # private (0700), removed below
    try:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        try:
            run = subprocess.run(_reader_command() + [str(path.absolute()), str(workdir), str(int(max_points)),
                                                      str(int(memory_bytes))],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env=env, timeout=READER_WALL_SECONDS, check=False)
        except subprocess.TimeoutExpired:
            raise InvalidScanError(f"{path.name}: could not be parsed safely (the reader took over "
                                   f"{READER_WALL_SECONDS} s)") from None
        if run.returncode == _EXIT_REFUSED and (workdir / "error.txt").is_file():
            raise InvalidScanError((workdir / "error.txt").read_text(encoding="utf-8", errors="replace")[:500])
        if run.returncode == _EXIT_MEMORY:
            raise InvalidScanError(f"{path.name}: could not be parsed safely (it needs more than "
                                   f"{memory_bytes // 2**20} MiB to read)")
        if run.returncode == -signal.SIGXCPU:
            raise InvalidScanError(f"{path.name}: could not be parsed safely (the reader took over "
                                   f"{READER_CPU_SECONDS} CPU seconds)")
        if run.returncode != 0 or not (workdir / "scan.npz").is_file():
            why = f"signal {-run.returncode}" if run.returncode < 0 else f"exit status {run.returncode}"
            raise InvalidScanError(f"{path.name}: could not be parsed safely (the reader stopped: {why}); "
                                   "the file is corrupt or uses an unsupported variant of its format")
        return _load_result(workdir / "scan.npz", path.name, max_points)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _reader_command() -> list[str]:
    """The reader process: this module from this checkout, with nothing else imported (no torch, no Open3D)."""
    root = str(Path(__file__).resolve().parents[2])
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {root!r}); "
            "from pose3dfr.data.scan_io import _child_main; sys.exit(_child_main(sys.argv[1:]))"]


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


def _child_main(argv: list[str]) -> int:
    """Reader process: limit its own resources, parse, save the arrays (or the refusal) into the work folder."""
    import resource

    path, workdir, max_points, memory = Path(argv[0]), Path(argv[1]), int(argv[2]), int(argv[3])
    # Set by the child itself, before it reads a byte: preexec_fn is unsafe in a threaded server.
    for limit, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, READER_CPU_SECONDS),
                         (resource.RLIMIT_FSIZE, memory), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(limit, (value, value))
    try:
        scan = parse_scan(path, max_points)
    except InvalidScanError as exc:
        (workdir / "error.txt").write_text(str(exc), encoding="utf-8")
        return _EXIT_REFUSED
    except MemoryError:
        return _EXIT_MEMORY
    arrays = {k: v for k, v in vars(scan).items() if v is not None}
    np.savez(workdir / "scan.npz", **arrays)
    return 0


def _load_result(npz: Path, name: str, max_points: int) -> ScanArrays:
    """The reader's arrays, loaded without pickle and checked for shape, count and index range."""
    with np.load(npz, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    xyz = arrays.get("xyz")
    if xyz is None or xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) > max_points:
        raise InvalidScanError(f"{name}: could not be parsed safely (the reader returned no valid points)")
    for key in ("normals", "colors"):
        if key in arrays and arrays[key].shape != xyz.shape:
            raise InvalidScanError(f"{name}: could not be parsed safely (inconsistent {key})")
    faces = arrays.get("faces")
    if faces is not None and (faces.ndim != 2 or faces.shape[1] != 3 or
                              (faces.size and (faces.min() < 0 or faces.max() >= len(xyz)))):
        raise InvalidScanError(f"{name}: could not be parsed safely (inconsistent faces)")
    return ScanArrays(xyz.astype(np.float64, copy=False), arrays.get("normals"), arrays.get("colors"), faces)


# ----------------------------------------------------------------------------------------------
# Parsing (runs in the reader process; also usable in-process on trusted files)
# ----------------------------------------------------------------------------------------------

def parse_scan(path: Path, max_points: int) -> ScanArrays:
    """Parse any supported scan file strictly into finite, index-checked arrays (see ScanArrays)."""
    check_scan_file(path)
    suffix = path.suffix.lower()
    reader = {".ply": _read_ply, ".obj": _read_obj, ".stl": _read_stl, ".off": _read_off, ".pcd": _read_pcd}
    with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values become Inf, dropped below
        scan = reader.get(suffix, _read_xyz)(path, _Limits(path.name, max_points))
    return _drop_nonfinite(scan, path.name)


@dataclass(frozen=True)
class _Limits:
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


def _count(token: bytes, what: str, limits: _Limits, fmt: str) -> int:
    if not _COUNT.fullmatch(token):
        shown = token[:20].decode("ascii", errors="replace")
        raise limits.corrupt(fmt, f"{what} count {shown!r} is not a plain decimal number")
    return int(token)


def _numbers(block: bytes, dtype, limits: _Limits, fmt: str, what: str) -> np.ndarray:
    """Rows of whitespace-separated numbers (C parser; every row the same length) as a 2-D array."""
    if not block.strip():
        return np.zeros((0, 0), dtype)
    try:
        return np.loadtxt(io.BytesIO(block), dtype=dtype, ndmin=2, comments=None)
    except ValueError:
        raise limits.corrupt(fmt, f"{what} rows are not rows of numbers of one length") from None


def _line_ends(data: bytes) -> np.ndarray:
    """Byte offsets just past every line of `data` (8 bytes a line, vectorised)."""
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10) + 1
    return ends if data.endswith(b"\n") else np.append(ends, len(data))


def _unit_colors(rgb: np.ndarray, integer: bool) -> np.ndarray:
    rgb = np.asarray(rgb, np.float64)
    return (rgb / 255.0 if integer or (rgb.size and np.nanmax(rgb) > 1.0) else rgb).astype(np.float32)


def _fan(polygons: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Triangles (F x 3) of polygons by fan triangulation, vectorised per polygon size."""
    if not isinstance(polygons, np.ndarray):
        sizes = np.fromiter((len(p) for p in polygons), np.int64, len(polygons))
        return np.concatenate([np.zeros((0, 3), np.int64)] + [
            _fan(np.stack([polygons[i] for i in np.flatnonzero(sizes == k)])) for k in np.unique(sizes) if k >= 3])
    k = polygons.shape[1]
    if k < 3:
        return np.zeros((0, 3), np.int64)
    return np.stack([np.stack([polygons[:, 0], polygons[:, i], polygons[:, i + 1]], 1) for i in range(1, k - 1)],
                    1).reshape(-1, 3).astype(np.int64)


def _check_indices(faces: np.ndarray, vertices: int, limits: _Limits, fmt: str) -> np.ndarray:
    if faces.size and (faces.min() < 0 or faces.max() >= vertices):
        bad = int(faces.max()) if faces.max() >= vertices else int(faces.min())
        raise limits.corrupt(fmt, f"a face refers to vertex {bad} of {vertices}")
    return faces


def _drop_nonfinite(scan: ScanArrays, name: str) -> ScanArrays:
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


def _columns(table: dict[str, np.ndarray], limits: _Limits, fmt: str) -> tuple:
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
            colors = _unit_colors(np.stack(cols, 1), np.issubdtype(cols[0].dtype, np.integer))
            break
    return xyz, normals, colors


# ----------------------------------------------------------------------------------------------
# PLY
# ----------------------------------------------------------------------------------------------

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


@dataclass
class _Element:
    name: str
    count: int
    scalars: list[tuple[str, str]]  # (property name, numpy type) in file order, lists excluded
    order: list[str]  # every property name in file order
    lists: dict[str, tuple[str, str]]  # list property name -> (count type, index type)


def _ply_header(handle, limits: _Limits) -> tuple[str, list[_Element]]:
    head = handle.read(MAX_HEADER_BYTES)
    if not re.match(rb"ply\r?\n", head):
        raise InvalidScanError(f"{limits.name}: not a PLY file (no 'ply' header)")
    match = re.search(rb"\nend_header\r?\n", head)
    if match is None:
        raise limits.corrupt("PLY", "no end_header within the first 64 KiB")
    handle.seek(match.end())
    fmt, elements = "", []
    for line in head[: match.start()].splitlines()[1:]:
        parts = line.decode("ascii", "replace").split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "format" and len(parts) == 3 and parts[1] in ("ascii", "binary_little_endian",
                                                                     "binary_big_endian"):
            fmt = parts[1]
        elif parts[0] == "element" and len(parts) == 3:
            elements.append(_Element(parts[1], _count(parts[2].encode(), "element", limits, "PLY"), [], [], {}))
        elif parts[0] == "property" and elements and len(parts) == 3 and parts[1] in _PLY_TYPES:
            elements[-1].scalars.append((parts[2], _PLY_TYPES[parts[1]]))
            elements[-1].order.append(parts[2])
        elif (parts[0] == "property" and elements and len(parts) == 5 and parts[1] == "list"
              and parts[2] in _PLY_TYPES and parts[3] in _PLY_TYPES):
            elements[-1].lists[parts[4]] = (_PLY_TYPES[parts[2]], _PLY_TYPES[parts[3]])
            elements[-1].order.append(parts[4])
        else:
            raise limits.corrupt("PLY", f"unsupported header line {' '.join(parts)[:40]!r}")
    if not fmt:
        raise limits.corrupt("PLY", "no format line")
    names = [e.name for e in elements]
    if "vertex" not in names:
        raise limits.corrupt("PLY", "the header declares no vertex element")
    for element in elements:
        (limits.points if element.name == "vertex" else limits.faces)(element.count)
    return fmt, elements


def _read_ply(path: Path, limits: _Limits) -> ScanArrays:
    with path.open("rb") as handle:
        fmt, elements = _ply_header(handle, limits)
        body_start, size = handle.tell(), path.stat().st_size
        needed = [e for e in elements[: max(i for i, e in enumerate(elements) if e.name in ("vertex", "face")) + 1]]
        least = sum(e.count * _ply_least_bytes(e, fmt) for e in needed)
        if size - body_start < least:
            raise InvalidScanError(f"{limits.name}: truncated PLY ({size} bytes, the header promises at least "
                                   f"{body_start + least})")
        if fmt == "ascii":
            tables = _ply_ascii(handle.read(), needed, limits)
        else:
            tables = [_ply_binary_element(handle, e, ">" if fmt == "binary_big_endian" else "<", limits)
                      for e in needed]
    by_name = {e.name: t for e, t in zip(needed, tables)}
    xyz, normals, colors = _columns(by_name["vertex"], limits, "PLY")
    faces = None
    face_table = by_name.get("face", {})
    polygons = face_table.get("vertex_indices", face_table.get("vertex_index"))
    if polygons is not None and len(polygons):
        faces = _check_indices(_fan(polygons), len(xyz), limits, "mesh")
    return ScanArrays(xyz, normals, colors, faces)


def _ply_least_bytes(element: _Element, fmt: str) -> int:
    """Fewest bytes one record of `element` can take (a count the file cannot hold is refused before allocating)."""
    if fmt == "ascii":
        return 2 * len(element.order)  # one digit and one separator a value
    return sum(np.dtype(t).itemsize for _, t in element.scalars) + sum(
        np.dtype(c).itemsize for c, _ in element.lists.values())


def _ply_ascii(body: bytes, elements: list[_Element], limits: _Limits) -> list[dict]:
    """ASCII PLY: one record a line, element after element; a row count short of the header is 'truncated'."""
    ends = _line_ends(body)
    tables, line = [], 0
    for element in elements:
        if line + element.count > len(ends):
            raise InvalidScanError(f"{limits.name}: truncated PLY ({max(len(ends) - line, 0)} of {element.count} "
                                   f"{element.name} rows)")
        start = 0 if line == 0 else int(ends[line - 1])
        block = body[start: int(ends[line + element.count - 1])] if element.count else b""
        line += element.count
        if not element.lists:
            rows = _numbers(block, np.float64, limits, "PLY", element.name)
            if element.count and rows.shape != (element.count, len(element.order)):
                raise limits.corrupt("PLY", f"{element.name} rows hold {rows.shape[1]} values, the header "
                                            f"declares {len(element.order)} (or a row is blank)")
            tables.append({n: rows[:, i].astype(t) for i, (n, t) in enumerate(element.scalars)} if element.count else
                          {n: np.zeros(0, t) for n, t in element.scalars})
        else:
            tables.append(_ply_ascii_lists(block, element, limits))
    return tables


def _ply_ascii_lists(block: bytes, element: _Element, limits: _Limits) -> dict:
    """Records with a list property (faces); vectorised when every record has the same length."""
    if element.count == 0:
        return {}
    try:
        rows = np.loadtxt(io.BytesIO(block), dtype=np.int64, ndmin=2, comments=None)
    except ValueError:
        rows = None
    if rows is not None and len(rows) == element.count and element.order[0] in element.lists and len(element.order) == 1:
        n = rows.shape[1] - 1
        if (rows[:, 0] == n).all():
            return {element.order[0]: rows[:, 1:]}
    out = {name: [] for name in element.order}
    lines = [ln for ln in block.split(b"\n") if ln.strip()]
    if len(lines) != element.count:
        raise limits.corrupt("PLY", f"{len(lines)} {element.name} rows, the header declares {element.count}")
    for line in lines:
        tokens, pos = line.split(), 0
        try:
            for name in element.order:
                if name in element.lists:
                    k = int(tokens[pos])
                    if k < 0 or pos + 1 + k > len(tokens):
                        raise ValueError
                    out[name].append(np.asarray([int(t) for t in tokens[pos + 1: pos + 1 + k]], np.int64))
                    pos += 1 + k
                else:
                    out[name].append(float(tokens[pos]))
                    pos += 1
        except (ValueError, IndexError):
            raise limits.corrupt("PLY", f"a {element.name} row does not match the header") from None
        if pos != len(tokens):
            raise limits.corrupt("PLY", f"a {element.name} row holds more values than the header declares")
    return out


def _ply_binary_element(handle, element: _Element, order: str, limits: _Limits) -> dict:
    """One binary element: one vectorised read when every record has the same size, else a record walk."""
    if not element.lists:
        dtype = np.dtype([(f"p{i}", order + t) for i, (_, t) in enumerate(element.scalars)])
        data = np.fromfile(handle, dtype=dtype, count=element.count)
        if len(data) != element.count:
            raise InvalidScanError(f"{limits.name}: truncated PLY ({len(data)} of {element.count} {element.name} records)")
        return {n: data[f"p{i}"] for i, (n, _) in enumerate(element.scalars)}
    if element.count == 0:
        return {name: [] for name in element.order}
    start = handle.tell()
    first = _ply_record_lengths(handle, element, order)  # list lengths of the first record
    handle.seek(start)
    if first is not None:
        fields, types = [], dict(element.scalars)
        for i, name in enumerate(element.order):
            if name in element.lists:
                count_t, index_t = element.lists[name]
                fields += [(f"n{i}", order + count_t), (f"i{i}", order + index_t, (first[name],))]
            else:
                fields.append((f"p{i}", order + types[name]))
        record = np.dtype(fields)
        fits = element.count * record.itemsize <= os.fstat(handle.fileno()).st_size - start  # before allocating
        data = np.fromfile(handle, dtype=record, count=element.count) if fits else np.zeros(0, record)
        if len(data) == element.count and all((data[f"n{i}"] == first[n]).all()
                                              for i, n in enumerate(element.order) if n in element.lists):
            return {n: (data[f"i{i}"].astype(np.int64) if n in element.lists else data[f"p{i}"])
                    for i, n in enumerate(element.order)}
        handle.seek(start)
    return _ply_binary_walk(handle, element, order, limits)


def _ply_record_lengths(handle, element: _Element, order: str) -> dict | None:
    lengths, types = {}, dict(element.scalars)
    for name in element.order:
        if name in element.lists:
            count_t, index_t = element.lists[name]
            raw = handle.read(np.dtype(count_t).itemsize)
            if len(raw) < np.dtype(count_t).itemsize:
                return None
            lengths[name] = int(np.frombuffer(raw, order + count_t)[0])
            if lengths[name] < 0:
                return None
            handle.seek(lengths[name] * np.dtype(index_t).itemsize, os.SEEK_CUR)
        else:
            handle.seek(np.dtype(types[name]).itemsize, os.SEEK_CUR)
    return lengths


def _ply_binary_walk(handle, element: _Element, order: str, limits: _Limits) -> dict:
    """Records of varying length (mixed polygons), walked one by one; bounded by the face limit."""
    data = handle.read()
    out, pos, types = {name: [] for name in element.order}, 0, dict(element.scalars)
    for _ in range(element.count):
        for name in element.order:
            if name in element.lists:
                count_t, index_t = (np.dtype(order + t) for t in element.lists[name])
                if pos + count_t.itemsize > len(data):
                    raise limits.corrupt("mesh", "fewer face records than the header declares")
                k = int(np.frombuffer(data, count_t, 1, pos)[0])
                pos += count_t.itemsize
                if k < 0 or pos + k * index_t.itemsize > len(data):
                    raise limits.corrupt("mesh", "a face list runs past the end of the file")
                out[name].append(np.frombuffer(data, index_t, k, pos).astype(np.int64))
                pos += k * index_t.itemsize
            else:
                item = np.dtype(order + types[name])
                if pos + item.itemsize > len(data):
                    raise limits.corrupt("mesh", "fewer face records than the header declares")
                out[name].append(np.frombuffer(data, item, 1, pos)[0])
                pos += item.itemsize
    return out


# ----------------------------------------------------------------------------------------------
# Text meshes and point lists: OBJ, OFF, ASCII STL, .xyz family
# ----------------------------------------------------------------------------------------------

def _read_text(path: Path, limits: _Limits, fmt: str) -> bytes:
    data = path.read_bytes()
    if b"\x00" in data[:4096]:
        raise InvalidScanError(f"{limits.name}: binary content in a text scan format ({fmt})")
    return data


def _read_obj(path: Path, limits: _Limits) -> ScanArrays:
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
    table = _numbers(b"\n".join(vertices), np.float64, limits, "OBJ", "vertex")
    if table.shape[1] not in (3, 4, 6, 7):
        raise limits.corrupt("OBJ", f"vertex records hold {table.shape[1]} values (expected 3, 4, 6 or 7)")
    colors = _unit_colors(table[:, -3:], integer=False) if table.shape[1] >= 6 else None
    polygons = []
    try:
        for seen, body in faces:
            idx = np.asarray([int(token.split(b"/")[0]) for token in body.split()], np.int64)
            polygons.append(np.where(idx < 0, seen + idx, idx - 1))  # 1-based; negative: relative to the last v
    except ValueError:
        raise limits.corrupt("OBJ", "a face record is not a list of vertex indices") from None
    tris = _check_indices(_fan(polygons), len(table), limits, "mesh")
    if len(tris) == 0:
        raise InvalidScanError(f"{limits.name}: no triangles could be read (empty or not a mesh)")
    return ScanArrays(table[:, :3], None, colors, tris)


def _read_off(path: Path, limits: _Limits) -> ScanArrays:
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
    n_vertices = limits.points(_count(counts[0], "vertex", limits, "OFF"))
    n_faces = limits.faces(_count(counts[1], "face", limits, "OFF"))
    if first + n_vertices + n_faces > len(lines):
        raise InvalidScanError(f"{limits.name}: truncated OFF ({len(lines) - first} of {n_vertices + n_faces} "
                               "vertex and face rows)")
    table = _numbers(b"\n".join(lines[first: first + n_vertices]), np.float64, limits, "OFF", "vertex")
    if n_vertices and table.shape[1] < 3:
        raise limits.corrupt("OFF", "vertex rows hold fewer than 3 values")
    normals = table[:, 3:6].astype(np.float32) if b"N" in keyword and table.shape[1] >= 6 else None
    color_at = 6 if normals is not None else 3
    colors = None
    if b"C" in keyword and table.shape[1] >= color_at + 3:
        colors = _unit_colors(table[:, color_at: color_at + 3], integer=False)
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
    tris = _check_indices(_fan(polygons), len(table), limits, "mesh")
    if len(tris) == 0:
        raise InvalidScanError(f"{limits.name}: no triangles could be read (empty or not a mesh)")
    return ScanArrays(table[:, :3], normals, colors, tris)


def _read_stl(path: Path, limits: _Limits) -> ScanArrays:
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


def _read_xyz(path: Path, limits: _Limits) -> ScanArrays:
    """.xyz (x y z ...), .xyzn (+ normals), .xyzrgb (+ rgb in [0, 1]), .pts ([count line,] x y z [i] [r g b])."""
    suffix = path.suffix.lower()
    data = _read_text(path, limits, suffix)
    limits.points(data.count(b"\n") + (not data.endswith(b"\n")))  # one point a line, before any parsing
    body = data.replace(b",", b" ")
    if suffix == ".pts":
        first, _, rest = body.partition(b"\n")
        if _COUNT.fullmatch(first.strip()):
            body = rest
    lines = b"\n".join(ln for ln in body.split(b"\n") if ln.strip() and not ln.lstrip().startswith(b"#"))
    if not lines:
        raise InvalidScanError(f"{limits.name}: no points could be read (empty or corrupt file)")
    table = _numbers(lines, np.float64, limits, suffix, "point")
    need = {".xyzn": 6, ".xyzrgb": 6}.get(suffix, 3)
    if table.shape[1] < need:
        raise InvalidScanError(f"{limits.name}: not a point list (expected rows of {need} numbers: "
                               f"x y z{' and 3 more' if need == 6 else ''})")
    normals = table[:, 3:6].astype(np.float32) if suffix == ".xyzn" else None
    colors = None
    if suffix == ".xyzrgb":
        colors = _unit_colors(table[:, 3:6], integer=False)
    elif suffix == ".pts" and table.shape[1] in (6, 7):
        colors = _unit_colors(table[:, -3:], integer=True)
    return ScanArrays(table[:, :3], normals, colors, None)


# ----------------------------------------------------------------------------------------------
# PCD
# ----------------------------------------------------------------------------------------------

_PCD_TYPES = {(b"F", b"4"): "f4", (b"F", b"8"): "f8", (b"I", b"1"): "i1", (b"I", b"2"): "i2", (b"I", b"4"): "i4",
              (b"I", b"8"): "i8", (b"U", b"1"): "u1", (b"U", b"2"): "u2", (b"U", b"4"): "u4", (b"U", b"8"): "u8"}
_PCD_NAMES = {"normal_x": "nx", "normal_y": "ny", "normal_z": "nz"}


def _read_pcd(path: Path, limits: _Limits) -> ScanArrays:
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
            points = _count((fields[b"POINTS"] or [b""])[0], "POINTS", limits, "PCD")
        else:
            points = _count((fields.get(b"WIDTH") or [b""])[0], "WIDTH", limits, "PCD") * _count(
                (fields.get(b"HEIGHT") or [b""])[0], "HEIGHT", limits, "PCD")
        limits.points(points)
        dtype = np.dtype([(n, "<" + _PCD_TYPES[(t, s)], (_count(c, "COUNT", limits, "PCD"),))
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
            table = _numbers(handle.read(), np.float64, limits, "PCD", "point")
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
    xyz, normals, _ = _columns(table, limits, "PCD")
    colors = None
    packed = next((n for n in ("rgb", "rgba") if n in table), None)
    if packed is not None:  # 0x00RRGGBB, stored as the bits of a float32 or as an integer
        values = np.ascontiguousarray(table[packed]).astype(table[packed].dtype.newbyteorder("="))
        bits = values.view(np.uint32) if values.dtype == np.float32 else values.astype(np.uint32)
        colors = np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], 1).astype(np.float32) / 255.0
    return ScanArrays(xyz, normals, colors, None)
