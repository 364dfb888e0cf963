"""Hostile and odd inputs: every one gets a clear pose3dfr error (naming the input) or is handled correctly.

Images (random and mutated bytes, odd formats, every EXIF orientation, bombs, tiny, no/many faces), scans
(garbage, NaN/Inf, 10 million points within a memory cap, degenerate and crashing meshes) and checkpoints
(truncated, tampered, pickles that must never be unpickled). See docs/reliability.md.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pose3dfr.data import pointcloud as pc
from pose3dfr.data import scan_alignment
from pose3dfr.errors import (CheckpointError, ImageTooLargeError, InvalidImageError, InvalidScanError, NoFaceError,
                             Pose3DFRError)
from pose3dfr.face.image_io import ALLOWED_FORMATS, MAX_PIXELS, MIN_SIDE, load_image
from pose3dfr.paths import ASSETS_DIR, CHECKPOINTS_DIR, PROJECT_ROOT

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _assert_rgb(array: np.ndarray) -> None:
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3 and min(array.shape[:2]) >= MIN_SIDE


# ----------------------------------------------------------------------------------------------
# Images: fuzzed bytes
# ----------------------------------------------------------------------------------------------

_PATTERN = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8))
SEEDS = {fmt: _encode(_PATTERN, fmt) for fmt in ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")}


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_give_an_image_or_invalid_image_error(data):
    try:
        _assert_rgb(load_image(data))
    except InvalidImageError as exc:
        assert "image bytes" in str(exc)


@FUZZ
@given(st.sampled_from(sorted(SEEDS)), st.data())
def test_truncated_and_corrupted_files_of_each_format(fmt, data):
    original = bytearray(SEEDS[fmt])
    cut = data.draw(st.integers(1, len(original) - 1), label="cut")
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)), max_size=8))
    mutated = original[:]
    for position, value in flips:
        mutated[position] = value
    for candidate in (bytes(original[:cut]), bytes(mutated)):
        try:
            _assert_rgb(load_image(candidate))
        except InvalidImageError:
            pass  # never TypeError/IndexError/... from inside Pillow


def test_formats_outside_the_allow_list_are_refused_without_decoding():
    for fmt in ("QOI", "TGA", "SGI", "ICO"):  # Pillow could decode these, but they are not offered to it
        with pytest.raises(InvalidImageError, match="unsupported format"):
            load_image(_encode(_PATTERN, fmt))
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 40 40\n"  # EPS would run Ghostscript
    with pytest.raises(InvalidImageError, match="not an image"):
        load_image(eps)
    assert "EPS" not in ALLOWED_FORMATS


# ----------------------------------------------------------------------------------------------
# Images: odd but valid formats
# ----------------------------------------------------------------------------------------------

def _solid(color: tuple[int, int, int], size=(40, 32)) -> Image.Image:
    return Image.new("RGB", size, color)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_images_use_their_first_frame(fmt):
    frames = [_solid((250, 0, 0)), _solid((0, 250, 0)), _solid((0, 0, 250))]
    data = _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0, lossless=True)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    out = load_image(data)
    assert out.shape == (32, 40, 3)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), (250, 0, 0), atol=3)


def test_16_bit_png_is_scaled_not_wrapped():
    values = np.linspace(0, 65535, 48 * 40).reshape(40, 48).astype(np.uint16)
    out = load_image(_encode(Image.fromarray(values), "PNG"))
    expected = np.round(values / 65535.0 * 255.0).astype(np.uint8)
    assert np.abs(out[..., 0].astype(int) - expected).max() <= 1
    assert np.array_equal(out[..., 0], out[..., 2])


def test_cmyk_jpeg_keeps_its_colours():
    rgb = np.zeros((40, 48, 3), np.uint8)
    rgb[:, :16], rgb[:, 16:32], rgb[:, 32:] = (220, 30, 30), (30, 200, 40), (20, 40, 210)
    out = load_image(_encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95))
    for col, color in ((8, (220, 30, 30)), (24, (30, 200, 40)), (40, (20, 40, 210))):
        np.testing.assert_allclose(out[10:30, col], np.broadcast_to(color, (20, 3)), atol=30)


def _upright() -> np.ndarray:
    """An asymmetric test card, 24 x 40: red top-left block, green top-right, blue bottom-left, grey elsewhere."""
    card = np.full((24, 40, 3), 128, np.uint8)
    card[:8, :10] = (255, 0, 0)
    card[:8, -10:] = (0, 255, 0)
    card[-8:, :10] = (0, 0, 255)
    return card


# How each EXIF orientation stores the upright picture U (EXIF 2.3, tag 0x0112): row 0 / column 0 of the
# stored image are, for 5-8, a column / row of U. Written from the spec, independently of Pillow.
STORED = {
    1: lambda u: u,
    2: lambda u: u[:, ::-1],
    3: lambda u: u[::-1, ::-1],
    4: lambda u: u[::-1, :],
    5: lambda u: u.transpose(1, 0, 2),
    6: lambda u: np.rot90(u, 1),
    7: lambda u: np.rot90(u, 1)[:, ::-1],
    8: lambda u: np.rot90(u, -1),
}


@pytest.mark.parametrize("orientation", sorted(STORED))
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_every_exif_orientation_is_displayed_upright(orientation, fmt):
    upright = _upright()
    stored = np.ascontiguousarray(STORED[orientation](upright))
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = load_image(_encode(Image.fromarray(stored), fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {})))
    assert out.shape == upright.shape
    error = np.abs(out.astype(int) - upright.astype(int))
    assert (error.max() == 0) if fmt == "PNG" else (error.mean() < 6)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def test_decompression_bombs_are_refused_before_decoding():
    # A 100 000 x 100 000 PNG (10 gigapixels) in 70 bytes: only its header is ever read.
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    png = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
           + _png_chunk(b"IEND", b""))
    with pytest.raises(ImageTooLargeError, match="too large|megapixels"):
        load_image(png)
    gif = bytearray(_encode(Image.new("P", (1, 1)), "GIF"))
    gif[6:10] = struct.pack("<HH", 65535, 65535)  # a 4.3-gigapixel logical screen around a 1-pixel frame
    with pytest.raises(ImageTooLargeError):
        load_image(bytes(gif))
    side = int(np.sqrt(MAX_PIXELS)) + 16  # just over the limit, highly compressible: refused too
    with pytest.raises(ImageTooLargeError, match="megapixels"):
        load_image(_encode(Image.new("1", (side, side)), "PNG"))


@pytest.mark.parametrize("size", [(1, 1), (MIN_SIDE - 1, 200), (300, 3)])
def test_tiny_images_are_refused(size):
    with pytest.raises(InvalidImageError, match="too small"):
        load_image(_encode(Image.new("RGB", size, (90, 90, 90)), "PNG"))
    _assert_rgb(load_image(_encode(Image.new("RGB", (MIN_SIDE, MIN_SIDE)), "PNG")))


@pytest.fixture(scope="module")
def verifier():
    from pose3dfr.inference.verifier import Verifier

    return Verifier.from_pretrained("default")


def test_photo_without_a_face_and_with_many_faces(verifier, photos_dir, tmp_path):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (320, 240), (200, 190, 180)).save(blank)
    with pytest.raises(NoFaceError, match="wall.png"):
        verifier.embed(str(blank))
    face = Image.open(photos_dir / "obama.jpg").convert("RGB")
    canvas = Image.new("RGB", (3 * face.width // 2 + 40, face.height), (255, 255, 255))
    for scale, x in ((0.5, 0), (0.4, face.width // 2 + 20), (0.3, face.width + 30)):
        small = face.resize((int(face.width * scale), int(face.height * scale)))
        canvas.paste(small, (x, 0))
    group = tmp_path / "group.png"
    canvas.save(group)
    result = verifier.verify(str(group), str(photos_dir / "obama2.jpg"), with_points=False)
    assert result.enroll.faces == 3 and result.enroll.face_index == 0
    assert result.match  # the largest face (used) is Obama
    with pytest.raises(NoFaceError, match="face index 3"):
        verifier.embed(str(group), face_index=3)


def test_what_does_not_look_like_a_face_is_not_verified_and_the_answer_says_so(verifier, photos_dir, tmp_path):
    import cv2

    image = np.asarray(Image.open(photos_dir / "obama.jpg").convert("RGB"))
    hand = cv2.resize(image[844:1008, 166:330], (384, 384), interpolation=cv2.INTER_AREA)  # a hand with a watch
    Image.fromarray(hand).save(tmp_path / "hand.png")
    with pytest.raises(NoFaceError, match="hand.png: no face found .1 face-like region rejected"):
        verifier.verify(str(photos_dir / "obama.jpg"), str(tmp_path / "hand.png"), with_points=False)
    face = cv2.resize(image, (256, 320), interpolation=cv2.INTER_AREA)
    both = np.concatenate([np.pad(face, ((32, 32), (0, 0), (0, 0)), constant_values=255), hand], axis=1)
    Image.fromarray(both).save(tmp_path / "face-and-hand.png")
    result = verifier.verify(str(photos_dir / "obama2.jpg"), str(tmp_path / "face-and-hand.png"), with_points=False)
    probe = result.to_dict()["probe"]
    assert probe["faces"] == 1 and probe["face_evidence"] == "landmarker" and result.match
    assert len(probe["rejected_faces"]) == 1 and "no facial landmarks fit it" in probe["rejected_faces"][0]["reason"]


# ----------------------------------------------------------------------------------------------
# Scans
# ----------------------------------------------------------------------------------------------

_PLY_XYZ = (b"ply\nformat binary_little_endian 1.0\nelement vertex %d\nproperty float x\nproperty float y\n"
            b"property float z\nend_header\n")


@FUZZ
@given(st.binary(max_size=3000), st.integers(0, 300), st.booleans())
def test_garbage_with_a_ply_name_is_refused(tmp_path, payload, count, with_header):
    path = tmp_path / "scan.ply"
    path.write_bytes((_PLY_XYZ % count if with_header else b"") + payload)
    try:
        # in this process (trusted): the parser itself must refuse garbage; the isolated reader would turn a
        # parser crash into a refusal and hide it (isolation has its own tests in test_hostile_scans.py)
        points = pc.read_point_cloud(path, trusted=True)
        assert np.isfinite(points).all() and len(points) >= pc.MIN_SCAN_POINTS
    except InvalidScanError as exc:
        assert "scan.ply" in str(exc)


@pytest.mark.parametrize("body", [b"", _PLY_XYZ % 0], ids=["empty", "header-only"])
def test_empty_scans(tmp_path, body):
    path = tmp_path / "nothing.ply"
    path.write_bytes(body)
    with pytest.raises(InvalidScanError, match="nothing.ply"):
        scan_alignment.load_scan(path)


def _face() -> np.ndarray:
    from pose3dfr.face.mesh import load_canonical_mesh

    return load_canonical_mesh().vertices.astype(np.float32)


def test_nan_and_inf_points(tmp_path):
    points = _face()
    points[::5] = np.nan
    points[1::5, 2] = np.inf
    points[2::5, 0] = -np.inf
    scan = scan_alignment.load_scan(pc.save_point_cloud(tmp_path / "holes.ply", points), num_points=128)
    assert np.isfinite(scan.points).all() and scan.points.shape == (128, 9)
    with pytest.raises(InvalidScanError, match="inf.ply: every point is NaN or Inf"):
        pc.read_point_cloud(pc.save_point_cloud(tmp_path / "inf.ply", np.full((50, 3), np.inf, np.float32)))
    with pytest.raises(InvalidScanError, match="array: every point is NaN or Inf"):
        scan_alignment.prepare_points(np.full((50, 3), np.nan, np.float32), name="array")


def test_coordinates_beyond_float32_are_refused(tmp_path):
    path = tmp_path / "huge.ply"
    header = b"ply\nformat ascii 1.0\nelement vertex 20\nproperty double x\nproperty double y\nproperty double z\nend_header\n"
    path.write_bytes(header + b"1e300 2e300 -3e300\n" * 20)
    with pytest.raises(InvalidScanError, match="huge.ply"):
        pc.read_point_cloud(path)


MEMORY_PROBE = textwrap.dedent("""
    import sys
    from pose3dfr.data import pointcloud as pc
    from pose3dfr.data import scan_alignment
    from pose3dfr.errors import InvalidScanError

    def peak_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    pc.read_point_cloud(sys.argv[1])  # warm up: Open3D and the reader loaded
    before = peak_mib()
    for path in sys.argv[2:]:
        try:
            scan_alignment.load_scan(path)
            print("ACCEPTED", path)
        except InvalidScanError as exc:
            print("REFUSED", exc)
    print("GROWTH_MIB", peak_mib() - before)
