"""Decoding image bytes with Pillow into H x W x 3 uint8 RGB: only the allowed formats, pixels checked from the
header before any is decoded, large JPEGs reduced inside libjpeg, every mode (gray, palette, RGBA, CMYK, 16-bit,
EXIF-rotated) converted, the first frame of animated images only. pose3dfr.face.image_io calls it in-process and
the bounded decoder's worker (pose3dfr.face.bounded_decode) calls it in its own process.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pose3dfr.errors import ImageTooLargeError, InvalidImageError

# Decompression-bomb guard: 40 megapixels covers every camera photo; a bomb claims far more.
MAX_PIXELS = 40_000_000
# Longest side of the decoded image. Detection looks at 1600 px at most (inference.faces.DetectorConfig.fine_side)
# and a face is cut to a 384 px landmark crop and a 112 px chip, so more pixels only cost memory: a larger
# photo is decoded reduced (JPEG: at 1/2, 1/4 or 1/8 scale inside libjpeg) and then downscaled to this.
# 2560 leaves web-sized photos (the shipped ones are up to 2333 px) exactly as they were.
MAX_DECODE_SIDE = 2560
# Formats without reduced decoding (PNG, WebP, ...) are decoded at full size: above this they are refused
# from the header (16 MP = 48 MB of RGB; screenshots and exported photos are smaller, cameras write JPEG).
MAX_FULL_DECODE_PIXELS = 16_000_000
# Formats whose decoder can skip pixels (DCT scaling) while decoding.
DRAFT_FORMATS = ("JPEG", "MPO")
# Smallest side we accept: below this no face can be recognised.
MIN_SIDE = 16
# Decoders Pillow may use: the photo formats people upload. Pillow's ~40 other plugins (EPS runs
# Ghostscript; PSD, FITS, QOI, ... are rarely used and fuzz-prone) are never tried on untrusted bytes.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "PPM")


def decode_bytes(data: bytes | bytearray, *, name: str, max_pixels: int) -> np.ndarray:
    """Decode image bytes here with Pillow (only ALLOWED_FORMATS, pixels checked from the header, large JPEGs
    reduced while decoding): H x W x 3 uint8 RGB, or InvalidImageError / ImageTooLargeError."""
    # No warnings.catch_warnings here: it swaps a process-global filter list and is not thread-safe (the
    # app decodes concurrently). Our pixel check runs before any pixel is decoded, below Pillow's own limit.
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        check_pixels(image.size, name, max_pixels)  # before decoding any pixel
        _reduce_on_decode(image, name)
        image.load()
        return from_pil(_downscaled(image), max_pixels=max_pixels, name=name)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: image is too large ({exc})") from None
    except InvalidImageError:
        raise
    except UnidentifiedImageError:
        raise InvalidImageError(f"{name}: not an image (or an unsupported format; use one of "
                                f"{', '.join(ALLOWED_FORMATS)})") from None
    except MemoryError:  # not the file's fault as such: the caller (a bounded worker) says what it needed
        raise
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
    if max(width, height) <= MAX_DECODE_SIDE:
        return image
    scale = MAX_DECODE_SIDE / max(width, height)
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX)


def from_pil(image: Image.Image, *, max_pixels: int, name: str) -> np.ndarray:
    check_pixels(image.size, name, max_pixels)
    if image.tell() != 0:  # not n_frames: counting the frames parses all of them (a GIF's in Python)
        image.seek(0)
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not reject an otherwise fine photo
        pass
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return finish(np.repeat(gray_to_8_bits(np.asarray(image))[..., None], 3, axis=2), name)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return finish(np.asarray(image.convert("RGB"), dtype=np.uint8), name)


def gray_to_8_bits(array: np.ndarray) -> np.ndarray:
    """A 16- or 32-bit integer gray image as uint8: v / 65535 x 255 when any value is over 255, else as is (clipped
    to 0..255; 32-bit values over 65535 clip to 255). Integer arithmetic: no float64 copy of a 16-megapixel image."""
    if array.max(initial=0) > 255:
        return sixteen_to_8_bits(np.clip(array, 0, 65535))
    return np.clip(array, 0, 255).astype(np.uint8)


def sixteen_to_8_bits(array: np.ndarray) -> np.ndarray:
    """Values in 0..65535 as round(v / 65535 x 255) in uint8: 65535 = 255 x 257, so that is (v + 128) // 257."""
    wide = array.astype(np.uint32)
    wide += 128
    wide //= 257
    return wide.astype(np.uint8)


def check_pixels(size: tuple[int, int], name: str, max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width} x {height} pixels is over the limit of {max_pixels / 1e6:.0f} megapixels")


def finish(rgb: np.ndarray, name: str) -> np.ndarray:
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise InvalidImageError(f"{name}: {rgb.shape[1]} x {rgb.shape[0]} pixels is too small for a face")
    return rgb
