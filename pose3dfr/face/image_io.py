"""Safe image loading: any supported input becomes an H x W x 3 uint8 RGB array, or a clear error.

Accepted inputs: a path, bytes, a PIL image, or a numpy array (H x W, H x W x 3 or H x W x 4;
RGB order unless `bgr=True`, e.g. for arrays from OpenCV). Grayscale, RGBA, palette, CMYK, 16-bit and
EXIF-rotated images are converted; animated images use their first frame (no other frame is parsed).

Bytes are checked before any decoder sees them: size, format structure (pose3dfr.face.image_structure: JPEG scans,
PNG chunks, GIF blocks) and, from the header, pixels. With isolated decoding on (`set_isolated_decoding`, or
POSE3DFR_ISOLATED_DECODE=1; the app turns it on) they are then decoded in a worker process with a time and memory
limit (pose3dfr.face.bounded_decode), else here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from pose3dfr.deadline import check_time
from pose3dfr.errors import ImageTooLargeError, InvalidImageError
from pose3dfr.face.bounded_decode import decode_isolated
from pose3dfr.face.image_decode import (ALLOWED_FORMATS, DRAFT_FORMATS, MAX_DECODE_SIDE, MAX_FULL_DECODE_PIXELS,
                                        MAX_PIXELS, MIN_SIDE, check_pixels, decode_bytes, finish, from_pil,
                                        sixteen_to_8_bits)
from pose3dfr.face.image_structure import check_structure

__all__ = ["ALLOWED_FORMATS", "DRAFT_FORMATS", "ImageInput", "MAX_DECODE_SIDE", "MAX_FILE_BYTES",
           "MAX_FULL_DECODE_PIXELS", "MAX_PIXELS", "MIN_SIDE", "decode_bytes", "isolated_decoding", "load_image",
           "set_isolated_decoding"]

ImageInput = Union[str, os.PathLike, bytes, bytearray, Image.Image, np.ndarray]

# Largest file read from disk or memory (bytes).
MAX_FILE_BYTES = 50 * 1024 * 1024
# Whether file and byte inputs are decoded in a bounded worker process (bounded_decode): off for library calls
# on one's own files (no process to start), on in the app, which decodes what strangers upload.
_ISOLATED = [os.environ.get("POSE3DFR_ISOLATED_DECODE") == "1"]


def set_isolated_decoding(enabled: bool) -> None:
    """Decode file and byte inputs in a time- and memory-limited worker process (True) or in this process."""
    _ISOLATED[0] = bool(enabled)


def isolated_decoding() -> bool:
    return _ISOLATED[0]


def load_image(source: ImageInput, *, bgr: bool = False, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Return `source` as an H x W x 3 uint8 RGB array; raise InvalidImageError / ImageTooLargeError."""
    if isinstance(source, np.ndarray):
        return _from_array(source, bgr=bgr, max_pixels=max_pixels)
    if isinstance(source, Image.Image):
        return from_pil(source, max_pixels=max_pixels, name="PIL image")
    if isinstance(source, (bytes, bytearray)):
        return _decode(bytes(source), name="image bytes", max_pixels=max_pixels)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidImageError(f"{path.name}: no such image file")
        size = path.stat().st_size
        if size == 0:
            raise InvalidImageError(f"{path.name}: the file is empty (0 bytes)")
        if size > MAX_FILE_BYTES:
            raise ImageTooLargeError(f"{path.name}: {size / 2**20:.0f} MiB is over the {MAX_FILE_BYTES // 2**20} MiB limit")
        return _decode(path.read_bytes(), name=path.name, max_pixels=max_pixels)
    raise InvalidImageError(f"cannot read an image from a {type(source).__name__}")


def _decode(data: bytes, *, name: str, max_pixels: int) -> np.ndarray:
    if not data:
        raise InvalidImageError(f"{name}: the file is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageTooLargeError(f"{name}: {len(data) / 2**20:.0f} MiB is over the {MAX_FILE_BYTES // 2**20} MiB limit")
    check_time(f"decoding {name}")
    check_structure(data, name)
    if isolated_decoding():
        return decode_isolated(data, name, max_pixels)
    return decode_bytes(data, name=name, max_pixels=max_pixels)


def _from_array(array: np.ndarray, *, bgr: bool, max_pixels: int) -> np.ndarray:
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InvalidImageError(f"image array must be H x W, H x W x 3 or H x W x 4, got shape {array.shape}")
    check_pixels((array.shape[1], array.shape[0]), "image array", max_pixels)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    array = array[..., :3]
    if bgr:
        array = array[..., ::-1]
    if array.dtype == np.uint8:
        out = array
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InvalidImageError("image array holds NaN or Inf values")
        scale = 255.0 if array.max(initial=0.0) <= 1.0 else 1.0
        out = np.clip(array * scale, 0, 255).round().astype(np.uint8)
    elif array.dtype == np.uint16:
        out = sixteen_to_8_bits(array)
    else:
        raise InvalidImageError(f"unsupported image array dtype {array.dtype}")
    return finish(np.ascontiguousarray(out), "image array")
