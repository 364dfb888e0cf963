"""Cost of reading scans through the isolated reader (pose3dfr.data.scan_io.read_scan_isolated: a child
process with memory/CPU/time limits) against the same parser in-process, and the reader's peak memory.

    nice -n 10 python -m benchmarks.bench_scan_read [--repeats 15]

Files: the canonical face mesh as a small binary PLY (468 vertices), 1.7 million points with normals and
colours as binary PLY (~87 MB: Open3D writes float64) and 1 million points as ASCII .xyz (~25 MB).
Prints medians in milliseconds; the overhead is process start, numpy import and the arrays' round trip
through an uncompressed .npz in a private temporary folder.
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import wall_times_ms
from pose3dfr.data import pointcloud as pc
from pose3dfr.data import scan_io
from pose3dfr.face.mesh import load_canonical_mesh


def _files(folder: Path) -> dict[str, Path]:
    mesh = load_canonical_mesh()
    rng = np.random.default_rng(0)
    big = np.concatenate([rng.normal(size=(1_700_000, 6)), rng.random((1_700_000, 3))], axis=1).astype(np.float32)
    xyz = folder / "million.xyz"
    np.savetxt(xyz, rng.normal(size=(1_000_000, 3)), fmt="%.5f")
    return {"face mesh, binary PLY (468 vertices)": pc.save_mesh(folder / "face.ply", mesh.vertices, mesh.faces),
            "1.7 M points x 9, binary PLY": pc.save_point_cloud(folder / "big.ply", big),
            "1 M points, ASCII .xyz": xyz}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(f"Command: `python -m benchmarks.bench_scan_read --repeats {args.repeats}` on {platform.platform()}, "
          f"Python {platform.python_version()}\n")
    print("| file | size MB | in-process parse (ms) | isolated read (ms) | overhead (ms) |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, path in _files(Path(tmp)).items():
            inproc = np.median(wall_times_ms(lambda: scan_io.parse_scan(path, pc.MAX_SCAN_POINTS), args.repeats, 1))
            isolated = np.median(wall_times_ms(lambda: scan_io.read_scan_isolated(path, pc.MAX_SCAN_POINTS),
                                               args.repeats, 1))
            print(f"| {label} | {path.stat().st_size / 1e6:.1f} | {inproc:.0f} | {isolated:.0f} | "
                  f"{isolated - inproc:.0f} |")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\nPeak resident memory of any reader process: {peak:.0f} MiB "
          f"(address-space limit {scan_io.READER_MEMORY_BYTES // 2**20} MiB).")


if __name__ == "__main__":
    main()
