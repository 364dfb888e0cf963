"""Hostile scan files, generated here: each is read by the isolated reader (pose3dfr.data.scan_io) in a
fresh process, and must give a clear InvalidScanError naming the file or a correct read; no crash, no
hang, peak memory under 1.5 GB per file. Then the whole corpus goes to the running app's /verify, which
must refuse each bad scan and still answer a normal request. See docs/reliability.md.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pose3dfr.data import pointcloud as pc
from pose3dfr.data import scan_io
from pose3dfr.errors import InvalidScanError
from pose3dfr.paths import PROJECT_ROOT

# One worker runs every test of the session's shared app (xdist --dist loadgroup): it starts once.
pytestmark = pytest.mark.xdist_group("app")

# Peak resident memory any one scan may cost (the bound; the reader is capped at 1 GiB of address space).
PEAK_LIMIT_MIB = 1536

_XYZ = b"property float x\nproperty float y\nproperty float z\n"
_FACE = b"element face %s\nproperty list uchar int vertex_indices\n"
_TRI = np.eye(3, dtype=np.float32).tobytes()


def _ply(fmt: str, vertices: bytes | int, body: bytes, face: bytes | None = None) -> bytes:
    head = b"ply\nformat %s 1.0\nelement vertex %s\n" % (fmt.encode(), str(vertices).encode()) + _XYZ
    return head + (_FACE % face if face is not None else b"") + b"end_header\n" + body


def _pcd(points: str, data: str = "binary", body: bytes = b"") -> bytes:
    return (f"VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 1\nHEIGHT 1\n"
            f"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {points}\nDATA {data}\n").encode() + body


def _rows(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 3)).astype(np.float32)


def _text(rows: np.ndarray) -> bytes:
    return b"".join(b"%.5f %.5f %.5f\n" % tuple(r) for r in rows)


def hostile_corpus() -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, expected): a regex the InvalidScanError message must match, or 'points=N'."""
    rows = _rows(40)
    nan_rows = rows.copy()
    nan_rows[::4] = np.nan
    nan_rows[1::4, 2] = np.inf
    polygon_bad = struct.pack("<B4i", 4, 0, 1, 2, 99999999)
    corpus = {
        # the crashers: "+1" face count, ascii and binary; vertices and a face on one line
        "plus_one_face.ply": (_ply("ascii", 3, b"0 0 0\n1 0 0\n0 1 0\n4 0 1 2 99999999\n", b"+1"), "not a plain decimal"),
        "plus_one_face_bin.ply": (_ply("binary_little_endian", 3, _TRI + polygon_bad, b"+1"), "not a plain decimal"),
        "one_line.ply": (_ply("ascii", 3, b"0 0 0 1 0 0 0 1 0 4 0 1 2 99999999\n", b"1"), "truncated PLY"),
        "polygon.ply": (_ply("ascii", 3, b"0 0 0\n1 0 0\n0 1 0\n4 0 1 2 99999999\n", b"1"), "corrupt mesh.*99999999"),
        "polygon_bin.ply": (_ply("binary_little_endian", 3, _TRI + polygon_bad, b"1"), "corrupt mesh.*99999999"),
        "triangle_bin.ply": (_ply("binary_little_endian", 3, _TRI + struct.pack("<B3i", 3, 0, 1, -7), b"1"),
                             "corrupt mesh.*-7"),
        "face_runs_past_end.ply": (_ply("binary_little_endian", 3, _TRI + struct.pack("<B2i", 200, 0, 1), b"1"),
                                   "runs past the end"),
        "polygon.off": (b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2 99999999\n", "corrupt mesh.*99999999"),
        "bad_index.obj": (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "corrupt mesh.*vertex 8 of 3"),
        "zero_index.obj": (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", "corrupt mesh.*vertex -1"),
        # counts that are not plain decimals, negative, or far beyond the limit
        "plus_points.pcd": (_pcd("+100000000"), "not a plain decimal"),
        "huge_points.pcd": (_pcd("100000000"), "100,000,000 points is over the limit"),
        "negative_vertices.ply": (_ply("ascii", "-3", b"0 0 0\n"), "not a plain decimal"),
        "hex_vertices.ply": (_ply("binary_little_endian", "0x10", _TRI), "not a plain decimal"),
        "huge_vertices.ply": (_ply("binary_little_endian", 100_000_000, _TRI), "100,000,000 points is over the limit"),
        "huge_vertices_ascii.ply": (_ply("ascii", 100_000_000, b"0 0 0\n"), "over the limit"),
        "huge_faces.ply": (_ply("binary_little_endian", 3, _TRI, b"4000000000"), "faces is over the limit"),
        "huge.off": (b"OFF\n100000000 1 0\n0 0 0\n", "100,000,000 points is over the limit"),
        "plus.off": (b"OFF\n+3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "not a plain decimal"),
        "huge_triangles.stl": (b"\0" * 80 + struct.pack("<I", 4_000_000_000) + b"\0" * 50, "not an STL"),
        # counts within the limit that the bytes cannot hold: refused before anything is allocated
        "short_binary.ply": (_ply("binary_little_endian", 4_000_000, _TRI), "truncated PLY"),
        "short_binary.pcd": (_pcd("4000000", body=_TRI), "truncated PCD"),
        "short_ascii.pcd": (_pcd("4000000", "ascii", b"0 0 0\n"), "truncated PCD"),
        "short.off": (b"OFF\n4000000 0 0\n0 0 0\n", "truncated OFF"),
        # fewer rows than declared; nan / inf rows (dropped); values beyond float32
        "fewer_rows.ply": (_ply("ascii", 20, _text(rows[:10])), "truncated PLY .10 of 20 vertex rows"),
        "nan_rows.ply": (_ply("ascii", 40, _text(nan_rows).replace(b"inf", b"inf")), "points=20"),
        "nan_rows.xyz": (_text(nan_rows), "points=20"),
        "nan_rows.off": (b"OFF\n40 0 0\n" + _text(nan_rows), "no triangles"),
        "all_nan.pcd": (_pcd("40", "ascii", b"nan nan nan\n" * 40), "every point is NaN or Inf"),
        "ragged.xyz": (b"1 2 3\n4 5\n", "not rows of numbers of one length"),
        "words.xyz": (b"hello world again\n", "not rows of numbers"),
        "header_only.ply": (_ply("ascii", 0, b""), "no points could be read"),
        "no_end_header.ply": (b"ply\nformat ascii 1.0\nelement vertex 3\n" + b"comment x\n" * 8000, "no end_header"),
        "unknown_property_type.ply": (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float128 x\nend_header\n0\n",
                                      "unsupported header line"),
        "compressed.pcd": (_pcd("1", "binary_compressed", b"\0" * 16), "binary_compressed"),
        "nul_in_text.obj": (b"v 0 0 0\0\0\n", "binary content"),
    }
    alphabet = np.frombuffer(b"0123456789 .-+e\nnaif#/v\t", np.uint8)
    for i, suffix in enumerate(scan_io.SCAN_SUFFIXES):  # random bytes, and random number-like text, under every name
        rng = np.random.default_rng(i)
        corpus[f"random{suffix}"] = (rng.bytes(3000), "")
        header = {".ply": b"ply\nformat ascii 1.0\nelement vertex 40\n" + _XYZ + _FACE % b"5" + b"end_header\n",
                  ".off": b"OFF\n40 5 0\n", ".pcd": _pcd("40", "ascii")}.get(suffix, b"")
        corpus[f"random_text{suffix}"] = (header + rng.choice(alphabet, 3000).tobytes(), "")
    for name in ("mtllib_existing.obj", "mtllib_missing.obj"):  # never opened; same result either way
        target = "/etc/hostname" if "existing" in name else "/nonexistent/secret.mtl"
        corpus[name] = (f"mtllib {target}\nusemtl skin\n".encode() + b"".join(
            b"v %.5f %.5f %.5f\n" % tuple(r) for r in rows[:4] * [1, 1, 1]) + b"f 1 2 3\nf 1 3 4\n", "points=20000")
    return corpus


READ_PROBE = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from pose3dfr.data import pointcloud as pc
    from pose3dfr.errors import InvalidScanError

    for path in sys.argv[1:]:
        try:
            points = pc.read_point_cloud(path)
            out = {"points": len(points), "finite": bool(np.isfinite(points).all())}
        except InvalidScanError as exc:
            out = {"error": str(exc)}
        out["reader_peak_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(json.dumps(out), flush=True)
    hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
    print(json.dumps({"caller_peak_mib": int(hwm.split()[1]) / 1024}))
""")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile-scans")
    for name, (data, _) in hostile_corpus().items():
        (folder / name).write_bytes(data)
    return folder


def test_every_hostile_scan_is_refused_or_read_in_a_fresh_reader_process(corpus_dir):
    corpus = hostile_corpus()
    paths = [str(corpus_dir / name) for name in corpus]
    run = subprocess.run([sys.executable, "-c", READ_PROBE, *paths], capture_output=True, text=True, timeout=600,
                         cwd=PROJECT_ROOT)
    assert run.returncode == 0, f"the caller died (status {run.returncode}): {run.stderr[-2000:]}"
    results = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(results) == len(corpus) + 1
    for (name, (_, expected)), result in zip(corpus.items(), results):
        if expected.startswith("points="):
            assert result.get("points") == int(expected[7:]) and result["finite"], (name, result)
        else:
            assert "error" in result and result["error"].startswith(name + ":"), (name, result)
            assert re.search(expected, result["error"]), (name, expected, result)
            assert "could not be parsed safely" not in result["error"], (name, result)  # a clear reason each time
            assert str(corpus_dir) not in result["error"]  # no server paths
        assert result["reader_peak_mib"] < PEAK_LIMIT_MIB, (name, result)
    assert results[-1]["caller_peak_mib"] < PEAK_LIMIT_MIB


def test_a_file_named_inside_an_obj_is_never_opened(corpus_dir, tmp_path):
    """parse_scan (what the reader process runs) under an audit hook: the only file it opens is the scan."""
    secret = tmp_path / "secret.mtl"
    secret.write_text("newmtl skin\nmap_Kd /etc/passwd\n")
    obj = tmp_path / "face.obj"
    obj.write_bytes(f"mtllib {secret}\nmtllib secret.mtl\n".encode() + (corpus_dir / "mtllib_missing.obj").read_bytes())
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from pose3dfr.data import scan_io
        opened = []
        sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
        scan = scan_io.parse_scan(Path({str(obj)!r}), 1000)
        print(len(scan.xyz), len(scan.faces), sorted(set(p for p in opened if not p.endswith((".py", ".pyc", ".so")))))
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().split(maxsplit=2) == ["4", "2", repr([str(obj)])]


def test_reader_crash_timeout_and_memory_limit_become_invalid_scan_errors(tmp_path, monkeypatch):
    face = pc.save_point_cloud(tmp_path / "face.ply", _rows(2000))
    segfault = "import os, resource; resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); os.kill(os.getpid(), 11)"
    monkeypatch.setattr(scan_io, "_reader_command", lambda: [sys.executable, "-c", segfault])
    with pytest.raises(InvalidScanError, match=r"face.ply: could not be parsed safely \(the reader stopped: signal 11\)"):
        pc.read_point_cloud(face)
    monkeypatch.setattr(scan_io, "_reader_command", lambda: [sys.executable, "-c", "import time; time.sleep(30)"])
    monkeypatch.setattr(scan_io, "READER_WALL_SECONDS", 0.5)
    start = time.perf_counter()
    with pytest.raises(InvalidScanError, match="face.ply: could not be parsed safely .the reader took over 0.5 s"):
        pc.read_point_cloud(face)
    assert time.perf_counter() - start < 10
    monkeypatch.undo()
    big = tmp_path / "big.xyz"
    big.write_bytes(_text(_rows(300_000)))
    with pytest.raises(InvalidScanError, match="big.xyz: could not be parsed safely .it needs more than 40 MiB"):
        scan_io.read_scan_isolated(big, pc.MAX_SCAN_POINTS, memory_bytes=40 * 2**20)
    assert len(scan_io.read_scan_isolated(big, pc.MAX_SCAN_POINTS).xyz) == 300_000


# ---- the formats read correctly (in-process parse: trusted, generated files) -----------------

def test_every_text_and_binary_variant_reads_the_same_points(tmp_path):
    xyz = _rows(50, seed=3).astype(np.float64)
    normals = xyz / np.linalg.norm(xyz, axis=1, keepdims=True)
    rgb = np.random.default_rng(4).integers(0, 256, (50, 3))
    files = {
        "a.xyz": _text(xyz),
        "a.xyzn": b"".join(b"%.6f %.6f %.6f %.6f %.6f %.6f\n" % (*p, *n) for p, n in zip(xyz, normals)),
        "a.xyzrgb": b"".join(b"%.6f,%.6f,%.6f,%.6f,%.6f,%.6f\n" % (*p, *(c / 255)) for p, c in zip(xyz, rgb)),
        "a.pts": b"50\n" + b"".join(b"%.6f %.6f %.6f 7 %d %d %d\n" % (*p, *c) for p, c in zip(xyz, rgb)),
        "a.pcd": _pcd("50", "ascii", _text(xyz)).replace(b"WIDTH 1", b"WIDTH 50"),
        "big_endian.ply": _ply("binary_big_endian", 50, xyz.astype(">f4").tobytes()),
        "ascii.ply": _ply("ascii", 50, _text(xyz)),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        scan = scan_io.parse_scan(tmp_path / name, 1000)
        np.testing.assert_allclose(scan.xyz, xyz, atol=1e-4, err_msg=name)
        if name in ("a.xyzrgb", "a.pts"):
            np.testing.assert_allclose(scan.colors, rgb / 255, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(scan_io.parse_scan(tmp_path / "a.xyzn", 1000).normals, normals, atol=1e-5)


def test_polygons_and_relative_obj_indices_are_fan_triangulated(tmp_path):
    square = b"0 0 0\n1 0 0\n1 1 0\n0 1 0\n"
    quad = _ply("ascii", 4, square + b"4 0 1 2 3\n", b"1")
    (tmp_path / "quad.ply").write_bytes(quad)
    (tmp_path / "quad_bin.ply").write_bytes(_ply("binary_little_endian", 4, np.loadtxt(square.splitlines()).astype(
        "<f4").tobytes() + struct.pack("<B4i", 4, 0, 1, 2, 3) + struct.pack("<B3i", 3, 0, 2, 3), b"2"))
    (tmp_path / "quad.obj").write_bytes(b"v " + square.replace(b"\n", b"\nv ")[:-2] + b"f -4/1 -3/2/1 -2//1 -1\n")
    (tmp_path / "quad.off").write_bytes(b"OFF 4 1 0\n" + square + b"4 0 1 2 3 255 0 0\n")
    expected = {"quad.ply": [[0, 1, 2], [0, 2, 3]], "quad_bin.ply": [[0, 1, 2], [0, 2, 3], [0, 2, 3]],
                "quad.obj": [[0, 1, 2], [0, 2, 3]], "quad.off": [[0, 1, 2], [0, 2, 3]]}
    for name, faces in expected.items():
        scan = scan_io.parse_scan(tmp_path / name, 1000)
        assert sorted(map(tuple, scan.faces.tolist())) == sorted(map(tuple, faces)), name


# ---- the app stays up -------------------------------------------------------------------------

# Requests in flight at once: the app serves two at a time (ui/layout.py), so the reader processes overlap.
PARALLEL_REQUESTS = 4


@pytest.mark.slow
def test_the_app_refuses_every_hostile_scan_and_keeps_serving(shared_app, corpus_dir, photos_dir):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(shared_app.url, verbose=False, download_files=False, httpx_kwargs={"timeout": 300})
    enroll, probe = handle_file(str(photos_dir / "obama.jpg")), handle_file(str(photos_dir / "obama2.jpg"))

    def verify(name: str) -> str | None:
        """None when the app verified with this scan, else its error message."""
        try:
            client.predict(enroll, probe, handle_file(str(corpus_dir / name)), 0.01, "default", api_name="/verify")
            return None  # a readable scan of garbage geometry may still verify: the photos decide
        except AppError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:
        errors = dict(zip(hostile_corpus(), pool.map(verify, hostile_corpus())))
    assert shared_app.alive(), "the app died on the hostile corpus"
    accepted = [name for name, error in errors.items() if error is None]
    for name, error in errors.items():
        assert error is None or (name in error and "Traceback" not in error), (name, error)
    assert all(hostile_corpus()[name][1].startswith("points=") for name in accepted), accepted
    result = client.predict(enroll, probe, None, 0.01, "default", api_name="/verify")
    assert result["match"] and result["score"] >= result["threshold"]
    assert shared_app.alive()
