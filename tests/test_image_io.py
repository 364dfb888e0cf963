"""Safe image loading: every supported input becomes RGB uint8, bad input a clear error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pose3dfr.errors import ImageTooLargeError, InvalidImageError
from pose3dfr.face.image_io import load_image


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_inputs_of_every_kind_agree(photos_dir):
    path = photos_dir / "obama.jpg"
    from_path = load_image(path)
    assert from_path.dtype == np.uint8 and from_path.ndim == 3 and from_path.shape[2] == 3
    assert np.array_equal(load_image(str(path)), from_path)
    assert np.array_equal(load_image(path.read_bytes()), from_path)
    assert np.array_equal(load_image(Image.open(path)), from_path)
    assert np.array_equal(load_image(from_path), from_path)
    assert np.array_equal(load_image(from_path[..., ::-1].copy(), bgr=True), from_path)


def test_rgba_grayscale_cmyk_16bit_are_converted(photos_dir):
    assert load_image(photos_dir / "32bit.png").shape[2] == 3
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    gray = load_image(_encode(Image.fromarray(rgb).convert("L"), "PNG"))
    assert gray.shape == (40, 50, 3) and np.array_equal(gray[..., 0], gray[..., 1])
    cmyk = load_image(_encode(Image.fromarray(rgb).convert("CMYK"), "JPEG"))
    assert cmyk.shape == (40, 50, 3)
    sixteen = Image.fromarray((np.arange(40 * 50, dtype=np.uint16).reshape(40, 50) * 30).astype(np.uint16))
    assert load_image(_encode(sixteen, "PNG")).shape == (40, 50, 3)


def test_exif_orientation_is_applied():
    rgb = np.zeros((30, 60, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = load_image(_encode(Image.fromarray(rgb), "JPEG", exif=exif))
    assert out.shape == (60, 30, 3)


@pytest.mark.parametrize("data,message", [
    (b"", "empty"),
    (b"this is not an image at all", "not an image"),
    ])
def test_bad_bytes_are_rejected_clearly(data, message):
    with pytest.raises(InvalidImageError, match=message):
        load_image(data)


def test_truncated_jpeg_is_rejected(photos_dir):
    data = (photos_dir / "obama.jpg").read_bytes()
    with pytest.raises(InvalidImageError, match="corrupt or truncated"):
        load_image(data[: len(data) // 3])


def test_pixel_limit_guards_against_bombs():
    big = _encode(Image.new("L", (5000, 5000)), "PNG")
    with pytest.raises(ImageTooLargeError, match="megapixels"):
        load_image(big, max_pixels=10_000_000)


def test_missing_file_and_wrong_type(tmp_path):
    with pytest.raises(InvalidImageError, match="no such image"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(InvalidImageError, match="cannot read an image"):
        load_image(12345)
