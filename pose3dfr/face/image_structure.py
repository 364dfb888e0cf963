"""Cheap structure checks of image bytes before any decoder sees them: the files whose decoding cost grows with
something other than their pixels (the header's pixel count is checked by image_io).

- JPEG (and MPO): a progressive decoder revisits every block of the image in each scan, so a 1 MB file of
  100,000 empty scans costs minutes of CPU at 25 megapixels (libjpeg-turbo's "LJT-01-003"). Scans are counted
  by walking the marker segments (memory-safe: offsets only, nothing decoded) and a file with more than any
  encoder writes is refused.
- PNG: Pillow parses every chunk in Python (about 3 microseconds each; 1.5 million empty chunks in 17 MB took
  4.7 CPU s), so the chunk count is bounded.
- GIF: Pillow joins comment sub-blocks with `+=` while parsing the blocks before the first image, which is
  quadratic (3 million 1-byte comments in 14 MB took 267 CPU s), so the blocks before the first image are bounded.
- TIFF: Pillow turns each numeric tag of the first IFD into a tuple of Python numbers (a StripOffsets of 4 million
  entries in 30 MB took 18 CPU s and 1.2 GB), so entries and values per tag are bounded.

Each walk stops at its limit, so the check itself costs at most a few milliseconds. WebP, BMP and PPM decoding is
bounded by their pixels (image_decode's limits); every format, in the app, by the decoder process's time and
memory limits (pose3dfr.face.bounded_decode).
"""

from __future__ import annotations

import re

from pose3dfr.errors import InvalidImageError

# Scans of one JPEG. libjpeg's progressive script writes 10 (YCbCr; 6 grayscale, 18 CMYK) and mozjpeg's scan
# optimiser picks a subset of its 64 candidate scans; a baseline file has 1 (3 when not interleaved).
MAX_JPEG_SCANS = 64
# Marker segments of one JPEG (APPn, DQT, DHT, SOS, ...): a photo has tens; an ICC profile split into 255 APP2
# segments and a DHT before each scan stay far below. Bounds the walk itself.
MAX_JPEG_SEGMENTS = 10_000
# Chunks of one PNG. libpng writes 8 KB IDAT chunks: a 50 MiB file (image_io.MAX_FILE_BYTES) has about 6,400.
MAX_PNG_CHUNKS = 20_000
# Data sub-blocks of the extensions before a GIF's first image (comments, XMP with its 258-byte trailer, an ICC
# profile in 255-byte pieces): a few hundred in real files; 4,096 keeps Pillow's quadratic comment join < 0.5 s.
MAX_GIF_BLOCKS_BEFORE_IMAGE = 4096

# Entries of a TIFF's first IFD (a camera or scanner writes tens) and values of one numeric tag: strips or tiles
# (16 x 16 px tiles of a 16-megapixel RGB image stored plane by plane are 187,500), a 16-bit colour map (196,608).
MAX_TIFF_ENTRIES = 4096
MAX_TIFF_VALUES = 200_000
# TIFF field types Pillow expands into one Python number per value (BYTE, ASCII and UNDEFINED stay bytes).
_TIFF_NUMERIC_TYPES = frozenset({3, 4, 5, 8, 9, 10, 11, 12, 13, 16, 17, 18})

_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RST0-7, SOI: markers without a length field
# The next marker after entropy-coded data: 0xFF followed by anything but a stuffed zero, a restart or fill byte.
_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_structure(data: bytes, name: str) -> None:
    """InvalidImageError when the bytes are a JPEG, PNG or GIF whose decoding would cost far more than its
    pixels (see the module docstring); other bytes pass unchanged (the decoder judges them)."""
    if data[:2] == b"\xff\xd8":
        scans = jpeg_scan_count(data, name)
        if scans > MAX_JPEG_SCANS:
            raise InvalidImageError(f"{name}: a JPEG with over {MAX_JPEG_SCANS} scans (this one has at least {scans}); "
                                    "no camera or encoder writes that many, and each costs a pass over the image")
    elif data[:8] == _PNG_SIGNATURE:
        _check_png_chunks(data, name)
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        _check_gif_blocks(data, name)
    elif data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        _check_tiff_tags(data, name)


