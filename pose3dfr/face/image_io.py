"""Safe image loading: any supported input becomes an H x W x 3 uint8 RGB array, or a clear error.

Accepted inputs: a path, bytes, a PIL image, or a numpy array (H x W, H x W x 3 or H x W x 4;
RGB order unless `bgr=True`, e.g. for arrays from OpenCV). Grayscale, RGBA, palette, CMYK, 16-bit and
EXIF-rotated images are converted; animated images use their first frame.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pose3dfr.errors import ImageTooLargeError, InvalidImageError

ImageInput = Union[str, os.PathLike, bytes, bytearray, Image.Image, np.ndarray]

# Decompression-bomb guard: 40 megapixels covers every camera photo; a bomb claims far more.
MAX_PIXELS = 40_000_000
# Longest side of the decoded image. Detection looks at 1600 px at most (detect.DetectorConfig.fine_side)
# and a face is cut to a 384 px landmark crop and a 112 px chip, so more pixels only cost memory: a larger
# photo is decoded reduced (JPEG: at 1/2, 1/4 or 1/8 scale inside libjpeg) and then downscaled to this.
# 2560 leaves web-sized photos (the shipped ones are up to 2333 px) exactly as they were.
MAX_DECODE_SIDE = 2560
# Formats without reduced decoding (PNG, WebP, ...) are decoded at full size: above this they are refused
# from the header (16 MP = 48 MB of RGB; screenshots and exported photos are smaller, cameras write JPEG).
MAX_FULL_DECODE_PIXELS = 16_000_000
# Formats whose decoder can skip pixels (DCT scaling) while decoding.
DRAFT_FORMATS = ("JPEG", "MPO")
# Largest file read from disk or memory (bytes).
MAX_FILE_BYTES = 50 * 1024 * 1024
# Smallest side we accept: below this no face can be recognised.
MIN_SIDE = 16
# Decoders Pillow may use: the photo formats people upload. Pillow's ~40 other plugins (EPS runs
# Ghostscript; PSD, FITS, QOI, ... are rarely used and fuzz-prone) are never tried on untrusted bytes.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "PPM")


def load_image(source: ImageInput, *, bgr: bool = False, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Return `source` as an H x W x 3 uint8 RGB array; raise InvalidImageError / ImageTooLargeError."""
    if isinstance(source, np.ndarray):
        return _from_array(source, bgr=bgr, max_pixels=max_pixels)
    if isinstance(source, Image.Image):
        return _from_pil(source, max_pixels=max_pixels, name="PIL image")
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
    # No warnings.catch_warnings here: it swaps a process-global filter list and is not thread-safe (the
    # app decodes concurrently). Our pixel check runs before any pixel is decoded, below Pillow's own limit.
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        _check_pixels(image.size, name, max_pixels)  # before decoding any pixel
        _reduce_on_decode(image, name)
        image.load()
        return _from_pil(_downscaled(image), max_pixels=max_pixels, name=name)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: image is too large ({exc})") from None
    except InvalidImageError:
        raise
    except UnidentifiedImageError:
        raise InvalidImageError(f"{name}: not an image (or an unsupported format; use one of "
                                f"{', '.join(ALLOWED_FORMATS)})") from None
    except Exception as exc:  # Pillow's decoders raise OSError, SyntaxError, TypeError, IndexError, ... on bad data
        raise InvalidImageError(f"{name}: corrupt or truncated image ({type(exc).__name__}: {exc})") from None


def _reduce_on_decode(image: Image.Image, name: str) -> None:
    """Ask a JPEG decoder for the smallest DCT scale still at least MAX_DECODE_SIDE long; refuse other
    formats whose full decode would exceed MAX_FULL_DECODE_PIXELS (checked from the header)."""
    width, height = image.size
    if max(width, height) <= MAX_DECODE_SIDE:
        return
    if image.format in DRAFT_FORMATS:
        scale = MAX_DECODE_SIDE / max(width, height)
        image.draft("RGB" if image.mode in ("RGB", "YCbCr") else image.mode,
                    (max(1, round(width * scale)), max(1, round(height * scale))))
    elif width * height > MAX_FULL_DECODE_PIXELS:
        raise ImageTooLargeError(f"{name}: {width} x {height} pixels is over the limit of "
                                 f"{MAX_FULL_DECODE_PIXELS / 1e6:.0f} megapixels for {image.format} "
                                 f"(JPEG photos may be up to {MAX_PIXELS / 1e6:.0f} megapixels)")


def _downscaled(image: Image.Image) -> Image.Image:
    """`image` with its longer side at most MAX_DECODE_SIDE (area-averaged; small images untouched)."""
    width, height = image.size
    if max(width, height) <= MAX_DECODE_SIDE or getattr(image, "n_frames", 1) > 1:
        return image
    scale = MAX_DECODE_SIDE / max(width, height)
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX)


def _from_pil(image: Image.Image, *, max_pixels: int, name: str) -> np.ndarray:
    _check_pixels(image.size, name, max_pixels)
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not reject an otherwise fine photo
        pass
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        gray = np.clip(array / peak * 255.0, 0, 255).round().astype(np.uint8)  # 32-bit values may exceed 65535
        return _finish(np.repeat(gray[..., None], 3, axis=2), name)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return _finish(np.asarray(image.convert("RGB"), dtype=np.uint8), name)


def _from_array(array: np.ndarray, *, bgr: bool, max_pixels: int) -> np.ndarray:
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InvalidImageError(f"image array must be H x W, H x W x 3 or H x W x 4, got shape {array.shape}")
    _check_pixels((array.shape[1], array.shape[0]), "image array", max_pixels)
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
        out = (array.astype(np.float64) / 65535.0 * 255.0).round().astype(np.uint8)
    else:
        raise InvalidImageError(f"unsupported image array dtype {array.dtype}")
    return _finish(np.ascontiguousarray(out), "image array")


def _check_pixels(size: tuple[int, int], name: str, max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width} x {height} pixels is over the limit of {max_pixels / 1e6:.0f} megapixels")


def _finish(rgb: np.ndarray, name: str) -> np.ndarray:
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise InvalidImageError(f"{name}: {rgb.shape[1]} x {rgb.shape[0]} pixels is too small for a face")
    return rgb
