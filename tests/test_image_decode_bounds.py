"""Decoding memory is bounded by what the face pipeline needs: a tiny JPEG claiming 6000 x 6000 pixels is
decoded reduced (libjpeg DCT scaling) and a huge PNG is refused from its header; photos up to
image_io.MAX_DECODE_SIDE decode exactly as Pillow does, and a large photo gives the same face as a small one."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pose3dfr.errors import ImageTooLargeError, InvalidImageError
from pose3dfr.face.image_io import MAX_DECODE_SIDE, MAX_FULL_DECODE_PIXELS, load_image

# Peak memory a 6000 x 6000 claim may add while loading: the unbounded decode added about 620 MiB
# (measured with this test's child before the bound); the reduced decode adds about 120 MiB.
CLAIMED_JPEG_PEAK_MIB = 200


def claimed_jpeg(side: int) -> bytes:
    """A JPEG of a few hundred bytes whose header claims side x side pixels (libjpeg fills the rest)."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 100, 90)).save(buf, "JPEG", quality=50)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = side.to_bytes(2, "big") * 2
    return bytes(data)


CHILD = """
import resource
from pose3dfr.face.image_io import load_image
data = open({path!r}, 'rb').read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rgb = load_image(data)
print(rgb.shape[0], rgb.shape[1], (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_a_small_jpeg_claiming_6000_by_6000_pixels_costs_little_memory(tmp_path, project_root):
    data = claimed_jpeg(6000)
    assert len(data) < 2048
    path = tmp_path / "claims-36mp.jpg"
    path.write_bytes(data)
    out = subprocess.run([sys.executable, "-c", CHILD.format(path=str(path))], cwd=project_root,  # imports this checkout
                         capture_output=True, text=True, timeout=120, check=True).stdout.split()
    height, width, peak_mib = int(out[0]), int(out[1]), float(out[2])
    assert (height, width) == (MAX_DECODE_SIDE, MAX_DECODE_SIDE)
    assert peak_mib < CLAIMED_JPEG_PEAK_MIB, f"loading added {peak_mib:.0f} MiB"


def test_a_png_too_large_to_decode_in_full_is_refused_from_its_header():
    side = int(np.sqrt(MAX_FULL_DECODE_PIXELS)) + 16  # highly compressible: a few kilobytes
    buf = io.BytesIO()
    Image.new("L", (side, side)).save(buf, "PNG")
    with pytest.raises(ImageTooLargeError, match="megapixels for PNG"):
        load_image(buf.getvalue())


def test_shipped_photos_decode_exactly_as_pillow_does(photos_dir):
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        with Image.open(photos_dir / name) as image:
            assert max(image.size) <= MAX_DECODE_SIDE
            expected = np.asarray(image.convert("RGB"))
        assert np.array_equal(load_image(photos_dir / name), expected)


def test_a_large_photo_is_downscaled_and_finds_the_same_face(photos_dir):
    from pose3dfr.inference.verifier import Verifier

    with Image.open(photos_dir / "obama.jpg") as image:
        big = image.convert("RGB").resize((image.width * 4, image.height * 4), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=95)
    rgb = load_image(buf.getvalue())
    assert max(rgb.shape[:2]) == MAX_DECODE_SIDE
    analyzer = Verifier.from_pretrained("default").analyzer
    small_face = analyzer.analyze(load_image(photos_dir / "obama.jpg")).select(0)
    big_face = analyzer.analyze(rgb).select(0)
    assert abs(big_face.yaw - small_face.yaw) < 3.0 and abs(big_face.pitch - small_face.pitch) < 3.0


# ---------------------------------------------------------------------------------------------- decoding cost

def scan_bomb(scans: int, side: int = 1000) -> bytes:
    """The issue's attack: a progressive grayscale JPEG with `scans` empty DC-refinement scans before its EOI (each
    one a pass over every block of the image for the decoder; 100,000 at 5000 px kept a server busy for minutes)."""
    buf = io.BytesIO()
    Image.new("L", (side, side)).save(buf, "JPEG", progressive=True)
    return buf.getvalue()[:-2] + b"\xff\xda\x00\x08\x01\x01\x00\x00\x00\x10" * scans + b"\xff\xd9"


def test_a_scan_bomb_jpeg_is_refused_before_any_decoder_runs():
    from pose3dfr.face.image_structure import MAX_JPEG_SCANS

    with pytest.raises(InvalidImageError, match=f"over {MAX_JPEG_SCANS} scans"):
        load_image(scan_bomb(100_000))


@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
def test_progressive_jpegs_as_encoders_write_them_decode(mode):
    from pose3dfr.face.image_structure import MAX_JPEG_SCANS, jpeg_scan_count

    buf = io.BytesIO()
    Image.new(mode, (64, 48)).save(buf, "JPEG", progressive=True)  # libjpeg's scripts: 6, 10 and 18 scans
    assert 1 < jpeg_scan_count(buf.getvalue()) <= MAX_JPEG_SCANS
    assert load_image(buf.getvalue()).shape == (48, 64, 3)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_a_png_of_many_chunks_and_a_gif_of_many_comments_are_refused_from_their_structure():
    from pose3dfr.face.image_structure import MAX_GIF_BLOCKS_BEFORE_IMAGE, MAX_PNG_CHUNKS

    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, "PNG")
    png = buf.getvalue()
    at = png.index(b"IDAT") - 4  # Pillow parses each chunk in Python: 1.5 million cost 4.7 CPU s
    with pytest.raises(InvalidImageError, match="PNG with over"):
        load_image(png[:at] + _png_chunk(b"teXt", b"k\0v") * (MAX_PNG_CHUNKS + 1) + png[at:])
    assert load_image(png[:at] + _png_chunk(b"teXt", b"k\0v") * 100 + png[at:]).shape == (64, 64, 3)
    buf = io.BytesIO()
    Image.new("P", (64, 64), 1).save(buf, "GIF")
    gif = buf.getvalue()
    at = gif.index(b"\x2c")  # Pillow joins comments quadratically: 3 million cost 267 CPU s
    with pytest.raises(InvalidImageError, match="GIF with over"):
        load_image(gif[:at] + b"\x21\xfe\x01a\x00" * (MAX_GIF_BLOCKS_BEFORE_IMAGE + 1) + gif[at:])
    assert load_image(gif[:at] + b"\x21\xfe\x01a\x00" * 100 + gif[at:]).shape == (64, 64, 3)


def test_a_tiff_with_a_huge_strip_table_is_refused_from_its_first_directory():
    import struct

    from pose3dfr.face.image_structure import MAX_TIFF_VALUES

    count = MAX_TIFF_VALUES + 1  # Pillow makes a tuple of Python ints per tag: 4 million took 18 CPU s and 1.2 GB
    table = 8 + 2 + 8 * 12 + 4
    entries = [(256, 4, 1, 16), (257, 4, 1, 16), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, count, table), (278, 4, 1, 1), (279, 4, count, table + 4 * count)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + bytes(4)
    tiff = b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack(f"<{count}I", *[table] * count) + bytes(4 * count + 256)
    with pytest.raises(InvalidImageError, match="TIFF tag with 200,001 values"):
        load_image(tiff)
    for options in ({}, {"compression": "tiff_lzw"}, {"compression": "tiff_deflate"}):
        buf = io.BytesIO()
        Image.new("RGB", (40, 30)).save(buf, "TIFF", **options)
        assert load_image(buf.getvalue()).shape == (30, 40, 3)


def test_only_the_first_frame_of_an_animation_is_parsed(monkeypatch):
    from PIL import GifImagePlugin

    frames = [Image.new("P", (32, 32), i) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    monkeypatch.setattr(GifImagePlugin.GifImageFile, "n_frames", property(lambda self: pytest.fail("counted frames")))
    assert load_image(buf.getvalue()).shape == (32, 32, 3)


@pytest.fixture
def isolated(monkeypatch):
    """Isolated decoding on (as in the app) for one test; its workers are ended afterwards."""
    from pose3dfr.face import bounded_decode, image_io

    monkeypatch.setattr(image_io, "_ISOLATED", [True])
    yield bounded_decode
    bounded_decode.close_idle_workers()


def test_the_isolated_decoder_gives_the_same_pixels(isolated, photos_dir):
    from pose3dfr.face.image_decode import decode_bytes

    for name in ("obama.jpg", "astronaut.png", "32bit.png"):
        data = (photos_dir / name).read_bytes()
        isolated_rgb = load_image(photos_dir / name)
        assert isolated_rgb.flags.writeable and np.array_equal(isolated_rgb, decode_bytes(data, name=name,
                                                                                           max_pixels=40_000_000))
    with pytest.raises(InvalidImageError, match="not an image"):
        load_image(b"not an image" * 10)
    assert isolated._IDLE, "a healthy worker is kept for the next request"


def test_the_isolated_decoder_stops_a_decode_that_takes_too_long(isolated, monkeypatch, photos_dir):
    monkeypatch.setattr(isolated, "DECODE_SECONDS", 1.0)
    bomb = scan_bomb(20_000, side=5000)  # about 50 CPU s of libjpeg; the structure check is skipped here
    with pytest.raises(InvalidImageError, match="could not be decoded safely .the decoder took over 1 s"):
        isolated.decode_isolated(bomb, "bomb.jpg", 40_000_000)
    assert load_image(photos_dir / "obama.jpg").shape[2] == 3  # a fresh worker takes over


def test_the_isolated_decoder_refuses_an_image_that_needs_too_much_memory(isolated, monkeypatch):
    monkeypatch.setattr(isolated, "DECODER_MEMORY_BYTES", 200 * 2**20)
    buf = io.BytesIO()
    Image.new("RGBA", (4000, 3900)).save(buf, "PNG")  # 15.6 MP: RGBA and RGB copies need about 110 MiB more
    with pytest.raises(InvalidImageError, match="needs more than 200 MiB"):
        load_image(buf.getvalue())


def test_a_request_whose_time_budget_runs_out_while_decoding_is_stopped(isolated):
    from pose3dfr.deadline import time_budget
    from pose3dfr.errors import TimeLimitError

    with time_budget(1.0), pytest.raises(TimeLimitError, match="stopped before decoding bomb.jpg"):
        isolated.decode_isolated(scan_bomb(20_000, side=5000), "bomb.jpg", 40_000_000)