def jpeg_scan_count(data: bytes, name: str = "image") -> int:
    """Start-of-scan segments of a JPEG's first image (up to its EOI), counted up to MAX_JPEG_SCANS + 1; a file
    with more than MAX_JPEG_SEGMENTS marker segments is refused. Truncated files count what is there."""
    pos, scans, segments, size = 2, 0, 0, len(data)
    while pos + 4 <= size and scans <= MAX_JPEG_SCANS:
        if data[pos] != 0xFF:  # garbage between segments (libjpeg skips it with a warning): find the next marker
            found = _JPEG_NEXT_MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start()
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI: the first image ends (an MPO's other images are never decoded)
            break
        if marker in _JPEG_NO_LENGTH:
            pos += 2
            continue
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise InvalidImageError(f"{name}: a JPEG with over {MAX_JPEG_SEGMENTS:,} marker segments; not a photo")
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:  # start of scan: entropy-coded data runs to the next marker
            scans += 1
            found = _JPEG_NEXT_MARKER.search(data, pos)
            pos = size if found is None else found.start()
    return scans


def _check_png_chunks(data: bytes, name: str) -> None:
    pos, chunks, size = 8, 0, len(data)
    while pos + 8 <= size:
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise InvalidImageError(f"{name}: a PNG with over {MAX_PNG_CHUNKS:,} chunks; not a photo")
        length, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        if kind == b"IEND":
            return
        pos += 12 + length


def _check_gif_blocks(data: bytes, name: str) -> None:
    flags, pos, blocks, size = data[10] if len(data) > 10 else 0, 13, 0, len(data)
    if flags & 0x80:
        pos += 3 << ((flags & 7) + 1)  # global colour table
    while pos < size and data[pos] == 0x21:  # extensions before the first image descriptor (0x2C)
        pos += 2  # introducer and label
        while pos < size and data[pos]:  # data sub-blocks, each a length byte and that many bytes
            blocks += 1
            if blocks > MAX_GIF_BLOCKS_BEFORE_IMAGE:
                raise InvalidImageError(f"{name}: a GIF with over {MAX_GIF_BLOCKS_BEFORE_IMAGE:,} extension blocks "
                                        "before its first image; not a photo")
            pos += 1 + data[pos]
        pos += 1  # the block terminator


def _check_tiff_tags(data: bytes, name: str) -> None:
    """The first IFD of a TIFF or BigTIFF (what Pillow parses when it opens one): entry count and values per
    numeric tag. Offsets past the end are left to the decoder (it refuses them)."""
    order = "little" if data[:2] == b"II" else "big"
    big = data[2:4] in (b"+\0", b"\0+")
    offset_size, count_size, entry_size = (8, 8, 20) if big else (4, 2, 12)
    start = 8 if big else 4
    ifd = int.from_bytes(data[start:start + offset_size], order)
    entries = int.from_bytes(data[ifd:ifd + count_size], order)
    if entries > MAX_TIFF_ENTRIES:
        raise InvalidImageError(f"{name}: a TIFF with {entries:,} entries in its first directory (over "
                                f"{MAX_TIFF_ENTRIES:,}); not a photo")
    position = ifd + count_size
    for _ in range(entries):
        entry = data[position:position + entry_size]
        if len(entry) < entry_size:
            return
        kind = int.from_bytes(entry[2:4], order)
        values = int.from_bytes(entry[4:4 + (8 if big else 4)], order)
        if kind in _TIFF_NUMERIC_TYPES and values > MAX_TIFF_VALUES:
            raise InvalidImageError(f"{name}: a TIFF tag with {values:,} values (over {MAX_TIFF_VALUES:,}); "
                                    "not a photo")
        position += entry_size