""")
# Peak memory a refused 10-million-point scan may add to the process (the file is 120-240 MB).
TEN_MILLION_CAP_MIB = 64


def test_ten_million_points_are_refused_within_a_memory_cap(tmp_path):
    count = 10_000_000
    small = pc.save_point_cloud(tmp_path / "small.ply", _face())
    ply = tmp_path / "ten_million.ply"
    with open(ply, "wb") as fh:
        fh.write(_PLY_XYZ % count)
        np.random.default_rng(0).random((count, 3), dtype=np.float32).tofile(fh)
    xyz = tmp_path / "ten_million.xyz"
    block = "".join(f"{i % 97 * 0.1:.1f} {i % 89 * 0.1:.1f} {i % 83 * 0.1:.1f}\n" for i in range(10_000)).encode()
    with open(xyz, "wb") as fh:
        for _ in range(count // 10_000):
            fh.write(block)
    pcd = tmp_path / "ten_million.pcd"
    pcd.write_bytes(b"VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 10000000\nHEIGHT 1\n"
                    b"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS 10000000\nDATA binary\n" + b"\0" * 1024)
    run = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(small), str(ply), str(xyz), str(pcd)],
                         capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    refused = [line for line in lines if line.startswith("REFUSED")]
    assert len(refused) == 3 and all("10,000,000 points is over the limit" in line for line in refused), lines
    growth = float(lines[-1].split()[1])
    assert growth < TEN_MILLION_CAP_MIB, f"refusing 10 M points grew the peak RSS by {growth:.0f} MiB"
    points = np.zeros((count, 3), np.float32)
    with pytest.raises(InvalidScanError, match="over the limit"):
        scan_alignment.prepare_points(points, name="array")


def test_large_point_arrays_are_downsampled_before_cleaning(monkeypatch):
    seen = []
    original = pc.remove_outliers
    monkeypatch.setattr(scan_alignment, "MAX_PREPARE_POINTS", 500)
    monkeypatch.setattr(pc, "remove_outliers", lambda pts, **kw: seen.append(len(pts)) or original(pts, **kw))
    face = pc.canonical_points(3000)[:, :3]
    scan = scan_alignment.prepare_points(face, num_points=64, point_features=3, align=False)
    assert seen == [500] and scan.points.shape == (64, 3)


@pytest.mark.parametrize("name,vertices,faces,match", [
    ("collinear.ply", [[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3]], [[0, 1, 2], [1, 2, 3]], "no triangle with a positive area"),
    ("one_spot.obj", [[1, 1, 1]] * 5, [[0, 1, 2], [2, 3, 4]], "no triangle with a positive area"),
    ("flat.ply", [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 1, 2], [1, 3, 2]], "one plane"),
    ("all_nan.ply", [[np.nan, 0, 0], [0, np.nan, 0], [0, 0, np.nan]], [[0, 1, 2]], "NaN or Inf"),
])
def test_degenerate_meshes(tmp_path, name, vertices, faces, match):
    path = pc.save_mesh(tmp_path / name, np.asarray(vertices, float), np.asarray(faces))
    with pytest.raises(InvalidScanError, match=match) as exc:
        scan_alignment.load_scan(path)
    assert name in str(exc.value)


CRASHERS = {  # a polygon whose last index is past the vertex list: Open3D 0.20 segfaults on these
    "polygon.ply": b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                   b"element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n"
                   b"4 0 1 2 99999999\n",
    "polygon_bin.ply": b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                       b"property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
                       + np.eye(3, dtype=np.float32).tobytes() + struct.pack("<B4i", 4, 0, 1, 2, 99999999),
    "triangle_bin.ply": b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                        b"property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
                        + np.eye(3, dtype=np.float32).tobytes() + struct.pack("<B3i", 3, 0, 1, -7),
    "polygon.off": b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2 99999999\n",
}


def test_meshes_with_out_of_range_faces_are_refused_without_crashing(tmp_path):
    """Run in a child process: before the fix Open3D took the whole process (the app) down with SIGSEGV."""
    for name, data in CRASHERS.items():
        (tmp_path / name).write_bytes(data)
    probe = ("import sys\nfrom pose3dfr.data import pointcloud as pc\nfor p in sys.argv[1:]:\n"
             "    try:\n        pc.read_point_cloud(p); print('ACCEPTED', p)\n"
             "    except Exception as e:\n        print(type(e).__name__, e)\n")
    run = subprocess.run([sys.executable, "-c", probe, *(str(tmp_path / n) for n in CRASHERS)],
                         capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert run.returncode == 0, f"reader crashed (signal {-run.returncode}): {run.stdout}"
    lines = run.stdout.splitlines()
    assert len(lines) == len(CRASHERS)
    for name, line in zip(CRASHERS, lines):
        assert line.startswith("InvalidScanError") and name in line and "corrupt mesh" in line, line


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------

class _Trap:
    """Unpickling this object creates `marker`: proof that something unpickled a file it should not have."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from pose3dfr.models import create_model, save_model

    torch.manual_seed(0)
    model = create_model("mobilefacenet-fast", num_points=64, sa1_centres=16, sa2_centres=8, point_group_size=8)
    stem = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_model(model, stem)
    return stem


