"""Reading scan files (.ply .obj .stl .off .pcd .xyz .xyzn .xyzrgb .pts): the one owner of those formats.

Untrusted scans are parsed by strict numpy readers (pose3dfr.data.scan_formats, scan_ply: no C++ reader,
nothing unpickled, no file named inside a scan ever opened) in a child process with an address-space, CPU
and wall-time limit, so a hostile file costs one refused scan, never the caller. This module holds that
isolation and the public API; `read_scan_isolated` is the entry point; the child imports only numpy and
the scan modules.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from pose3dfr.data.scan_formats import (MAX_SCAN_BYTES, MESH_SUFFIXES, POINT_SUFFIXES, SCAN_SUFFIXES, ScanArrays,
                                        ScanLimits, check_scan_file, drop_nonfinite, read_obj, read_off, read_pcd,
                                        read_stl, read_xyz)
from pose3dfr.data.scan_ply import read_ply
from pose3dfr.deadline import check_time, remaining
from pose3dfr.errors import InvalidScanError
from pose3dfr.resources import child_command, child_env, limit_own_resources

__all__ = ["MAX_SCAN_BYTES", "MESH_SUFFIXES", "POINT_SUFFIXES", "SCAN_SUFFIXES", "READER_MEMORY_BYTES",
           "READER_CPU_SECONDS", "READER_WALL_SECONDS", "ScanArrays", "check_scan_file", "parse_scan",
           "read_scan_isolated"]

# Address space of the reader process: any file costs at most this, whatever its header claims.
READER_MEMORY_BYTES = 1024 * 1024 * 1024
# CPU seconds and wall seconds the reader may take (a 20 MB upload parses in well under a second).
READER_CPU_SECONDS = 60
READER_WALL_SECONDS = 120
# Exit codes of the reader process.
_EXIT_REFUSED, _EXIT_MEMORY = 3, 4


# ----------------------------------------------------------------------------------------------
# The isolated reader
# ----------------------------------------------------------------------------------------------

def read_scan_isolated(path: str | Path, max_points: int, memory_bytes: int = READER_MEMORY_BYTES) -> ScanArrays:
    """Parse a scan file in a resource-limited child process; InvalidScanError naming the file if it is not
    a readable scan, claims more than `max_points` points, or makes the reader crash, hang or use more
    than `memory_bytes` of address space."""
    path = Path(path)
    check_scan_file(path)
    check_time(f"reading {path.name}")
    workdir = Path(tempfile.mkdtemp(prefix="pose3dfr-scan-"))  # private (0700), removed below
    try:
        try:
            run = subprocess.run(_reader_command() + [str(path.absolute()), str(workdir), str(int(max_points)),
                                                      str(int(memory_bytes))],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env=child_env(), timeout=remaining(READER_WALL_SECONDS), check=False)
        except subprocess.TimeoutExpired:
            check_time(f"reading {path.name}")  # the request's time budget ran out first: say so
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
    return child_command("pose3dfr.data.scan_io", "_child_main")


def _child_main(argv: list[str]) -> int:
    """Reader process: limit its own resources, parse, save the arrays (or the refusal) into the work folder."""
    path, workdir, max_points, memory = Path(argv[0]), Path(argv[1]), int(argv[2]), int(argv[3])
    limit_own_resources(memory, READER_CPU_SECONDS, file_bytes=memory)  # before it reads a byte
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
    reader = {".ply": read_ply, ".obj": read_obj, ".stl": read_stl, ".off": read_off, ".pcd": read_pcd}
    with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values become Inf, dropped below
        scan = reader.get(suffix, read_xyz)(path, ScanLimits(path.name, max_points))
    return drop_nonfinite(scan, path.name)
