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

from pose3dfr.errors import ImageTooLargeError
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
import resource, sys
sys.path.insert(0, {root!r})
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
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(project_root), path=str(path))],
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