def _copy_checkpoint(stem: Path, folder: Path, weights: bytes | None = None, meta: dict | None = None) -> Path:
    out = folder / stem.name
    out.with_name(out.name + ".safetensors").write_bytes(
        stem.with_name(stem.name + ".safetensors").read_bytes() if weights is None else weights)
    out.with_name(out.name + ".json").write_text(
        stem.with_name(stem.name + ".json").read_text() if meta is None else json.dumps(meta))
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_truncated_or_altered_checkpoints_are_refused(tiny_checkpoint, tmp_path, data):
    from pose3dfr.models import load_model

    original = tiny_checkpoint.with_name("tiny.safetensors").read_bytes()
    if data.draw(st.booleans(), label="truncate"):
        damaged = original[: data.draw(st.integers(0, len(original) - 1), label="cut")]
    else:
        position = data.draw(st.integers(0, len(original) - 1), label="position")
        damaged = original[:position] + bytes([original[position] ^ 0x5A]) + original[position + 1:]
    folder = Path(tmp_path) / f"c{abs(hash(damaged)) % 10**8}"
    folder.mkdir()
    stem = _copy_checkpoint(tiny_checkpoint, folder, weights=damaged)
    with pytest.raises(CheckpointError, match="tiny.safetensors: sha256"):
        load_model(stem)


def test_checkpoint_json_without_a_sha256_is_refused(tiny_checkpoint, tmp_path):
    from pose3dfr.models import load_model

    meta = json.loads(tiny_checkpoint.with_name("tiny.json").read_text())
    del meta["weights_sha256"]
    with pytest.raises(CheckpointError, match="records no weights_sha256"):
        load_model(_copy_checkpoint(tiny_checkpoint, tmp_path, meta=meta))


# A child loading a checkpoint gets this much address space: torch and pose3dfr need about 650 MB, the tiny
# model a few MB; a config of 2e7 classes would need 2 x 10 GB before the fix, so it fails there with a raw error.
CHECKPOINT_CHILD_ADDRESS_SPACE = 2 * 2**30
CHECKPOINT_CHILD = """
import resource
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from pose3dfr.models import load_model
try:
    load_model({stem!r})
except Exception as exc:
    print(type(exc).__name__, str(exc)[:300])
"""


@pytest.mark.parametrize("config, match", [
    ({"num_classes": 20_000_000}, r"margin_2d.kernel has shape \[128, \d+\] in the file but \[128, 20000000\]"),
    ({"num_classes": 2e7}, "config does not build a model"),
    ({"use_3d": False, "use_je": False}, "is not in the config's model"),
])
def test_a_checkpoint_config_that_does_not_fit_its_weights_is_refused_before_allocating(
        tiny_checkpoint, tmp_path, config, match):
    meta = json.loads(tiny_checkpoint.with_name("tiny.json").read_text())
    meta["config"].update(config)  # the weights are untouched: their sha256 still matches
    stem = _copy_checkpoint(tiny_checkpoint, tmp_path, meta=meta)
    code = CHECKPOINT_CHILD.format(limit=CHECKPOINT_CHILD_ADDRESS_SPACE, stem=str(stem))
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT,  # imports this checkout
                         capture_output=True, text=True, timeout=300)
    assert out.stdout.startswith("CheckpointError"), out.stdout + out.stderr[-2000:]
    import re
    assert re.search(match, out.stdout), out.stdout


def test_a_safetensors_header_that_claims_more_than_the_file_is_refused(tiny_checkpoint, tmp_path):
    from pose3dfr.models.io import safetensors_shapes

    weights = tiny_checkpoint.with_name("tiny.safetensors").read_bytes()
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes((2**40).to_bytes(8, "little") + weights[8:])
    with pytest.raises(CheckpointError, match="header length"):
        safetensors_shapes(huge)
    header = json.dumps({"w": {"dtype": "F32", "shape": [20_000_000, 128], "data_offsets": [0, 10_240_000_000]}})
    claims = tmp_path / "claims.safetensors"
    claims.write_bytes(len(header).to_bytes(8, "little") + header.encode() + b"\0" * 64)
    with pytest.raises(CheckpointError, match="bad entry for 'w'"):
        safetensors_shapes(claims)


def test_pickled_files_are_never_unpickled(tiny_checkpoint, tmp_path):
    import pickle

    from pose3dfr.inference.verifier import Verifier
    from pose3dfr.models import load_model
    from pose3dfr.models.iresnet import IResNet, load_adaface_checkpoint
    from pose3dfr.models.io import file_sha256

    marker = tmp_path / "UNPICKLED"
    payload = pickle.dumps({"state_dict": _Trap(marker)})
    meta = json.loads(tiny_checkpoint.with_name("tiny.json").read_text())
    stem = _copy_checkpoint(tiny_checkpoint, tmp_path, weights=payload, meta=meta)
    meta["weights_sha256"] = file_sha256(stem.with_name("tiny.safetensors"))  # a matching sha256: the reader decides
    stem.with_name("tiny.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_model(stem)
    with pytest.raises(CheckpointError):
        Verifier.from_pretrained(stem)
    torch_pickle = tmp_path / "adaface.ckpt"
    torch.save({"state_dict": _Trap(marker)}, torch_pickle)  # a torch zip whose pickle would run code
    with pytest.raises(CheckpointError, match="adaface.ckpt"):
        load_adaface_checkpoint(IResNet(18), torch_pickle)
    landmarks = tmp_path / "0_landmarks.npy"
    np.save(landmarks, np.array([_Trap(marker)], dtype=object), allow_pickle=True)
    from pose3dfr.data.facescape import read_landmarks
    from pose3dfr.errors import DatasetError

    with pytest.raises(DatasetError, match="0_landmarks.npy"):
        read_landmarks(landmarks)
    assert not marker.exists(), "a pickle was executed"


def test_shipped_weights_are_checked_by_sha256(tmp_path):
    from pose3dfr.models.io import SHIPPED_WEIGHTS_SHA256, check_shipped_weights

    notice = (ASSETS_DIR / "NOTICE.md").read_text()
    for name, digest in SHIPPED_WEIGHTS_SHA256.items():
        assert f"checkpoints/{name}" in notice and digest in notice  # one truth: NOTICE.md lists the same
        assert check_shipped_weights(CHECKPOINTS_DIR / name) == CHECKPOINTS_DIR / name
        tampered = tmp_path / name
        data = bytearray((CHECKPOINTS_DIR / name).read_bytes())
        data[-100] ^= 0xFF
        tampered.write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match=f"{name}: sha256 differs"):
            check_shipped_weights(tampered)
        tampered.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1\n")
        with pytest.raises(CheckpointError, match="sha256 differs"):
            check_shipped_weights(tampered)
    with pytest.raises(CheckpointError, match="not a shipped weights file"):
        check_shipped_weights(tmp_path / "other.safetensors")


def test_every_error_here_is_a_value_error_subclass():
    for error in (InvalidImageError, ImageTooLargeError, InvalidScanError, CheckpointError, NoFaceError):
        assert issubclass(error, Pose3DFRError) and issubclass(error, ValueError)
